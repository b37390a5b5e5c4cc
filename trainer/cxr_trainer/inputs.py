"""From cached uint8 pixels to model inputs: scaling, augmentation hook, channel assembly, inference.

``PreprocessSpec.channels`` says what each input channel holds. ``"cxr"`` is the preprocessed image,
``"zeros"`` a constant plane; ``"lung"`` (Goldstein et al.'s lung-probability channel) is the U-Net's
probability on the model grid, cached once per image by :mod:`cxr_trainer.lung_cache` and carried as a second
plane of the cached array (``(N, 2, S, S)``: image, lung), so it moves with the image under augmentation.
A provider registered with :func:`set_lung_provider` is the fallback for single-plane input.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cxrviewer.core.preprocess import PreprocessSpec

LungProvider = Callable[[torch.Tensor], torch.Tensor]
_lung_provider: LungProvider | None = None


def set_lung_provider(fn: LungProvider | None) -> None:
    """Register ``fn(x01: (B,1,S,S) in [0,1]) -> (B,1,S,S) lung probability`` for the ``lung`` channel."""
    global _lung_provider
    _lung_provider = fn


def to_unit(batch_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, S, S)`` → float ``(B, 1, S, S)`` in [0, 1]; ``(B, P, S, S)`` planes keep their planes."""
    t = (
        batch_uint8
        if isinstance(batch_uint8, torch.Tensor)
        else torch.from_numpy(np.array(batch_uint8, copy=True))
    )
    t = t.to(torch.float32)
    return (t.unsqueeze(1) if t.dim() == 3 else t).mul_(1.0 / 255.0)


def assemble_channels(x01: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """Float ``(B, 1, S, S)`` image, or ``(B, 2, S, S)`` image + lung plane, in [0, 1] → normalised model
    input with ``spec.in_chans`` channels."""
    cxr = (x01[:, :1] - spec.mean) / spec.std
    if spec.channels == ("cxr",):
        return cxr
    planes = []
    for kind in spec.channels:
        if kind == "cxr":
            planes.append(cxr)
        elif kind == "zeros":
            planes.append(torch.zeros_like(cxr))
        elif x01.shape[1] > 1:  # lung plane cached beside the image
            planes.append((x01[:, 1:2] - spec.mean) / spec.std)
        else:
            if _lung_provider is None:
                raise ValueError(
                    "this preprocessing spec asks for a lung-probability channel, but the input has no lung "
                    "plane (build it with cxr_trainer.lung_cache.input_planes)"
                )
            planes.append((_lung_provider(x01) - spec.mean) / spec.std)
    return torch.cat(planes, dim=1)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    pixels: np.ndarray,
    indices: list[int] | np.ndarray,
    spec: PreprocessSpec,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    channels_last: bool = False,
    embeddings: bool = False,
    show_progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits (and pooled embeddings) for ``pixels[indices]``; the model is put in eval mode."""
    from cxr_trainer.progress import progress

    model.eval()
    idx = np.asarray(indices, dtype=np.int64)
    logits, embs = [], []
    mf = torch.channels_last if channels_last else torch.contiguous_format
    starts = range(0, len(idx), batch_size)
    for s in progress(starts, desc="predict", enabled=show_progress, unit="batch"):
        x = assemble_channels(to_unit(pixels[np.sort(idx[s : s + batch_size])]), spec)
        order = np.argsort(np.argsort(idx[s : s + batch_size]))
        x = x[torch.as_tensor(order)].to(device).contiguous(memory_format=mf)
        fmap = model.forward_features(x)
        logits.append(model.forward_head(fmap).float().cpu().numpy())
        if embeddings:
            embs.append(torch.flatten(model.pool(fmap), 1).float().cpu().numpy())
    k = getattr(model, "num_classes", 0)
    lg = np.concatenate(logits) if logits else np.zeros((0, k), np.float32)
    return lg, (np.concatenate(embs) if embeddings and embs else None)
