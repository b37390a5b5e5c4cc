"""Graphics for the measurement tools: distance lines and cardiothoracic-ratio width pairs, drawn in image
pixel coordinates as children of the image item (so they follow display rotation and flips)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyqtgraph as pg
from PySide6.QtCore import QLineF
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsLineItem

from cxrviewer.ui.measure import Point, cardiothoracic_ratio, ctr_label, measure_distance

DISTANCE_COLOR = QColor(255, 214, 10)
CARDIAC_COLOR = QColor(255, 99, 99)
THORACIC_COLOR = QColor(110, 200, 120)


def _line(parent: QGraphicsItem, color: QColor) -> QGraphicsLineItem:
    pen = QPen(color)
    pen.setCosmetic(True)
    pen.setWidthF(2.0)
    item = QGraphicsLineItem(parent)
    item.setPen(pen)
    item.setZValue(40)
    return item


def _label(parent: QGraphicsItem, color: QColor) -> pg.TextItem:
    text = pg.TextItem(color=color, anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 160))
    text.setParentItem(parent)
    text.setZValue(41)
    return text


@dataclass
class MeasurementRecord:
    """One finished measurement: kind (``distance`` or ``ctr``), its points and its label text."""

    kind: str
    points: list[Point]
    text: str
    value: float
    items: list = field(default_factory=list, repr=False)


class MeasurementLayer:
    """Creates and keeps the measurement graphics of one view."""

    def __init__(self, parent: QGraphicsItem) -> None:
        self.parent = parent
        self.records: list[MeasurementRecord] = []
        self.spacing: tuple[float, float] | None = None
        self.spacing_source: str | None = None
        self._live_line: QGraphicsLineItem | None = None
        self._live_label: pg.TextItem | None = None
        self._ctr_first: tuple[Point, Point, QGraphicsLineItem, pg.TextItem] | None = None

    def set_spacing(self, spacing: tuple[float, float] | None, source: str | None) -> None:
        self.spacing, self.spacing_source = spacing, source

    def clear(self) -> None:
        """Remove every measurement (and any half-drawn one)."""
        scene = self.parent.scene()
        for rec in self.records:
            for it in rec.items:
                _remove(scene, it)
        self.records.clear()
        for it in (self._live_line, self._live_label):
            _remove(scene, it)
        self._live_line = self._live_label = None
        if self._ctr_first is not None:
            _remove(scene, self._ctr_first[2])
            _remove(scene, self._ctr_first[3])
            self._ctr_first = None

    def stroke(self, tool: str, p0: Point, p1: Point, finished: bool) -> MeasurementRecord | None:
        """Update the live stroke of ``tool``; on ``finished`` commit it and return the finished record."""
        if tool == "ctr":
            p1 = (p1[0], p0[1])  # widths are horizontal in image coordinates
        color = (
            DISTANCE_COLOR
            if tool == "distance"
            else (CARDIAC_COLOR if self._ctr_first is None else THORACIC_COLOR)
        )
        if self._live_line is None:
            self._live_line = _line(self.parent, color)
            self._live_label = _label(self.parent, color)
        self._live_line.setLine(QLineF(p0[0], p0[1], p1[0], p1[1]))
        dist = measure_distance(p0, p1, self.spacing, self.spacing_source)
        self._live_label.setText(dist.label)
        self._live_label.setPos(min(p0[0], p1[0]), min(p0[1], p1[1]))  # above the left end
        if not finished:
            return None
        line, label = self._live_line, self._live_label
        self._live_line = self._live_label = None
        if tool == "distance":
            rec = MeasurementRecord("distance", [p0, p1], dist.label, dist.value, [line, label])
            self.records.append(rec)
            return rec
        if self._ctr_first is None:
            label.setText(f"heart {dist.label}")
            self._ctr_first = (p0, p1, line, label)
            return None
        c0, c1, cline, clabel = self._ctr_first
        self._ctr_first = None
        cardiac = abs(c1[0] - c0[0])
        thoracic = abs(p1[0] - p0[0])
        try:
            ratio = cardiothoracic_ratio(cardiac, thoracic)
        except ValueError:
            for it in (line, label, cline, clabel):
                _remove(self.parent.scene(), it)
            return None
        label.setText(f"thorax {dist.label}\n{ctr_label(ratio)}")
        rec = MeasurementRecord(
            "ctr", [c0, c1, p0, p1], ctr_label(ratio), ratio, [cline, clabel, line, label]
        )
        self.records.append(rec)
        return rec


def _remove(scene, item) -> None:
    if item is None:
        return
    if scene is not None and item.scene() is scene:
        scene.removeItem(item)
    else:
        item.setParentItem(None)
