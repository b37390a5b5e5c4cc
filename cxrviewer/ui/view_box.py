"""The view box of the image view: aspect locked, y down, and mouse drags routed by tool.

Left drag pans (or draws with a measurement tool, or windows in W/L mode); right or middle drag always
adjusts window/level; the wheel zooms about the cursor. The pyqtgraph context menu is off.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal

TOOLS = ("pan", "windowing", "distance", "ctr")


class ViewerViewBox(pg.ViewBox):
    """A ``pg.ViewBox`` that turns drags into window/level changes or tool strokes."""

    window_dragged = Signal(float, float)  # dx, dy in screen pixels since the last event
    tool_stroke = Signal(QPointF, QPointF, bool)  # start, current (scene coordinates), finished

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self.tool = "pan"

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        self.tool = tool

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 (Qt naming)
        button = ev.button()
        windowing = button in (Qt.MouseButton.RightButton, Qt.MouseButton.MiddleButton) or (
            button == Qt.MouseButton.LeftButton and self.tool == "windowing"
        )
        if windowing:
            ev.accept()
            delta = ev.screenPos() - ev.lastScreenPos()
            self.window_dragged.emit(float(delta.x()), float(delta.y()))
            return
        if button == Qt.MouseButton.LeftButton and self.tool in ("distance", "ctr"):
            ev.accept()
            self.tool_stroke.emit(ev.buttonDownScenePos(), ev.scenePos(), bool(ev.isFinish()))
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()  # no context menu: right button is window/level
            return
        super().mouseClickEvent(ev)
