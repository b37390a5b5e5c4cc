"""Analysis in the worker thread: stale answers dropped, cancellation, the worklist batch and its export, a
real tiny model, and the longest GUI-thread stall while it runs."""

from __future__ import annotations

import csv
import json
import os
import sys
import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import QElapsedTimer, QThread, QTimer

from tests.ui.tiny_analyzer import ScriptedAnalyzer

TIMEOUT = 15_000


def test_stale_result_is_dropped(qtbot, make_window, png_files):
    analyzer = ScriptedAnalyzer(block=True, honour_cancel=False)  # A's analysis runs to the end
    w = make_window(analyzer.factory)
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT):
        w.open_paths([png_files[0]])
    qtbot.waitUntil(lambda: analyzer.calls == ["cxr_0.png"], timeout=TIMEOUT)  # A is being analysed
    shown, threads = [], []
    w.analysis_shown.connect(shown.append)
    w.analysis.result_ready.connect(lambda *_: threads.append(QThread.currentThread()))
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT):
        w.open_paths([png_files[1]])  # B replaces A on screen: A's request is now stale
    analyzer.release("cxr_1.png")
    analyzer.release("cxr_0.png")  # A's answer arrives (late) ...
    qtbot.waitUntil(lambda: len(shown) == 1, timeout=TIMEOUT)
    qtbot.wait(100)
    assert [r.path for r in shown] == ["cxr_1.png"]  # ... and only B's result is ever shown
    assert w.ai_panel.result.path == "cxr_1.png"
    assert analyzer.calls == ["cxr_0.png", "cxr_1.png"] and w.analysis.stale_dropped == 1
    assert threads == [w.thread()]  # answers are delivered on the GUI thread


def test_cancel_stops_the_running_analysis(qtbot, make_window, png_files):
    analyzer = ScriptedAnalyzer(block=True)
    w = make_window(analyzer.factory)
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT):
        w.open_paths([png_files[0]])
    qtbot.waitUntil(lambda: analyzer.calls == ["cxr_0.png"], timeout=TIMEOUT)
    assert "Analysing" in w.ai_panel.state.text()
    w.actions_by_name["cancel"].trigger()
    qtbot.waitUntil(lambda: not w.analysis.busy, timeout=TIMEOUT)  # the analyzer saw should_cancel()
    assert w.ai_panel.result is None and "cancelled" in w.ai_panel.state.text()
    analyzer.block = False
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.actions_by_name["analyse"].trigger()  # runs again on request


def test_worklist_batch_sort_and_export(qtbot, make_window, png_files, tmp_path):
    analyzer = ScriptedAnalyzer()
    w = make_window(analyzer.factory)
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT):
        w.open_paths(png_files)
    wl = w.worklist.worklist
    assert len(wl) == 3 and w.worklist.model.rowCount() == 3
    w.worklist.analyse_button.click()
    qtbot.waitUntil(lambda: wl.counts()["done"] == 3 and not w.batch_running, timeout=TIMEOUT)
    w.worklist.sort_button.click()
    scores = [i.score for i in wl]
    assert scores == sorted(scores, reverse=True)
    assert w.worklist.model.index(0, 2).data() == f"{scores[0]:.3f}"
    assert "3/3 analysed" in w.worklist.summary.text()

    out_csv = w.export_worklist(tmp_path / "triage.csv", "csv")
    rows = list(csv.DictReader(out_csv.read_text(encoding="utf-8").splitlines()))
    assert [float(r["score"]) for r in rows] == pytest.approx(scores, abs=1e-6)
    out_json = w.export_worklist(tmp_path / "triage.json", "json")
    items = json.loads(out_json.read_text(encoding="utf-8"))["items"]
    assert [i["name"] for i in items] == [r["name"] for r in rows]
    assert all(i["result"]["schema_version"] == 1 for i in items)


def test_worklist_cancel_marks_remaining_items(qtbot, make_window, png_files):
    analyzer = ScriptedAnalyzer(block=True)
    w = make_window(analyzer.factory, settings=_settings(analyse_on_open=False))
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT):
        w.open_paths(png_files)
    w.analyse_worklist()
    qtbot.waitUntil(lambda: len(analyzer.calls) == 1, timeout=TIMEOUT)
    w.worklist.cancel_button.click()
    qtbot.waitUntil(lambda: not w.analysis.busy, timeout=TIMEOUT)
    counts = w.worklist.worklist.counts()
    assert counts["cancelled"] == 3 and counts["done"] == 0 and len(analyzer.calls) == 1


def _settings(**kw):
    from cxrviewer.ui.settings import ViewerSettings

    return ViewerSettings(**kw)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    pytest.importorskip("torch")
    from tests.helpers.tiny_model import make_tiny_classifier_dir

    return make_tiny_classifier_dir(tmp_path_factory.mktemp("tiny") / "model")


