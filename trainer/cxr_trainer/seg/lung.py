"""Lung U-Net training: mask table, leak-free split, 8-bit cache, training loop, per-source evaluation.

Ground truth for validation and test is the human masks only (``manual`` = v7labs, ``radiologist`` =
GeneralBlockchain); ``model`` masks (lungVAE) are weak labels used for training only. Images are split by
patient and near-duplicate group (:func:`cxr_trainer.splits.make_split`), so no radiograph is in two splits.
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cxr_trainer.datasets import read_labels_csv
from cxr_trainer.image_cache import preprocess_uint8, read_gray
from cxr_trainer.progress import progress
from cxr_trainer.splits import leakage_report, make_split
from cxrviewer.core.preprocess import PreprocessSpec, preprocess
from cxrviewer.ml.segmentation import dice_iou, mask_to_original, postprocess_mask

GT_KINDS = ("manual", "radiologist")
TARGET_PREFERENCE = ("manual", "radiologist", "model")


@dataclass
class MaskedImage:
    """One image with its masks by kind (absolute paths) and its split."""

    key: str
    path: Path
    source: str
    masks: dict[str, Path] = field(default_factory=dict)
    split: str = ""

    @property
    def has_truth(self) -> bool:
        return any(k in self.masks for k in GT_KINDS)

    def target_kind(self) -> str:
        return next(k for k in TARGET_PREFERENCE if k in self.masks)


def load_masked_images(
    data_root: Path, fractions: tuple[float, float, float], seed: int
) -> tuple[list[MaskedImage], dict]:
    """Images that have masks, split by patient/near-duplicate group; returns (images, leakage summary).

    Images with only ``model`` masks never land in val/test: when their group is drawn there they are dropped.
    """
    ds = read_labels_csv(data_root / "labels.csv")
    by_key = {r.key: r for r in ds.records}
    images: dict[str, MaskedImage] = {}
    with open(data_root / "masks.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rec = by_key.get(row["image_path"])
            if rec is None:
                continue
            img = images.setdefault(rec.key, MaskedImage(rec.key, rec.path, rec.source))
            img.masks[row["mask_kind"]] = (data_root / row["mask_path"]).resolve()
    recs = [by_key[k] for k in images]
    labels = ["truth" if images[r.key].has_truth else "weak" for r in recs]
    plan = make_split(recs, ds.near_duplicates, labels=labels, fractions=fractions, seed=seed)
    for k, s in plan.assignment.items():
        images[k].split = s
    kept = [m for m in images.values() if m.split == "train" or m.has_truth]
    report = leakage_report(recs, ds.near_duplicates, {m.key: m.split for m in kept})
    return kept, report.to_dict()


def build_arrays(
    images: list[MaskedImage],
    spec: PreprocessSpec,
    cache_file: Path | None = None,
    show_progress: bool = False,
    desc: str = "seg cache",
) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S) uint8 preprocessed images and (N, S, S) uint8 target masks (0..255, soft edges).

    The target is the preferred mask kind (manual > radiologist > model) mapped onto the model grid with the
    image's own :class:`~cxrviewer.core.preprocess.Geometry` (border crop + pad + resize).
    """
    if cache_file is not None and cache_file.is_file():
        with np.load(cache_file) as z:
            if list(z["keys"]) == [m.key for m in images]:
                return z["x"], z["y"]
    xs, ys = [], []
    for m in progress(images, desc=desc, enabled=show_progress, unit="img"):
        gray = read_gray(m.path)
        xs.append(preprocess_uint8(gray, spec))
        _, geom = preprocess(gray, spec)
        mask = read_gray(m.masks[m.target_kind()]).astype(np.float32) / 255.0
        ys.append(np.clip(np.rint(geom.from_original(mask) * 255), 0, 255).astype(np.uint8))
    x, y = np.stack(xs), np.stack(ys)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, x=x, y=y, keys=np.array([m.key for m in images]))
    return x, y


def _augment(x, y, rng):
    """Random affine (shared by image and mask) and intensity jitter on a (B,1,S,S) batch."""
    import torch
    import torch.nn.functional as F

    b = x.shape[0]
    ang = (torch.rand(b, generator=rng) - 0.5) * math.radians(20)
    scale = 1 + (torch.rand(b, generator=rng) - 0.5) * 0.25
    tx, ty = ((torch.rand(2, b, generator=rng) - 0.5) * 0.16).unbind(0)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gamma = torch.exp((torch.rand(b, 1, 1, 1, generator=rng) - 0.5) * 0.6)
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=rng) - 0.5) * 0.4
    bright = (torch.rand(b, 1, 1, 1, generator=rng) - 0.5) * 0.2
    x = ((x.clamp(0, 1) ** gamma - 0.5) * contrast + 0.5 + bright).clamp(0, 1)
    return x, y


def _loss(logits, target):
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return bce + dice.mean()


def model_res_dice(model, x_u8: np.ndarray, y_u8: np.ndarray, spec: PreprocessSpec, batch: int = 16) -> float:
    """Mean Dice at model resolution (post-processed) — the validation figure used for model selection."""
    probs = predict_probability(model, x_u8, spec, batch)
    scores = [dice_iou(postprocess_mask(p), y >= 128)[0] for p, y in zip(probs, y_u8, strict=True)]
    return float(np.mean(scores))


