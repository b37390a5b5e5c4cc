"""GUI-thread stalls while the viewer analyses images, against doing the same work on the GUI thread.

Each variant runs in a fresh Python process (so torch is imported cold, as at a real first analysis). A 10 ms
heartbeat ``QTimer`` on the GUI thread records the gap between ticks from the moment the window is shown
until ``--images`` shared-data radiographs have been opened and analysed one after the other; the longest
gap is the worst freeze a user would feel. It is reported per phase: start-up (show → first image on
screen: building the views), first analysis (cold: torch import, model load, warm-up) and later analyses.
Variants:

- ``viewer (worker thread)``: the real window; loading in the I/O thread, torch import, model load and
  inference in the analysis thread;
- ``baseline (GUI thread)``: the same analyzer called directly on the GUI thread between heartbeats (what a
  viewer without worker threads does);
- ``idle window``: the window shown with nothing to do for as long as the viewer run took: the noise floor
  that the machine's own load puts on any heartbeat.

The classifier is ``--model`` (default: the shipped ``models/cxr-classifier``; ``--model tiny``: the tiny
test classifier written to a temporary folder); the shipped input gate, lung U-Net and reference case
library are used as the viewer loads them by default (the user's own library is left out). Goal: the
viewer's longest gap < 100 ms.

    .venv/bin/python benchmarks/bench_gui_stall.py [--images 6] [--model DIR|tiny] [--large]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from child_process import run_child, viewer_env

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
from pathlib import Path
from PySide6.QtCore import QElapsedTimer, QTimer
from cxrviewer.resources import models_dir
from cxrviewer.ui.app import create_application
from cxrviewer.ui.analysis_backend import find_case_libraries, pipeline_factory
from cxrviewer.ui.main_window import MainWindow
from cxrviewer.ui.settings import ViewerSettings

mode, model, images, store_path = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
app = create_application()
from PySide6.QtCore import QSettings
store = QSettings(store_path, QSettings.Format.IniFormat)  # never the user's own settings
settings = ViewerSettings(model_dir=model, device="cpu", analyse_on_open=(mode == "viewer"))
factory = pipeline_factory(settings, library_paths=find_case_libraries([models_dir()]), user_library=None)
w = MainWindow(analyzer_factory=factory, settings=settings, store=store)
clock, ticks, cpu = QElapsedTimer(), [0], [time.thread_time() * 1000.0]
timer = QTimer()
timer.timeout.connect(lambda: (ticks.append(clock.elapsed()), cpu.append(time.thread_time() * 1000.0)))
results, marks = [], {}

def finish():
    timer.stop()
    heavy = [m for m in ("torch", "onnxruntime") if m in sys.modules]
    out = {"ticks": ticks, "cpu": cpu[: len(ticks)], "marks": marks, "results": results, "heavy": heavy}
    print("RESULT " + json.dumps(out), flush=True)
    w.close()
    app.quit()

if mode == "viewer":
    def next_image(result=None):
        if result is not None:
            results.append(result.status)
            marks.setdefault("first_result", clock.elapsed())
        if len(results) == len(images):
            QTimer.singleShot(0, finish)
        else:
            w.open_paths([images[len(results)]])
    w.analysis_shown.connect(next_image)
    w.image_shown.connect(lambda *_: marks.setdefault("first_image", clock.elapsed()))
    w.first_painted.connect(lambda: next_image())
elif mode == "idle":  # noise floor: the window shown, nothing to do, for as long as the viewer run took
    def idle_done():
        marks["first_image"] = marks["first_result"] = 0
        finish()
    w.first_painted.connect(lambda: QTimer.singleShot(int(float(images[0]) * 1000), idle_done))
else:  # baseline: the same analyzer, called on the GUI thread, one image per event-loop turn
    from cxrviewer.core import load_image
    state = {}
    def step():
        if "analyze" not in state:
            marks["first_image"] = clock.elapsed()
            state["analyze"] = factory()  # torch import and model load, on the GUI thread
        elif len(results) < len(images):
            results.append(state["analyze"](load_image(images[len(results)])).status)
            marks.setdefault("first_result", clock.elapsed())
        if len(results) == len(images):
            finish()
        else:
            QTimer.singleShot(0, step)
    w.first_painted.connect(lambda: QTimer.singleShot(0, step))

w.resize(1280, 800)
w.show()
clock.start()
timer.start(10)
sys.exit(app.exec())
"""


def run(mode: str, model: Path, images: list[str], env: dict[str, str], store: Path) -> dict:
    return run_child(CHILD, [mode, str(model), json.dumps(images), str(store)], env, mode)


PHASES = (
    ("start-up", None, "first_image"),
    ("first analysis", "first_image", "first_result"),
    ("later analyses", "first_result", None),
)


