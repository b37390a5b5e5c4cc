"""A loaded image plus what the display needs precomputed off the GUI thread: its histogram percentiles and
the window presets derived from them.

Radiograph pixel values are not calibrated like CT Hounsfield units, so "lung", "bone" and "soft tissue"
cannot be fixed numbers: each preset is a pair of percentiles of the image's own (non-padding) histogram.
For MONOCHROME2 images the lungs are the dark end and bone the bright end; for MONOCHROME1 (shown inverted)
the stored values run the other way, so the percentile pairs are mirrored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy and cxrviewer.core are imported by the I/O thread, not at start-up
    import numpy as np

    from cxrviewer.core.windowing import Window

#: Percentile pairs (of non-padding pixels) per preset, for MONOCHROME2 (low value = dark).
PRESET_PERCENTILES: dict[str, tuple[float, float]] = {
    "lung": (1.0, 75.0),
    "soft tissue": (10.0, 97.0),
    "bone": (45.0, 99.8),
    "auto": (0.5, 99.5),
}

#: Display names in menu order; "default" is the file's own window (DICOM) or the loader's automatic one.
PRESET_ORDER = ("default", "auto", "lung", "soft tissue", "bone")

_MAX_SAMPLE = 1 << 20


@dataclass(eq=False)
class LoadedImage:
    """A ``cxrviewer.core.CxrImage`` with its presets and value range, ready for the view."""

    image: Any
    presets: dict[str, Window] = field(default_factory=dict)
    value_range: tuple[float, float] = (0.0, 1.0)
    default_display: np.ndarray | None = (
        None  # uint8 image in the "default" preset, rendered off the GUI thread
    )

    @property
    def key(self) -> str:
        src = self.image.source
        return src.stable_key() if hasattr(src, "stable_key") else str(src)

    @property
    def title(self) -> str:
        src = self.image.source
        return getattr(src, "name", str(src))


def histogram_sample(pixels: np.ndarray, padding: np.ndarray | None) -> np.ndarray:
    """At most ~1 M finite, non-padding pixel values (a regular subsample of large images)."""
    import numpy as np

    step = max(1, int(np.ceil(np.sqrt(pixels.size / _MAX_SAMPLE))))
    sample = pixels[::step, ::step]
    if padding is not None:
        sample = sample[~padding[::step, ::step]]
    sample = np.asarray(sample, dtype=np.float32).ravel()
    return sample[np.isfinite(sample)]


def compute_presets(pixels: np.ndarray, padding: np.ndarray | None, inverted: bool) -> dict[str, Window]:
    """The histogram-relative presets of :data:`PRESET_PERCENTILES` (empty when every pixel is padding)."""
    import numpy as np

    from cxrviewer.core.windowing import Window

    sample = histogram_sample(pixels, padding)
    if sample.size == 0:
        return {}
    out: dict[str, Window] = {}
    for name, (lo, hi) in PRESET_PERCENTILES.items():
        if inverted and name != "auto":
            lo, hi = 100.0 - hi, 100.0 - lo
        low, high = np.percentile(sample, [lo, hi])
        if high <= low:
            low, high = low - 0.5, high + 0.5
        out[name] = Window.from_range(low, high, name)
    return out


def prepare_image(image: Any) -> LoadedImage:
    """Wrap a loaded ``CxrImage``: presets (``default`` = the file's window, else the automatic one), value
    range, and the image rendered in the default preset (what the view shows first)."""
    import numpy as np

    from cxrviewer.core.windowing import Window

    pixels = image.pixels
    padding = image.padding_mask()
    presets = compute_presets(pixels, padding, bool(image.invert))
    w = image.default_window
    presets = {"default": Window(float(w.center), float(w.width), "default"), **presets}
    if pixels.size and np.isfinite(pixels).any():
        vrange = (float(np.nanmin(pixels)), float(np.nanmax(pixels)))
    else:
        vrange = (0.0, 1.0)
    default = presets["default"]
    try:
        shown = image.display(default.center, default.width)
    except ValueError:  # an unusable stored window: the view says so when it renders
        shown = None
    return LoadedImage(image=image, presets=presets, value_range=vrange, default_display=shown)
