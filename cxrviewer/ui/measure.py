"""Measurement maths for the view's tools (no Qt): distances in mm or pixels, cardiothoracic ratio.

Points are ``(x, y)`` in image pixel coordinates (x = column, y = row). Spacing is ``(row, column)`` in mm as
DICOM stores it. ``ImagerPixelSpacing`` is measured at the detector, so distances are magnified by the beam
divergence (typically 5-15 % on a PA chest film); the label says which tag was used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Point = tuple[float, float]


@dataclass(frozen=True)
class Distance:
    """A measured length: ``value`` in ``unit`` (``"mm"`` or ``"px"``), and the spacing tag behind it."""

    value: float
    unit: str
    spacing_source: str | None = None
    pixels: float = 0.0

    @property
    def label(self) -> str:
        """E.g. ``"123.4 mm (PixelSpacing)"``, or ``"456 px"`` without pixel spacing."""
        if self.unit == "mm":
            where = f" ({self.spacing_source})" if self.spacing_source else ""
            return f"{self.value:.1f} mm{where}"
        return f"{self.value:.0f} px"


def measure_distance(
    p0: Point, p1: Point, spacing: tuple[float, float] | None, spacing_source: str | None = None
) -> Distance:
    """The length of the segment p0-p1: in mm when ``spacing`` is known (and positive), else in pixels."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    px = math.hypot(dx, dy)
    if spacing is not None and spacing[0] > 0 and spacing[1] > 0:
        mm = math.hypot(dx * spacing[1], dy * spacing[0])
        return Distance(mm, "mm", spacing_source, px)
    return Distance(px, "px", None, px)


def cardiothoracic_ratio(cardiac_width: float, thoracic_width: float) -> float:
    """Maximal horizontal cardiac width over maximal internal thoracic width (same units).

    Raises:
        ValueError: the thoracic width is not positive.
    """
    if thoracic_width <= 0:
        raise ValueError("the thoracic width must be greater than zero")
    return abs(cardiac_width) / abs(thoracic_width)


def ctr_label(ratio: float) -> str:
    """E.g. ``"CTR 0.47"``, with ``"> 0.5"`` flagged (the usual PA cut-off; not valid for AP films)."""
    flag = "  (> 0.50)" if ratio > 0.5 else ""
    return f"CTR {ratio:.2f}{flag}"
