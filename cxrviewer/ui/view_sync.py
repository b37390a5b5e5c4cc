"""Synchronises two image views: zoom/pan and window/level, in *relative* terms so that images of different
sizes and value ranges (a 3000-px DICOM beside a 256-px thumbnail) stay comparable.

The view centre is expressed as a fraction of each image's width/height and the zoom as screen pixels per
image width (so the same part of each image fills the same share of its view); the window as a fraction of
each image's value range.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QRectF

from cxrviewer.ui.image_view import ImageView


class ViewSync(QObject):
    """Keeps ``a`` and ``b`` in step while :attr:`enabled`."""

    def __init__(self, a: ImageView, b: ImageView) -> None:
        super().__init__(a)
        self.a, self.b = a, b
        self.enabled = True
        self._busy = False
        a.view_changed.connect(lambda: self._sync_range(a, b))
        b.view_changed.connect(lambda: self._sync_range(b, a))
        a.window_changed.connect(lambda _w: self._sync_window(a, b))
        b.window_changed.connect(lambda _w: self._sync_window(b, a))

    def _sync_range(self, src: ImageView, dst: ImageView) -> None:
        """Give ``dst`` the same centre (as a fraction of its image) and the same screen size per image
        width as ``src``; its own widget aspect ratio is kept, so the two never fight over the aspect lock."""
        if not self.enabled or self._busy or src.loaded is None or dst.loaded is None:
            return
        s_bounds = src.image_item.mapRectToParent(src.image_item.boundingRect())
        d_bounds = dst.image_item.mapRectToParent(dst.image_item.boundingRect())
        r = src.view_box.viewRect()
        s_px, d_px = src.view_box.size(), dst.view_box.size()
        if (
            min(s_bounds.width(), s_bounds.height(), r.width(), s_px.width(), d_px.width(), d_px.height())
            <= 0
        ):
            return
        fx = (r.center().x() - s_bounds.left()) / s_bounds.width()
        fy = (r.center().y() - s_bounds.top()) / s_bounds.height()
        screen_per_image = s_px.width() * s_bounds.width() / r.width()  # screen px per image width
        width = d_px.width() * d_bounds.width() / screen_per_image
        height = width * d_px.height() / d_px.width()
        cx = d_bounds.left() + fx * d_bounds.width()
        cy = d_bounds.top() + fy * d_bounds.height()
        target = QRectF(cx - width / 2, cy - height / 2, width, height)
        current = dst.view_box.viewRect()
        if abs(current.width() - width) <= 1e-6 * width and abs(current.center().x() - cx) <= 1e-6 * width:
            return
        self._busy = True
        try:
            dst.view_box.setRange(rect=target, padding=0)
        finally:
            self._busy = False

    def _sync_window(self, src: ImageView, dst: ImageView) -> None:
        if not self.enabled or self._busy or src.window is None or dst.loaded is None or src.loaded is None:
            return
        s_lo, s_hi = src.loaded.value_range
        d_lo, d_hi = dst.loaded.value_range
        s_span, d_span = max(s_hi - s_lo, 1e-6), max(d_hi - d_lo, 1e-6)
        center = d_lo + (src.window.center - s_lo) / s_span * d_span
        width = src.window.width / s_span * d_span
        self._busy = True
        try:
            dst.set_window(center, width, "synchronised")
        finally:
            self._busy = False
