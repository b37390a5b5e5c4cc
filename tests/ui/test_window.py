"""The real viewer window, offscreen: opening, drag-and-drop, window/level, presets, invert, orientation,
measurements, overlays and the AI panel states."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QMouseEvent
from PySide6.QtWidgets import QApplication

from tests.ui.tiny_analyzer import ScriptedAnalyzer

TIMEOUT = 10_000


def _open(qtbot, window, path):
    with qtbot.waitSignal(window.image_shown, timeout=TIMEOUT) as blocker:
        window.open_paths([path])
    return blocker.args[0]


def _drag(widget, start: QPoint, end: QPoint, button: Qt.MouseButton, steps: int = 8) -> None:
    """A real mouse drag on a widget: press, moves with the button held, release."""

    def send(kind, pos, buttons):
        ev = QMouseEvent(
            kind,
            QPointF(pos),
            QPointF(widget.mapToGlobal(pos)),
            button,
            buttons,
            Qt.KeyboardModifier.NoModifier,
        )
        QApplication.sendEvent(widget, ev)

    send(QMouseEvent.Type.MouseButtonPress, start, button)
    for i in range(1, steps + 1):
        p = start + (end - start) * (i / steps)
        send(QMouseEvent.Type.MouseMove, p, button)
    send(QMouseEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)


def test_open_file_shows_image_metadata_and_analysis(qtbot, make_window, png_files):
    analyzer = ScriptedAnalyzer()
    w = make_window(analyzer.factory)
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT) as got:
        loaded = _open(qtbot, w, png_files[0])
    assert loaded.title == "cxr_0.png"
    assert w.view.displayed_image().shape == (160, 140)
    rows = dict(
        (w.metadata.item(r, 0).text(), w.metadata.item(r, 1).text()) for r in range(w.metadata.rowCount())
    )
    assert rows["Size"] == "140 × 160 px" and "unknown" in rows["Pixel spacing"]
    result = got.args[0]
    assert w.ai_panel.result is result and result.top_label in w.ai_panel.state.text()
    assert [name for name, _ in w.ai_panel.shown_bars()] == sorted(
        result.probabilities, key=lambda k: -result.probabilities[k]
    )
    assert "Research use only" in w.ai_panel.notice.text()
    assert "balanced" in w.ai_panel.operating_point.text() and "90 %" in w.ai_panel.operating_point.text()
    assert "test warning" in w.ai_panel.warnings.text()
    assert "cpu-test" in w.ai_panel.model_info.text() and "12 ms" in w.ai_panel.model_info.text()
    assert w.similar.list.count() == 4 and "covid 50 %" in w.similar.vote.text()


def test_drop_files_and_zip_opens_them(qtbot, make_window, png_files):
    w = make_window(ScriptedAnalyzer().factory)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in png_files[:2]])
    pos = QPointF(w.rect().center())
    drop = QDropEvent(
        pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT) as blocker:
        w.dropEvent(drop)
    assert drop.isAccepted()
    assert blocker.args[0].title == "cxr_0.png"
    assert [i.name for i in w.worklist.worklist] == ["cxr_0.png", "cxr_1.png"]
    assert w.worklist_dock.isVisible()


def test_window_level_drag_presets_and_invert(qtbot, make_window, dicom_file):
    w = make_window(ScriptedAnalyzer().factory)
    loaded = _open(qtbot, w, dicom_file)
    assert (w.view.window.center, w.view.window.width) == (2048.0, 4096.0)  # the file's own window
    before = w.view.displayed_image().copy()

    vp = w.view.graphics.viewport()
    c = vp.rect().center()
    _drag(vp, c, c + QPoint(-120, 60), Qt.MouseButton.RightButton)
    qtbot.waitUntil(lambda: not np.array_equal(w.view.displayed_image(), before), timeout=TIMEOUT)
    assert w.view.window.width < 4096.0 and w.view.window.center > 2048.0
    assert "C " in w.window_label.text() and "user" in w.window_label.text()

    w.actions_by_name["preset_lung"].trigger()
    lung = loaded.presets["lung"]
    assert w.view.window == lung and lung.high < loaded.presets["bone"].high
    qtbot.waitUntil(lambda: w.view.window.explanation == "lung")
    expected = loaded.image.display(lung.center, lung.width)
    qtbot.waitUntil(lambda: np.array_equal(w.view.displayed_image(), expected), timeout=TIMEOUT)

    w.actions_by_name["invert"].trigger()
    qtbot.waitUntil(lambda: np.array_equal(w.view.displayed_image(), 255 - expected), timeout=TIMEOUT)


def test_rotation_and_flip_change_display_only(qtbot, make_window, png_files):
    w = make_window(ScriptedAnalyzer().factory)
    loaded = _open(qtbot, w, png_files[1])  # 150 wide, 120 high
    pixels = loaded.image.pixels.copy()
    item = w.view.image_item
    p = item.mapToParent(QPointF(10.5, 20.5))
    w.actions_by_name["rotate_cw"].trigger()
    p_rot = item.mapToParent(QPointF(10.5, 20.5))
    assert (p_rot.x(), p_rot.y()) != pytest.approx((p.x(), p.y()))
    bounds = item.mapRectToParent(item.boundingRect())
    assert bounds.width() == pytest.approx(120) and bounds.height() == pytest.approx(150)
    w.actions_by_name["flip_h"].trigger()
    # the pixel readout still reports the pixel under the mapped point
    scene = item.mapToScene(QPointF(10.5, 20.5))
    assert w.view.pixel_readout(*w.view._image_point(scene)).startswith("x 10  y 20")
    np.testing.assert_array_equal(loaded.image.pixels, pixels)
    w.actions_by_name["reset_orientation"].trigger()
    assert item.transform().m11() == pytest.approx(1.0)


def test_measurements_in_mm_and_px_and_ctr(qtbot, make_window, dicom_file, png_files):
    w = make_window(ScriptedAnalyzer().factory)
    _open(qtbot, w, dicom_file)
    rec = w.view.measure("distance", (10, 10), (110, 10))
    assert rec.value == pytest.approx(20.0) and rec.text == "20.0 mm (PixelSpacing)"
    # a real mouse stroke with the CTR tool: first the heart, then the thorax
    w.actions_by_name["tool_ctr"].trigger()
    assert w.view.measure("ctr", (50, 100), (90, 120)) is None  # heart width (forced horizontal)
    ctr = w.view.measure("ctr", (20, 110), (140, 90))
    assert ctr.kind == "ctr" and ctr.value == pytest.approx(40 / 120) and "CTR 0.33" in ctr.text
    vp = w.view.graphics.viewport()
    w.actions_by_name["tool_distance"].trigger()
    with qtbot.waitSignal(w.view.measurement_done, timeout=TIMEOUT) as got:
        c = vp.rect().center()
        _drag(vp, c - QPoint(40, 0), c + QPoint(40, 0), Qt.MouseButton.LeftButton)
    assert got.args[0].text.endswith("mm (PixelSpacing)") and got.args[0].value > 0
    w.actions_by_name["clear_measurements"].trigger()
    assert w.view.measurements.records == []

    _open(qtbot, w, png_files[0])
    assert w.view.measure("distance", (0, 0), (3, 4)).text == "5 px"


def test_overlays_toggle_without_rerunning_inference(qtbot, make_window, png_files):
    analyzer = ScriptedAnalyzer()
    w = make_window(analyzer.factory)
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT) as got:
        _open(qtbot, w, png_files[0])
    result = got.args[0]
    heat = w.view.heatmap
    assert heat.item.isVisible() and w.view.colorbar.isVisible()
    assert w.view.mask.outline.isVisible() and not w.view.mask.outline.path().isEmpty()

    oc = w.overlay_controls
    oc.heatmap.setChecked(False)
    assert not heat.item.isVisible() and not w.view.colorbar.isVisible()
    oc.heatmap.setChecked(True)
    oc.opacity.setValue(80)
    assert heat.item.opacity() == pytest.approx(0.8)
    oc.lungs_only.setChecked(True)
    shown = heat.displayed
    assert np.all(shown[~result.lung_mask] == 0) and shown[result.lung_mask].max() > 0.5
    oc.lungs_only.setChecked(False)
    assert heat.displayed[~result.lung_mask].max() > 0
    oc.mask_style.setCurrentText("fill")
    assert w.view.mask.fill.isVisible() and not w.view.mask.outline.isVisible()
    w.actions_by_name["mask"].trigger()  # keyboard action L
    assert not w.view.mask.fill.isVisible() and not oc.mask.isChecked()
    assert analyzer.calls == ["cxr_0.png"]  # one inference for all of the above


def test_no_model_keeps_viewing_and_says_so(qtbot, make_window, png_files):
    from cxrviewer.ui.workers import ModelUnavailable

    def factory():
        raise ModelUnavailable("No model is installed in models/.")

    w = make_window(factory)
    _open(qtbot, w, png_files[0])
    qtbot.waitUntil(lambda: w.model_unavailable is not None, timeout=TIMEOUT)
    assert "No AI model available" in w.ai_panel.state.text() and "models/" in w.ai_panel.state.text()
    assert "Research use only" in w.ai_panel.notice.text()
    _open(qtbot, w, png_files[1])  # viewing still works
    assert w.view.displayed_image().shape == (120, 150)
    # a model is chosen afterwards (Preferences): the image on screen is analysed without a restart
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT) as got:
        w.replace_analyzer(ScriptedAnalyzer().factory)
    assert got.args[0].path == "cxr_1.png" and w.model_unavailable is None


def test_unreadable_file_is_reported(qtbot, make_window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    w = make_window(ScriptedAnalyzer().factory)
    w.open_paths([bad])
    qtbot.waitUntil(lambda: bool(shown), timeout=TIMEOUT)
    assert "broken.png" in shown[0] and w.current is None


def test_similar_case_opens_side_by_side_synchronised(qtbot, make_window, png_files):
    import cv2

    from tests.runtime.models import synthetic_cxr

    ok, png = cv2.imencode(".png", synthetic_cxr(64, 64, seed=5))
    w = make_window(ScriptedAnalyzer(thumbnail_png=png.tobytes()).factory)
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        _open(qtbot, w, png_files[2])
    item = w.similar.list.item(0)
    assert not item.icon().isNull() and "d 0.100" in item.text()
    w.similar.list.itemClicked.emit(item)
    assert w.compare_panel.isVisible() and w.compare_view.displayed_image().shape == (512, 512)  # enlarged
    assert "case 0" in w.compare_title.text()
    qtbot.wait(50)
    w.view.zoom_by(2.0)

    def screen_px_per_image_width(v):
        return v.view_box.size().width() * v.image_shape[1] / v.view_box.viewRect().width()

    # the same zoom relative to each image (a thumbnail beside a 180 px image)
    assert screen_px_per_image_width(w.compare_view) == pytest.approx(
        screen_px_per_image_width(w.view), rel=0.02
    )
    lo, hi = w.view.loaded.value_range
    w.view.set_window(lo + 0.25 * (hi - lo), 0.5 * (hi - lo))
    clo, chi = w.compare_view.loaded.value_range
    assert w.compare_view.window.center == pytest.approx(clo + 0.25 * (chi - clo))
    w.actions_by_name["close_compare"].trigger()
    assert not w.compare_panel.isVisible()


def test_settings_persist(settings_store):
    from cxrviewer.ui.settings import (
        ViewerSettings,
        add_recent_path,
        load_settings,
        recent_paths,
        save_settings,
    )

    s = ViewerSettings(device="cpu", heatmap_opacity=0.7, mask_style="fill", heatmap_lungs_only=True)
    save_settings(s, settings_store)
    assert load_settings(settings_store) == s
    settings_store.setValue("viewer/device", "tpu")  # an unknown value falls back to the default
    assert load_settings(settings_store).device == "auto"
    for p in ("a", "b", "a"):
        add_recent_path(p, settings_store)
    assert recent_paths(settings_store) == ["a", "b"]


def test_opened_files_are_listed_in_the_study_browser(qtbot, make_window, png_files, dicom_file):
    w = make_window(ScriptedAnalyzer().factory)
    _open(qtbot, w, png_files[0])
    _open(qtbot, w, dicom_file)
    _open(qtbot, w, png_files[0])  # listed once
    assert w.browser.image_count() == 2
    root = w.browser.topLevelItem(0)
    assert root.text(0) == "Opened files"
    patients = sorted(root.child(i).text(0) for i in range(root.childCount()))
    assert "Patient TEST-1" in patients  # the DICOM's own patient id groups it
    _open(qtbot, w, png_files[1])
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT) as blocker:
        w.browser.itemClicked.emit(w.browser.findItems("chest.dcm", Qt.MatchFlag.MatchRecursive)[0], 0)
    assert blocker.args[0].title == "chest.dcm" and w.browser.image_count() == 3


def test_open_folder_and_zip_build_tree_and_worklist(qtbot, make_window, png_files, dicom_file, tmp_path):
    import shutil
    import zipfile

    folder = png_files[0].parent
    shutil.copy(dicom_file, folder / "chest.dcm")
    (folder / "notes.txt").write_text("not an image", encoding="utf-8")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in png_files[:2]:
            zf.write(p, f"inner/{p.name}")

    def files():
        return sorted(str(p) for p in tmp_path.rglob("*") if p.name != "settings.ini")

    before = files()
    w = make_window(ScriptedAnalyzer().factory)

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder)), QUrl.fromLocalFile(str(archive))])
    drop = QDropEvent(
        QPointF(w.rect().center()),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT):
        w.dropEvent(drop)
    qtbot.waitUntil(lambda: w.browser.topLevelItemCount() == 2, timeout=TIMEOUT)  # both trees listed
    assert w.browser.image_count() == 6  # 3 PNG + 1 DICOM in the folder, 2 PNG in the ZIP
    skipped = w.browser.findItems("notes.txt", Qt.MatchFlag.MatchContains | Qt.MatchFlag.MatchRecursive)
    assert skipped and w.browser.findItems("Skipped (1)", Qt.MatchFlag.MatchRecursive)
    assert w.browser.findItems("Test, Patient (TEST-1)", Qt.MatchFlag.MatchRecursive)
    assert len(w.worklist.worklist) == 6
    # a ZIP member opens from the tree (read in memory, never extracted)
    member = w.browser.findItems("cxr_1.png", Qt.MatchFlag.MatchContains | Qt.MatchFlag.MatchRecursive)
    zip_rows = [
        m for m in member if m.data(0, Qt.ItemDataRole.UserRole) is not None and "study.zip" in m.text(0)
    ]
    assert zip_rows
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT) as blocker:
        w.browser.itemClicked.emit(zip_rows[0], 0)
    assert (
        blocker.args[0].image.source.member == "inner/cxr_1.png"
        and w.current.title == "study.zip:inner/cxr_1.png"
    )
    assert files() == before  # nothing extracted or written next to the user's files


def test_keyboard_shortcuts_drive_the_view(qtbot, make_window, png_files):
    w = make_window(ScriptedAnalyzer().factory)
    loaded = _open(qtbot, w, png_files[0])
    w.activateWindow()
    qtbot.waitActive(w)
    target = w.view.graphics
    target.setFocus()
    normal = w.view.displayed_image().copy()
    qtbot.keyClick(target, Qt.Key.Key_I)
    qtbot.waitUntil(lambda: np.array_equal(w.view.displayed_image(), 255 - normal), timeout=TIMEOUT)
    qtbot.keyClick(target, Qt.Key.Key_F4)  # lung preset
    assert w.view.window == loaded.presets["lung"]
    qtbot.keyClick(target, Qt.Key.Key_M)
    assert w.view.view_box.tool == "distance" and w.actions_by_name["tool_distance"].isChecked()
    qtbot.keyClick(target, Qt.Key.Key_R)
    assert w.view.rotation == 90
    qtbot.keyClick(target, Qt.Key.Key_O)  # heatmap overlay off
    assert not w.overlay_controls.heatmap.isChecked()


def test_preferences_dialog_round_trip(qtbot, settings_store):
    from cxrviewer.ui.preferences_dialog import PreferencesDialog
    from cxrviewer.ui.settings import ViewerSettings

    dlg = PreferencesDialog(ViewerSettings())
    qtbot.addWidget(dlg)
    dlg.device.setCurrentText("cpu")
    dlg.operating_point.setCurrentText("high-sensitivity")
    dlg.opacity.setValue(70)
    dlg.mask_style.setCurrentText("fill")
    dlg.analyse_on_open.setChecked(False)
    s = dlg.settings()
    assert (s.device, s.operating_point, s.heatmap_opacity, s.mask_style, s.analyse_on_open) == (
        "cpu",
        "high-sensitivity",
        0.7,
        "fill",
        False,
    )


def test_page_down_steps_through_the_worklist(qtbot, make_window, png_files):
    w = make_window(ScriptedAnalyzer().factory)
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT):
        w.open_paths(png_files)
    assert w.current.title == "cxr_0.png"
    for expected in ("cxr_1.png", "cxr_2.png"):
        with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT) as got:
            w.actions_by_name["next_image"].trigger()
        assert got.args[0].title == expected
    assert not w.step_image(+1)  # the end of the list
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT) as got:
        w.actions_by_name["previous_image"].trigger()
    assert got.args[0].title == "cxr_1.png"