def predict_probability(model, x_u8: np.ndarray, spec: PreprocessSpec, batch: int = 16) -> np.ndarray:
    """Lung probabilities (N, S, S) for cached uint8 inputs."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x_u8), batch):
            x = torch.from_numpy(x_u8[i : i + batch]).float()[:, None] / 255.0
            x = (x - spec.mean) / spec.std
            out.append(torch.sigmoid(model(x))[:, 0].numpy())
    return np.concatenate(out)


@dataclass
class TrainResult:
    best_val_dice: float
    epochs: int
    seconds: float
    history: list[dict]


def train_unet(
    model,
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_va: np.ndarray,
    y_va: np.ndarray,
    spec: PreprocessSpec,
    minutes: float,
    batch: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
    on_epoch: Callable[[dict], None] | None = None,
    show_progress: bool = False,
) -> TrainResult:
    """AdamW, BCE + soft-Dice, cosine learning rate over a wall-clock budget; keeps the best-val-Dice state.

    ``on_epoch`` receives each epoch's history entry (epoch, loss, val_dice, elapsed_s); ``show_progress``
    shows a bar over each epoch's batches.
    """
    import torch

    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    budget = minutes * 60.0
    t0 = time.monotonic()
    best, best_state, history, epoch = -1.0, None, [], 0
    xt = torch.from_numpy(x_tr)
    yt = torch.from_numpy(y_tr)
    while time.monotonic() - t0 < budget:
        epoch += 1
        model.train()
        perm = torch.randperm(len(xt), generator=rng)
        losses = []
        starts = range(0, len(perm) - batch + 1, batch)
        for i in progress(starts, desc=f"epoch {epoch}", enabled=show_progress, unit="batch"):
            frac = min(1.0, (time.monotonic() - t0) / budget)
            for g in opt.param_groups:
                g["lr"] = lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
            idx = perm[i : i + batch]
            x = xt[idx].float()[:, None] / 255.0
            y = yt[idx].float()[:, None] / 255.0
            x, y = _augment(x, y, rng)
            x = (x - spec.mean) / spec.std
            loss = _loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if time.monotonic() - t0 >= budget:
                break
        val = model_res_dice(model, x_va, y_va, spec)
        history.append(
            {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "val_dice": val,
                "elapsed_s": round(time.monotonic() - t0, 1),
            }
        )
        if on_epoch is not None:
            on_epoch(history[-1])
        if val > best:
            best = val
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best, epoch, time.monotonic() - t0, history)


def evaluate_original_resolution(
    model,
    images: list[MaskedImage],
    spec: PreprocessSpec,
    threshold: float = 0.5,
    show_progress: bool = False,
) -> dict:
    """Dice/IoU per mask source at the ORIGINAL image resolution, as the viewer computes masks.

    Each image is preprocessed, segmented, post-processed (two largest components, holes filled), mapped back
    with ``Geometry.to_original`` and compared with every human mask it has. Also reports the figures without
    post-processing and the agreement between the two human sources where an image has both.
    """
    import torch

    per: dict[str, list[tuple[float, float]]] = defaultdict(list)
    raw: dict[str, list[float]] = defaultdict(list)
    inter_source: list[float] = []
    model.eval()
    for m in progress(images, desc="test Dice", enabled=show_progress, unit="img"):
        gray = read_gray(m.path)
        x, geom = preprocess(gray, spec)
        with torch.inference_mode():
            prob = torch.sigmoid(model(torch.from_numpy(x)[None, None]))[0, 0].numpy()
        post = mask_to_original(prob, postprocess_mask(prob, threshold), geom)
        plain = geom.to_original(prob) >= threshold
        truths = {}
        for kind in GT_KINDS:
            if kind in m.masks:
                t = read_gray(m.masks[kind]) >= 128
                if t.shape != gray.shape:
                    t = cv2.resize(t.astype(np.uint8), gray.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
                truths[kind] = t
                per[kind].append(dice_iou(post, t))
                raw[kind].append(dice_iou(plain, t)[0])
        if len(truths) == 2:
            inter_source.append(dice_iou(truths["manual"], truths["radiologist"])[0])

    def summary(vals: list[tuple[float, float]]) -> dict:
        d = np.array([v[0] for v in vals])
        j = np.array([v[1] for v in vals])
        return {
            "n": len(vals),
            "dice_mean": float(d.mean()),
            "dice_median": float(np.median(d)),
            "dice_p05": float(np.percentile(d, 5)),
            "iou_mean": float(j.mean()),
            "dice_min": float(d.min()),
        }

    out = {kind: summary(v) for kind, v in per.items()}
    out["all_human"] = summary([v for vals in per.values() for v in vals])
    out["without_postprocessing_dice_mean"] = {k: float(np.mean(v)) for k, v in raw.items()}
    if inter_source:
        out["manual_vs_radiologist_dice_mean"] = float(np.mean(inter_source))
        out["manual_vs_radiologist_n"] = len(inter_source)
    return out
