"""Display-ready analysis overlays, prepared in the analysis thread so that the GUI thread only assigns them.

An analysis result holds its heatmap and lung mask on the image's own grid (up to tens of megapixels for a
detector image). Colour-mapping such a map, filling a mask image or tracing its outline on the GUI thread
freezes the window for hundreds of milliseconds, so :func:`prepare_result_display` does all of it in the
worker thread, right after the analysis:

- the heatmap, reduced to at most :data:`DISPLAY_MAX_SIDE` pixels per side (the maps are smooth: Grad-CAM is
  an upsampled 4×4 … 16×16 grid), as colour-mapped RGBA with and without the lungs-only restriction;
- the lung mask's fill as RGBA on the same reduced grid, and its outline as a ``QPainterPath`` traced on the
  full-resolution mask (sharp at any zoom);
- the similar cases' thumbnails decoded and scaled to the panel's icon size as ``QImage``.

``QImage`` and ``QPainterPath`` are plain value classes that Qt allows to build in any thread; only
``QPixmap`` (made from the thumbnails on the GUI thread, a few kilobytes each) is GUI-only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPainterPath

#: Overlays are drawn from a grid of at most this many pixels per side (stretched over the image).
DISPLAY_MAX_SIDE = 1024
#: The heatmap's colour map (a pyqtgraph/matplotlib name).
HEATMAP_COLORMAP = "inferno"
#: RGB of the lung outline and fill, and the fill's alpha.
MASK_RGB = (0, 220, 255)
MASK_FILL_ALPHA = 70
#: Edge length of the similar-case icons, pixels.
THUMBNAIL_SIZE = 96


@functools.lru_cache(maxsize=4)
def heatmap_lut(name: str = HEATMAP_COLORMAP) -> np.ndarray:
    """A 256x4 RGBA lookup table: the colour map with alpha rising from 0 (below 15 % of the peak: the
    anatomy stays visible where the map is cold) to opaque at 75 % of the peak. Read-only (cached)."""
    import pyqtgraph as pg

    cmap = pg.colormap.get(name)
    lut = cmap.getLookupTable(0.0, 1.0, 256, alpha=True).astype(np.uint8)
    ramp = np.clip((np.linspace(0.0, 1.0, 256) - 0.15) / 0.6, 0.0, 1.0)
    lut[:, 3] = np.round(ramp * 255).astype(np.uint8)
    lut.flags.writeable = False
    return lut


def display_shape(shape: tuple[int, ...], max_side: int = DISPLAY_MAX_SIDE) -> tuple[int, int]:
    """``(rows, cols)`` of the overlay grid for an image of ``shape``: the same, or scaled down so that the
    longer side is ``max_side`` (aspect kept)."""
    h, w = int(shape[0]), int(shape[1])
    scale = min(1.0, max_side / max(h, w, 1))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _as_bool(mask: np.ndarray) -> np.ndarray:
    """``mask`` as a C-contiguous bool array (no copy when it already is one)."""
    m = np.asarray(mask)
    return np.ascontiguousarray(m if m.dtype == bool else m.astype(bool))


def _lookup(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``table[index]`` (rows of ``table`` picked by a uint8 index image), several times faster than fancy
    indexing."""
    return np.take(table, index, axis=0)


