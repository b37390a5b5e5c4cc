"""Importing modules in a background thread, with a Qt signal on the GUI thread when they are in.

Importing pure-Python-heavy packages (pyqtgraph, numpy) takes the GUI thread away for up to a second; done
in a plain thread, the GUI keeps painting and handling input (measured by ``benchmarks/bench_gui_stall.py``).
Only modules that create no Qt objects at import time may be imported this way.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Sequence

from PySide6.QtCore import QObject, Signal


class BackgroundImport(QObject):
    """Imports ``modules`` in a daemon thread; ``done`` is emitted (queued to this object's thread) after,
    ``failed(message)`` if an import raised (the modules are then imported again, synchronously, on use)."""

    done = Signal()
    failed = Signal(str)

    def __init__(self, modules: Sequence[str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.modules = tuple(modules)
        self._thread = threading.Thread(target=self._run, name="cxrviewer-import", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def finished(self) -> bool:
        """Whether the import thread has ended (successfully or not)."""
        return self._thread.ident is not None and not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the imports are done (for tests and shutdown); True if they are."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            for name in self.modules:
                importlib.import_module(name)
        except Exception as exc:  # reported; the synchronous import on use will raise it properly
            self._emit(self.failed, f"{type(exc).__name__}: {exc}")
            return
        self._emit(self.done)

    @staticmethod
    def _emit(signal: Signal, *args: object) -> None:
        # RuntimeError: the window (this object's parent) was closed before the imports finished
        with contextlib.suppress(RuntimeError):
            signal.emit(*args)
