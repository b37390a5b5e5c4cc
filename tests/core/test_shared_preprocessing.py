"""SharedPreprocessing: the models reading one image share its preprocessing, with bit-identical results."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cxrviewer.core import preprocess as preprocess_module
from cxrviewer.core.preprocess import Geometry, PreprocessSpec, SharedPreprocessing, preprocess

# the shipped gate / classifier (128 px) and lung U-Net (160 px, CLAHE) specs, and two more
SPECS = [
    PreprocessSpec(size=128),
    PreprocessSpec(size=160, clahe=True),
    PreprocessSpec(size=224, mean=0.48, std=0.22),
    PreprocessSpec(size=96, crop_borders=False, pad_to_square=False),
]


def framed_radiograph(h: int = 1250, w: int = 1024, seed: int = 3) -> np.ndarray:
    """A textured 'radiograph' with a black border and a burned-in text margin (so the crop is not trivial)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 120 + 60 * np.sin(xx / 37.0) * np.cos(yy / 53.0) + rng.normal(0, 8, (h, w))
    out = np.zeros((h, w), np.uint8)
    out[90 : h - 40, 70 : w - 55] = np.clip(img, 20, 230)[90 : h - 40, 70 : w - 55]
    cv2.putText(out, "L  ACC 12345", (80, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 255, 2)
    return out


@pytest.mark.parametrize("as_float", [False, True])
def test_shared_outputs_are_bit_identical_to_plain_calls(as_float):
    image = framed_radiograph()
    if as_float:
        image = image.astype(np.float32) / 255.0
    plain = [preprocess(image, spec) for spec in SPECS]
    shared = SharedPreprocessing(image)
    with shared.active():
        for _ in range(2):  # first call computes, second reuses
            for spec, (x_ref, g_ref) in zip(SPECS, plain, strict=True):
                x, g = preprocess(image, spec)
                assert x.dtype == x_ref.dtype and np.array_equal(x, x_ref), spec
                assert g == g_ref
    assert plain[0][1].crop != (0, image.shape[0], 0, image.shape[1])  # the border really was cropped


def test_border_crop_runs_once_per_crop_setting_and_outputs_once_per_spec(monkeypatch):
    image = framed_radiograph(400, 320)
    calls = {"crop": 0, "resize": 0}
    real_crop, real_resize = preprocess_module.border_crop, cv2.resize

    def counting_crop(*a, **k):
        calls["crop"] += 1
        return real_crop(*a, **k)

    def counting_resize(*a, **k):
        calls["resize"] += 1
        return real_resize(*a, **k)

    monkeypatch.setattr(preprocess_module, "border_crop", counting_crop)
    monkeypatch.setattr(preprocess_module.cv2, "resize", counting_resize)
    with SharedPreprocessing(image).active():
        for spec in (SPECS[0], SPECS[0], SPECS[1], SPECS[2], SPECS[1]):
            preprocess(image, spec)
    assert calls == {"crop": 1, "resize": 3}  # one crop for the three cropping specs, one output per spec
    calls.update(crop=0, resize=0)
    preprocess(image, SPECS[0])
    preprocess(image, SPECS[0])  # outside the block nothing is shared
    assert calls == {"crop": 2, "resize": 2}


def test_only_the_very_same_array_is_shared_and_results_are_independent_copies():
    image = framed_radiograph(400, 320)
    other = image.copy()  # equal pixels, another object: never served from the memo
    other[200:, :] = 0
    with SharedPreprocessing(image).active():
        x1, _ = preprocess(image, SPECS[0])
        x1[:] = 99.0  # a caller that writes into its input must not change what the next model sees
        x2, _ = preprocess(image, SPECS[0])
        x_other, _ = preprocess(other, SPECS[0])
    np.testing.assert_array_equal(x2, preprocess(image, SPECS[0])[0])
    np.testing.assert_array_equal(x_other, preprocess(other, SPECS[0])[0])
    assert not np.array_equal(x_other, x2)


def test_nested_blocks_restore_the_outer_memo():
    a, b = framed_radiograph(300, 260, seed=1), framed_radiograph(300, 260, seed=2)
    outer = SharedPreprocessing(a)
    with outer.active():
        with SharedPreprocessing(b).active():
            preprocess(b, SPECS[0])
        preprocess(a, SPECS[0])
    assert list(outer._outputs) == [SPECS[0]]


@pytest.mark.parametrize(
    "geometry",
    [
        Geometry(original_shape=(2500, 2048), crop=(40, 2480, 0, 2048), pad=(0, 0, 196, 196), size=128),
        Geometry(original_shape=(900, 1200), crop=(10, 890, 35, 1180), pad=(133, 132, 0, 0), size=160),
        Geometry(original_shape=(300, 300), crop=(0, 300, 0, 300), pad=(0, 0, 0, 0), size=64),
    ],
)
def test_to_original_equals_resize_and_paste_into_zeros(geometry):
    """Geometry.to_original writes the zero frame and the map in one pass: the same numbers as the plain
    zero-fill + resize + paste."""
    m = np.random.default_rng(1).random((geometry.size, geometry.size)).astype(np.float32)
    top, bottom, left, right = geometry.crop
    pt, pb, pl, pr = geometry.pad
    up = cv2.resize(m, (right - left + pl + pr, bottom - top + pt + pb), interpolation=cv2.INTER_LINEAR)
    plain = np.zeros(geometry.original_shape, np.float32)
    plain[top:bottom, left:right] = up[pt : pt + bottom - top, pl : pl + right - left]
    out = geometry.to_original(m)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, plain)
