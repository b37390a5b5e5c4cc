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

The settings, positions, fills and the accumulator live in :mod:`.occlusion_core` (no torch), which also runs
the same loop on ONNX Runtime (:func:`~cxrviewer.ml.explain.occlusion_core.occlusion_map_batched`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cxrviewer.ml.explain.occlusion_core import (
    FILLS,
    SCORES,
    CancelCheck,
    OcclusionCancelled,
    OcclusionSettings,
    ProgressFn,
    occlude_positions,
    occlusion_offsets,
)
from cxrviewer.ml.explain.occlusion_core import DropAccumulator as _DropAccumulator
from cxrviewer.ml.explain.occlusion_core import blur_fill as _blur_fill
from cxrviewer.ml.registry import Classifier

__all__ = [
    "FILLS",
    "SCORES",
    "CancelCheck",
    "OcclusionCancelled",
    "OcclusionSettings",
    "ProgressFn",
    "occlusion_map",
    "occlusion_map_naive",
    "occlusion_offsets",
]


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
    return torch.from_numpy(_blur_fill(x[0].numpy(), window))[None]


def _scores(logits: torch.Tensor, class_index: int, score: str) -> torch.Tensor:
    if score == "logit":
        return logits[:, class_index]
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)[:, class_index]


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
    small, window, stride = settings.working_grid(height, width)
    if small is not None:
        x = F.interpolate(x, size=small, mode="bilinear", antialias=True, align_corners=False)
    model.eval()

    def run_logits(batch: np.ndarray) -> np.ndarray:
        # a fresh array per batch (never a view of x), as channels-last for the convolutions
        return model(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)).float().numpy()

    with torch.inference_mode():
        return occlude_positions(
            run_logits,
            x.numpy(),
            class_index,
            window,
            stride,
            (height, width),
            settings,
            progress,
            should_cancel,
        )


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
