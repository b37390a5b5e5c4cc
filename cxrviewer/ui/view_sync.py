"""Synchronises two image views: zoom/pan and window/level, in *relative* terms so that images of different
sizes and value ranges (a 3000-px DICOM beside a 256-px thumbnail) stay comparable.

The visible rectangle is expressed as a fraction of each image's width/height; the window as a fraction of
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
        if not self.enabled or self._busy or src.loaded is None or dst.loaded is None:
            return
        s_bounds = src.image_item.mapRectToParent(src.image_item.boundingRect())
        d_bounds = dst.image_item.mapRectToParent(dst.image_item.boundingRect())
        if s_bounds.width() <= 0 or s_bounds.height() <= 0:
            return
        r = src.view_box.viewRect()
        fx0 = (r.left() - s_bounds.left()) / s_bounds.width()
        fy0 = (r.top() - s_bounds.top()) / s_bounds.height()
        fw, fh = r.width() / s_bounds.width(), r.height() / s_bounds.height()
        target = QRectF(
            d_bounds.left() + fx0 * d_bounds.width(),
            d_bounds.top() + fy0 * d_bounds.height(),
            fw * d_bounds.width(),
            fh * d_bounds.height(),
        )
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
