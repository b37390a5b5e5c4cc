"""Measurement maths (no Qt)."""

from __future__ import annotations

import pytest

from cxrviewer.ui.measure import cardiothoracic_ratio, ctr_label, measure_distance


def test_distance_in_mm_uses_row_and_column_spacing():
    d = measure_distance((0, 0), (30, 40), (0.5, 0.2), "ImagerPixelSpacing")
    assert d.unit == "mm" and d.value == pytest.approx((6.0**2 + 20.0**2) ** 0.5)
    assert d.pixels == pytest.approx(50.0) and d.label.endswith("mm (ImagerPixelSpacing)")


def test_distance_without_spacing_is_in_pixels():
    d = measure_distance((10, 10), (13, 14), None)
    assert d.unit == "px" and d.value == pytest.approx(5.0) and d.label == "5 px"


def test_cardiothoracic_ratio():
    assert cardiothoracic_ratio(120, 240) == pytest.approx(0.5)
    assert "> 0.50" in ctr_label(cardiothoracic_ratio(150, 240))
    with pytest.raises(ValueError):
        cardiothoracic_ratio(10, 0)
