"""The Qt binding keeps Python's reference counts intact.

PySide6 6.12.0 on Python 3.11 drops a reference to ``True`` on every ``Signal.emit()`` made from Python and one
to ``None`` on every ``processEvents()``; the window makes about 44 such emits per analysed image, so the
viewer aborted ("Fatal Python error: bool_dealloc") after roughly a hundred images, and benchmark children
died with SIGSEGV. 6.10.1 and 6.11.0 are correct; ``pyproject.toml`` excludes 6.12.0. (From Python 3.12 on
``True``/``None`` are immortal and such a bug is harmless, so this only matters before 3.12.)
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication


class _Emitter(QObject):
    ping = Signal()


def test_emit_and_process_events_keep_reference_counts(qtbot):
    app = QApplication.instance() or QApplication([])
    emitter = _Emitter()
    received = []
    emitter.ping.connect(lambda: received.append(1))
    before = sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None)
    for _ in range(200):
        emitter.ping.emit()
        app.processEvents()
    after = sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None)
    assert len(received) == 200
    # a few references may come and go with the interpreter's own work; a lost one per call would be -200
    assert all(a - b > -50 for a, b in zip(after, before, strict=True)), (before, after)