def _library(tmp_path, model_dir, images):
    """A case library holding ``images`` embedded by the tiny model (labels alternate covid/normal)."""
    import cv2

    from cxrviewer.ml.predictor import Predictor, PredictorSettings
    from cxrviewer.services.case_library import CaseLibrary

    predictor = Predictor.load(model_dir, device="cpu", settings=PredictorSettings(threads=1, warmup=False))
    path = tmp_path / "reference.cxrlib"
    with CaseLibrary.open(path, create=True, kind="reference", name="reference") as lib:
        for i, p in enumerate(images):
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            emb = predictor.predict([img])[0].embedding
            lib.add_case(img, emb, "covid" if i % 2 else "normal", model_id=predictor.model_id, source="test")
        lib.finalise()
    return path


def _detector_sized_copies(images, folder, shape=(2000, 1600)):
    """16-bit PNG copies (12 bits used) of ``images`` at a flat-panel detector's size."""
    import cv2

    folder.mkdir()
    out = []
    for p in images:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        big = cv2.resize(img, shape[::-1], interpolation=cv2.INTER_CUBIC).astype(np.uint16) * 16
        cv2.imwrite(str(folder / f"{p.stem}-large.png"), big)
        out.append(folder / f"{p.stem}-large.png")
    return out


#: The most GUI-thread CPU time allowed between two heartbeats while results arrive (ms). Measured on the
#: 2-core machine: 23-25 ms with the overlays prepared in the analysis thread; 114-129 ms (and a 459 ms
#: wall-clock gap) with them computed from the full-size arrays on the GUI thread, as before that change.
GUI_CPU_PER_BEAT_MS = 80
#: The longest wall-clock heartbeat gap allowed (ms): the goal is < 100 ms, which only a quiet machine shows
#: (benchmarks/bench_gui_stall.py measures it against the idle noise floor); analysing on the GUI thread
#: freezes it for > 1 s per image this size.
GUI_GAP_MS = 400


def test_pipeline_with_tiny_model_and_gui_stall(qtbot, make_window, tiny_model_dir, shared_data, tmp_path):
    """The real analysis pipeline (tiny model, a case library, the shipped helpers) in the analysis thread,
    while a 10 ms heartbeat on the GUI thread records the wall-clock gaps and the GUI thread's own CPU time
    between beats, over three detector-sized (2000×1600, 16-bit) images opened and analysed after the model
    has loaded. The CPU figure does not depend on the machine's load: it is the work the window does on its
    thread per result (drawing included)."""
    from cxrviewer.ui.analysis_backend import pipeline_factory
    from cxrviewer.ui.settings import ViewerSettings

    images = sorted((shared_data / "cxr" / "images").glob("*/*.jpg"))[:8]
    library = _library(tmp_path, tiny_model_dir, images[3:])
    large = _detector_sized_copies(images[:3], tmp_path / "large")
    settings = ViewerSettings(model_dir=str(tiny_model_dir), device="cpu")
    w = make_window(pipeline_factory(settings, library_paths=[library], user_library=None), settings=settings)
    with qtbot.waitSignal(w.analysis_shown, timeout=60_000):  # cold: imports and model loading
        w.open_paths([images[0]])

    timer, clock, gaps, cpu = QTimer(), QElapsedTimer(), [], []
    clock.start()
    last = [clock.elapsed(), time.thread_time()]

    def beat():
        now, used = clock.elapsed(), time.thread_time()
        gaps.append(now - last[0])
        cpu.append((used - last[1]) * 1000.0)
        last[:] = [now, used]

    timer.timeout.connect(beat)
    timer.start(10)
    t0 = time.perf_counter()
    results = []
    for path in large:
        with qtbot.waitSignal(w.analysis_shown, timeout=60_000) as got:
            w.open_paths([path])
        results.append(got.args[0])
    qtbot.wait(100)  # the last result's repaint
    elapsed = time.perf_counter() - t0
    timer.stop()
    worst, worst_cpu = max(gaps), max(cpu)
    print(
        f"\nGUI thread during {len(results)} analyses of 2000×1600 images ({elapsed:.2f} s): longest gap "
        f"{worst} ms (median {sorted(gaps)[len(gaps) // 2]} ms over {len(gaps)} beats); most GUI-thread CPU "
        f"between two beats {worst_cpu:.0f} ms"
    )
    assert worst_cpu < GUI_CPU_PER_BEAT_MS
    assert worst < GUI_GAP_MS
    r = results[-1]
    assert r.status == "ok", r.reason
    assert set(r.probabilities) == {"normal", "pneumonia", "covid"}
    assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert r.heatmap.shape == w.current.image.pixels.shape and w.view.heatmap.item.isVisible()
    assert "tiny-test-classifier" in w.ai_panel.model_info.text()
    assert [x.path for x in results] == [p.name for p in large]
    assert len(r.neighbours) == 4 and all(n.thumbnail_png for n in r.neighbours)
    assert w.similar.list.count() == 4 and not w.similar.list.item(0).icon().isNull()
    from cxrviewer.ml.segmentation import DEFAULT_MODEL_DIR

    if (DEFAULT_MODEL_DIR / "manifest.json").is_file():  # the shipped lung U-Net draws the lung outline
        assert (
            r.lung_mask is not None
            and r.lung_mask.shape == r.heatmap.shape
            and 0.1 < r.lung_mask.mean() < 0.8
        )
        assert not w.view.mask.outline.path().isEmpty() and r.saliency_outside_lungs is not None


