"""Occlusion sensitivity without torch: the settings, the positions, the fills, the scores and one batched,
coarse-to-fine, cancellable loop over any ``run_logits(batch) -> logits`` function (numpy + OpenCV only).

:func:`occlusion_map_batched` is what runs a model served by ONNX Runtime (the predictor's own session,
see :mod:`cxrviewer.ml.explain.predictor_occlusion`); it builds the same occluded copies, in the same order
and batches, as the torch fast path :func:`cxrviewer.ml.explain.occlusion.occlusion_map` and returns its
numbers up to float32 rounding (tested on the tiny test model and the shipped classifier). The torch module
re-exports the names defined here, so both paths share :class:`OcclusionSettings` and
:class:`OcclusionCancelled`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

FILLS = ("mean", "zero", "blur")
SCORES = ("probability", "logit")

ProgressFn = Callable[[int, int, np.ndarray], None]
CancelCheck = Callable[[], bool] | threading.Event
LogitsFn = Callable[[np.ndarray], np.ndarray]


class OcclusionCancelled(RuntimeError):
    """Raised when ``should_cancel`` fires; ``partial_map`` holds what was computed so far."""

    def __init__(self, done: int, total: int, partial_map: np.ndarray):
        super().__init__(f"occlusion map cancelled after {done} of {total} positions")
        self.done = done
        self.total = total
        self.partial_map = partial_map


@dataclass(frozen=True)
class OcclusionSettings:
    """Occlusion parameters (all sizes in model-input pixels).

    Attributes:
        window: side N of the square patch; ``None``: ``size // 7`` (32 px at 224 px, paper-style 13 × 13).
        stride: step S between positions; ``None``: ``window // 2``.
        fill: what replaces the patch: ``"mean"`` (the image's own mean per channel), ``"zero"`` (0 in the
            normalised model input, i.e. the preprocessing mean gray) or ``"blur"`` (a Gaussian-blurred copy
            of the image, sigma = window / 4).
        score: ``"probability"`` (softmax, or sigmoid for a one-logit head; the paper's COVID score) or
            ``"logit"``.
        batch_size: occluded copies per forward.
        coarse_first: run the stride-2S positions first so a complete coarse map appears early.
        scale: 1.0 is exact; below 1 the occluded copies run on a downscaled image (an approximation).
    """

    window: int | None = None
    stride: int | None = None
    fill: str = "mean"
    score: str = "probability"
    batch_size: int = 32
    coarse_first: bool = True
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.fill not in FILLS:
            raise ValueError(f"unknown occlusion fill {self.fill!r}; use one of {FILLS}")
        if self.score not in SCORES:
            raise ValueError(f"unknown occlusion score {self.score!r}; use one of {SCORES}")
        if self.window is not None and self.window < 1 or self.stride is not None and self.stride < 1:
            raise ValueError("occlusion window and stride must be positive")
        if self.batch_size < 1:
            raise ValueError("occlusion batch size must be at least 1")
        if not 0.0 < self.scale <= 1.0:
            raise ValueError(f"occlusion scale must be in (0, 1], got {self.scale}")

    def resolved(self, size: int) -> tuple[int, int]:
        """``(window, stride)`` for a ``size``-pixel input."""
        window = self.window if self.window is not None else max(1, size // 7)
        window = min(window, size)
        stride = self.stride if self.stride is not None else max(1, window // 2)
        return window, stride

    def working_grid(self, height: int, width: int) -> tuple[tuple[int, int] | None, int, int]:
        """``(reduced (h, w) or None, window, stride)`` for a ``height`` × ``width`` input: with ``scale`` < 1
        the occlusion runs on an image reduced to ``reduced`` with window and stride scaled alike."""
        window, stride = self.resolved(min(height, width))
        if self.scale >= 1.0:
            return None, window, stride
        small = (max(8, round(height * self.scale)), max(8, round(width * self.scale)))
        return small, max(1, round(window * self.scale)), max(1, round(stride * self.scale))


def occlusion_offsets(size: int, window: int, stride: int) -> list[int]:
    """Top/left offsets of the patch along one axis; the last window always touches the far edge."""
    if window >= size:
        return [0]
    offsets = list(range(0, size - window + 1, stride))
    if offsets[-1] != size - window:
        offsets.append(size - window)
    return offsets


def ordered_positions(ys: list[int], xs: list[int], coarse_first: bool) -> tuple[list[tuple[int, int]], int]:
    """All (y, x) positions, the coarse subset (even indices plus the last one per axis) first, and the
    number of coarse positions (0 when ``coarse_first`` is off)."""

    def coarse_axis(n: int) -> set[int]:
        return set(range(0, n, 2)) | {n - 1}

    every = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    if not coarse_first:
        return [(ys[i], xs[j]) for i, j in every], 0
    cy, cx = coarse_axis(len(ys)), coarse_axis(len(xs))
    coarse = [(i, j) for i, j in every if i in cy and j in cx]
    fine = [(i, j) for i, j in every if not (i in cy and j in cx)]
    return [(ys[i], xs[j]) for i, j in coarse + fine], len(coarse)


def blur_fill(planes: np.ndarray, window: int) -> np.ndarray:
    """The ``"blur"`` fill of ``(C, H, W)`` float32 planes: Gaussian, sigma = window / 4, reflected border."""
    sigma = max(window / 4.0, 0.5)
    return np.stack([cv2.GaussianBlur(p, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) for p in planes])


def fill_image(x: np.ndarray, fill: str, window: int) -> np.ndarray:
    """What the patch is replaced with, as a full-size ``(1, C, H, W)`` image (only the patch is read)."""
    if fill == "zero":
        return np.zeros_like(x)
    if fill == "mean":
        return np.broadcast_to(x.mean(axis=(2, 3), keepdims=True, dtype=np.float32), x.shape).copy()
    return blur_fill(x[0], window)[None]


def class_scores(logits: np.ndarray, class_index: int, score: str) -> np.ndarray:
    """``(B,)`` scores of ``class_index``: the logit, or its softmax (sigmoid for a one-logit head)."""
    z = np.asarray(logits, dtype=np.float64)
    if score == "logit":
        return z[:, class_index]
    if z.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-z[:, 0]))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[:, class_index] / e.sum(axis=1)


class DropAccumulator:
    """Mean score drop per pixel over the windows covering it."""

    def __init__(self, height: int, width: int, window: int, out_shape: tuple[int, int]):
        self.total = np.zeros((height, width), np.float64)
        self.count = np.zeros((height, width), np.float64)
        self.window = window
        self.out_shape = out_shape

    def add(self, y: int, x: int, drop: float) -> None:
        self.total[y : y + self.window, x : x + self.window] += drop
        self.count[y : y + self.window, x : x + self.window] += 1.0

    def map(self) -> np.ndarray:
        m = np.divide(self.total, self.count, out=np.zeros_like(self.total), where=self.count > 0)
        m = m.astype(np.float32)
        if m.shape != self.out_shape:
            m = cv2.resize(m, (self.out_shape[1], self.out_shape[0]), interpolation=cv2.INTER_LINEAR)
        return m


def is_cancelled(should_cancel: CancelCheck | None) -> bool:
    """Whether a ``threading.Event`` is set or a cancel callable returns true."""
    if should_cancel is None:
        return False
    if isinstance(should_cancel, threading.Event):
        return should_cancel.is_set()
    return bool(should_cancel())


def as_single_input(x: np.ndarray) -> np.ndarray:
    """One image as a contiguous ``(1, C, H, W)`` float32 array (from ``(C, H, W)`` or ``(H, W)``)."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[0] != 1:
        raise ValueError(f"occlusion explains one image: expected (1, C, H, W), got {a.shape}")
    return np.ascontiguousarray(a)


def occlusion_map_batched(
    run_logits: LogitsFn,
    x: np.ndarray,
    class_index: int,
    num_classes: int,
    settings: OcclusionSettings | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelCheck | None = None,
) -> np.ndarray:
    """Occlusion sensitivity map through any batched network function (no torch).

    The same positions, fill, batches and coarse-to-fine order as the torch fast path
    :func:`cxrviewer.ml.explain.occlusion.occlusion_map`, so the two return the same map up to float32
    rounding. ``scale < 1`` downscales with OpenCV's area filter (the torch path uses antialiased bilinear):
    both are approximations and their maps differ slightly.

    Args:
        run_logits: ``(B, C, H, W) float32 -> (B, K) logits`` (e.g. an ONNX Runtime session's ``logits``).
        x: one preprocessed input, ``(1, C, H, W)``, ``(C, H, W)`` or ``(H, W)``.
        class_index: the class whose score drop is measured.
        num_classes: K, to check ``class_index``.
        settings: see :class:`OcclusionSettings`.
        progress: called after each batch as ``progress(done, total, partial_map)``.
        should_cancel: a ``threading.Event`` or a callable polled before each batch; when it fires,
            :class:`OcclusionCancelled` is raised carrying the partial map.

    Returns:
        ``(H, W)`` float32 raw map (score drops; positive = the patch supported the class).
    """
    if not 0 <= class_index < num_classes:
        raise ValueError(f"class index {class_index} out of range for {num_classes} classes")
    settings = settings or OcclusionSettings()
    x = as_single_input(x)
    height, width = x.shape[-2:]
    small, window, stride = settings.working_grid(height, width)
    if small is not None:
        x = np.stack([cv2.resize(p, (small[1], small[0]), interpolation=cv2.INTER_AREA) for p in x[0]])[None]
    return occlude_positions(
        run_logits, x, class_index, window, stride, (height, width), settings, progress, should_cancel
    )


def occlude_positions(
    run_logits: LogitsFn,
    x: np.ndarray,
    class_index: int,
    window: int,
    stride: int,
    out_shape: tuple[int, int],
    settings: OcclusionSettings,
    progress: ProgressFn | None = None,
    should_cancel: CancelCheck | None = None,
) -> np.ndarray:
    """The loop shared by the torch and ONNX Runtime paths: occlude ``x`` ``(1, C, h, w)`` (already
    downscaled when ``settings.scale < 1``) at every position, ``settings.batch_size`` copies per
    ``run_logits`` call, coarse positions first, and return the mean-drop map resized to ``out_shape``."""
    h, w = x.shape[-2:]
    ys, xs = occlusion_offsets(h, window, stride), occlusion_offsets(w, window, stride)
    positions, n_coarse = ordered_positions(ys, xs, settings.coarse_first)
    fill = fill_image(x, settings.fill, window)
    acc = DropAccumulator(h, w, window, out_shape)
    total = len(positions)
    base = float(class_scores(run_logits(x), class_index, settings.score)[0])
    # batches never straddle the coarse/fine boundary, so the coarse map is reported on its own
    bounds = [0, n_coarse, total] if 0 < n_coarse < total else [0, total]
    done = 0
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        for start in range(lo, hi, settings.batch_size):
            if is_cancelled(should_cancel):
                raise OcclusionCancelled(done, total, acc.map())
            chunk = positions[start : min(hi, start + settings.batch_size)]
            batch = np.repeat(x, len(chunk), axis=0)
            for i, (py, px) in enumerate(chunk):
                batch[i, :, py : py + window, px : px + window] = fill[
                    0, :, py : py + window, px : px + window
                ]
            drops = base - class_scores(run_logits(batch), class_index, settings.score)
            for (py, px), d in zip(chunk, drops.tolist(), strict=True):
                acc.add(py, px, d)
            done += len(chunk)
            if progress is not None:
                progress(done, total, acc.map())
    return acc.map()
