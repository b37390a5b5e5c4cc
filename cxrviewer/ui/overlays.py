"""Overlays drawn on top of the image: the lung mask (outline or fill) and the heatmap (colour map with an
alpha ramp, opacity, lungs-only). They are children of the image item, so they follow its display
rotation/flip, and they are re-styled without re-running inference.

What they draw is prepared off the GUI thread (:mod:`cxrviewer.ui.overlay_data`): a colour-mapped RGBA
heatmap and mask fill of at most :data:`~cxrviewer.ui.overlay_data.DISPLAY_MAX_SIDE` pixels per side,
stretched over the image, and the mask outline as a ready path. Given raw arrays instead (an occlusion map
arriving while it is computed), the overlay prepares them itself at that reduced size.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor, QPainterPath, QPen, QTransform
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem

from cxrviewer.ui.overlay_data import (
    HEATMAP_COLORMAP,
    MASK_RGB,
    HeatmapDisplay,
    MaskDisplay,
    heatmap_lut,
    mask_outline_path,
    prepare_heatmap,
    prepare_mask,
)

__all__ = ["HEATMAP_COLORMAP", "HeatmapOverlay", "MaskOverlay", "heatmap_lut", "mask_outline_path"]

MASK_COLOR = QColor(*MASK_RGB)


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

    def set_mask(
        self,
        mask: np.ndarray | None,
        image_shape: tuple[int, int] | None = None,
        prepared: MaskDisplay | None = None,
    ) -> None:
        """Show ``mask`` (bool, ideally on the image grid; otherwise stretched over ``image_shape``), drawn
        from ``prepared`` when given (else prepared here)."""
        self.mask = mask
        if mask is not None:
            shape = tuple(np.shape(mask)[:2])
            if prepared is None:
                prepared = prepare_mask(mask)
            self.outline.setPath(prepared.outline)
            self.fill.setImage(prepared.fill, autoLevels=False, levels=None)
            _fit_to(self.fill, prepared.fill.shape[:2], image_shape or shape)
            if image_shape is not None and tuple(image_shape) != shape:
                sy, sx = image_shape[0] / shape[0], image_shape[1] / shape[1]
                self.outline.setTransform(QTransform.fromScale(sx, sy))
            else:
                self.outline.setTransform(QTransform())
        else:
            self.outline.setPath(QPainterPath())
            self.fill.clear()
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
        self.heatmap: np.ndarray | None = None  # the result's own map (image grid), not a copy
        self.mask: np.ndarray | None = None
        self.prepared: HeatmapDisplay | None = None
        self.lungs_only = False
        self.visible = True
        self.opacity = 0.5
        self._image_shape: tuple[int, int] | None = None
        self.item.setOpacity(self.opacity)
        self.item.setVisible(False)

    def set_heatmap(
        self,
        heatmap: np.ndarray | None,
        mask: np.ndarray | None,
        image_shape: tuple[int, int] | None,
        prepared: HeatmapDisplay | None = None,
    ) -> None:
        """Show ``heatmap``; ``mask`` (the lung mask, if any) is used by the lungs-only toggle. ``prepared``
        is the display form made off the GUI thread (else it is made here)."""
        self.heatmap = heatmap
        self.mask = mask
        self._image_shape = image_shape
        if heatmap is not None and prepared is None:
            prepared = prepare_heatmap(heatmap, mask)
        self.prepared = prepared if heatmap is not None else None
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

    def _lungs(self) -> bool:
        return self.lungs_only and self.prepared is not None and self.prepared.values_lungs is not None

    @property
    def displayed(self) -> np.ndarray | None:
        """The heat values currently drawn (after lungs-only masking; on the display grid), or None."""
        if self.prepared is None:
            return None
        return self.prepared.values_lungs if self._lungs() else self.prepared.values

    def _render(self) -> None:
        d = self.prepared
        if d is None:
            self.item.clear()
            self.item.setVisible(False)
            return
        rgba = d.rgba_lungs if self._lungs() else d.rgba
        self.item.setImage(rgba, autoLevels=False, levels=None)
        shape = tuple(np.shape(self.heatmap)[:2])
        _fit_to(self.item, rgba.shape[:2], self._image_shape or shape)
        self.item.setVisible(self.visible)


def _fit_to(item: pg.ImageItem, shape: tuple[int, int], image_shape: tuple[int, int] | None) -> None:
    """Stretch an overlay of ``shape`` over the image when its grid differs from the image's."""
    if image_shape is not None and tuple(shape) != tuple(image_shape):
        item.setRect(0, 0, image_shape[1], image_shape[0])
    else:
        item.setRect(0, 0, shape[1], shape[0])
