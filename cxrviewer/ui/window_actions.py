"""The viewer window's menus, toolbar and keyboard shortcuts (one table of actions, kept out of the window
class so that it reads as a list)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMainWindow, QToolBar

from cxrviewer.ui.image_stats import PRESET_ORDER

if TYPE_CHECKING:
    from cxrviewer.ui.main_window import MainWindow


def make_action(
    window: QMainWindow,
    text: str,
    slot: Callable[..., Any],
    shortcut: QKeySequence | str | None = None,
    checkable: bool = False,
    tip: str | None = None,
) -> QAction:
    """A window action with an optional shortcut, check state and tooltip (which shows the shortcut)."""
    act = QAction(text, window)
    if shortcut is not None:
        act.setShortcut(QKeySequence(shortcut))
    act.setCheckable(checkable)
    if tip:
        act.setToolTip(f"{tip} ({act.shortcut().toString()})" if shortcut else tip)
        act.setStatusTip(tip)
    act.triggered.connect(slot)
    window.addAction(act)  # shortcuts work even when a menu is hidden
    return act


def build_menus_and_toolbar(w: MainWindow) -> dict[str, QAction]:
    """The menu bar and the toolbar of ``w``; returns its actions by name (also ``w.actions_by_name``)."""
    mb = w.menuBar()
    a: dict[str, QAction] = {}
    w.actions_by_name = a
    # File
    a["open_file"] = make_action(w, "Open &file…", w.open_file_dialog, QKeySequence.StandardKey.Open)
    a["open_folder"] = make_action(w, "Open f&older…", w.open_folder_dialog, "Ctrl+Shift+O")
    a["open_compare"] = make_action(w, "Open &prior for comparison…", w.open_compare_dialog, "Ctrl+Shift+P")
    a["open_pacs"] = make_action(w, "Open from P&ACS…", w.open_pacs_dialog, "Ctrl+Shift+A")
    a["clear_pacs_cache"] = make_action(w, "C&lear PACS cache", w.clear_pacs_cache)
    a["export_report"] = make_action(w, "Export &report (PDF/PNG)…", w.export_report_dialog)
    a["export_dicom"] = make_action(w, "Export &DICOM (SC + SR)…", w.export_dicom_dialog)
    a["export_csv"] = make_action(w, "Export worklist as &CSV…", lambda: w.export_worklist_dialog("csv"))
    a["export_json"] = make_action(w, "Export worklist as &JSON…", lambda: w.export_worklist_dialog("json"))
    a["preferences"] = make_action(
        w, "&Preferences…", w.open_preferences, QKeySequence.StandardKey.Preferences
    )
    a["quit"] = make_action(w, "&Quit", w.close, QKeySequence.StandardKey.Quit)
    fm = mb.addMenu("&File")
    fm.addActions([a["open_file"], a["open_folder"], a["open_compare"], a["open_pacs"]])
    w.recent_menu = fm.addMenu("Open &recent")
    w.recent_menu.aboutToShow.connect(w._fill_recent_menu)
    fm.addSeparator()
    fm.addActions([a["export_report"], a["export_dicom"], a["export_csv"], a["export_json"]])
    fm.addSeparator()
    fm.addAction(a["clear_pacs_cache"])
    fm.addSeparator()
    fm.addActions([a["preferences"], a["quit"]])

    # View
    a["fit"] = make_action(w, "&Fit", lambda: w.view.fit(), "F", tip="Fit the image to the window")
    a["one_to_one"] = make_action(
        w, "&1:1", lambda: w.view.actual_pixels(), "1", tip="One image pixel per screen pixel"
    )
    a["zoom_in"] = make_action(w, "Zoom &in", lambda: w.view.zoom_by(1.25), QKeySequence.StandardKey.ZoomIn)
    a["zoom_out"] = make_action(w, "Zoom &out", lambda: w.view.zoom_by(0.8), QKeySequence.StandardKey.ZoomOut)
    a["rotate_cw"] = make_action(
        w, "Rotate &right", lambda: w.view.rotate(90), "R", tip="Rotate 90° clockwise"
    )
    a["rotate_ccw"] = make_action(w, "Rotate &left", lambda: w.view.rotate(-90), "Shift+R")
    a["flip_h"] = make_action(w, "Flip &horizontal", lambda c: w.view.set_flip(horizontal=c), "H", True)
    a["flip_v"] = make_action(w, "Flip &vertical", lambda c: w.view.set_flip(vertical=c), "V", True)
    a["reset_orientation"] = make_action(w, "Reset &orientation", w._reset_orientation, "0")
    a["invert"] = make_action(
        w, "&Invert", lambda c: w.view.set_inverted(c), "I", True, tip="Invert grey levels"
    )
    a["fullscreen"] = make_action(
        w, "F&ull screen", w.toggle_full_screen, QKeySequence.StandardKey.FullScreen, True
    )
    a["fullscreen"].setShortcuts([QKeySequence("F11"), QKeySequence(QKeySequence.StandardKey.FullScreen)])
    vm = mb.addMenu("&View")
    vm.addActions([a["fit"], a["one_to_one"], a["zoom_in"], a["zoom_out"]])
    vm.addSeparator()
    vm.addActions([a["rotate_cw"], a["rotate_ccw"], a["flip_h"], a["flip_v"], a["reset_orientation"]])
    vm.addSeparator()
    vm.addAction(a["invert"])
    wm = vm.addMenu("&Window presets")
    for i, name in enumerate(PRESET_ORDER):
        act = make_action(w, name.title(), functools.partial(w.apply_preset, name), f"F{i + 2}")
        a[f"preset_{name}"] = act
        wm.addAction(act)
    vm.addSeparator()
    w.docks_menu = vm.addMenu("&Panels")
    for d in (w.studies_dock, w.metadata_dock, w.ai_dock, w.similar_dock, w.worklist_dock):
        w.docks_menu.addAction(d.toggleViewAction())
    a["next_image"] = make_action(
        w, "&Next image", lambda: w.step_image(+1), "PgDown", tip="Next worklist image"
    )
    a["previous_image"] = make_action(
        w, "P&revious image", lambda: w.step_image(-1), "PgUp", tip="Previous worklist image"
    )
    vm.addActions([a["next_image"], a["previous_image"]])
    a["close_compare"] = make_action(w, "Close &comparison", w.close_compare, "Shift+C")
    vm.addAction(a["close_compare"])
    vm.addAction(a["fullscreen"])

    # Tools
    tools = QActionGroup(w)
    tools.setExclusive(True)
    for key, text, sc, tip in (
        ("pan", "Pan", "P", "Left drag pans; wheel zooms"),
        ("windowing", "W/L", "W", "Left drag adjusts window/level (right or middle drag always does)"),
        ("distance", "Distance", "M", "Measure a distance (mm when the pixel spacing is known)"),
        ("ctr", "CTR", "C", "Cardiothoracic ratio: draw the heart width, then the thorax width"),
    ):
        act = make_action(w, text, functools.partial(w.set_tool, key), sc, True, tip)
        tools.addAction(act)
        a[f"tool_{key}"] = act
    a["tool_pan"].setChecked(True)
    a["clear_measurements"] = make_action(
        w, "Clear measurements", lambda: w.view.measurements.clear(), "Delete"
    )
    tm = mb.addMenu("&Tools")
    tm.addActions(tools.actions())
    tm.addAction(a["clear_measurements"])

    # Analysis
    a["analyse"] = make_action(w, "&Analyse image", w.analyse_current, "Ctrl+R")
    a["cancel"] = make_action(w, "&Cancel analysis", w.cancel_analysis, "Ctrl+.")
    a["heatmap"] = make_action(
        w, "Show &heatmap", lambda c: w.overlay_controls.heatmap.setChecked(c), "O", True
    )
    a["heatmap"].setChecked(w.settings.heatmap_visible)
    a["mask"] = make_action(w, "Show &lung mask", lambda c: w.overlay_controls.mask.setChecked(c), "L", True)
    a["mask"].setChecked(w.settings.mask_visible)
    am = mb.addMenu("&Analysis")
    am.addActions([a["analyse"], a["cancel"]])
    am.addSeparator()
    am.addActions([a["heatmap"], a["mask"]])
    am.addSeparator()
    a["analyse_all"] = make_action(w, "Analyse &worklist", w.analyse_worklist, "Ctrl+Shift+R")
    am.addAction(a["analyse_all"])
    a["occlusion"] = make_action(
        w,
        "&Occlusion heatmap",
        w.compute_occlusion,
        "Ctrl+E",
        tip="Slide a patch over the image and map how much the score drops (slower, exact; cancellable)",
    )
    am.addAction(a["occlusion"])

    hm = mb.addMenu("&Help")
    a["about"] = make_action(w, "&About cxrviewer", w.show_about)
    hm.addAction(a["about"])

    tb = QToolBar("Tools")
    tb.setObjectName("toolbar")
    tb.setMovable(False)
    tb.addActions([a["open_file"], a["open_folder"]])
    tb.addSeparator()
    tb.addActions(tools.actions())
    tb.addSeparator()
    tb.addActions([a["fit"], a["one_to_one"], a["rotate_cw"], a["flip_h"], a["invert"]])
    tb.addSeparator()
    for name in ("default", "lung", "soft tissue", "bone", "auto"):
        tb.addAction(a[f"preset_{name}"])
    tb.addSeparator()
    tb.addActions([a["analyse"], a["cancel"]])
    w.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)
    w.toolbar = tb
    return a
