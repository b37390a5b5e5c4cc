"""build_heatmap on detector-size grids: the in-place renormalisation, the bool-mask path and the float64
sums without float64 copies give the numbers of the plain formulas (written out here as the reference)."""

from __future__ import annotations

import numpy as np
import pytest

from cxrviewer.core.preprocess import Geometry
from cxrviewer.ml.explain import HeatmapSettings, build_heatmap, normalize_map, outside_lung_fraction


def reference_heatmap(raw, geometry, mask, threshold=0.5):
    """The plain computation: normalise, map back, normalise again (with its NaN/clip passes), float mask,
    float64 sums."""
    m = normalize_map(normalize_map(raw) if geometry is None else geometry.to_original(normalize_map(raw)))
    mask = np.asarray(mask, dtype=np.float32)
    if mask.max(initial=0.0) > 1.0:
        mask = mask / 255.0
    lungs = mask > threshold
    total = m.astype(np.float64).sum()
    outside = float(m.astype(np.float64)[~lungs].sum() / total) if total > 0 else 0.0
    return m, outside, float(lungs.mean())


def lungs_on(shape):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    left = ((xx - 0.3 * w) / (0.14 * w)) ** 2 + ((yy - 0.5 * h) / (0.3 * h)) ** 2 < 1
    right = ((xx - 0.7 * w) / (0.14 * w)) ** 2 + ((yy - 0.5 * h) / (0.3 * h)) ** 2 < 1
    return left | right


GEOMETRIES = [
    # a detector-size image, cropped on two sides and padded to square (the shipped 128-px classifier)
    Geometry(original_shape=(2500, 2048), crop=(40, 2480, 0, 2048), pad=(0, 0, 196, 196), size=128),
    Geometry(original_shape=(1100, 1500), crop=(0, 1100, 30, 1470), pad=(170, 170, 0, 0), size=224),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("mask_kind", ["bool", "uint8-01", "uint8-255", "float-prob"])
def test_fast_heatmap_equals_the_plain_formulas(geometry, mask_kind):
    rng = np.random.default_rng(0)
    raw = rng.gamma(1.0, 1.0, (8, 8)).astype(np.float32) - 0.3  # some negative evidence to clip
    raw[0, 0] = np.nan
    lungs = lungs_on(geometry.original_shape)
    mask = {
        "bool": lungs,
        "uint8-01": lungs.astype(np.uint8),
        "uint8-255": lungs.astype(np.uint8) * 255,
        "float-prob": np.where(lungs, 0.9, 0.1).astype(np.float32),
    }[mask_kind]
    heat = build_heatmap(raw, "gradcam", 1, geometry=geometry, lung_mask=mask)
    ref_map, ref_outside, ref_area = reference_heatmap(raw, geometry, mask)
    assert heat.map.dtype == np.float32 and heat.map.shape == geometry.original_shape
    np.testing.assert_array_equal(heat.map, ref_map)  # bit for bit
    assert heat.outside_lung_fraction == pytest.approx(ref_outside, abs=1e-9)
    assert heat.lung_area_fraction == pytest.approx(ref_area, abs=1e-12)
    assert 0.05 < heat.outside_lung_fraction < 0.95  # a real mixture, not a trivial 0 or 1
    uniform = 1.0 - ref_area
    assert (heat.warning is not None) == (ref_outside >= uniform - 1e-6)


def test_uniform_map_warns_and_lungs_only_map_does_not():
    # no crop: a uniform model map is uniform on the whole image (a crop would put zeros outside it)
    geometry = Geometry(original_shape=(1100, 1500), crop=(0, 1100, 0, 1500), pad=(200, 200, 0, 0), size=224)
    lungs = lungs_on(geometry.original_shape)
    flat = build_heatmap(np.ones((7, 7), np.float32), "gradcam", 0, geometry, lungs)
    assert flat.warning is not None
    inside = np.zeros((224, 224), np.float32)
    inside[90:130, 50:80] = 1.0  # a blob inside the left lung (model grid)
    focused = build_heatmap(inside, "gradcam", 0, geometry, lungs)
    assert focused.warning is None and focused.outside_lung_fraction < 0.05


def test_outside_lung_fraction_edge_cases_with_bool_masks():
    lungs = np.zeros((20, 30), bool)
    lungs[:, :10] = True
    assert outside_lung_fraction(np.zeros((20, 30), np.float32), lungs) == 0.0
    inside = np.zeros((20, 30), np.float32)
    inside[3:9, 2:7] = 0.7
    assert outside_lung_fraction(inside, lungs) == 0.0
    assert outside_lung_fraction(np.ones((20, 30)), np.zeros((20, 30), bool)) == 1.0
    assert outside_lung_fraction(np.ones((20, 30)), np.ones((20, 30), bool)) == 0.0
    negative = -np.ones((20, 30))
    negative[0, 15] = 2.0  # only positive mass counts
    assert outside_lung_fraction(negative, lungs) == 1.0


def test_restrict_to_lungs_with_a_bool_mask():
    geometry = GEOMETRIES[1]
    lungs = lungs_on(geometry.original_shape)
    heat = build_heatmap(
        np.ones((7, 7), np.float32), "gradcam", 0, geometry, lungs, HeatmapSettings(restrict_to_lungs=True)
    )
    assert not heat.map[~lungs].any() and heat.map.max() == pytest.approx(1.0)
