"""Heatmap arithmetic: normalisation, mapping onto the original image, the outside-lung fraction and its
warning, lung restriction, and the TP / FP / FN grid for the trainer report."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cxrviewer.core.preprocess import PreprocessSpec, preprocess
from cxrviewer.ml.explain import (
    GridItem,
    HeatmapSettings,
    build_heatmap,
    normalize_map,
    outside_lung_fraction,
)


def test_normalize_clips_negative_evidence_and_scales_to_one():
    m = normalize_map(np.array([[-2.0, 0.0], [1.0, 4.0]]))
    np.testing.assert_allclose(m, [[0.0, 0.0], [0.25, 1.0]])
    assert not normalize_map(np.full((3, 3), -1.0)).any()
    assert not normalize_map(np.array([[np.nan, 0.0]])).any()


def test_outside_lung_fraction_arithmetic():
    mask = np.zeros((10, 10), np.uint8)
    mask[:, :4] = 255  # 40 % lung
    assert outside_lung_fraction(np.ones((10, 10)), mask) == pytest.approx(0.6)
    inside = np.zeros((10, 10))
    inside[2:5, 1:3] = 1.0
    assert outside_lung_fraction(inside, mask) == 0.0
    weighted = np.zeros((10, 10))
    weighted[0, 0], weighted[0, 9] = 1.0, 3.0
    assert outside_lung_fraction(weighted, mask) == pytest.approx(0.75)
    assert outside_lung_fraction(np.zeros((10, 10)), mask) == 0.0
    with pytest.raises(ValueError, match="shape"):
        outside_lung_fraction(np.ones((5, 5)), mask)


def test_warning_when_no_more_lung_concentrated_than_uniform():
    mask = np.zeros((20, 20), np.uint8)
    mask[4:16, 2:9] = 1
    mask[4:16, 11:18] = 1  # 42 % lung
    uniform = build_heatmap(np.ones((20, 20)), "occlusion", 1, lung_mask=mask)
    assert uniform.lung_area_fraction == pytest.approx(0.42)
    assert uniform.outside_lung_fraction == pytest.approx(0.58)
    assert uniform.warning is not None and "outside the lungs" in uniform.warning
    corner = np.zeros((20, 20))
    corner[0:3, 0:3] = 1.0  # a text marker in the corner
    assert build_heatmap(corner, "gradcam", 0, lung_mask=mask).warning is not None
    lungs = np.zeros((20, 20))
    lungs[6:14, 3:8] = 1.0
    lungs[0, 0] = 0.5
    good = build_heatmap(lungs, "gradcam", 0, lung_mask=mask)
    assert good.warning is None and 0 < good.outside_lung_fraction < 0.05
    stricter = build_heatmap(lungs, "gradcam", 0, lung_mask=mask, settings=HeatmapSettings(warn_margin=-0.6))
    assert stricter.warning is not None


def test_restrict_to_lungs_zeroes_outside_and_renormalises():
    mask = np.zeros((8, 8))
    mask[:, :4] = 1.0
    raw = np.zeros((8, 8))
    raw[0, 7] = 10.0  # the strongest evidence lies outside the lungs
    raw[3, 1] = 2.0
    h = build_heatmap(raw, "occlusion", 2, lung_mask=mask, settings=HeatmapSettings(restrict_to_lungs=True))
    assert h.map[:, 4:].max() == 0.0 and h.map[3, 1] == pytest.approx(1.0)
    assert h.outside_lung_fraction == pytest.approx(10 / 12)  # measured before the restriction
    assert h.class_index == 2 and h.method == "occlusion"


def test_map_is_drawn_back_onto_the_original_image():
    image = np.full((300, 200), 120, np.uint8)
    image[:, :20] = 0  # a black border the preprocessing crops
    image[40:60, 120:140] = 200
    x, geometry = preprocess(image, PreprocessSpec(size=64))
    raw = np.zeros((64, 64), np.float32)
    r, c = 64 * 50 // 300, (64 * (130 - 20 + (300 - 180) // 2)) // 300  # the bright patch at model scale
    raw[r, c] = 1.0
    h = build_heatmap(cv2.GaussianBlur(raw, (0, 0), 2), "gradcam", 0, geometry=geometry)
    assert h.map.shape == (300, 200) and h.map.max() == pytest.approx(1.0)
    assert h.map[:, :20].max() == 0.0  # nothing on the cropped border
    pr, pc = np.unravel_index(int(h.map.argmax()), h.map.shape)
    assert abs(pr - 50) <= 6 and abs(pc - 130) <= 6


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="method"):
        build_heatmap(np.ones((4, 4)), "lime", 0)
    with pytest.raises(ValueError, match="lung mask shape"):
        build_heatmap(np.ones((4, 4)), "gradcam", 0, lung_mask=np.ones((5, 5)))


def test_render_example_grid_writes_all_three_rows(tmp_path):
    from cxrviewer.ml.explain import render_example_grid

    rng = np.random.default_rng(0)
    image = (rng.random((64, 64)) * 255).astype(np.uint8)
    heat = np.zeros((64, 64), np.float32)
    heat[10:20, 30:40] = 1.0
    items = [
        GridItem(image, heat, "TP", "case 1  p=0.93"),
        GridItem(image, heat, "FP", "case 2", warning=True),
    ]
    items += [GridItem(image, heat, "TP", f"case {i}") for i in range(3, 12)]  # more than one row holds
    out = render_example_grid(items, tmp_path / "report" / "heatmaps.png", title="COVID-19 heatmaps")
    png = cv2.imread(str(out))
    assert png is not None and png.shape[0] > 400 and png.shape[1] > 600
    assert png.std() > 10  # something was drawn
    with pytest.raises(ValueError, match="outcome"):
        GridItem(image, heat, "TN")
    with pytest.raises(ValueError, match="shape"):
        GridItem(image, heat[:10], "TP")
