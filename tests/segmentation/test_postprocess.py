"""Mask post-processing, mask quality checks, lung ablation and the U-Net's shape contract (no trained model)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cxrviewer.core.preprocess import PreprocessSpec, preprocess
from cxrviewer.ml.segmentation import (
    apply_lung_ablation,
    assess_mask,
    build_unet,
    dice_iou,
    fill_holes,
    mask_to_original,
    postprocess_mask,
)


def two_lungs(size: int = 128, left_scale: float = 1.0) -> np.ndarray:
    """Two lung-shaped ellipses either side of the midline (uint8 0/1)."""
    m = np.zeros((size, size), np.uint8)
    c = size // 2
    cv2.ellipse(
        m, (c - size // 5, c), (int(size * 0.12 * left_scale), int(size * 0.3 * left_scale)), 0, 0, 360, 1, -1
    )
    cv2.ellipse(m, (c + size // 5, c), (int(size * 0.12), int(size * 0.3)), 0, 0, 360, 1, -1)
    return m


def test_postprocess_keeps_two_largest_components_and_fills_holes():
    m = two_lungs().astype(np.float32)
    m[60:66, 40:46] = 0  # a hole inside the left lung
    m[5:9, 5:9] = 1  # a speck
    m[120:124, 60:62] = 1  # another speck
    out = postprocess_mask(m)
    assert out[62, 42] == 1, "hole not filled"
    assert out[6, 6] == 0 and out[121, 61] == 0, "small components not removed"
    n, _ = cv2.connectedComponents(out)
    assert n - 1 == 2


def test_fill_holes_leaves_border_touching_background():
    m = np.zeros((20, 20), np.uint8)
    m[5:15, 5:15] = 1
    m[8:12, 8:12] = 0
    m[0:3, 0:20] = 0
    out = fill_holes(m)
    assert out[10, 10] == 1 and out[0, 0] == 0 and out.sum() == 100


def test_quality_check_accepts_two_plausible_lungs():
    qa = assess_mask(two_lungs())
    assert qa.ok, qa.warnings
    assert qa.n_lungs == 2 and 0.08 < qa.area_fraction < 0.6 and qa.balance > 0.8


@pytest.mark.parametrize(
    ("mask", "phrase"),
    [
        (lambda: np.zeros((64, 64), np.uint8), "no lung"),
        (lambda: two_lungs()[:, :64].copy(), "only one lung"),
        (lambda: two_lungs(left_scale=0.35), "unbalanced"),
        (lambda: np.pad(two_lungs(32), 48), "area is only"),
        (lambda: np.ones((64, 64), np.uint8), "at most"),
    ],
)
def test_quality_check_warns_on_implausible_masks(mask, phrase):
    qa = assess_mask(mask())
    assert not qa.ok
    assert any(phrase in w for w in qa.warnings), qa.warnings


def test_dice_and_iou_known_values():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :5] = True
    b[:, 2:7] = True  # overlap 30 of 50 + 50
    d, j = dice_iou(a, b)
    assert d == pytest.approx(0.6) and j == pytest.approx(30 / 70)
    assert dice_iou(a, a) == (1.0, 1.0)


@pytest.mark.parametrize("mode", ["lungs-only", "lungs-removed"])
def test_lung_ablation_keeps_or_removes_exactly_the_mask(mode):
    rng = np.random.default_rng(0)
    img = rng.integers(1, 255, (128, 128), dtype=np.uint8)
    mask = two_lungs()
    out = apply_lung_ablation(img, mask, mode)
    inside, outside = mask > 0, mask == 0
    assert out.dtype == img.dtype and out.shape == img.shape
    if mode == "lungs-only":
        assert np.array_equal(out[inside], img[inside]) and not out[outside].any()
    else:
        assert np.array_equal(out[outside], img[outside]) and not out[inside].any()
    rgb = np.repeat(img[..., None], 3, axis=2)
    assert np.array_equal(apply_lung_ablation(rgb, mask, mode)[..., 1], out)


def test_lung_ablation_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown ablation mode"):
        apply_lung_ablation(np.zeros((4, 4)), np.zeros((4, 4)), "lungs-blurred")
    with pytest.raises(ValueError, match="does not match"):
        apply_lung_ablation(np.zeros((4, 4)), np.zeros((5, 4)), "lungs-only")


def test_mask_maps_back_through_border_crop_and_padding():
    """A mask computed on the model grid lands on the right original pixels (crop + pad + resize undone)."""
    body = np.full((300, 200), 120, np.uint8)
    img = np.zeros((340, 260), np.uint8)
    img[20:320, 30:230] = body  # black borders that the spec crops away
    spec = PreprocessSpec(size=64)
    _, geom = preprocess(img, spec)
    truth = np.zeros_like(img)
    truth[100:200, 60:120] = 1
    model_mask = (geom.from_original(truth.astype(np.float32)) >= 0.5).astype(np.uint8)
    back = mask_to_original(model_mask.astype(np.float32), model_mask, geom)
    assert back.shape == img.shape
    assert dice_iou(back, truth)[0] > 0.93
    assert not back[:20].any() and not back[:, :30].any()


@pytest.mark.parametrize("size", [64, 100])
def test_unet_output_matches_input_size(size):
    torch = pytest.importorskip("torch")
    net = build_unet(base=4).eval()
    with torch.no_grad():
        y = net(torch.zeros(2, 1, size, size))
    assert y.shape == (2, 1, size, size)
