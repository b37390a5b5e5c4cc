"""Non-CXR material for the gate: the heavy-crop definition, generated families and seeds, 1/f noise."""

from __future__ import annotations

import numpy as np
from cxr_trainer.seg import negatives as neg


def _radiograph_like(h: int = 400, w: int = 360) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((np.sin(xx / 17.0) + np.cos(yy / 23.0) + 2) * 60).astype(np.uint8)


def test_heavy_crops_keep_at_most_a_fifth_of_the_area_at_several_scales():
    im = _radiograph_like()
    crops = neg.heavy_crops([im], 40, seed=3)
    assert len(crops) == 40 and {c.family for c in crops} == {"cropped_cxr"}
    areas = [c.image.size / im.size for c in crops]
    assert max(areas) <= neg.HEAVY_CROP_MAX_AREA + 1e-9
    aspects = [c.image.shape[1] / c.image.shape[0] for c in crops]
    assert min(areas) < 0.05 and max(areas) > 0.1  # several scales
    assert min(aspects) < 0.6 and max(aspects) > 1.6  # strips both ways, not only squares
    assert all(min(c.image.shape) >= 24 for c in crops)


def test_generated_families_are_deterministic_per_seed_and_differ_across_seeds():
    a, b, c = neg.generated(2, seed=11), neg.generated(2, seed=11), neg.generated(2, seed=12)
    fams = {it.family for it in a}
    assert {"noise", "ultrasound_like", "dead_leaves", "document"} <= fams
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert not any(
        np.array_equal(x.image, z.image) for x, z in zip(a, c, strict=True) if x.image.shape == z.image.shape
    )
    assert all(it.image.dtype == np.uint8 and it.image.ndim == 2 and it.image.std() > 3 for it in a)


def test_ultrasound_like_fan_is_black_outside_the_sector():
    im = neg.GENERATORS["ultrasound_like"](np.random.default_rng(0))
    h, w = im.shape
    assert im[h - 1, 0] == 0 and im[h - 1, w - 1] == 0  # bottom corners lie outside the fan
    assert im[h // 2, w // 2] > 0


def test_power_law_noise_spectrum_falls_with_beta():
    rng = np.random.default_rng(1)
    flat, steep = neg.power_law_noise(128, 128, 0.5, rng), neg.power_law_noise(128, 128, 3.0, rng)

    def high_freq_share(a: np.ndarray) -> float:
        p = np.abs(np.fft.fft2(a - a.mean())) ** 2
        f = np.hypot(*np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128), indexing="ij"))
        return float(p[f > 0.25].sum() / p.sum())

    assert high_freq_share(steep) < 0.1 * high_freq_share(flat)
