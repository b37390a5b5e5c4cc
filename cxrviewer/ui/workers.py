"""Background work for the window: image/study loading and analysis, each on its own ``QThread``.

The GUI thread never reads files or runs inference. It posts requests to worker objects living in worker
threads through queued signals; every request carries a *generation id* (a number that only grows). The
client objects here (:class:`LoadClient`, :class:`AnalysisClient`) remember the newest generation per channel
and silently drop any answer that is not the newest (a stale answer), so a slow result for image A never
lands on image B. A new request cancels the previous one of its channel: queued requests whose cancel flag is
set are skipped without work, and an analyzer that accepts a ``should_cancel`` callable can stop mid-way.

Heavy libraries (torch, ONNX Runtime) are imported by the analyzer factory, which runs on first use *in the
analysis thread*, after the window has painted.
"""

from __future__ import annotations

import inspect
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from cxrviewer.ui.image_stats import LoadedImage, prepare_image

Analyzer = Callable[..., Any]
"""``analyze(image) -> AnalysisResult`` (optionally accepting ``should_cancel=callable``)."""
AnalyzerFactory = Callable[[], Analyzer]
DisplayPreparer = Callable[[Any, Any], Any]
"""``prepare(image, result) -> display data`` run in the analysis thread after an analysis whose result will be
shown (e.g. :func:`cxrviewer.ui.overlay_data.prepare_result_display`), so the GUI thread only assigns it."""

#: Optional methods an analyzer may offer besides ``__call__``, run by :meth:`AnalysisClient.run_task`:
#: ``add_to_library(image, label) -> str`` stores the image in the user's case library (returns a message);
#: ``occlusion(image, class_name, lung_mask, progress=, should_cancel=)`` computes an occlusion heatmap.
#: A task that takes ``progress`` gets a callable whose arguments arrive as ``task_progress(tag, tuple)``; one
#: that takes ``should_cancel`` can stop by raising :class:`AnalysisCancelled`.
OPTIONAL_TASKS = ("add_to_library", "occlusion")


class ModelUnavailable(Exception):
    """No analysis model can be used (none installed, or it failed its integrity check); the message says why."""


class AnalysisCancelled(Exception):
    """Raised by an analyzer that noticed ``should_cancel()`` and stopped."""


@dataclass
class _Ticket:
    generation: int
    channel: str
    tag: Any
    cancel: threading.Event = field(default_factory=threading.Event)


#: How much lower than the GUI thread the analysis thread (and the inference threads it starts) is scheduled,
#: in nice steps (Linux; elsewhere the thread gets QThread.LowPriority). When the GUI thread and an analysis want
#: the same core, the window goes first. Three interleaved A/B runs of benchmarks/bench_gui_stall.py on the
#: loaded 2-core machine (load average 5-6): heartbeats more than 50 ms late during analyses 4-19 % (mean 14)
#: with it, 14-45 % (mean 31) without; drop → results (bench_drop_to_results.py) not slower (warm median
#: 0.30-0.35 s with, 0.36-0.49 s without). An idle core still runs the analysis at full speed.
ANALYSIS_NICENESS = 10


def lower_thread_priority(steps: int = ANALYSIS_NICENESS) -> bool:
    """Lower the calling thread's scheduling priority by ``steps`` (threads it starts afterwards inherit it).
    Returns whether it was lowered; never raises."""
    if steps <= 0:
        return False
    import os
    import sys

    try:
        if sys.platform.startswith("linux"):
            tid = threading.get_native_id()  # the nice value is per thread on Linux
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))
        else:
            QThread.currentThread().setPriority(QThread.Priority.LowPriority)
    except (OSError, AttributeError, ValueError):
        return False
    return True


def _start_thread(worker: QObject, name: str) -> QThread:
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.start()
    return thread


def _stop_thread(thread: QThread, worker: QObject, timeout_ms: int) -> bool:
    if thread.isFinished():
        return True
    thread.quit()
    finished = thread.wait(timeout_ms)
    if finished:
        worker.deleteLater()
    return finished


