"""One-off background jobs for dialogs (PACS search/retrieve, exports): a callable run in its own QThread,
with progress, cancellation and a human message on failure. The GUI thread only receives signals."""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, QThread, Signal


class JobControl:
    """What a job's work function gets: ``progress(done, total)`` and ``cancelled()``."""

    def __init__(self, job: BackgroundJob) -> None:
        self._job = job

    def progress(self, done: int, total: int | None) -> bool:
        """Report progress (``total`` None when unknown); returns False once the job was cancelled."""
        self._job.progressed.emit(int(done), -1 if total is None else int(total))
        return not self.cancelled()

    def cancelled(self) -> bool:
        """True once :meth:`BackgroundJob.cancel` was called."""
        return self._job._cancel.is_set()


class BackgroundJob(QThread):
    """Runs ``work(control)`` in a thread of its own and emits exactly one of ``succeeded(value)``,
    ``failed(message)`` or ``cancelled()`` (an exception raised after :meth:`cancel` counts as a cancel).

    Signals are emitted from the worker thread and delivered queued to receivers in the GUI thread.
    """

    progressed = Signal(int, int)  # done, total (-1 = unknown)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, work: Callable[[JobControl], object], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._work = work
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop; the work function sees it through its :class:`JobControl`."""
        self._cancel.set()

    def run(self) -> None:
        try:
            value = self._work(JobControl(self))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message for the user
            if self._cancel.is_set():
                self.cancelled.emit()
            else:
                self.failed.emit(str(exc).strip() or type(exc).__name__)
            return
        if self._cancel.is_set():
            self.cancelled.emit()
        else:
            self.succeeded.emit(value)
