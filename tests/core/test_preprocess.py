"""The shared preprocessing spec: border/text cropping, padding, resizing, normalisation, geometry."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cxrviewer.core.preprocess import Geometry, PreprocessSpec, border_crop, preprocess, to_uint8


def synthetic_cxr(h: int = 300, w: int = 240, seed: int = 0) -> np.ndarray:
    """A smooth mid-grey 'radiograph' with texture (every row and column is content)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 120 + 60 * np.sin(xx / 17.0) * np.cos(yy / 23.0) + rng.normal(0, 8, (h, w))
    return np.clip(img, 20, 230).astype(np.uint8)


def test_spec_round_trips_through_json():
    spec = PreprocessSpec(size=160, clahe=True, mean=0.48, std=0.22, channels=("cxr", "lung", "zeros"))
    again = PreprocessSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.in_chans == 3


def test_spec_rejects_unknown_settings_and_channels():
    with pytest.raises(ValueError, match="unknown preprocessing settings"):
        PreprocessSpec.from_dict({"size": 128, "sharpen": True})
    with pytest.raises(ValueError, match="unknown input channel"):
        PreprocessSpec(channels=("cxr", "edges"))
    with pytest.raises(ValueError, match="newer"):
        PreprocessSpec.from_dict({"version": 99})


def test_black_border_and_text_margin_are_cropped():
    core = synthetic_cxr(300, 240)
    framed = np.zeros((400, 320), np.uint8)
    framed[60:360, 40:280] = core  # black border: 60 top, 40 bottom, 40 left/right
    cv2.putText(framed, "R  L  ACC 12345", (45, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 1)  # burned-in text
    top, bottom, left, right = border_crop(framed, PreprocessSpec())
    assert (top, bottom, left, right) == (60, 360, 40, 280)


def test_white_border_is_cropped_and_crop_is_bounded():
    core = synthetic_cxr(200, 200)
    framed = np.full((300, 300), 255, np.uint8)
    framed[50:250, 50:250] = core
    assert border_crop(framed, PreprocessSpec()) == (50, 250, 50, 250)
    # a mostly-empty image is never cropped by more than max_crop_fraction per side
    sparse = np.zeros((200, 200), np.uint8)
    sparse[95:105, 95:105] = 128
    top, bottom, left, right = border_crop(sparse, PreprocessSpec(max_crop_fraction=0.25))
    assert top <= 50 and bottom >= 150 and left <= 50 and right >= 150


def test_output_shape_dtype_normalisation_and_determinism():
    img = synthetic_cxr(300, 240)
    spec = PreprocessSpec(size=128, mean=0.5, std=0.25)
    a, geo = preprocess(img, spec)
    b, _ = preprocess(img.copy(), spec)
    assert a.shape == (128, 128) and a.dtype == np.float32
    assert np.array_equal(a, b)
    # padding is black: value (0 - mean) / std
    assert a[64, 0] == pytest.approx(-2.0)
    assert geo.crop == (0, 300, 0, 240) and geo.pad == (0, 0, 30, 30)


def test_float_input_equals_uint8_input():
    img = synthetic_cxr()
    spec = PreprocessSpec(size=96, clahe=True)
    a, _ = preprocess(img, spec)
    b, _ = preprocess(img.astype(np.float32) / 255.0, spec)
    assert np.array_equal(a, b)


def test_clahe_changes_local_contrast():
    img = (synthetic_cxr() // 4 + 90).astype(np.uint8)  # low contrast
    plain, _ = preprocess(img, PreprocessSpec(size=128, pad_to_square=False))
    eq, _ = preprocess(img, PreprocessSpec(size=128, pad_to_square=False, clahe=True))
    assert eq.std() > plain.std() * 1.2


def test_geometry_maps_model_space_back_to_the_image():
    img = np.zeros((400, 320), np.uint8)
    img[60:360, 40:280] = synthetic_cxr(300, 240)
    spec = PreprocessSpec(size=100)
    _, geo = preprocess(img, spec)
    # a blob at the centre of a known image region must come back to that region
    marker = np.zeros((400, 320), np.float32)
    marker[150:200, 100:160] = 1.0
    model_space = geo.from_original(marker)
    back = geo.to_original(model_space)
    assert back.shape == (400, 320)
    ys, xs = np.nonzero(back > 0.5)
    assert abs(ys.mean() - 175) < 3 and abs(xs.mean() - 130) < 3
    assert back[:60].max() == 0 and back[:, :40].max() == 0  # cropped borders get nothing


def test_geometry_without_square_padding():
    geo = Geometry(original_shape=(50, 80), crop=(0, 50, 0, 80), pad=(0, 0, 0, 0), size=32)
    assert geo.to_original(np.ones((32, 32), np.float32)).shape == (50, 80)


def test_to_uint8_converts_rgb_and_rejects_bad_input():
    rgb = np.dstack([synthetic_cxr()] * 3)
    assert np.array_equal(to_uint8(rgb), synthetic_cxr())
    with pytest.raises(ValueError):
        to_uint8(np.zeros((4, 4, 4, 4)))
    with pytest.raises(ValueError):
        to_uint8(np.zeros((4, 4), np.int64))