class _RequestClient(QObject):
    """The bookkeeping both clients share: generation ids, the newest request per channel, cancel flags and
    delivery of only the answers still wanted (others are counted in :attr:`stale_dropped`)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._counter = itertools.count(1)
        self._tickets: dict[int, _Ticket] = {}
        self._latest: dict[str, int] = {}
        self._lock = threading.Lock()
        self.stale_dropped = 0

    def _new_ticket(self, channel: str, tag: Any, supersede: bool = True) -> _Ticket:
        """A request on ``channel``; with ``supersede`` the channel's previous request is cancelled."""
        with self._lock:
            ticket = _Ticket(next(self._counter), channel, tag)
            old = self._latest.get(channel)
            if supersede and old is not None and old in self._tickets:
                self._tickets[old].cancel.set()
            self._tickets[ticket.generation] = ticket
            self._latest[channel] = ticket.generation
        return ticket

    def _is_cancelled(self, generation: int) -> bool:
        """Called from the worker thread: whether a request is no longer wanted."""
        with self._lock:
            ticket = self._tickets.get(generation)
            return ticket is None or ticket.cancel.is_set()

    def _take(self, generation: int, newest_only: bool = True) -> _Ticket | None:
        """The ticket when its answer is still wanted; None (and counted as stale) otherwise."""
        with self._lock:
            ticket = self._tickets.pop(generation, None)
            wanted = ticket is not None and not ticket.cancel.is_set()
            if wanted and newest_only:
                wanted = self._latest.get(ticket.channel) == generation
        if ticket is not None and not wanted:
            self.stale_dropped += 1
            return None
        return ticket

    def _forget(self, generation: int) -> _Ticket | None:
        """Remove a request that ended without an answer (cancelled, skipped); returns its ticket."""
        with self._lock:
            return self._tickets.pop(generation, None)

    def _deliver(self, signal: Signal, generation: int, *values: object, newest_only: bool = True) -> None:
        ticket = self._take(generation, newest_only)
        if ticket is not None:
            signal.emit(ticket.tag, *values)


# --------------------------------------------------------------------------------------------------- loading
class LoadWorker(QObject):
    """Lives in the I/O thread: reads images (and prepares their display statistics) and study trees."""

    image_loaded = Signal(int, object)  # generation, LoadedImage
    studies_loaded = Signal(int, object)  # generation, study tree (cxrviewer.core.load_studies result)
    failed = Signal(int, str)  # generation, human message
    skipped = Signal(int)  # generation: cancelled before any work

    def __init__(self, is_cancelled: Callable[[int], bool]) -> None:
        super().__init__()
        self._is_cancelled = is_cancelled

    def _run(self, generation: int, work: Callable[[], object], done: Signal) -> None:
        """``done(generation, work())`` unless the request was cancelled; ``failed`` with the message if
        ``work`` raised (a LoadError carries a human message; anything else is reported too)."""
        if self._is_cancelled(generation):
            self.skipped.emit(generation)
            return
        try:
            value = work()
        except Exception as exc:
            self.failed.emit(generation, _message(exc))
            return
        done.emit(generation, value)

    @Slot(int, object)
    def load_image(self, generation: int, source: object) -> None:
        from cxrviewer.core import load_image

        self._run(generation, lambda: prepare_image(load_image(source)), self.image_loaded)

    @Slot(int, object)
    def load_studies(self, generation: int, path: object) -> None:
        from cxrviewer.core import load_studies

        self._run(generation, lambda: load_studies(path), self.studies_loaded)


