"""The central image view: a pyqtgraph ``ImageItem`` in an aspect-locked, y-down view box, with window/level,
presets, invert, zoom/fit/1:1, display-only rotation and flips, overlays, measurement tools and a pixel
readout.

Display values come from the loader's own display chain (``CxrImage.display(center, width)``: VOI function,
MONOCHROME1 inversion and padding handled there); the user's *invert* is applied on top. Window changes
during a drag are coalesced: only the newest window is rendered when the event loop is free.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QTransform
from PySide6.QtWidgets import QHBoxLayout, QWidget

from cxrviewer.ui.color_bar import ColorBar
from cxrviewer.ui.image_stats import LoadedImage
from cxrviewer.ui.measure_items import MeasurementLayer, MeasurementRecord
from cxrviewer.ui.overlays import HeatmapOverlay, MaskOverlay
from cxrviewer.ui.view_box import ViewerViewBox

if TYPE_CHECKING:
    from cxrviewer.core.windowing import Window
    from cxrviewer.ui.overlay_data import PreparedOverlays

#: Fraction of the image's value range that one screen pixel of window/level drag moves.
DRAG_SENSITIVITY = 1.0 / 600.0
BACKGROUND = "#0b0d10"


class ImageView(QWidget):
    """Shows one :class:`LoadedImage` with tools and overlays.

    Signals:
        window_changed(Window): after every window/level change (drag, preset, API).
        cursor_info(str): a readout of the pixel under the cursor ("" when outside the image).
        measurement_done(MeasurementRecord): a distance or cardiothoracic ratio was completed.
        view_changed(): zoom/pan/orientation changed (used to synchronise a second view).
    """

    window_changed = Signal(object)
    cursor_info = Signal(str)
    measurement_done = Signal(object)
    view_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loaded: LoadedImage | None = None
        self.window: Window | None = None
        self.inverted = False
        self.rotation = 0  # degrees clockwise, multiple of 90
        self.flip_h = False
        self.flip_v = False
        self._pending_render = False

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(BACKGROUND)
        self.graphics.ci.layout.setContentsMargins(0, 0, 0, 0)
        self.view_box = ViewerViewBox()
        self.graphics.addItem(self.view_box, row=0, col=0)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image_item)
        self.heatmap = HeatmapOverlay(self.image_item)
        self.mask = MaskOverlay(self.image_item)
        self.measurements = MeasurementLayer(self.image_item)
        self.colorbar = ColorBar(self.heatmap.lut)
        self.colorbar.setVisible(False)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.colorbar)

        self.view_box.window_dragged.connect(self._on_window_drag)
        self.view_box.tool_stroke.connect(self._on_tool_stroke)
        self.view_box.sigRangeChanged.connect(lambda *_: self.view_changed.emit())
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)

    # ------------------------------------------------------------------------------------------- image
    def set_image(self, loaded: LoadedImage | None) -> None:
        """Show ``loaded`` with its default window, fitted; overlays and measurements are cleared."""
        self.loaded = loaded
        self.measurements.clear()
        self.heatmap.set_heatmap(None, None, None)
        self.mask.set_mask(None)
        self.colorbar.setVisible(False)
        if loaded is None:
            self.image_item.clear()
            self.window = None
            return
        img = loaded.image
        self.measurements.set_spacing(img.pixel_spacing, img.pixel_spacing_source)
        self.window = loaded.presets.get("default")  # not signalled: a new image must not re-window its peer
        self._render_now()
        self._apply_orientation()
        self.fit()

    @property
    def image_shape(self) -> tuple[int, int] | None:
        return None if self.loaded is None else tuple(self.loaded.image.pixels.shape[:2])

    def displayed_image(self) -> np.ndarray | None:
        """The uint8 image currently drawn (after window, MONOCHROME1 handling and the user's invert)."""
        return self.image_item.image

    # ------------------------------------------------------------------------------------ window/level
    def set_window(self, center: float, width: float, name: str = "user") -> None:
        """Set the window in modality units (rendered on the next event-loop turn)."""
        from cxrviewer.core.windowing import Window

        if self.loaded is None:
            return
        width = max(float(width), 1e-6)
        self.window = Window(float(center), width, name)
        self.window_changed.emit(self.window)
        self._schedule_render()

    def apply_preset(self, name: str) -> bool:
        """Apply a preset by name (``default``, ``auto``, ``lung``, ``soft tissue``, ``bone``)."""
        if self.loaded is None or name not in self.loaded.presets:
            return False
        w = self.loaded.presets[name]
        self.set_window(w.center, w.width, name)
        return True

    def set_inverted(self, inverted: bool) -> None:
        self.inverted = bool(inverted)
        self._schedule_render()

    def _on_window_drag(self, dx: float, dy: float) -> None:
        if self.loaded is None or self.window is None:
            return
        lo, hi = self.loaded.value_range
        step = max(hi - lo, 1.0) * DRAG_SENSITIVITY
        # right: wider window (less contrast); down: higher level (darker image), as on most workstations
        width = max(self.window.width + dx * step * 2.0, step)
        center = self.window.center + dy * step
        self.set_window(center, width, "user")

    def _schedule_render(self) -> None:
        if not self._pending_render:
            self._pending_render = True
            QTimer.singleShot(0, self._render_now)

    def _render_now(self) -> None:
        self._pending_render = False
        if self.loaded is None or self.window is None:
            return
        img = self.loaded.image
        shown = self.loaded.default_display if self.window is self.loaded.presets.get("default") else None
        if shown is None:
            try:
                shown = img.display(self.window.center, self.window.width)
            except ValueError:
                return
        if self.inverted:
            shown = 255 - shown
        self.image_item.setImage(shown, autoLevels=False, levels=(0, 255))

    # ----------------------------------------------------------------------------------- zoom/orientation
    def fit(self) -> None:
        """Fit the whole image in the view."""
        if self.loaded is not None:
            self.view_box.autoRange(items=[self.image_item], padding=0.02)

    def zoom_by(self, factor: float) -> None:
        """Zoom in (factor > 1) or out about the view centre."""
        s = 1.0 / factor
        self.view_box.scaleBy((s, s))

    def actual_pixels(self) -> None:
        """1:1 - one image pixel per screen pixel, centred on the current view."""
        if self.loaded is None:
            return
        rect = self.view_box.viewRect()
        size = self.view_box.size()
        w, h = max(size.width(), 1.0), max(size.height(), 1.0)
        c = rect.center()
        self.view_box.setRange(
            xRange=(c.x() - w / 2, c.x() + w / 2), yRange=(c.y() - h / 2, c.y() + h / 2), padding=0
        )

    def zoom_level(self) -> float:
        """Screen pixels per image pixel (1.0 at 1:1)."""
        rect = self.view_box.viewRect()
        return self.view_box.size().width() / rect.width() if rect.width() > 0 else 1.0

    def rotate(self, degrees: int) -> None:
        """Rotate the display by a multiple of 90 degrees (clockwise positive); pixels are untouched."""
        self.rotation = (self.rotation + int(degrees)) % 360
        self._apply_orientation()
        self.fit()

    def set_flip(self, horizontal: bool | None = None, vertical: bool | None = None) -> None:
        """Mirror the display (left-right and/or up-down); pixels are untouched."""
        if horizontal is not None:
            self.flip_h = bool(horizontal)
        if vertical is not None:
            self.flip_v = bool(vertical)
        self._apply_orientation()
        self.fit()

    def reset_orientation(self) -> None:
        self.rotation, self.flip_h, self.flip_v = 0, False, False
        self._apply_orientation()
        self.fit()

    def _apply_orientation(self) -> None:
        shape = self.image_shape
        if shape is None:
            return
        h, w = shape
        t = QTransform()
        t.scale(-1.0 if self.flip_h else 1.0, -1.0 if self.flip_v else 1.0)
        t.rotate(self.rotation)
        t.translate(-w / 2.0, -h / 2.0)
        self.image_item.setTransform(t)
        self.view_changed.emit()

    # ------------------------------------------------------------------------------------------ overlays
    def set_analysis_overlays(
        self,
        heatmap: np.ndarray | None,
        lung_mask: np.ndarray | None,
        prepared: PreparedOverlays | None = None,
    ) -> None:
        """Attach an analysis's heatmap and lung mask (visibility and style are kept). ``prepared`` holds
        their display forms made in the analysis thread (:func:`~cxrviewer.ui.overlay_data.prepare_result_display`);
        whatever it does not cover (e.g. an occlusion map that replaced the heatmap) is prepared here."""
        shape = self.image_shape
        p = prepared if prepared is not None and prepared.image_shape == shape else None
        heat = p.heatmap if p is not None and p.heatmap_source is heatmap else None
        mask = p.mask if p is not None and p.mask_source is lung_mask else None
        self.heatmap.set_heatmap(heatmap, lung_mask, shape, heat)
        self.mask.set_mask(lung_mask, shape, mask)
        self.colorbar.setVisible(self.heatmap.visible and heatmap is not None)

    def set_heatmap_visible(self, visible: bool) -> None:
        self.heatmap.set_visible(visible)
        self.colorbar.setVisible(visible and self.heatmap.heatmap is not None)

    # ---------------------------------------------------------------------------------------- tools
    def set_tool(self, tool: str) -> None:
        """``pan``, ``windowing``, ``distance`` or ``ctr``."""
        self.view_box.set_tool(tool)
        cursor = Qt.CursorShape.CrossCursor if tool in ("distance", "ctr") else Qt.CursorShape.ArrowCursor
        self.graphics.viewport().setCursor(cursor)

    def _image_point(self, scene_pos: QPointF) -> tuple[float, float]:
        p = self.image_item.mapFromScene(scene_pos)
        return float(p.x()), float(p.y())

    def _on_tool_stroke(self, start: QPointF, current: QPointF, finished: bool) -> None:
        if self.loaded is None:
            return
        rec = self.measurements.stroke(
            self.view_box.tool, self._image_point(start), self._image_point(current), finished
        )
        if rec is not None:
            self.measurement_done.emit(rec)

    def measure(
        self, tool: str, p0: tuple[float, float], p1: tuple[float, float]
    ) -> MeasurementRecord | None:
        """Add a measurement between two image points (what a mouse stroke does; used by tests/scripts)."""
        return self.measurements.stroke(tool, p0, p1, True)

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        self.cursor_info.emit(self.pixel_readout(*self._image_point(scene_pos)))

    def pixel_readout(self, x: float, y: float) -> str:
        """Text for the pixel at image coordinates (x, y): position, stored value, displayed grey level."""
        if self.loaded is None or not (math.isfinite(x) and math.isfinite(y)):
            return ""
        rows, cols = self.loaded.image.pixels.shape[:2]
        c, r = int(math.floor(x)), int(math.floor(y))
        if not (0 <= r < rows and 0 <= c < cols):
            return ""
        value = float(self.loaded.image.pixels[r, c])
        shown = self.image_item.image
        grey = f"  display {int(shown[r, c])}" if shown is not None else ""
        val = f"{value:.0f}" if value.is_integer() else f"{value:.3g}"
        return f"x {c}  y {r}  value {val}{grey}"