def _resize(a: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """``a`` resampled to ``shape`` (a new array), or ``a`` itself when it already has that shape. Bilinear
    for maps (they are smooth), nearest for masks."""
    if a.shape[:2] == shape:
        return a
    import cv2

    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(a, (shape[1], shape[0]), interpolation=interp)


@dataclass(frozen=True)
class HeatmapDisplay:
    """A heatmap ready to draw.

    Attributes:
        values: float32 in [0, 1] on the display grid (what is drawn; NaN → 0).
        values_lungs: the same, zero outside the lung mask (None without a mask).
        rgba: ``values`` through :func:`heatmap_lut`, uint8 (rows, cols, 4).
        rgba_lungs: ``values_lungs`` likewise (None without a mask).
    """

    values: np.ndarray
    values_lungs: np.ndarray | None
    rgba: np.ndarray
    rgba_lungs: np.ndarray | None


@dataclass(frozen=True)
class MaskDisplay:
    """A lung mask ready to draw: ``outline`` in image pixel coordinates, ``fill`` RGBA on the display grid."""

    outline: QPainterPath
    fill: np.ndarray


@dataclass(frozen=True)
class PreparedOverlays:
    """Everything the window draws for one analysis result, made off the GUI thread.

    ``heatmap_source`` and ``mask_source`` are the result's own arrays (identity, not copies), so the view can
    tell whether a result's overlays are still the ones prepared (an occlusion map replaces the heatmap).
    """

    image_shape: tuple[int, int]
    heatmap: HeatmapDisplay | None = None
    mask: MaskDisplay | None = None
    thumbnails: tuple[QImage | None, ...] = ()
    heatmap_source: Any = None
    mask_source: Any = None


def prepare_heatmap(
    heatmap: np.ndarray,
    lung_mask: np.ndarray | None = None,
    max_side: int = DISPLAY_MAX_SIDE,
) -> HeatmapDisplay:
    """Reduce ``heatmap`` (float, nominally [0, 1]) to the display grid and colour-map it, with a lungs-only
    variant when ``lung_mask`` (bool or probabilities, any grid) is given."""
    lut = heatmap_lut()
    full = np.asarray(heatmap, dtype=np.float32)
    heat = _resize(full, display_shape(full.shape, max_side))
    heat = np.nan_to_num(heat, copy=heat is full, nan=0.0, posinf=1.0, neginf=0.0)  # never the result's own
    np.clip(heat, 0.0, 1.0, out=heat)
    index = (heat * 255.0 + 0.5).astype(np.uint8)
    values_lungs = rgba_lungs = None
    if lung_mask is not None:
        inside = _resize(_as_bool(lung_mask).view(np.uint8), heat.shape, nearest=True).view(bool)
        values_lungs = np.where(inside, heat, np.float32(0.0))
        rgba_lungs = _lookup(lut, np.where(inside, index, np.uint8(0)))
    return HeatmapDisplay(
        values=heat, values_lungs=values_lungs, rgba=_lookup(lut, index), rgba_lungs=rgba_lungs
    )


def mask_outline_path(mask: np.ndarray) -> QPainterPath:
    """The outer contours of a boolean mask as a path in pixel coordinates (pixel centres)."""
    import cv2
    from pyqtgraph.functions import create_qpolygonf, ndarray_from_qpolygonf

    contours, _ = cv2.findContours(_as_bool(mask).view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    path = QPainterPath()
    for c in contours:
        if len(c) < 2:
            continue
        polygon = create_qpolygonf(len(c))  # filled through a numpy view: no per-point Python call
        ndarray_from_qpolygonf(polygon)[:] = c.reshape(-1, 2) + 0.5
        path.addPolygon(polygon)
        path.closeSubpath()
    return path


def prepare_mask(mask: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> MaskDisplay:
    """Outline (full resolution) and translucent fill (display grid) of a lung mask."""
    m = _as_bool(mask)
    small = _resize(m.view(np.uint8), display_shape(m.shape, max_side), nearest=True)
    colours = np.array([(0, 0, 0, 0), (*MASK_RGB, MASK_FILL_ALPHA)], np.uint8)
    return MaskDisplay(outline=mask_outline_path(m), fill=_lookup(colours, small))


def thumbnail_image(png: bytes | None, size: int = THUMBNAIL_SIZE) -> QImage | None:
    """A case thumbnail (PNG bytes) decoded and scaled to fit ``size``×``size``; None if absent/unreadable."""
    if not png:
        return None
    img = QImage.fromData(png, "PNG")
    if img.isNull():
        return None
    return img.scaled(
        size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


def prepare_result_display(image: Any, result: Any, max_side: int = DISPLAY_MAX_SIDE) -> PreparedOverlays:
    """Display-ready overlays and thumbnails of ``result`` (an ``AnalysisResult``) for ``image`` (a
    ``CxrImage``), to be called in the analysis thread."""
    shape = tuple(int(s) for s in image.pixels.shape[:2])
    heat, mask = result.heatmap, result.lung_mask
    return PreparedOverlays(
        image_shape=shape,  # type: ignore[arg-type]
        heatmap=None if heat is None else prepare_heatmap(heat, mask, max_side),
        mask=None if mask is None else prepare_mask(mask, max_side),
        thumbnails=tuple(thumbnail_image(n.thumbnail_png) for n in result.neighbours),
        heatmap_source=heat,
        mask_source=mask,
    )
