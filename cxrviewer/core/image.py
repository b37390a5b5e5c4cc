"""The loaded image (:class:`CxrImage`) and its display pipeline.

Pixels are kept in modality units (after the Modality LUT / rescale) as float32. The display chain is
modality values → VOI (window or VOI LUT sequence) → inversion for MONOCHROME1 → padding shown black.

For integer data of at most 16 bits (nearly every radiograph) the chain is evaluated once per *possible stored
value* (a 256- or 65,536-entry table) and then looked up per pixel, so it is exact (the same function as
pydicom's ``apply_modality_lut`` → ``apply_voi_lut``) and fast (one table lookup per pixel, no float64 image).
Other data (32-bit integers, float pixel data, colour converted to grey) are windowed in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from cxrviewer.core.source import ImageSource
from cxrviewer.core.windowing import Window, is_valid_window, percentile_window, window_normalised

#: Stored dtypes handled by table lookup, and the unsigned view used as the table index.
_LUT_INDEX_DTYPES = {
    np.dtype(np.uint8): np.uint8,
    np.dtype(np.int8): np.uint8,
    np.dtype(np.uint16): np.uint16,
    np.dtype(np.int16): np.uint16,
}

#: Images larger than this are subsampled 2×2 when building the automatic-window histogram.
_HISTOGRAM_SUBSAMPLE_ABOVE = 1 << 22


@dataclass(frozen=True)
class PixelPadding:
    """Pixel Padding Value (and optional Pixel Padding Range Limit), in stored-value units."""

    value: float
    range_limit: float | None = None

    @property
    def bounds(self) -> tuple[float, float]:
        """Inclusive (low, high) of the stored values that are padding."""
        limit = self.value if self.range_limit is None else self.range_limit
        return min(self.value, limit), max(self.value, limit)


def stored_value_domain(dtype: np.dtype) -> np.ndarray:
    """Every value a stored dtype can hold, ordered by its unsigned bit pattern (the lookup-table index)."""
    index_dtype = _LUT_INDEX_DTYPES[np.dtype(dtype)]
    return np.arange(np.iinfo(index_dtype).max + 1, dtype=np.int64).astype(index_dtype).view(dtype)


def uses_lookup_table(dtype: np.dtype) -> bool:
    """Whether stored values of this dtype are displayed by table lookup."""
    return np.dtype(dtype) in _LUT_INDEX_DTYPES


@dataclass(eq=False)
class DisplayPipeline:
    """Maps an image to display values. Built by the readers; use :meth:`CxrImage.display`.

    Attributes:
        pixels: float32 modality values (rows, cols).
        invert: MONOCHROME1 (low values are white).
        stored: the stored values (integer, ≤ 16 bits) when the table path is used, else None.
        modality_table: float64 modality value of every stored bit pattern (table path only).
        padding: the padding range in stored units, or None.
        voi_lut: maps modality values to [0, 1] through the file's VOI LUT sequence, or None.
        rescale: (slope, intercept) when the modality transform is linear (identity: (1, 0)), enabling the
            OpenCV fast path for LINEAR / LINEAR_EXACT windows; None for a Modality LUT sequence.
        fixed_auto_window: the automatic window when it is not to be computed from the histogram.
    """

    pixels: np.ndarray
    invert: bool = False
    stored: np.ndarray | None = None
    modality_table: np.ndarray | None = None
    padding: PixelPadding | None = None
    voi_lut: Callable[[np.ndarray], np.ndarray] | None = None
    rescale: tuple[float, float] | None = None
    fixed_auto_window: Window | None = None
    _index: np.ndarray | None = field(default=None, init=False, repr=False)
    _pad_table: np.ndarray | None = field(default=None, init=False, repr=False)
    _pad_mask: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.stored is not None:
            index_dtype = _LUT_INDEX_DTYPES[self.stored.dtype]
            self._index = self.stored.view(index_dtype)
            if self.modality_table is None:
                self.modality_table = stored_value_domain(self.stored.dtype).astype(np.float64)
            if self.padding is not None:
                low, high = self.padding.bounds
                domain = stored_value_domain(self.stored.dtype)
                self._pad_table = (domain >= low) & (domain <= high)

    def padding_mask(self) -> np.ndarray | None:
        """Boolean (rows, cols) mask of padding pixels, or None when the image declares no padding."""
        if self.padding is None:
            return None
        if self._pad_mask is None:
            if self._pad_table is not None and self._index is not None:
                self._pad_mask = self._pad_table[self._index]
            else:
                low, high = self.padding.bounds
                source = self.stored if self.stored is not None else self.pixels
                self._pad_mask = (source >= low) & (source <= high)
        return self._pad_mask

    def auto_window(self) -> Window:
        """Window from the 0.5–99.5 percentiles of the non-padding pixels (full range if all padding);
        computed on first use, then cached."""
        if self.fixed_auto_window is None:
            self.fixed_auto_window = self._histogram_window()
        return self.fixed_auto_window

    def _histogram_window(self) -> Window:
        big = self.pixels.size > _HISTOGRAM_SUBSAMPLE_ABOVE
        if self._index is not None and self.modality_table is not None:
            index = self._index[::2, ::2] if big else self._index
            counts = np.bincount(index.ravel(), minlength=self.modality_table.size)
            if self._pad_table is not None:
                counts[self._pad_table] = 0
            window = percentile_window(self.modality_table, counts)
        else:
            sample = self.pixels[::2, ::2] if big else self.pixels
            mask = self.padding_mask()
            if mask is not None:
                sample = sample[~(mask[::2, ::2] if big else mask)]
            window = percentile_window(sample)
        if window is None:
            finite = self.pixels[np.isfinite(self.pixels)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            window = Window.from_range(low, high, "automatic (full range)")
        return window

    def render(self, window: Window | None, function: str, as_float: bool) -> np.ndarray:
        """Display image: uint8 (0–255) or float32 in [0, 1]. ``window=None`` uses the VOI LUT sequence."""
        if window is None and self.voi_lut is None:
            raise ValueError("no window given and the image has no VOI LUT sequence")
        if not as_float and window is not None and self._fast_path_ok(window, function):
            return self._render_affine(window, function)
        if self._index is not None and self.modality_table is not None:
            table = self._normalise(self.modality_table.copy(), window, function, self._pad_table)
            if as_float:
                return table.astype(np.float32)[self._index]
            return np.rint(table * 255.0).astype(np.uint8)[self._index]
        out = self._normalise(self.pixels.copy(), window, function, self.padding_mask())
        if as_float:
            return out
        out *= np.float32(255.0)
        np.rint(out, out=out)
        return out.astype(np.uint8)

    def _fast_path_ok(self, window: Window, function: str) -> bool:
        return (
            self.stored is not None
            and self.rescale is not None
            and self.rescale[0] > 0
            and function in ("LINEAR", "LINEAR_EXACT")
            and (function == "LINEAR_EXACT" or window.width > 1.0)
        )

    def _render_affine(self, window: Window, function: str) -> np.ndarray:
        """8-bit display of a linear window over a linear modality transform with OpenCV (multi-threaded,
        saturating): 255 · clip(((slope·x + intercept) − offset) · k + 0.5, 0, 1) = saturate(α·x + β)."""
        assert self.stored is not None and self.rescale is not None
        slope, intercept = self.rescale
        if function == "LINEAR":
            offset, k = window.center - 0.5, 1.0 / (window.width - 1.0)
        else:
            offset, k = window.center, 1.0 / window.width
        alpha = 255.0 * slope * k
        beta = 255.0 * ((intercept - offset) * k + 0.5)
        info = np.iinfo(self.stored.dtype)
        lowest = min(max(math.ceil(-beta / alpha), info.min), info.max)  # below it α·x + β < 0
        if lowest > info.min:  # convertScaleAbs takes |α·x + β|: clamp, then black out what was below
            out = cv2.convertScaleAbs(cv2.max(self.stored, lowest), alpha=alpha, beta=beta)
            cv2.subtract(out, cv2.compare(self.stored, lowest, cv2.CMP_LT), dst=out)
        else:
            out = cv2.convertScaleAbs(self.stored, alpha=alpha, beta=beta)
        if self.invert:
            cv2.bitwise_not(out, dst=out)
        if self.padding is not None:
            mask = self.padding_mask()
            assert mask is not None
            out[mask] = 0
        return out

    def _normalise(
        self, values: np.ndarray, window: Window | None, function: str, pad: np.ndarray | None
    ) -> np.ndarray:
        if window is None:
            assert self.voi_lut is not None
            values = np.asarray(self.voi_lut(values), dtype=values.dtype)
        else:
            window_normalised(values, window.center, window.width, function, out=values)
        if self.invert:
            np.subtract(values.dtype.type(1.0), values, out=values)
        if pad is not None:
            values[pad] = 0.0
        np.nan_to_num(values, copy=False, nan=0.0)
        return values


@dataclass(eq=False)
class CxrImage:
    """One frame of a radiograph, ready to display and analyse.

    Attributes:
        pixels: float32 (rows, cols) in modality units (after the Modality LUT or rescale slope/intercept);
            grey levels for PNG/JPEG/TIFF, luminance for colour images.
        source: where it was read from (:class:`ImageSource`).
        format: ``"DICOM"``, ``"PNG"``, ``"JPEG"`` or ``"TIFF"``.
        photometric_interpretation: as in the file (``"MONOCHROME2"`` for raster images).
        invert: MONOCHROME1: shown inverted.
        windows: VOI windows stored in the file (Window Center/Width, all values), possibly empty.
        voi_lut_function: ``"LINEAR"``, ``"LINEAR_EXACT"`` or ``"SIGMOID"``; used for every window.
        has_voi_lut_sequence: the file carries a VOI LUT sequence (used by default, as pydicom does).
        pixel_padding: padding values (shown black, left out of automatic windowing), or None.
        pixel_spacing: (row, column) spacing in mm, or None.
        pixel_spacing_source: ``"PixelSpacing"`` or ``"ImagerPixelSpacing"`` (detector plane, not corrected
            for magnification), or None.
        view_position: e.g. ``"PA"``, ``"AP"``, ``"LL"``, or None.
        patient_id, study_instance_uid, series_instance_uid, sop_instance_uid: DICOM identifiers; for raster
            images stable ids derived from the file's location (see :func:`derived_uid`).
        frame: which frame this is (0-based); number_of_frames: frames in the file.
        metadata: small dict (modality, body_part, manufacturer, rows, columns, bits_stored,
            transfer_syntax, study_date, ...); values are plain str/int/float.
    """

    pixels: np.ndarray
    source: ImageSource
    format: str
    photometric_interpretation: str
    invert: bool
    windows: tuple[Window, ...]
    voi_lut_function: str
    has_voi_lut_sequence: bool
    pixel_padding: PixelPadding | None
    pixel_spacing: tuple[float, float] | None
    pixel_spacing_source: str | None
    view_position: str | None
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    frame: int
    number_of_frames: int
    metadata: dict[str, Any]
    pipeline: DisplayPipeline = field(repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    @property
    def auto_window(self) -> Window:
        """The window from the histogram (0.5–99.5 percentiles, padding excluded); used when the file has
        no VOI. Raster images: 0–255 for 8 bits, minimum–maximum for 16 bits. Computed on first use."""
        return self.pipeline.auto_window()

    @property
    def default_window(self) -> Window:
        """The first window stored in the file, else the automatic window."""
        return self.windows[0] if self.windows else self.auto_window

    def padding_mask(self) -> np.ndarray | None:
        """Boolean mask of pixel-padding pixels, or None when the file declares no padding."""
        return self.pipeline.padding_mask()

    def display(
        self,
        center: float | None = None,
        width: float | None = None,
        *,
        window_index: int = 0,
        as_float: bool = False,
    ) -> np.ndarray:
        """The display-ready image: uint8 (0 = black) or, with ``as_float``, float32 in [0, 1].

        With ``center`` and ``width`` (modality units) that window is used with :attr:`voi_lut_function`.
        Otherwise the file's VOI LUT sequence if present, else its window number ``window_index``, else
        :attr:`auto_window`. MONOCHROME1 is inverted and padding is black in every case.

        Raises:
            ValueError: only one of center/width given, an unusable width, or ``window_index`` out of range.
        """
        if (center is None) != (width is None):
            raise ValueError("give both the window center and the window width, or neither")
        if center is not None and width is not None:
            center, width = float(center), float(width)
            if self.voi_lut_function == "LINEAR":
                width = max(width, 1.0)
            if not is_valid_window(center, width, self.voi_lut_function):
                raise ValueError(f"unusable window: center {center}, width {width}")
            window: Window | None = Window(center, width, "user")
        elif self.has_voi_lut_sequence and self.pipeline.voi_lut is not None:
            window = None
        elif self.windows:
            if not 0 <= window_index < len(self.windows):
                raise ValueError(f"window {window_index} requested; the file has {len(self.windows)}")
            window = self.windows[window_index]
        else:
            window = self.auto_window
        return self.pipeline.render(window, self.voi_lut_function, as_float)
