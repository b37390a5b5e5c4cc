"""Drop → all results on screen, with the shipped models, against the same steps run one after another
without the viewer, measured in the same run.

Each variant runs in a fresh Python process, so the first image is really cold (imports, model loading):

- ``viewer``: the real window with the analyzer it builds by default (``models/cxr-classifier``, the shipped
  input gate and lung U-Net, the shipped reference case library; no user library). Files are dropped on the
  window as a ``QDropEvent``. An image counts as done when the window has shown everything: the image, the
  AI panel's probabilities, the lung outline, the Grad-CAM heatmap and the similar cases with their
  thumbnails — checked on the widgets, then the window is repainted (so the time includes drawing it).
  *Cold*: the first file is dropped at the window's first paint (the views, ONNX Runtime and the models
  load meanwhile). *Warm*: the other files, one after another, each dropped 0.3 s after the previous one was
  on screen.
- ``steps``: what the viewer does for one image, called in sequence on one thread without Qt widgets:
  read the file and compute its presets (``prepare_image``), analyse it (the same pipeline object the viewer
  builds), prepare its overlays and thumbnails (``prepare_result_display``). Cold: building the analyzer
  plus the first image; warm: the others.

The viewer's time over the steps' time is the cost of the window itself (threads, signals, widgets,
painting). Goal: warm drop → all results ≤ 0.5 s on CPU.

    .venv/bin/python benchmarks/bench_drop_to_results.py [--images 8] [--large] [--repeats 1]

``--large`` adds a 2048×2500 16-bit PNG made from a data-set image (a detector-sized radiograph; written to
a temporary folder and removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from child_process import run_child, viewer_env

REPO = Path(__file__).resolve().parents[1]

_COMMON = r"""
import json, sys, time
from pathlib import Path
images, store_path = json.loads(sys.argv[1]), sys.argv[2]

def analyzer_factory():
    from cxrviewer.resources import models_dir
    from cxrviewer.ui.analysis_backend import find_case_libraries, pipeline_factory
    from cxrviewer.ui.settings import ViewerSettings
    settings = ViewerSettings(device="cpu")  # the default model: the first classifier under models/
    return settings, pipeline_factory(settings, library_paths=find_case_libraries([models_dir()]), user_library=None)

def heavy():
    return [m for m in ("torch", "onnxruntime") if m in sys.modules]
"""

VIEWER = (
    _COMMON
    + r"""
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from cxrviewer.ui.app import create_application
from cxrviewer.ui.main_window import MainWindow

app = create_application()
settings, factory = analyzer_factory()
store = QSettings(store_path, QSettings.Format.IniFormat)  # never the user's own settings
w = MainWindow(analyzer_factory=factory, settings=settings, store=store)
times, problems, state = [], [], {}

def everything_shown(result):
    if w.current is None or Path(str(w.current.image.source.path)).name != Path(images[len(times)]).name:
        return "another image is on screen"
    if w.view.displayed_image() is None:
        return "no image"
    if result.status != "ok":
        return f"status {result.status}: {result.reason}"
    if not w.ai_panel.shown_bars():
        return "no probabilities"
    if result.lung_mask is None or w.view.mask.outline.path().isEmpty():
        return "no lung outline"
    if result.heatmap is None or not w.view.heatmap.item.isVisible():
        return "no heatmap"
    n = w.similar.list.count()
    if n == 0 or any(w.similar.list.item(i).icon().isNull() for i in range(n)):
        return "no similar cases with thumbnails"
    return None