class LoadClient(_RequestClient):
    """GUI-side handle of the I/O thread. Images: only the newest request of a channel is delivered; study
    trees: every requested path is delivered (opening two folders lists both)."""

    image_loaded = Signal(object, object)  # tag, LoadedImage
    studies_loaded = Signal(object, object)  # tag, study tree
    failed = Signal(object, str)  # tag, message

    _post_image = Signal(int, object)
    _post_studies = Signal(int, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._worker = LoadWorker(self._is_cancelled)
        self._post_image.connect(self._worker.load_image)
        self._post_studies.connect(self._worker.load_studies)
        # bound slots (never lambdas): a lambda would run in the worker thread, a slot of this object runs
        # in the GUI thread, in the order the worker emitted
        self._worker.image_loaded.connect(self._on_image)
        self._worker.studies_loaded.connect(self._on_studies)
        self._worker.failed.connect(self._on_failed)
        self._worker.skipped.connect(self._forget)
        self._thread = _start_thread(self._worker, "cxrviewer-io")

    def load_image(self, source: object, tag: Any = None, channel: str = "view") -> int:
        """Read ``source`` in the background; ``image_loaded(tag, LoadedImage)`` follows unless superseded."""
        ticket = self._new_ticket(channel, tag)
        self._post_image.emit(ticket.generation, source)
        return ticket.generation

    def load_studies(self, path: object, tag: Any = None) -> int:
        """Build the study tree of a file, folder, ZIP or DICOMDIR in the background."""
        ticket = self._new_ticket("studies", tag, supersede=False)
        self._post_studies.emit(ticket.generation, path)
        return ticket.generation

    @Slot(int, object)
    def _on_image(self, generation: int, loaded: object) -> None:
        self._deliver(self.image_loaded, generation, loaded)

    @Slot(int, object)
    def _on_studies(self, generation: int, tree: object) -> None:
        self._deliver(self.studies_loaded, generation, tree, newest_only=False)

    @Slot(int, str)
    def _on_failed(self, generation: int, message: str) -> None:
        with self._lock:
            ticket = self._tickets.get(generation)
        self._deliver(
            self.failed, generation, message, newest_only=ticket is None or ticket.channel != "studies"
        )

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop the I/O thread (waits for the current read to finish)."""
        with self._lock:
            self._tickets.clear()
        return _stop_thread(self._thread, self._worker, timeout_ms)


# -------------------------------------------------------------------------------------------------- analysis
class AnalysisWorker(QObject):
    """Lives in the analysis thread: builds the analyzer on first use, then analyses one image per request."""

    finished = Signal(int, object, object)  # generation, AnalysisResult, prepared display data (or None)
    failed = Signal(int, str)
    cancelled = Signal(int)
    unavailable = Signal(int, str)  # generation, why no model can be used
    started = Signal(int)
    ready = Signal(object)  # names of the optional tasks the analyzer offers (e.g. "add_to_library")
    task_done = Signal(int, object)  # generation, the task's return value
    task_progress = Signal(int, object)  # generation, the task's progress tuple

    def __init__(
        self,
        factory: AnalyzerFactory,
        is_cancelled: Callable[[int], bool],
        prepare: DisplayPreparer | None = None,
    ) -> None:
        super().__init__()
        self._factory = factory
        self._prepare = prepare
        self._is_cancelled = is_cancelled
        self._analyze: Analyzer | None = None
        self._takes_cancel = False
        self._unavailable: str | None = None
        self._lowered = False

    def _ensure_analyzer(self) -> Analyzer | None:
        if self._analyze is None and self._unavailable is None:
            if not self._lowered:  # before the factory starts inference threads: they inherit it
                self._lowered = lower_thread_priority()
            try:
                self._analyze = self._factory()
            except ModelUnavailable as exc:
                self._unavailable = str(exc)
                return None
            try:
                params = inspect.signature(self._analyze).parameters
                self._takes_cancel = "should_cancel" in params
            except (TypeError, ValueError):
                self._takes_cancel = False
            offered = getattr(self._analyze, "available_tasks", None)
            if offered is None:
                offered = [name for name in OPTIONAL_TASKS if callable(getattr(self._analyze, name, None))]
            self.ready.emit(list(offered))
        return self._analyze

    @Slot()
    def warm_up(self) -> None:
        """Build the analyzer now (imports, model load, warm-up) so the first analysis does not wait."""
        if self._ensure_analyzer() is None:
            self.unavailable.emit(0, self._unavailable or "no model")

    @Slot(int, str, object)
    def run_task(self, generation: int, name: str, args: object) -> None:
        """Run an optional task of the analyzer (see :data:`OPTIONAL_TASKS`) with ``args`` (a tuple)."""
        if self._is_cancelled(generation):
            self.cancelled.emit(generation)
            return
        try:
            analyzer = self._ensure_analyzer()
            task = getattr(analyzer, name, None) if analyzer is not None else None
            if task is None:
                raise ModelUnavailable(self._unavailable or f"the analyzer cannot {name.replace('_', ' ')}")
            args = tuple(a.image if isinstance(a, LoadedImage) else a for a in args)
            kwargs = {}
            params = _parameters(task)
            if "progress" in params:
                kwargs["progress"] = lambda *state: self.task_progress.emit(generation, state)
            if "should_cancel" in params:
                kwargs["should_cancel"] = lambda: self._is_cancelled(generation)
            value = task(*args, **kwargs)
        except AnalysisCancelled:
            self.cancelled.emit(generation)
            return
        except Exception as exc:
            self.failed.emit(generation, _message(exc))
            return
        self.task_done.emit(generation, value)

    @Slot(int, object, bool)
    def analyze(self, generation: int, payload: object, display: bool = False) -> None:
        if self._is_cancelled(generation):
            self.cancelled.emit(generation)
            return
        self.started.emit(generation)
        try:
            analyze = self._ensure_analyzer()
            if analyze is None:
                self.unavailable.emit(generation, self._unavailable or "no model")
                return
            image = payload.image if isinstance(payload, LoadedImage) else payload
            if not hasattr(image, "pixels"):
                from cxrviewer.core import load_image

                image = load_image(image)
            if self._takes_cancel:
                result = analyze(image, should_cancel=lambda: self._is_cancelled(generation))
            else:
                result = analyze(image)
        except AnalysisCancelled:
            self.cancelled.emit(generation)
            return
        except Exception as exc:
            self.failed.emit(generation, _message(exc))
            return
        prepared = None
        if display and self._prepare is not None and not self._is_cancelled(generation):
            try:
                prepared = self._prepare(image, result)
            except Exception:  # noqa: BLE001 - the window prepares what is missing itself
                prepared = None
        self.finished.emit(generation, result, prepared)  # dropped by the client if stale meanwhile


class AnalysisClient(_RequestClient):
    """GUI-side handle of the single analysis thread.

    Channels: ``"view"`` (the image on screen; a new request cancels the previous one) and ``"batch"`` (the
    worklist, one item at a time). Only the newest request of a channel can deliver a result; everything else
    is counted in :attr:`stale_dropped` and discarded. With ``prepare``, results of the ``"view"`` channel
    come with display data made by ``prepare(image, result)`` in the analysis thread (third argument of
    :attr:`result_ready`; None for other channels or when preparing failed).
    """

    result_ready = Signal(object, object, object)  # tag, AnalysisResult, prepared display data or None
    failed = Signal(object, str)  # tag, message
    cancelled = Signal(object)  # tag
    unavailable = Signal(object, str)  # tag, message (no model)
    busy_changed = Signal(bool)
    ready = Signal(object)  # the optional tasks the loaded analyzer offers
    task_done = Signal(object, object)  # tag, return value
    task_progress = Signal(object, object)  # tag, progress tuple (only while the task is the newest)

    _post = Signal(int, object, bool)
    _post_task = Signal(int, str, object)
    _post_warm_up = Signal()

    def __init__(
        self,
        factory: AnalyzerFactory,
        parent: QObject | None = None,
        prepare: DisplayPreparer | None = None,
    ) -> None:
        super().__init__(parent)
        self._in_flight = 0
        self._worker = AnalysisWorker(factory, self._is_cancelled, prepare)
        self._post.connect(self._worker.analyze)
        self._post_task.connect(self._worker.run_task)
        self._post_warm_up.connect(self._worker.warm_up)
        self._worker.ready.connect(self.ready)
        self._worker.task_done.connect(self._on_task_done)  # bound slots: run in the GUI thread
        self._worker.task_progress.connect(self._on_task_progress)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._worker.cancelled.connect(self._on_cancelled)
        self._worker.unavailable.connect(self._on_unavailable)
        self._thread = _start_thread(self._worker, "cxrviewer-analysis")

    @property
    def busy(self) -> bool:
        """Whether requests are queued or running."""
        return self._in_flight > 0

    def submit(self, payload: object, tag: Any = None, channel: str = "view") -> int:
        """Analyse ``payload`` (a :class:`LoadedImage`, a ``CxrImage`` or something ``load_image`` reads).

        Cancels the previous request of the same channel. Returns the request's generation id.
        """
        ticket = self._new_ticket(channel, tag)
        self._set_in_flight(+1)
        self._post.emit(ticket.generation, payload, channel == "view")
        return ticket.generation

    def run_task(self, name: str, args: tuple, tag: Any = None, channel: str = "task") -> int:
        """Run the analyzer's optional task ``name`` in the analysis thread; the answer comes as
        ``task_done(tag, value)``, ``failed(tag, message)`` or ``cancelled(tag)``. A new task on the same
        channel cancels the previous one; the ``"task"`` channel is left alone by :meth:`cancel` ``(None)``."""
        ticket = self._new_ticket(channel, tag, supersede=channel != "task")
        self._set_in_flight(+1)
        self._post_task.emit(ticket.generation, name, args)
        return ticket.generation

    def warm_up(self) -> None:
        """Load the analyzer in the background before the first request (``ready`` or ``unavailable``
        follows)."""
        self._post_warm_up.emit()

    def cancel(self, channel: str | None = None) -> None:
        """Cancel the requests of ``channel`` (every analysis when None; a library task is never cancelled
        by that, so a case being stored is stored); no result will be delivered for them."""
        with self._lock:
            for ticket in self._tickets.values():
                if ticket.channel == channel or (channel is None and ticket.channel != "task"):
                    ticket.cancel.set()

    def _take(self, generation: int, newest_only: bool = True) -> _Ticket | None:
        self._set_in_flight(-1)
        return super()._take(generation, newest_only)

    def _set_in_flight(self, delta: int) -> None:
        before = self._in_flight > 0
        self._in_flight = max(0, self._in_flight + delta)
        if (self._in_flight > 0) != before:
            self.busy_changed.emit(self._in_flight > 0)

    @Slot(int, object, object)
    def _on_finished(self, generation: int, result: object, prepared: object) -> None:
        self._deliver(self.result_ready, generation, result, prepared)

    @Slot(int, object)
    def _on_task_done(self, generation: int, value: object) -> None:
        self._deliver(self.task_done, generation, value)

    @Slot(int, str)
    def _on_failed(self, generation: int, message: str) -> None:
        self._deliver(self.failed, generation, message)

    @Slot(int, object)
    def _on_task_progress(self, generation: int, state: object) -> None:
        with self._lock:
            ticket = self._tickets.get(generation)
            wanted = ticket is not None and not ticket.cancel.is_set()
        if wanted:
            self.task_progress.emit(ticket.tag, state)

    @Slot(int)
    def _on_cancelled(self, generation: int) -> None:
        self._set_in_flight(-1)
        ticket = self._forget(generation)
        if ticket is not None:
            self.cancelled.emit(ticket.tag)

    @Slot(int, str)
    def _on_unavailable(self, generation: int, message: str) -> None:
        self._set_in_flight(-1)
        ticket = self._forget(generation)
        self.unavailable.emit(ticket.tag if ticket else None, message)

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel everything and stop the analysis thread (waits for a running inference to return)."""
        self.cancel()
        return _stop_thread(self._thread, self._worker, timeout_ms)


def _parameters(fn: Callable) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__
