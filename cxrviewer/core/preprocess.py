"""The one preprocessing spec shared by the trainer and the viewer.

A model's manifest records its :class:`PreprocessSpec` as plain data (``spec.to_dict()``), and both code
paths call :func:`preprocess` with it, so a model sees the same pixels in training and in the viewer.

The chain (paper 003, Goldstein et al.): crop uniform borders and burned-in text margins → optional CLAHE →
pad to square keeping the aspect ratio → resize → normalise. Input is a display-ready 8-bit grayscale image
(``uint8``), or a float image in [0, 1] that is first rounded to 8 bits, so a JPEG in the training set and a
windowed DICOM in the viewer go through identical arithmetic. Everything is deterministic.

:class:`Geometry` remembers where each output pixel came from, so maps computed at model resolution
(heatmaps, lung masks) can be drawn back onto the original image.

:class:`SharedPreprocessing` lets the models that read one image (input gate, lung U-Net, classifier) share
the work on a detector-size image: inside ``with SharedPreprocessing(image).active():`` :func:`preprocess`
of that very array computes its border crop once per crop setting and its output once per spec. The
results are the ones an uncached call returns, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import cv2
import numpy as np

SPEC_VERSION = 1


@dataclass(frozen=True)
class PreprocessSpec:
    """Preprocessing parameters, recorded verbatim in every model manifest.

    Attributes:
        size: side of the square model input in pixels.
        crop_borders: crop uniform dark/bright borders and sparse text margins before anything else.
        blank_low: an 8-bit value at or below which a pixel counts as black border.
        blank_high: an 8-bit value at or above which a pixel counts as white border.
        min_row_occupancy: a row/column with a smaller fraction of non-border pixels is margin.
        max_crop_fraction: never crop more than this fraction of the height/width from one side.
        clahe: apply CLAHE (contrast-limited adaptive histogram equalisation) after cropping.
        clahe_clip: CLAHE clip limit.
        clahe_grid: CLAHE tile grid (tiles per side).
        pad_to_square: pad the shorter side with black (keeps the aspect ratio); otherwise stretch.
        mean: subtracted after scaling to [0, 1] (dataset mean for the trained model).
        std: divisor after subtracting the mean.
        channels: what each model input channel holds: ``"cxr"``, ``"lung"`` (lung probability map) or
            ``"zeros"``; e.g. ``("cxr", "lung", "zeros")`` for the Goldstein lung-channel input.
    """

    size: int = 224
    crop_borders: bool = True
    blank_low: int = 8
    blank_high: int = 250
    min_row_occupancy: float = 0.30
    max_crop_fraction: float = 0.25
    clahe: bool = False
    clahe_clip: float = 2.0
    clahe_grid: int = 8
    pad_to_square: bool = True
    mean: float = 0.5
    std: float = 0.25
    channels: tuple[str, ...] = field(default=("cxr",))

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"preprocessing size must be at least 8 pixels, got {self.size}")
        if self.std <= 0:
            raise ValueError(f"preprocessing std must be positive, got {self.std}")
        unknown = set(self.channels) - {"cxr", "lung", "zeros"}
        if unknown or not self.channels:
            raise ValueError(f"unknown input channel kinds {sorted(unknown)}; use cxr, lung or zeros")
        object.__setattr__(self, "channels", tuple(self.channels))

    @property
    def in_chans(self) -> int:
        """Number of model input channels."""
        return len(self.channels)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for a manifest (JSON-serialisable)."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["version"] = SPEC_VERSION
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        """Inverse of :meth:`to_dict`; unknown keys are rejected so a newer manifest is not misread."""
        data = dict(data)
        version = data.pop("version", SPEC_VERSION)
        if version > SPEC_VERSION:
            raise ValueError(f"preprocessing spec version {version} is newer than this program supports")
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown preprocessing settings: {sorted(unknown)}")
        if "channels" in data:
            data["channels"] = tuple(data["channels"])
        return cls(**data)


@dataclass(frozen=True)
class Geometry:
    """Where the model input came from in the original image.

    ``crop`` is (top, bottom, left, right) in original pixels (bottom/right exclusive); the cropped region
    was padded by ``pad`` = (top, bottom, left, right) pixels and then scaled to ``size`` × ``size``.
    """

    original_shape: tuple[int, int]
    crop: tuple[int, int, int, int]
    pad: tuple[int, int, int, int]
    size: int

    def to_original(self, model_map: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Map a ``size`` × ``size`` (or any square) map back onto the original image grid.

        Regions outside the crop (borders, margins) are filled with 0.
        """
        top, bottom, left, right = self.crop
        ch, cw = bottom - top, right - left
        pt, pb, pl, pr = self.pad
        padded_h, padded_w = ch + pt + pb, cw + pl + pr
        m = np.asarray(model_map, dtype=np.float32)
        up = cv2.resize(m, (padded_w, padded_h), interpolation=interpolation)
        inner = up[pt : pt + ch, pl : pl + cw]
        h, w = self.original_shape  # one pass writes the zero frame and the map (no zero-fill, then copy)
        return cv2.copyMakeBorder(inner, top, h - bottom, left, w - right, cv2.BORDER_CONSTANT, value=0)

    def from_original(self, image: np.ndarray, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
        """Apply the same crop/pad/resize to another array on the original grid (e.g. a lung mask)."""
        top, bottom, left, right = self.crop
        pt, pb, pl, pr = self.pad
        region = np.asarray(image, dtype=np.float32)[top:bottom, left:right]
        region = cv2.copyMakeBorder(region, pt, pb, pl, pr, cv2.BORDER_CONSTANT, value=0)
        return cv2.resize(region, (self.size, self.size), interpolation=interpolation)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Canonical 8-bit input: ``uint8`` passes through; floats in [0, 1] are clipped and rounded."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = cv2.cvtColor(a[..., :3], cv2.COLOR_RGB2GRAY) if a.dtype == np.uint8 else a[..., :3].mean(axis=2)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    raise ValueError(f"expected uint8 or float pixels in [0, 1], got {a.dtype}")


def border_crop(image: np.ndarray, spec: PreprocessSpec) -> tuple[int, int, int, int]:
    """Crop box (top, bottom, left, right) that removes uniform borders and sparse text margins.

    A row or column is margin when fewer than ``min_row_occupancy`` of its pixels are neither near-black
    nor near-white; margins are removed from the outside in, at most ``max_crop_fraction`` per side.
    """
    h, w = image.shape
    content = (image > spec.blank_low) & (image < spec.blank_high)
    rows = content.mean(axis=1) >= spec.min_row_occupancy
    cols = content.mean(axis=0) >= spec.min_row_occupancy
    max_dy, max_dx = int(h * spec.max_crop_fraction), int(w * spec.max_crop_fraction)

    def first_true(mask: np.ndarray, limit: int) -> int:
        idx = np.flatnonzero(mask[: limit + 1])
        return int(idx[0]) if idx.size else limit

    top = first_true(rows, max_dy)
    bottom = h - first_true(rows[::-1], max_dy)
    left = first_true(cols, max_dx)
    right = w - first_true(cols[::-1], max_dx)
    if bottom - top < 8 or right - left < 8:
        return 0, h, 0, w
    return top, bottom, left, right


def square_padding(h: int, w: int) -> tuple[int, int, int, int]:
    """Padding (top, bottom, left, right) that makes an h × w image square, centred."""
    side = max(h, w)
    dy, dx = side - h, side - w
    return dy // 2, dy - dy // 2, dx // 2, dx - dx // 2


def _crop_key(spec: PreprocessSpec) -> tuple:
    """The settings :func:`border_crop` depends on (specs that differ only in size/CLAHE share a crop)."""
    return (spec.blank_low, spec.blank_high, spec.min_row_occupancy, spec.max_crop_fraction)


class SharedPreprocessing:
    """Memo of :func:`preprocess` for one image array, shared by every model that reads it.

    While :meth:`active` (a context manager, per thread/context), :func:`preprocess` called with this very
    array object (identity, not equality) reuses the border crop of any spec with the same crop settings and
    the whole output of an equal spec. The image must not be modified while the memo is in use.
    """

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self._crops: dict[tuple, tuple[int, int, int, int]] = {}
        self._outputs: dict[PreprocessSpec, tuple[np.ndarray, Geometry]] = {}
        self._gray: np.ndarray | None = None

    @contextmanager
    def active(self) -> Iterator[SharedPreprocessing]:
        """Make :func:`preprocess` use this memo for :attr:`image` inside the ``with`` block."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def gray(self) -> np.ndarray:
        """:func:`to_uint8` of the image, converted once."""
        if self._gray is None:
            self._gray = to_uint8(self.image)
        return self._gray

    def crop(self, img: np.ndarray, spec: PreprocessSpec) -> tuple[int, int, int, int]:
        """:func:`border_crop` of the image (``img`` is its 8-bit form), computed once per crop setting."""
        key = _crop_key(spec)
        if key not in self._crops:
            self._crops[key] = border_crop(img, spec)
        return self._crops[key]

    def preprocess(self, spec: PreprocessSpec) -> tuple[np.ndarray, Geometry]:
        """:func:`preprocess` of the image, computed once per spec (each call returns its own array)."""
        if spec not in self._outputs:
            self._outputs[spec] = _preprocess(self.image, spec, self)
        x, geom = self._outputs[spec]
        return x.copy(), geom


_ACTIVE: ContextVar[SharedPreprocessing | None] = ContextVar("cxr_shared_preprocessing", default=None)


def preprocess(image: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, Geometry]:
    """Run the preprocessing chain; returns the normalised ``float32`` (size, size) image and its geometry.

    Channel assembly (lung map, zeros) is the model's business: see ``spec.channels``. Inside an active
    :class:`SharedPreprocessing` of ``image`` the work is shared with the other models (same result).
    """
    shared = _ACTIVE.get()
    if shared is not None and shared.image is image:
        return shared.preprocess(spec)
    return _preprocess(image, spec, None)


def _preprocess(
    image: np.ndarray, spec: PreprocessSpec, shared: SharedPreprocessing | None
) -> tuple[np.ndarray, Geometry]:
    img = shared.gray() if shared is not None else to_uint8(image)
    h, w = img.shape
    if not spec.crop_borders:
        crop = (0, h, 0, w)
    else:
        crop = shared.crop(img, spec) if shared is not None else border_crop(img, spec)
    top, bottom, left, right = crop
    img = np.ascontiguousarray(img[top:bottom, left:right])
    if spec.clahe:
        grid = max(1, int(spec.clahe_grid))
        img = cv2.createCLAHE(clipLimit=float(spec.clahe_clip), tileGridSize=(grid, grid)).apply(img)
    ch, cw = img.shape
    pad = square_padding(ch, cw) if spec.pad_to_square else (0, 0, 0, 0)
    if any(pad):
        img = cv2.copyMakeBorder(img, *pad, cv2.BORDER_CONSTANT, value=0)
    ph, pw = img.shape
    interp = cv2.INTER_AREA if max(ph, pw) >= spec.size else cv2.INTER_LINEAR
    img = cv2.resize(img, (spec.size, spec.size), interpolation=interp)
    out = (img.astype(np.float32) * np.float32(1.0 / 255.0) - np.float32(spec.mean)) / np.float32(spec.std)
    return out, Geometry(original_shape=(h, w), crop=crop, pad=pad, size=spec.size)
