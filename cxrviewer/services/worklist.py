"""Batch triage: a list of images to analyse, each with a status and a result, sortable by score and
exportable to CSV or JSON. No Qt: the viewer shows a :class:`Worklist` as a table, scripts can use it as is.

The score of an item is the probability of the operating point's positive class (e.g. ``covid``) when the
model names one, else the top class's probability; abstained and failed items have no score and sort last.
Exports use :meth:`AnalysisResult.to_json` so that every consumer sees the same stable keys.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from cxrviewer.services.result import AnalysisResult


class ItemStatus(str, Enum):
    """Where one worklist image stands."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    ABSTAINED = "abstained"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the image needs no more work (done, abstained or failed)."""
        return self in (ItemStatus.DONE, ItemStatus.ABSTAINED, ItemStatus.ERROR)


_STATUS_OF_RESULT = {"ok": ItemStatus.DONE, "abstained": ItemStatus.ABSTAINED, "error": ItemStatus.ERROR}


@dataclass
class WorklistItem:
    """One image of a worklist.

    Attributes:
        key: a unique string for the image (its path, or ``archive.zip::member``).
        source: what the loader needs to read the image (a path or a ``cxrviewer.core`` image source).
        name: a short display name.
        status: see :class:`ItemStatus`.
        result: the analysis, once done.
        message: why the item failed when it failed outside the analysis (e.g. the file could not be read).
    """

    key: str
    source: Any
    name: str
    status: ItemStatus = ItemStatus.PENDING
    result: AnalysisResult | None = None
    message: str | None = None

    @property
    def score(self) -> float | None:
        """The positive-class probability (or top probability); None without valid scores."""
        r = self.result
        if r is None or r.status != "ok" or not r.probabilities:
            return None
        if r.operating_point is not None and r.operating_point.positive_class in r.probabilities:
            return float(r.probabilities[r.operating_point.positive_class])
        return float(max(r.probabilities.values()))

    @property
    def flagged(self) -> bool | None:
        """Whether the score reaches the operating point's threshold (None when unknown)."""
        r = self.result
        if r is None or r.status != "ok" or r.operating_point is None:
            return None
        if r.operating_point.positive is not None:
            return bool(r.operating_point.positive)
        score = self.score
        return None if score is None else score >= r.operating_point.threshold

    def to_json(self) -> dict[str, Any]:
        """The item as a JSON object: key, name, status, score, flagged and the full result (or null)."""
        return {
            "key": self.key,
            "name": self.name,
            "status": self.status.value,
            "score": None if self.score is None else round(self.score, 6),
            "flagged": self.flagged,
            "message": self.message,
            "result": self.result.to_json() if self.result is not None else None,
        }


