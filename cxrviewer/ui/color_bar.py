"""A light vertical colour bar for the heatmap: the overlay's colour map from 0 (bottom) to 1 (top), three
tick labels and a title. A plain QWidget: much cheaper to build than a pyqtgraph ColorBarItem."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QLinearGradient, QPainter
from PySide6.QtWidgets import QWidget

BAR_WIDTH = 12
BACKGROUND = "#0b0d10"  # the image view's background


class ColorBar(QWidget):
    """Draws ``lut`` (N×3 or N×4 uint8, low → high) as a vertical gradient labelled 0, 0.5 and 1."""

    def __init__(self, lut: np.ndarray, title: str = "evidence", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.setFixedWidth(52)
        self._stops = [
            (i / (len(lut) - 1), QColor(*[int(v) for v in lut[i][:3]])) for i in range(0, len(lut), 16)
        ]
        self._stops.append((1.0, QColor(*[int(v) for v in lut[-1][:3]])))
        self.setToolTip(f"{title}: 0 = no evidence, 1 = the strongest evidence in this image")

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(BACKGROUND))
        top, bottom = 24.0, float(self.height() - 24)
        if bottom - top < 20:
            return
        bar = QRectF(6.0, top, BAR_WIDTH, bottom - top)
        grad = QLinearGradient(0, bottom, 0, top)
        for pos, color in self._stops:
            grad.setColorAt(pos, color)
        p.fillRect(bar, grad)
        p.setPen(QColor("#3a424c"))
        p.drawRect(bar)
        p.setPen(QColor("#9aa3ad"))
        font = p.font()
        font.setPointSizeF(max(font.pointSizeF() - 1.0, 7.0))
        p.setFont(font)
        for value in (0.0, 0.5, 1.0):
            y = bottom - value * (bottom - top)
            p.drawLine(int(bar.right()), int(y), int(bar.right()) + 4, int(y))
            p.drawText(QRectF(bar.right() + 6, y - 8, 40, 16), Qt.AlignmentFlag.AlignVCenter, f"{value:g}")
        p.drawText(QRectF(0, 2, self.width(), 18), Qt.AlignmentFlag.AlignCenter, self.title)
        p.end()
