"""Occlusion sensitivity (paper 000, after Zeiler & Fergus): slide an N × N patch with stride S over the
image and record how much the target-class score drops at each position.

Paper 000 does not print N and S; our defaults give its 13 × 13 = 169-position map at any input size:
``window = size // 7`` and ``stride = window // 2`` (32 and 16 px at 224 px). Each pixel of the map is the
mean drop over the windows that cover it.

:func:`occlusion_map` is the fast path: many occluded copies per forward (``batch_size``), under
``torch.inference_mode`` with channels-last tensors, coarse-to-fine (the stride-2S subset of positions runs
first and already tiles the image, so a first map is shown early; the fine pass reuses those results and
runs only the remaining positions), cancellable, with ``progress(done, total, partial_map)`` callbacks. It is
exact: it returns the numbers of :func:`occlusion_map_naive` (one eager forward per position) up to float
summation order. ``scale < 1`` is an approximation, stated as such: the occluded copies are run on a
downscaled image (window and stride scaled alike); see the README section "Heatmaps" for its measured error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cxrviewer.ml.registry import Classifier

FILLS = ("mean", "zero", "blur")
SCORES = ("probability", "logit")

ProgressFn = Callable[[int, int, np.ndarray], None]
CancelCheck = Callable[[], bool] | threading.Event


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


def occlusion_offsets(size: int, window: int, stride: int) -> list[int]:
    """Top/left offsets of the patch along one axis; the last window always touches the far edge."""
    if window >= size:
        return [0]
    offsets = list(range(0, size - window + 1, stride))
    if offsets[-1] != size - window:
        offsets.append(size - window)
    return offsets


def _ordered_positions(ys: list[int], xs: list[int], coarse_first: bool) -> tuple[list[tuple[int, int]], int]:
    """All (y, x) positions, the coarse subset (even indices plus the last one per axis) first."""

    def coarse_axis(n: int) -> set[int]:
        return set(range(0, n, 2)) | {n - 1}

    every = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    if not coarse_first:
        return [(ys[i], xs[j]) for i, j in every], 0
    cy, cx = coarse_axis(len(ys)), coarse_axis(len(xs))
    coarse = [(i, j) for i, j in every if i in cy and j in cx]
    fine = [(i, j) for i, j in every if not (i in cy and j in cx)]
    return [(ys[i], xs[j]) for i, j in coarse + fine], len(coarse)


def _as_single(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x).detach().float()
    if t.dim() == 2:
        t = t[None, None]
    elif t.dim() == 3:
        t = t[None]
    if t.dim() != 4 or t.shape[0] != 1:
        raise ValueError(f"occlusion explains one image: expected (1, C, H, W), got {tuple(t.shape)}")
    return t.contiguous()


def _fill_image(x: torch.Tensor, fill: str, window: int) -> torch.Tensor:
    """What the patch is replaced with, as a full-size image (only the patch region is read)."""
    if fill == "zero":
        return torch.zeros_like(x)
    if fill == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()
    sigma = max(window / 4.0, 0.5)
    planes = [cv2.GaussianBlur(p, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) for p in x[0].numpy()]
    return torch.from_numpy(np.stack(planes))[None]


def _scores(logits: torch.Tensor, class_index: int, score: str) -> torch.Tensor:
    if score == "logit":
        return logits[:, class_index]
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)[:, class_index]


class _DropAccumulator:
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


def _cancelled(should_cancel: CancelCheck | None) -> bool:
    if should_cancel is None:
        return False
    if isinstance(should_cancel, threading.Event):
        return should_cancel.is_set()
    return bool(should_cancel())


def _check_class(model: Classifier, class_index: int) -> None:
    if not 0 <= class_index < model.num_classes:
        raise ValueError(f"class index {class_index} out of range for {model.num_classes} classes")


def occlusion_map(
    model: Classifier,
    x: torch.Tensor | np.ndarray,
    class_index: int,
    settings: OcclusionSettings | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelCheck | None = None,
) -> np.ndarray:
    """Occlusion sensitivity map (fast path): the mean drop of the class score per input pixel.

    Args:
        model: a registry :class:`Classifier` (put in eval mode).
        x: one preprocessed input, ``(1, C, H, W)``, ``(C, H, W)`` or ``(H, W)``.
        class_index: the class whose score drop is measured.
        settings: see :class:`OcclusionSettings`.
        progress: called after each batch as ``progress(done, total, partial_map)``; ``partial_map`` is the
            (H, W) map of the positions done so far (complete but coarse after the coarse pass).
        should_cancel: a ``threading.Event`` or a callable polled before each batch; when it fires,
            :class:`OcclusionCancelled` is raised carrying the partial map.

    Returns:
        ``(H, W)`` float32 raw map (score drops; positive = the patch supported the class).
    """
    _check_class(model, class_index)
    settings = settings or OcclusionSettings()
    x = _as_single(x)
    height, width = x.shape[-2:]
    window, stride = settings.resolved(min(height, width))
    if settings.scale < 1.0:
        small = (max(8, round(height * settings.scale)), max(8, round(width * settings.scale)))
        x = F.interpolate(x, size=small, mode="bilinear", antialias=True, align_corners=False)
        window = max(1, round(window * settings.scale))
        stride = max(1, round(stride * settings.scale))
    h, w = x.shape[-2:]
    ys, xs = occlusion_offsets(h, window, stride), occlusion_offsets(w, window, stride)
    positions, n_coarse = _ordered_positions(ys, xs, settings.coarse_first)
    fill = _fill_image(x, settings.fill, window)
    acc = _DropAccumulator(h, w, window, (height, width))
    model.eval()
    x_cl = x.contiguous(memory_format=torch.channels_last)
    total = len(positions)
    with torch.inference_mode():
        base = float(_scores(model(x_cl), class_index, settings.score)[0])
        # batches never straddle the coarse/fine boundary, so the coarse map is reported on its own
        bounds = [0, n_coarse, total] if 0 < n_coarse < total else [0, total]
        done = 0
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            for start in range(lo, hi, settings.batch_size):
                if _cancelled(should_cancel):
                    raise OcclusionCancelled(done, total, acc.map())
                chunk = positions[start : min(hi, start + settings.batch_size)]
                # clone, not .contiguous(): for one 1-channel copy that would alias x and occlude it for good
                batch = x.expand(len(chunk), -1, -1, -1).clone(memory_format=torch.channels_last)
                for i, (py, px) in enumerate(chunk):
                    batch[i, :, py : py + window, px : px + window] = fill[
                        0, :, py : py + window, px : px + window
                    ]
                drops = base - _scores(model(batch), class_index, settings.score)
                for (py, px), d in zip(chunk, drops.tolist(), strict=True):
                    acc.add(py, px, d)
                done += len(chunk)
                if progress is not None:
                    progress(done, total, acc.map())
    return acc.map()


def occlusion_map_naive(
    model: Classifier,
    x: torch.Tensor | np.ndarray,
    class_index: int,
    settings: OcclusionSettings | None = None,
) -> np.ndarray:
    """Reference implementation: one eager forward per occluded copy, in raster order (the benchmark's
    baseline and the tests' ground truth for :func:`occlusion_map`; ``scale`` is ignored)."""
    _check_class(model, class_index)
    settings = settings or OcclusionSettings()
    x = _as_single(x)
    h, w = x.shape[-2:]
    window, stride = settings.resolved(min(h, w))
    fill = _fill_image(x, settings.fill, window)
    acc = _DropAccumulator(h, w, window, (h, w))
    model.eval()
    with torch.no_grad():
        base = float(_scores(model(x), class_index, settings.score)[0])
        for py in occlusion_offsets(h, window, stride):
            for px in occlusion_offsets(w, window, stride):
                occluded = x.clone()
                occluded[:, :, py : py + window, px : px + window] = fill[
                    :, :, py : py + window, px : px + window
                ]
                acc.add(py, px, base - float(_scores(model(occluded), class_index, settings.score)[0]))
    return acc.map()