@dataclass
class Worklist:
    """An ordered list of :class:`WorklistItem`, unique by key."""

    items: list[WorklistItem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index = {}
        for item in self.items:
            if item.key in self._index:
                raise ValueError(f"duplicate worklist item {item.key!r}")
            self._index[item.key] = item

    @classmethod
    def from_sources(cls, sources: Iterable[Any]) -> Worklist:
        """A worklist of pending items, one per source (a path or an object with ``stable_key()``/``name``).

        Repeated sources are listed once.
        """
        items: list[WorklistItem] = []
        seen: set[str] = set()
        for src in sources:
            key, name = _key_and_name(src)
            if key in seen:
                continue
            seen.add(key)
            items.append(WorklistItem(key=key, source=src, name=name))
        return cls(items)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[WorklistItem]:
        return iter(self.items)

    def __getitem__(self, index: int) -> WorklistItem:
        return self.items[index]

    def get(self, key: str) -> WorklistItem | None:
        """The item with this key, or None."""
        return self._index.get(key)

    def index_of(self, key: str) -> int:
        """The row of the item with this key (raises KeyError when absent)."""
        item = self._index[key]
        return self.items.index(item)

    def next_pending(self) -> WorklistItem | None:
        """The first item still waiting to be analysed (pending or cancelled), or None."""
        return next((i for i in self.items if i.status in (ItemStatus.PENDING, ItemStatus.CANCELLED)), None)

    def mark_running(self, key: str) -> WorklistItem:
        """Mark an item as being analysed."""
        item = self._index[key]
        item.status = ItemStatus.RUNNING
        item.message = None
        return item

    def set_result(self, key: str, result: AnalysisResult) -> WorklistItem:
        """Store the analysis of an item; its status follows the result's status."""
        item = self._index[key]
        item.result = result
        item.status = _STATUS_OF_RESULT.get(result.status, ItemStatus.ERROR)
        item.message = result.reason if result.status != "ok" else None
        return item

    def set_failed(self, key: str, message: str) -> WorklistItem:
        """Mark an item as failed outside the analysis (e.g. unreadable file) with a human message."""
        item = self._index[key]
        item.status = ItemStatus.ERROR
        item.message = message
        return item

    def cancel_running(self) -> list[WorklistItem]:
        """Mark every pending or running item as cancelled; returns them."""
        out = []
        for item in self.items:
            if item.status in (ItemStatus.PENDING, ItemStatus.RUNNING):
                item.status = ItemStatus.CANCELLED
                out.append(item)
        return out

    def counts(self) -> dict[str, int]:
        """How many items are in each status (every status listed, zeros included)."""
        out = {s.value: 0 for s in ItemStatus}
        for item in self.items:
            out[item.status.value] += 1
        return out

    def sort_by_score(self, descending: bool = True) -> None:
        """Order items by score (highest first by default); items without a score go last, in their order."""
        scored = [i for i in self.items if i.score is not None]
        unscored = [i for i in self.items if i.score is None]
        scored.sort(key=lambda i: i.score, reverse=descending)
        self.items = scored + unscored

    def to_json(self) -> dict[str, Any]:
        """The whole worklist as a JSON object (``items`` in the current order plus ``counts``)."""
        return {"counts": self.counts(), "items": [i.to_json() for i in self.items]}

    def export_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (UTF-8, indented)."""
        out = Path(path)
        out.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")
        return out

    def export_csv(self, path: str | Path) -> Path:
        """Write one row per item: key, name, status, score, flagged, top label, one column per class
        probability (union of the classes seen), operating point, reason, model, backend, latency."""
        classes: list[str] = []
        for item in self.items:
            for c in item.result.probabilities if item.result else {}:
                if c not in classes:
                    classes.append(c)
        header = ["key", "name", "status", "score", "flagged", "top_label"]
        header += [f"p_{c}" for c in classes]
        header += ["operating_point", "threshold", "reason", "warnings", "model_id", "backend", "latency_ms"]
        out = Path(path)
        with open(out, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for item in self.items:
                writer.writerow(_csv_row(item, classes))
        return out


def _csv_row(item: WorklistItem, classes: list[str]) -> list[Any]:
    r = item.result.to_json() if item.result is not None else {}
    op = r.get("operating_point") or {}
    probs = r.get("probabilities") or {}
    score = item.score
    return [
        item.key,
        item.name,
        item.status.value,
        "" if score is None else f"{score:.6f}",
        "" if item.flagged is None else str(item.flagged).lower(),
        r.get("top_label") or "",
        *["" if c not in probs else f"{probs[c]:.6f}" for c in classes],
        op.get("name", ""),
        op.get("threshold", ""),
        item.message or r.get("reason") or "",
        "; ".join(r.get("warnings") or []),
        r.get("model_id") or "",
        r.get("backend") or "",
        r.get("latency_ms", ""),
    ]


def _key_and_name(source: Any) -> tuple[str, str]:
    stable_key = getattr(source, "stable_key", None)
    if callable(stable_key):
        return str(stable_key()), str(getattr(source, "name", stable_key()))
    path = Path(source)
    return str(path.expanduser().absolute()), path.name