def drop(path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(path)])
    event = QDropEvent(QPointF(w.rect().center()), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    state["t0"] = time.perf_counter()
    w.dropEvent(event)

def on_shown(result):
    problem = everything_shown(result)
    w.repaint()  # what is shown is drawn before the clock stops
    times.append(time.perf_counter() - state["t0"])
    if problem:
        problems.append(f"{Path(images[len(times) - 1]).name}: {problem}")
    if len(times) == len(images):
        print("RESULT " + json.dumps({"times": times, "problems": problems, "heavy": heavy(),
                                      "timings": state.get("timings", [])}), flush=True)
        w.close()
        app.quit()
    else:
        QTimer.singleShot(300, lambda: drop(images[len(times)]))
    state.setdefault("timings", []).append(result.timings_ms)

w.analysis_shown.connect(on_shown)
w.first_painted.connect(lambda: drop(images[0]))
w.resize(1440, 900)
w.show()
sys.exit(app.exec())
"""
)

STEPS = (
    _COMMON
    + r"""
t0 = time.perf_counter()
from cxrviewer.core import load_image
from cxrviewer.ui.image_stats import prepare_image
from cxrviewer.ui.overlay_data import prepare_result_display
settings, factory = analyzer_factory()
analyze = factory()
times, problems = [], []
for i, path in enumerate(images):
    t = t0 if i == 0 else time.perf_counter()
    loaded = prepare_image(load_image(path))
    result = analyze(loaded.image)
    prepare_result_display(loaded.image, result)
    times.append(time.perf_counter() - t)
    if result.status != "ok" or result.lung_mask is None or not result.neighbours:
        problems.append(f"{Path(path).name}: incomplete result ({result.status})")
print("RESULT " + json.dumps({"times": times, "problems": problems, "heavy": heavy()}), flush=True)
"""
)


def pick_images(data: Path, n: int) -> list[str]:
    """``n`` data-set JPEGs spread over the sources (frontal views, so the input gate lets them through)."""
    import csv

    rows = list(csv.DictReader((data / "labels.csv").open(encoding="utf-8")))
    frontal = [r for r in rows if r["view"] in ("PA", "AP", "frontal") and (data / r["path"]).is_file()]
    by_source: dict[str, list[str]] = {}
    for r in sorted(frontal, key=lambda r: r["path"]):
        by_source.setdefault(r["source"], []).append(str(data / r["path"]))
    picked: list[str] = []
    while len(picked) < n and any(by_source.values()):
        for paths in by_source.values():
            if paths and len(picked) < n:
                picked.append(paths.pop(len(paths) // 2))
    return picked


def make_large(src: str, out: Path) -> str:
    """A 2048×2500 16-bit PNG (12 bits used) made from ``src``: the size of a flat-panel detector image."""
    import cv2
    import numpy as np

    img = cv2.imread(src, cv2.IMREAD_GRAYSCALE)
    big = cv2.resize(img, (2048, 2500), interpolation=cv2.INTER_CUBIC).astype(np.uint16) * 16
    cv2.imwrite(str(out), big)
    return str(out)


def summary(times: list[float]) -> tuple[float, float]:
    """(cold, warm median) in seconds."""
    return times[0], statistics.median(times[1:]) if len(times) > 1 else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=8, help="data-set images dropped one after another")
    p.add_argument("--large", action="store_true", help="also a 2048x2500 16-bit image (own rows)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each variant (fresh processes)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cxr")
    args = p.parse_args()
    if not (args.data / "labels.csv").is_file():
        print(f"needs the shared data set at {args.data}", file=sys.stderr)
        return 2
    images = pick_images(args.data, args.images)
    env = viewer_env()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(
        f"{len(images)} data-set images ({', '.join(sorted({Path(i).parent.name for i in images}))}), "
        f"Qt platform {env.get('QT_QPA_PLATFORM') or 'default'}, load average "
        f"{load[0]:.1f}"
        if load
        else ""
    )
    with tempfile.TemporaryDirectory() as tmp:
        sets = [("data-set JPEGs (≤ 512 px)", images)]
        if args.large:
            large = [make_large(images[i % len(images)], Path(tmp) / f"large{i}.png") for i in range(4)]
            sets.append(("2048×2500 16-bit PNG", large))
        rows = []
        for label, paths in sets:
            res: dict[str, list[dict]] = {"viewer": [], "steps": []}
            for r in range(args.repeats):
                for name, code in (("viewer", VIEWER), ("steps", STEPS)):
                    store = str(Path(tmp) / f"{name}{r}.ini")
                    res[name].append(run_child(code, [json.dumps(paths), store], env, name))
            rows.append((label, res))
    print("\ndrop → all results on screen (image, probabilities, lung outline, Grad-CAM, similar cases)")
    print(f"{'images':28s}{'variant':34s}{'cold s':>9s}{'warm median s':>15s}{'warm max s':>12s}")
    verdicts = []
    for label, res in rows:
        out = {}
        for name, title in (
            ("viewer", "viewer: drop on the window"),
            ("steps", "steps in sequence, no viewer"),
        ):
            cold = statistics.median(summary(x["times"])[0] for x in res[name])
            warm_all = [t for x in res[name] for t in x["times"][1:]]
            warm = statistics.median(warm_all) if warm_all else float("nan")
            out[name] = (cold, warm)
            print(f"{label:28s}{title:34s}{cold:9.2f}{warm:15.3f}{max(warm_all, default=float('nan')):12.3f}")
            for x in res[name]:
                for prob in x["problems"]:
                    print(f"    incomplete: {prob}")
        ratio_c, ratio_w = out["viewer"][0] / out["steps"][0], out["viewer"][1] / out["steps"][1]
        heavy = sorted({m for x in res["viewer"] for m in x["heavy"]})
        print(
            f"{'':28s}{'viewer / steps':34s}{ratio_c:8.2f}×{ratio_w:14.2f}×"
            f"      (imported by the viewer: {', '.join(heavy) or 'none'})"
        )
        verdicts.append((label, out["viewer"][1]))
    if load:
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    for label, warm in verdicts:
        print(f"goal ≤ 0.5 s warm, {label}: {warm:.3f} s — {'met' if warm <= 0.5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
