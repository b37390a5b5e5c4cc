"""The result of analysing one image: what the viewer shows and what ``cxrviewer analyze`` prints.

The JSON form (:meth:`AnalysisResult.to_json`) is a stable interface that other tools depend on: keys are only
ever added, never renamed or removed. Arrays (heatmaps, masks) stay in memory and are not serialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Status = Literal["ok", "abstained", "error"]
JSON_SCHEMA_VERSION = 1


@dataclass
class OperatingPoint:
    """The chosen cut-off on the positive class's probability and its measured performance."""

    name: str
    positive_class: str
    threshold: float
    sensitivity: float | None = None
    specificity: float | None = None
    sensitivity_ci: tuple[float, float] | None = None
    specificity_ci: tuple[float, float] | None = None
    positive: bool | None = None  # whether this image's score is at or above the threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "positive_class": self.positive_class,
            "threshold": self.threshold,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "sensitivity_ci": list(self.sensitivity_ci) if self.sensitivity_ci else None,
            "specificity_ci": list(self.specificity_ci) if self.specificity_ci else None,
            "positive": self.positive,
        }


@dataclass
class Neighbour:
    """A similar past case from a case library."""

    case_id: str
    library: str
    label: str
    distance: float
    thumbnail_png: bytes | None = None
    source: str | None = None
    licence: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "library": self.library,
            "label": self.label,
            "distance": round(float(self.distance), 6),
            "source": self.source,
            "licence": self.licence,
        }


@dataclass
class AnalysisResult:
    """Everything the analysis of one image produced.

    ``status`` is ``ok`` (scores valid), ``abstained`` (the input gate refused the image: ``reason`` says why,
    ``probabilities`` is empty) or ``error`` (the image could not be analysed: ``reason`` says why).
    """

    path: str
    status: Status
    probabilities: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    latency_ms: float = 0.0
    model_id: str | None = None
    backend: str | None = None
    backend_reason: str | None = None
    operating_point: OperatingPoint | None = None
    warnings: list[str] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)
    neighbour_vote: dict[str, float] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    heatmap: np.ndarray | None = None  # float32 [0, 1] on the original image grid
    heatmap_method: str | None = None
    heatmap_class: str | None = None
    saliency_outside_lungs: float | None = None
    lung_mask: np.ndarray | None = None  # bool on the original image grid

    @property
    def top_label(self) -> str | None:
        """The most probable class, or None when there are no scores."""
        return max(self.probabilities, key=self.probabilities.get) if self.probabilities else None

    def to_json(self) -> dict[str, Any]:
        """The stable JSON object (see module docstring)."""
        return {
            "path": self.path,
            "status": self.status,
            "probabilities": {k: round(float(v), 6) for k, v in self.probabilities.items()},
            "reason": self.reason,
            "latency_ms": round(float(self.latency_ms), 2),
            "top_label": self.top_label,
            "operating_point": self.operating_point.to_json() if self.operating_point else None,
            "warnings": list(self.warnings),
            "model_id": self.model_id,
            "backend": self.backend,
            "backend_reason": self.backend_reason,
            "neighbours": [n.to_json() for n in self.neighbours],
            "neighbour_vote": {k: round(float(v), 4) for k, v in self.neighbour_vote.items()},
            "saliency_outside_lungs": (
                None if self.saliency_outside_lungs is None else round(float(self.saliency_outside_lungs), 4)
            ),
            "timings_ms": {k: round(float(v), 2) for k, v in self.timings_ms.items()},
            "schema_version": JSON_SCHEMA_VERSION,
        }
