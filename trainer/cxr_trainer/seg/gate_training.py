"""Input-gate training and measurement: frontal vs lateral vs not-a-CXR, plus a Mahalanobis OOD score.

Radiographs are split by patient and near-duplicate group (:func:`cxr_trainer.splits.make_split`, stratified
by view). Non-CXR images are split so that one picture never sits on both sides, and whole families are held
out of training (scikit-image and matplotlib photographs, pydicom-data/deid-data DICOMs whose pictures are not
among pydicom's own test files) to measure how the gate treats kinds of image it never saw.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cxr_trainer.datasets import Record
from cxr_trainer.progress import progress
from cxr_trainer.seg.negatives import Item
from cxrviewer.core.preprocess import PreprocessSpec, preprocess

FRONTAL_VIEWS = ("PA", "AP", "AP Supine", "frontal")
LATERAL_VIEWS = ("L",)
CLASS_INDEX = {"frontal": 0, "lateral": 1, "other": 2}


def view_class(r: Record) -> str | None:
    """``frontal`` / ``lateral`` from the ``view`` column, None for unknown views."""
    if r.view in FRONTAL_VIEWS:
        return "frontal"
    if r.view in LATERAL_VIEWS:
        return "lateral"
    return None


def preprocess_items(items: list[Item], spec: PreprocessSpec) -> np.ndarray:
    """(N, S, S) uint8 preprocessed images of arbitrary items (gray or RGB)."""
    out = np.empty((len(items), spec.size, spec.size), np.uint8)
    for i, it in enumerate(items):
        x, _ = preprocess(np.ascontiguousarray(it.image), spec)
        out[i] = np.clip(np.rint((x * spec.std + spec.mean) * 255), 0, 255).astype(np.uint8)
    return out


def _augment(x, rng):
    """Mild geometry (rotation ±10°, scale ±12 %, shift ±8 %, horizontal flip) and intensity jitter."""
    import torch
    import torch.nn.functional as F

    b = x.shape[0]
    ang = (torch.rand(b, generator=rng) - 0.5) * math.radians(20)
    scale = 1 + (torch.rand(b, generator=rng) - 0.5) * 0.24
    flip = torch.where(torch.rand(b, generator=rng) < 0.5, -1.0, 1.0)
    tx, ty = ((torch.rand(2, b, generator=rng) - 0.5) * 0.16).unbind(0)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gamma = torch.exp((torch.rand(b, 1, 1, 1, generator=rng) - 0.5) * 0.6)
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=rng) - 0.5) * 0.4
    bright = (torch.rand(b, 1, 1, 1, generator=rng) - 0.5) * 0.16
    return ((x.clamp(0, 1) ** gamma - 0.5) * contrast + 0.5 + bright).clamp(0, 1)


@dataclass
class GateTrainResult:
    steps: int
    seconds: float
    history: list[dict]


def train_gate_model(
    model,
    pools: dict[str, np.ndarray],
    spec: PreprocessSpec,
    minutes: float,
    batch_mix: tuple[int, int, int] = (20, 8, 20),
    lr: float = 2e-3,
    seed: int = 0,
    on_history: Callable[[dict], None] | None = None,
    show_progress: bool = False,
) -> GateTrainResult:
    """Train on class-balanced batches (frontal, lateral, other counts per batch) for a wall-clock budget.

    Laterals are few (tens), so each batch re-samples them with augmentation; the loss is plain cross-entropy
    on the balanced batch (the balance is the class weighting). Every 50 steps a history entry (step, loss,
    elapsed_s) is appended and passed to ``on_history``; ``show_progress`` shows a step counter.
    """
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in pools.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    budget, t0, step, history, losses = minutes * 60.0, time.monotonic(), 0, [], []
    model.train()
    for _ in progress(itertools.count(), desc="gate training", enabled=show_progress, unit="step"):
        if time.monotonic() - t0 >= budget:
            break
        frac = (time.monotonic() - t0) / budget
        for g in opt.param_groups:
            g["lr"] = lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        x, y = _batch(tensors, batch_mix, rng, spec)
        loss = F.cross_entropy(model(x), y, label_smoothing=0.02)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 50 == 0:
            history.append(
                {
                    "step": step,
                    "loss": float(np.mean(losses[-50:])),
                    "elapsed_s": round(time.monotonic() - t0, 1),
                }
            )
            if on_history is not None:
                on_history(history[-1])
    recalibrate_batchnorm(model, lambda: _batch(tensors, batch_mix, rng, spec)[0])
    model.eval()
    return GateTrainResult(step, time.monotonic() - t0, history)


def _batch(tensors, batch_mix, rng, spec):
    """One augmented, normalised class-balanced batch ``(x, y)``."""
    import torch

    xs, ys = [], []
    for cls, n in zip(("frontal", "lateral", "other"), batch_mix, strict=True):
        pool = tensors[cls]
        idx = torch.randint(len(pool), (n,), generator=rng)
        xs.append(pool[idx])
        ys.append(torch.full((n,), CLASS_INDEX[cls]))
    x = torch.cat(xs).float()[:, None] / 255.0
    return (_augment(x, rng) - spec.mean) / spec.std, torch.cat(ys)


def recalibrate_batchnorm(model, make_batch, batches: int = 40) -> None:
    """Recompute BatchNorm running statistics as exact averages over ``batches`` training batches.

    torchvision's MobileNetV3 uses BN momentum 0.01, so after a short CPU training run the running statistics
    still lean towards their initial values and eval-mode outputs differ from train-mode ones (measured: the
    gate let most noise images through before this step).
    """
    import torch
    from torch import nn

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(make_batch())
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom


def scores_and_embeddings(model, x_u8: np.ndarray, spec: PreprocessSpec, batch: int = 128):
    """Softmax scores (N, 3) and pooled embeddings (N, D) for cached uint8 inputs."""
    import torch

    probs, embs = [], []
    with torch.inference_mode():
        for i in range(0, len(x_u8), batch):
            x = (
                torch.from_numpy(np.asarray(x_u8[i : i + batch])).float()[:, None] / 255.0 - spec.mean
            ) / spec.std
            fmap = model.forward_features(x)
            probs.append(torch.softmax(model.forward_head(fmap), 1).numpy())
            embs.append(torch.flatten(model.pool(fmap), 1).numpy())
    if not probs:
        return np.zeros((0, 3), np.float32), np.zeros((0, 1), np.float32)
    return np.concatenate(probs), np.concatenate(embs)


def fit_mahalanobis(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision matrix (Ledoit-Wolf shrinkage) of embeddings."""
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf().fit(emb.astype(np.float64))
    return lw.location_, lw.precision_


def mahalanobis(emb: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = emb.astype(np.float64) - mean
    return np.sqrt(np.clip(np.einsum("ij,jk,ik->i", d, precision, d), 0, None))
