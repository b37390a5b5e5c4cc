"""Viewer start-up benchmark: process start → first paint of the main window, against baselines measured in
the same run.

Each variant runs in a fresh Python process (``--repeats`` times, median and min reported); the parent notes
the wall-clock time just before spawning it and the child prints the wall-clock time of its first paint, so
the figure includes interpreter start-up and every import. Variants:

- ``bare Qt``: a QApplication and an empty QWidget (the floor any PySide6 app pays);
- ``cxrviewer``: ``cxrviewer.ui.app.run([])`` - the real window, theme, docks, worker threads;
- ``cxrviewer + eager torch``: the same after ``import torch`` at start-up (what lazy loading avoids).

The child also reports whether torch or onnxruntime were imported by the time of the first paint (they
must not be). Goal: cxrviewer ≤ 1.0 s. Runs on the offscreen Qt platform unless ``--platform`` (or
``$QT_QPA_PLATFORM``/``$DISPLAY``) says otherwise.

    .venv/bin/python benchmarks/bench_startup.py [--repeats 5] [--platform xcb]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_REPORT = """
def _report(extra=''):
    import sys, time
    heavy = [m for m in ('torch', 'onnxruntime') if m in sys.modules]
    print(f'FIRST_PAINT {time.time():.6f} HEAVY {",".join(heavy) or "-"}', flush=True)
"""

BARE_QT = (
    _REPORT
    + """
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QWidget

class W(QWidget):
    done = False
    def paintEvent(self, ev):
        super().paintEvent(ev)
        if not W.done:
            W.done = True
            _report()
            QTimer.singleShot(0, QApplication.quit)

app = QApplication([])
w = W(); w.resize(1440, 900); w.show()
app.exec()
"""
)

VIEWER = (
    _REPORT
    + """
{prelude}
import tempfile
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from cxrviewer.ui.app import run

# keep the benchmark away from the user's own settings and recent files
QSettings.setDefaultFormat(QSettings.Format.IniFormat)
QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, tempfile.mkdtemp())

def first_paint(window):
    _report()
    window.close()
    QApplication.quit()

raise SystemExit(run([], on_first_paint=first_paint))
"""
)

VARIANTS = {
    "bare Qt (QApplication + QWidget)": BARE_QT,
    "cxrviewer": VIEWER.replace("{prelude}", ""),
    "cxrviewer + eager torch import": VIEWER.replace("{prelude}", "import torch"),
}


def time_once(code: str, env: dict[str, str]) -> tuple[float, str]:
    """Seconds from spawning ``python -c code`` to the first paint it reports, and the heavy modules seen."""
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    for line in proc.stdout.splitlines():
        if line.startswith("FIRST_PAINT "):
            parts = line.split()
            return float(parts[1]) - t0, parts[3]
    raise RuntimeError(f"no first paint reported (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--platform", default=None, help="Qt platform plugin (default: offscreen without $DISPLAY)"
    )
    args = p.parse_args()
    env = dict(os.environ)
    if args.platform:
        env["QT_QPA_PLATFORM"] = args.platform
    elif "QT_QPA_PLATFORM" not in env and not env.get("DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    print(
        f"Qt platform: {env.get('QT_QPA_PLATFORM', 'default')}  python: {sys.executable}  repeats: {args.repeats}"
    )
    for code in VARIANTS.values():  # one untimed run each: warm the OS file cache for every variant alike
        time_once(code, env)
    rows = []
    for name, code in VARIANTS.items():
        times, heavy = [], set()
        for _ in range(args.repeats):
            t, h = time_once(code, env)
            times.append(t)
            heavy.add(h)
        rows.append((name, statistics.median(times), min(times), ",".join(sorted(heavy))))
    base = rows[0][1]
    print(
        f"\n{'variant':36s} {'median s':>9s} {'min s':>7s} {'× bare Qt':>10s}  heavy modules at first paint"
    )
    for name, med, lo, heavy in rows:
        print(f"{name:36s} {med:9.3f} {lo:7.3f} {med / base:10.2f}  {heavy}")
    viewer = rows[1][1]
    print(
        f"\ncxrviewer first paint: {viewer:.3f} s (goal ≤ 1.0 s: {'met' if viewer <= 1.0 else 'NOT met'}); "
        f"eager torch would add {rows[2][1] - viewer:+.3f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
