"""Overlays drawn on top of the image: the lung mask (outline or fill) and the heatmap (colour map with an
alpha ramp, opacity, lungs-only). They are children of the image item, so they follow its display
rotation/flip, and they are re-styled without re-running inference."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem

HEATMAP_COLORMAP = "inferno"
MASK_COLOR = QColor(0, 220, 255)


def heatmap_lut(name: str = HEATMAP_COLORMAP) -> np.ndarray:
    """A 256x4 RGBA lookup table: the colour map with alpha rising from 0 (below 15 % of the peak: the
    anatomy stays visible where the map is cold) to opaque at 75 % of the peak."""
    cmap = pg.colormap.get(name)
    lut = cmap.getLookupTable(0.0, 1.0, 256, alpha=True).astype(np.uint8)
    ramp = np.clip((np.linspace(0.0, 1.0, 256) - 0.15) / 0.6, 0.0, 1.0)
    lut[:, 3] = np.round(ramp * 255).astype(np.uint8)
    return lut


def mask_outline_path(mask: np.ndarray) -> QPainterPath:
    """The outer contours of a boolean mask as a path in pixel coordinates (pixel corners)."""
    import cv2

    m = np.ascontiguousarray(mask.astype(np.uint8))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    path = QPainterPath()
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64) + 0.5
        if len(pts) < 2:
            continue
        path.moveTo(*pts[0])
        for x, y in pts[1:]:
            path.lineTo(x, y)
        path.closeSubpath()
    return path


class MaskOverlay:
    """The lung mask as an outline (path) or a translucent fill (image), attached to ``parent``."""

    def __init__(self, parent: QGraphicsItem) -> None:
        pen = QPen(MASK_COLOR)
        pen.setCosmetic(True)
        pen.setWidthF(1.6)
        self.outline = QGraphicsPathItem(parent)
        self.outline.setPen(pen)
        self.outline.setZValue(20)
        self.fill = pg.ImageItem(axisOrder="row-major")
        self.fill.setParentItem(parent)
        self.fill.setZValue(19)
        self.mask: np.ndarray | None = None
        self.style = "outline"
        self.visible = True
        self._update()

    def set_mask(self, mask: np.ndarray | None, image_shape: tuple[int, int] | None = None) -> None:
        """Show ``mask`` (bool, ideally on the image grid; otherwise stretched over ``image_shape``)."""
        self.mask = None if mask is None else np.asarray(mask).astype(bool)
        if self.mask is not None:
            self.outline.setPath(mask_outline_path(self.mask))
            rgba = np.zeros((*self.mask.shape, 4), np.uint8)
            rgba[self.mask] = (MASK_COLOR.red(), MASK_COLOR.green(), MASK_COLOR.blue(), 70)
            self.fill.setImage(rgba, autoLevels=False, levels=(0, 255))
            _fit_to(self.fill, self.mask.shape, image_shape)
            if image_shape is not None and image_shape != self.mask.shape:
                sy, sx = image_shape[0] / self.mask.shape[0], image_shape[1] / self.mask.shape[1]
                self.outline.setScale(1.0)
                self.outline.setTransform(pg.QtGui.QTransform.fromScale(sx, sy))
            else:
                self.outline.setTransform(pg.QtGui.QTransform())
        else:
            self.outline.setPath(QPainterPath())
        self._update()

    def set_style(self, style: str) -> None:
        """``"outline"`` or ``"fill"``."""
        if style not in ("outline", "fill"):
            raise ValueError(f"unknown mask style {style!r}")
        self.style = style
        self._update()

    def set_visible(self, visible: bool) -> None:
        self.visible = visible
        self._update()

    def _update(self) -> None:
        has = self.mask is not None and self.visible
        self.outline.setVisible(has and self.style == "outline")
        self.fill.setVisible(has and self.style == "fill")


class HeatmapOverlay:
    """The explanation heatmap (float in [0, 1]) as a colour-mapped image with adjustable opacity."""

    def __init__(self, parent: QGraphicsItem) -> None:
        self.item = pg.ImageItem(axisOrder="row-major")
        self.item.setParentItem(parent)
        self.item.setZValue(10)
        self.lut = heatmap_lut()
        self.item.setLookupTable(self.lut)
        self.heatmap: np.ndarray | None = None
        self.mask: np.ndarray | None = None
        self.lungs_only = False
        self.visible = True
        self.opacity = 0.5
        self._image_shape: tuple[int, int] | None = None
        self.item.setOpacity(self.opacity)
        self.item.setVisible(False)

    def set_heatmap(
        self, heatmap: np.ndarray | None, mask: np.ndarray | None, image_shape: tuple[int, int] | None
    ) -> None:
        """Show ``heatmap``; ``mask`` (the lung mask, if any) is used by the lungs-only toggle."""
        self.heatmap = None if heatmap is None else np.nan_to_num(np.asarray(heatmap, np.float32))
        self.mask = None if mask is None else np.asarray(mask).astype(bool)
        self._image_shape = image_shape
        self._render()

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(np.clip(opacity, 0.0, 1.0))
        self.item.setOpacity(self.opacity)

    def set_lungs_only(self, on: bool) -> None:
        self.lungs_only = bool(on)
        self._render()

    def set_visible(self, visible: bool) -> None:
        self.visible = bool(visible)
        self.item.setVisible(self.visible and self.heatmap is not None)

    @property
    def displayed(self) -> np.ndarray | None:
        """The array currently drawn (after lungs-only masking), or None."""
        return self.item.image if self.heatmap is not None else None

    def _render(self) -> None:
        if self.heatmap is None:
            self.item.clear()
            self.item.setVisible(False)
            return
        heat = np.clip(self.heatmap, 0.0, 1.0)
        if self.lungs_only and self.mask is not None:
            mask = self.mask
            if mask.shape != heat.shape:
                import cv2

                mask = (
                    cv2.resize(mask.astype(np.uint8), heat.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
                )
            heat = np.where(mask, heat, 0.0).astype(np.float32)
        self.item.setImage(heat, autoLevels=False, levels=(0.0, 1.0))
        _fit_to(self.item, heat.shape, self._image_shape)
        self.item.setVisible(self.visible)


def _fit_to(item: pg.ImageItem, shape: tuple[int, int], image_shape: tuple[int, int] | None) -> None:
    """Stretch an overlay of ``shape`` over the image when its grid differs from the image's."""
    if image_shape is not None and tuple(shape) != tuple(image_shape):
        item.setRect(0, 0, image_shape[1], image_shape[0])
    else:
        item.setRect(0, 0, shape[1], shape[0])