def phase_gaps(ticks: list[float], marks: dict[str, float], values: list[float] | None = None) -> dict:
    """The heartbeat gaps of each phase (a gap belongs to the phase holding its midpoint); with ``values``
    (e.g. the GUI thread's CPU clock at each beat), the increase of ``values`` over each of those gaps."""
    values = ticks if values is None else values
    out = {}
    for name, lo, hi in PHASES:
        a = marks.get(lo, 0.0) if lo else 0.0
        b = marks.get(hi, float("inf")) if hi else float("inf")
        out[name] = [
            values[i + 1] - values[i] for i in range(len(ticks) - 1) if a <= (ticks[i] + ticks[i + 1]) / 2 < b
        ]
    return out


def longest(gaps: list[float]) -> float:
    return max(gaps) if gaps else float("nan")


def late_share(gaps: list[float], over_ms: float = 50.0) -> float:
    """Percentage of beats that came more than ``over_ms`` late (gap > 10 ms + ``over_ms``)."""
    return 100.0 * sum(g > 10.0 + over_ms for g in gaps) / len(gaps) if gaps else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=6)
    p.add_argument(
        "--model",
        default=str(REPO / "models" / "cxr-classifier"),
        help="classifier model folder, or 'tiny' for the tiny test model (default: the shipped classifier)",
    )
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cxr")
    p.add_argument(
        "--large", action="store_true", help="2048x2500 16-bit PNG copies of the images (detector size)"
    )
    args = p.parse_args()
    images = [str(x) for x in sorted((args.data / "images").glob("*/*.jpg"))[: args.images]]
    if len(images) < args.images:
        print(f"need {args.images} JPEGs under {args.data / 'images'}", file=sys.stderr)
        return 2
    env = viewer_env()
    with tempfile.TemporaryDirectory() as tmp:
        if args.large:
            from bench_drop_to_results import make_large

            images = [make_large(x, Path(tmp) / f"large{i}.png") for i, x in enumerate(images)]
        model = Path(args.model)
        if args.model == "tiny":
            sys.path.insert(0, str(REPO))
            from tests.helpers.tiny_model import make_tiny_classifier_dir

            model = make_tiny_classifier_dir(Path(tmp) / "tiny")
        print(
            f"model: {model}  images: {len(images)}  Qt platform: {env.get('QT_QPA_PLATFORM') or 'default'}"
        )
        rows, cpu_rows = [], []
        for name, mode in (("viewer (worker thread)", "viewer"), ("baseline (GUI thread)", "baseline")):
            out = run(mode, model, images, env, Path(tmp) / f"{mode}-settings.ini")
            bad = [s for s in out["results"] if s != "ok"]
            rows.append((name, phase_gaps(out["ticks"], out["marks"]), bad))
            cpu_rows.append((name, phase_gaps(out["ticks"], out["marks"], out["cpu"])))
            if mode == "viewer":
                viewer_seconds = out["ticks"][-1] / 1000.0
                heavy = out["heavy"]
        idle = run("idle", model, [str(viewer_seconds)], env, Path(tmp) / "idle-settings.ini")
        ticks = idle["ticks"]
        idle_gaps = [b - a for a, b in zip(ticks[:-1], ticks[1:], strict=True)]
        idle_gap = max(idle_gaps)
    heads = [name for name, _, _ in PHASES]
    print("\nlongest gap between 10 ms heartbeats on the GUI thread, ms")
    print(f"{'variant':26s}" + "".join(f"{h:>16s}" for h in heads))
    for name, gaps, bad in rows:
        extra = f"  (non-ok results: {bad})" if bad else ""
        print(f"{name:26s}" + "".join(f"{longest(gaps[h]):16.0f}" for h in heads) + extra)
    print(
        f"{'idle window (noise floor)':26s}{idle_gap:16.0f}   (longest gap over {viewer_seconds:.0f} s with "
        "nothing to do: what the machine's load alone costs)"
    )
    print("\nbeats more than 50 ms late, % of the phase's beats")
    for name, gaps, _ in rows:
        print(f"{name:26s}" + "".join(f"{late_share(gaps[h]):16.1f}" for h in heads))
    print(f"{'idle window (noise floor)':26s}{late_share(idle_gaps):16.1f}")
    print(
        "\nmost GUI-thread CPU time between two beats, ms (the window's own work; the load hardly affects it)"
    )
    for name, used in cpu_rows:
        print(f"{name:26s}" + "".join(f"{longest(used[h]):16.0f}" for h in heads))
    print(f"imported by the viewer process: {', '.join(heavy) or 'neither torch nor onnxruntime'}")
    if hasattr(os, "getloadavg"):
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    for phase in ("first analysis", "later analyses"):
        v, b = longest(rows[0][1][phase]), longest(rows[1][1][phase])
        print(
            f"{phase}: viewer {v:.0f} ms vs {b:.0f} ms on the GUI thread ({b / v:.1f}× shorter); "
            f"goal < 100 ms: {'met' if v < 100 else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
