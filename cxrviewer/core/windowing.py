"""VOI windowing (DICOM PS3.3 C.11.2.1.2) as vectorised numpy, normalised to [0, 1].

The functions return ``(y - y_min) / (y_max - y_min)`` of pydicom's ``apply_windowing`` output, so they are
independent of the output bit depth: LINEAR, LINEAR_EXACT and SIGMOID behave exactly as the standard (and
pydicom) define them. They work on any float array; the loader applies them to small lookup tables (one
entry per possible stored value) or, for float data, to the image itself in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")

#: Percentiles (of non-padding pixels) used for the automatic window when a file carries no VOI.
AUTO_WINDOW_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class Window:
    """A VOI window: ``center`` and ``width`` in modality units, and where it came from."""

    center: float
    width: float
    explanation: str = ""

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0

    @classmethod
    def from_range(cls, low: float, high: float, explanation: str = "") -> Window:
        """The window spanning ``low`` .. ``high`` (at least 1 unit wide)."""
        width = max(float(high) - float(low), 1.0)
        return cls(center=(float(low) + float(high)) / 2.0, width=width, explanation=explanation)


def is_valid_window(center: float, width: float, function: str) -> bool:
    """Whether a window is usable: finite, and width >= 1 (LINEAR) or > 0 (LINEAR_EXACT, SIGMOID)."""
    if not (np.isfinite(center) and np.isfinite(width)):
        return False
    return width >= 1.0 if function == "LINEAR" else width > 0.0


def window_normalised(
    values: np.ndarray, center: float, width: float, function: str = "LINEAR", out: np.ndarray | None = None
) -> np.ndarray:
    """Apply a VOI window to ``values`` and return the result scaled to [0, 1].

    The dtype of ``values`` is kept when it is floating (float32 stays float32); integers become float64.
    ``out`` may be ``values`` itself to work in place.

    Raises:
        ValueError: unknown function or an unusable width (see :func:`is_valid_window`).
    """
    function = function.upper()
    if function not in VOI_FUNCTIONS:
        raise ValueError(f"unknown VOI LUT function {function!r}")
    if not is_valid_window(center, width, function):
        raise ValueError(f"unusable window width {width} for {function}")
    arr = values if np.issubdtype(values.dtype, np.floating) else values.astype(np.float64)
    dt = arr.dtype.type
    if function == "SIGMOID":
        res = np.subtract(arr, dt(center), out=out)
        res *= dt(-4.0 / width)
        np.exp(res, out=res)
        res += dt(1.0)
        np.reciprocal(res, out=res)
        return res
    if function == "LINEAR_EXACT":
        offset, scale = center, 1.0 / width
    else:  # LINEAR
        offset = center - 0.5
        if width == 1.0:  # a threshold at center - 0.5: x <= c - 0.5 is black, above is white
            res = np.greater(arr, dt(offset)).astype(dt)
            if out is not None:
                out[...] = res
                return out
            return res
        scale = 1.0 / (width - 1.0)
    res = np.subtract(arr, dt(offset), out=out)
    res *= dt(scale)
    res += dt(0.5)
    np.clip(res, dt(0.0), dt(1.0), out=res)
    return res


def percentile_window(
    values: np.ndarray,
    weights: np.ndarray | None = None,
    percentiles: tuple[float, float] = AUTO_WINDOW_PERCENTILES,
) -> Window | None:
    """A window spanning the given percentiles of ``values`` (optionally a histogram: value -> count).

    Returns None when there are no values (e.g. every pixel is padding).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if weights is None:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return None
        low, high = np.percentile(finite, percentiles)
    else:
        weights = np.asarray(weights, dtype=np.float64).ravel()
        keep = (weights > 0) & np.isfinite(values)
        if not keep.any():
            return None
        vals, cnts = values[keep], weights[keep]
        order = np.argsort(vals, kind="stable")
        vals, cum = vals[order], np.cumsum(cnts[order])
        total = cum[-1]
        low = vals[min(np.searchsorted(cum, total * percentiles[0] / 100.0, side="left"), len(vals) - 1)]
        high = vals[min(np.searchsorted(cum, total * percentiles[1] / 100.0, side="left"), len(vals) - 1)]
    if high <= low:  # a flat image: widen so it is shown mid-grey instead of failing
        return Window.from_range(low - 0.5, high + 0.5, "automatic (flat image)")
    return Window.from_range(low, high, f"automatic ({percentiles[0]:g}-{percentiles[1]:g} percentile)")