def test_pipeline_without_model_shows_notice(qtbot, make_window, png_files, tmp_path):
    from cxrviewer.ui.analysis_backend import pipeline_factory
    from cxrviewer.ui.settings import ViewerSettings

    settings = ViewerSettings(model_dir=str(tmp_path / "no-such-model"), device="cpu")
    w = make_window(pipeline_factory(settings, library_paths=[], helpers=False), settings=settings)
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT):
        w.open_paths([png_files[0]])
    qtbot.waitUntil(lambda: w.model_unavailable is not None, timeout=30_000)
    assert "No AI model available" in w.ai_panel.state.text()
    assert w.view.displayed_image() is not None


def test_add_to_my_library_then_found_as_similar_case(
    qtbot, make_window, tiny_model_dir, png_files, tmp_path
):
    from cxrviewer.services.case_library import CaseLibrary
    from cxrviewer.ui.analysis_backend import pipeline_factory
    from cxrviewer.ui.settings import ViewerSettings

    user_lib = tmp_path / "libs" / "my-cases.cxrlib"
    settings = ViewerSettings(model_dir=str(tiny_model_dir), device="cpu")
    w = make_window(
        pipeline_factory(settings, library_paths=[], user_library=user_lib, helpers=False), settings=settings
    )
    with qtbot.waitSignal(w.analysis_shown, timeout=60_000) as got:
        w.open_paths([png_files[2]])
    assert got.args[0].neighbours == [] and w.similar.add_button.isEnabled()
    w.similar.label_box.setCurrentText("pneumonia")
    with qtbot.waitSignal(w.library_changed, timeout=TIMEOUT) as added:
        w.similar.add_button.click()
    assert "case 1 (pneumonia)" in added.args[0]
    with CaseLibrary.open(user_lib, read_only=True) as lib:
        cases = lib.cases()
    assert [c.label for c in cases] == ["pneumonia"] and cases[0].source == ""  # no file name stored
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT) as again:
        w.actions_by_name["analyse"].trigger()
    n = again.args[0].neighbours
    assert len(n) == 1 and n[0].label == "pneumonia" and n[0].distance < 1e-4 and n[0].thumbnail_png


def test_occlusion_heatmap_progress_and_cancel(qtbot, make_window, tiny_model_dir, png_files):
    pytest.importorskip("cxrviewer.ml.explain.occlusion")
    from cxrviewer.ui.analysis_backend import pipeline_factory
    from cxrviewer.ui.settings import ViewerSettings

    settings = ViewerSettings(model_dir=str(tiny_model_dir), device="cpu")
    w = make_window(
        pipeline_factory(settings, library_paths=[], user_library=None, helpers=False), settings=settings
    )
    with qtbot.waitSignal(w.analysis_shown, timeout=60_000) as got:
        w.open_paths([png_files[0]])
    gradcam = got.args[0].heatmap.copy()
    assert got.args[0].heatmap_method == "gradcam" and "occlusion" in w.analyzer_tasks

    # cancelled on its first progress report: the Grad-CAM map comes back, no occlusion result
    def cancel_once(tag, state):
        w.analysis.task_progress.disconnect(cancel_once)
        w.actions_by_name["cancel"].trigger()

    w.analysis.task_progress.connect(cancel_once)
    with qtbot.waitSignal(w.analysis.cancelled, timeout=TIMEOUT):
        w.actions_by_name["occlusion"].trigger()
    np.testing.assert_array_equal(w.view.heatmap.heatmap, gradcam)
    assert w.current_result.heatmap_method == "gradcam" and not w.occlusion_progress.isVisible()

    progress = []
    w.analysis.task_progress.connect(lambda tag, state: progress.append(state[:2]))
    with qtbot.waitSignal(w.analysis_shown, timeout=60_000) as done:
        w.actions_by_name["occlusion"].trigger()
    r = done.args[0]
    assert r.heatmap_method == "occlusion" and r.heatmap.shape == w.current.image.pixels.shape
    assert r.heatmap.min() >= 0.0 and r.heatmap.max() == pytest.approx(1.0)
    assert len(progress) >= 2 and progress[-1][0] == progress[-1][1]  # coarse first, then complete
    assert "occlusion" in w.ai_panel.model_info.text()
    np.testing.assert_array_equal(w.view.heatmap.heatmap, r.heatmap)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_analysis_thread_yields_to_the_gui_thread(qtbot, make_window, png_files):
    """The analysis thread (and the inference threads it starts) runs ANALYSIS_NICENESS nice steps below the
    GUI thread, so that the window gets a contended core first."""
    from cxrviewer.ui.workers import ANALYSIS_NICENESS

    seen = {}

    def factory():
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return ScriptedAnalyzer()

    w = make_window(factory)
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.open_paths([png_files[0]])
    gui = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen["nice"] == min(19, gui + ANALYSIS_NICENESS)
