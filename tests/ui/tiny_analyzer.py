"""A scripted analyzer for UI tests: real :class:`AnalysisResult` objects whose timing the test controls
(block until released, honour or ignore cancellation). Tests of the real model path use the analysis
pipeline with the tiny test model instead (see test_analysis_threading.py)."""

from __future__ import annotations

import threading
import time

import numpy as np

from cxrviewer.services.result import AnalysisResult, Neighbour, OperatingPoint


def lung_box_mask(shape: tuple[int, int]) -> np.ndarray:
    """Two rectangles where the lungs of a frontal CXR usually are (a stand-in mask for overlay tests)."""
    h, w = shape
    mask = np.zeros((h, w), bool)
    mask[int(0.2 * h) : int(0.8 * h), int(0.15 * w) : int(0.45 * w)] = True
    mask[int(0.2 * h) : int(0.8 * h), int(0.55 * w) : int(0.85 * w)] = True
    return mask


class ScriptedAnalyzer:
    """An analyzer whose answers the test controls: it can block per image until released, and counts
    calls. Results are real :class:`AnalysisResult` objects with a heatmap, mask and neighbours."""

    def __init__(
        self,
        block: bool = False,
        delay_s: float = 0.0,
        thumbnail_png: bytes | None = None,
        honour_cancel: bool = True,
    ):
        self.block = block
        self.honour_cancel = honour_cancel
        self.delay_s = delay_s
        self.thumbnail_png = thumbnail_png
        self.calls: list[str] = []
        self.started = threading.Event()
        self._release: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def release(self, name: str | None = None) -> None:
        with self._lock:
            for key, ev in self._release.items():
                if name is None or key == name:
                    ev.set()
            if name is not None and name not in self._release:
                self._release[name] = threading.Event()
                self._release[name].set()

    def factory(self):
        return self

    def __call__(self, image, should_cancel=None) -> AnalysisResult:
        name = image.source.name
        self.calls.append(name)
        self.started.set()
        if self.block:
            with self._lock:
                ev = self._release.setdefault(name, threading.Event())
            while not ev.wait(0.01):
                if self.honour_cancel and should_cancel is not None and should_cancel():
                    from cxrviewer.ui.workers import AnalysisCancelled

                    raise AnalysisCancelled()
        if self.delay_s:
            time.sleep(self.delay_s)
        h, w = image.pixels.shape
        yy, xx = np.mgrid[0:h, 0:w]
        heat = np.exp(-(((xx - 0.3 * w) / (0.12 * w)) ** 2 + ((yy - 0.5 * h) / (0.12 * h)) ** 2))
        # a deterministic score per image so that sorting is testable
        score = (sum(name.encode()) % 97) / 100.0
        probs = {"covid": score, "pneumonia": (1 - score) / 2, "normal": (1 - score) / 2}
        neighbours = [
            Neighbour(
                case_id=str(i),
                library="reference",
                label=lab,
                distance=0.1 * (i + 1),
                thumbnail_png=self.thumbnail_png,
            )
            for i, lab in enumerate(["covid", "covid", "normal", "pneumonia"])
        ]
        return AnalysisResult(
            path=name,
            status="ok",
            probabilities=probs,
            latency_ms=12.0,
            model_id="scripted-test 0.0.1",
            backend="cpu-test",
            operating_point=OperatingPoint("balanced", "covid", 0.5, 0.9, 0.8, positive=score >= 0.5),
            heatmap=heat.astype(np.float32),
            heatmap_method="occlusion",
            lung_mask=lung_box_mask((h, w)),
            neighbours=neighbours,
            neighbour_vote={"covid": 0.5, "normal": 0.25, "pneumonia": 0.25},
            warnings=["test warning"],
        )
