"""Analysis in the worker thread: stale answers dropped, cancellation, the worklist batch and its export, a
real tiny model, and the longest GUI-thread stall while it runs."""

from __future__ import annotations

import csv
import json
import time

import pytest
from PySide6.QtCore import QElapsedTimer, QTimer

from tests.ui.tiny_analyzer import ScriptedAnalyzer, tiny_model_analyzer_factory

TIMEOUT = 15_000


def test_stale_result_is_dropped(qtbot, make_window, png_files):
    analyzer = ScriptedAnalyzer(block=True, honour_cancel=False)  # A's analysis runs to the end
    w = make_window(analyzer.factory)
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT):
        w.open_paths([png_files[0]])
    qtbot.waitUntil(lambda: analyzer.calls == ["cxr_0.png"], timeout=TIMEOUT)  # A is being analysed
    shown = []
    w.analysis_shown.connect(shown.append)
    with qtbot.waitSignal(w.image_shown, timeout=TIMEOUT):
        w.open_paths([png_files[1]])  # B replaces A on screen: A's request is now stale
    analyzer.release("cxr_1.png")
    analyzer.release("cxr_0.png")  # A's answer arrives (late) ...
    qtbot.waitUntil(lambda: len(shown) == 1, timeout=TIMEOUT)
    qtbot.wait(100)
    assert [r.path for r in shown] == ["cxr_1.png"]  # ... and only B's result is ever shown
    assert w.ai_panel.result.path == "cxr_1.png"
    assert analyzer.calls == ["cxr_0.png", "cxr_1.png"] and w.analysis.stale_dropped == 1


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


def test_tiny_model_result_and_gui_stall(qtbot, make_window, tiny_model_dir, shared_data):
    """A real model in the analysis thread (first use loads it: torch import, verification, warm-up) while
    a 10 ms heartbeat on the GUI thread measures the longest stall. Goal < 100 ms; bound 500 ms."""
    images = sorted((shared_data / "cxr" / "images").glob("*/*.jpg"))[:3]
    calls: list[str] = []
    w = make_window(tiny_model_analyzer_factory(tiny_model_dir, calls))
    timer, clock, gaps = QTimer(), QElapsedTimer(), []
    clock.start()
    last = [clock.elapsed()]

    def beat():
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    timer.timeout.connect(beat)
    timer.start(10)
    t0 = time.perf_counter()
    results = []
    for path in images:
        with qtbot.waitSignal(w.analysis_shown, timeout=60_000) as got:
            w.open_paths([path])
        results.append(got.args[0])
    elapsed = time.perf_counter() - t0
    timer.stop()
    worst = max(gaps)
    print(
        f"\nGUI-thread stall during {len(images)} analyses ({elapsed:.2f} s, model load included): "
        f"longest {worst} ms, median {sorted(gaps)[len(gaps) // 2]} ms over {len(gaps)} beats"
    )
    assert worst < 500
    r = results[-1]
    assert r.status == "ok" and set(r.probabilities) == {"normal", "pneumonia", "covid"}
    assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert r.heatmap.shape == w.current.image.pixels.shape and w.view.heatmap.item.isVisible()
    assert "tiny-test-classifier" in w.ai_panel.model_info.text()
    assert calls == [p.name for p in images]
