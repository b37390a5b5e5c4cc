"""Starting the viewer: QApplication, dark theme, the main window shown and painted *before* anything heavy
is imported, then the command-line paths opened.

torch / ONNX Runtime are never imported here: the analysis thread imports them on its first request (see
:mod:`cxrviewer.ui.workers`), which comes after the first paint.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from cxrviewer import __version__
from cxrviewer.ui.main_window import MainWindow, app_icon
from cxrviewer.ui.settings import APPLICATION, ORGANISATION
from cxrviewer.ui.theme import apply_dark_theme

GIL_SWITCH_INTERVAL_S = 0.001


def create_application(argv: Sequence[str] | None = None) -> QApplication:
    """The QApplication (reused if one exists) with names, icon and the dark theme."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else [sys.argv[0]])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationVersion(__version__)
    app.setWindowIcon(app_icon())
    apply_dark_theme(app)
    # Worker threads run Python code too (pipeline, loaders); a shorter GIL switch interval than the 5 ms
    # default lets the GUI thread take its turn sooner, at a negligible throughput cost.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    return app


def run(paths: Sequence[str | Path], *, on_first_paint: Callable[[MainWindow], None] | None = None) -> int:
    """Show the viewer, open ``paths`` once the window has painted, and run the event loop.

    ``on_first_paint`` (used by ``benchmarks/bench_startup.py``) is called with the window right after its
    first paint. Returns the application's exit code.
    """
    app = create_application()
    window = MainWindow()

    def after_paint() -> None:
        if on_first_paint is not None:
            on_first_paint(window)
        if paths:
            window.open_paths(list(paths))

    window.first_painted.connect(after_paint)
    app.aboutToQuit.connect(window.shutdown)
    window.show()
    QTimer.singleShot(0, window.raise_)
    return app.exec()
