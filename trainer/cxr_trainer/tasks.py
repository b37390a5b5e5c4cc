"""Task definitions: which output classes a model has and how dataset labels map onto them.

The task (its name, labels, ``label_map`` and positive class) is written into the model manifest, so the
evaluator maps an unseen dataset's labels exactly as the model was trained; labels absent from the map are
excluded and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PNEUMONIA_LABELS = ("pneumonia_bacterial", "pneumonia_viral", "pneumonia_fungal", "pneumonia_unspecified")


@dataclass(frozen=True)
class TaskDef:
    """Output classes (logit order), the dataset-label → class map and the class the cut-offs are about."""

    name: str
    labels: tuple[str, ...]
    label_map: dict[str, str] = field(default_factory=dict)
    positive_class: str = "covid"
    description: str = ""

    def map_label(self, label: str) -> str | None:
        """The output class for a dataset label, or None when the task excludes it."""
        return self.label_map.get(label)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "labels": list(self.labels),
            "label_map": dict(self.label_map),
            "positive_class": self.positive_class,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], labels: list[str] | None = None) -> TaskDef:
        """Rebuild from a manifest's ``task`` (``labels`` falls back to the manifest's labels)."""
        return cls(
            name=data.get("name", "custom"),
            labels=tuple(data.get("labels") or labels or []),
            label_map=dict(data.get("label_map", {})),
            positive_class=data.get("positive_class", "covid"),
            description=data.get("description", ""),
        )


TASKS: dict[str, TaskDef] = {
    t.name: t
    for t in [
        TaskDef(
            "covid-vs-rest",
            ("rest", "covid"),
            {
                "covid": "covid",
                "normal": "rest",
                "non_covid": "rest",
                "other": "rest",
                "lung_opacity": "rest",
                **{p: "rest" for p in PNEUMONIA_LABELS},
            },
            description="COVID-19 against everything else (Minaee et al.; Yamani & Malek)",
        ),
        TaskDef(
            "normal-bacterial-covid",
            ("normal", "pneumonia_bacterial", "covid"),
            {"normal": "normal", "pneumonia_bacterial": "pneumonia_bacterial", "covid": "covid"},
            description="normal / bacterial pneumonia / COVID-19 (Katsamenis et al.)",
        ),
        TaskDef(
            "normal-pneumonia-covid",
            ("normal", "pneumonia", "covid"),
            {"normal": "normal", "covid": "covid", **{p: "pneumonia" for p in PNEUMONIA_LABELS}},
            description="normal / pneumonia (any cause) / COVID-19",
        ),
    ]
}


def get_task(name: str) -> TaskDef:
    """A registered task by name (clear error otherwise)."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None
