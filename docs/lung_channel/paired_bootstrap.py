"""Paired comparison of two classifiers on the same test images: lung-channel minus plain.

Stratified paired bootstrap (2,000 resamples) of the difference in ROC AUC (covid vs rest) and in argmax
accuracy, on the original images and with the lungs removed (the ``cxr-trainer evaluate --ablation`` masks).
Run from the repository root (one torch thread; about a minute on a free core):

    flock /tmp/cxr-slot-A.lock .venv/bin/python docs/lung_channel/paired_bootstrap.py \
        models/cxr-classifier runs/lung/npc-lung-mobilenet_v3_small-128
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from cxr_trainer.ablation import ablate, lung_masks
from cxr_trainer.evaluate_model import _subset_csv
from cxr_trainer.evaluation import run_model_on_csv
from cxr_trainer.inputs import predict
from cxr_trainer.lung_cache import input_planes
from cxr_trainer.metrics import roc_auc, softmax

LABELS = Path("../shared/data/cxr/labels.csv")
SPLIT = "models/cxr-classifier/split.csv"


def scores(model_dir: str, labels_csv: Path):
    """Keys, classes, and calibrated probabilities on the original and the lungs-removed images."""
    data, man, model, _ = run_model_on_csv(model_dir, labels_csv, show_progress=False, threads=1, lung=True)
    temperature = man.calibration["temperature"]
    spec = man.preprocess_spec
    keep = data.lung if "lung" in spec.channels else None
    removed = input_planes(ablate(data.pixels, lung_masks(data.lung), "lungs-removed"), keep)
    removed_logits, _ = predict(model, removed, np.arange(len(data.y)), spec)
    return (
        data.keys,
        data.y,
        man.labels.index("covid"),
        softmax(data.logits, temperature),
        softmax(removed_logits, temperature),
    )


def main(plain_dir: str, lung_dir: str, n_boot: int = 2000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = _subset_csv(LABELS, SPLIT, "test", Path(tmp))
        keys_a, y, pos, orig_a, removed_a = scores(plain_dir, src)
        keys_b, y_b, _, orig_b, removed_b = scores(lung_dir, src)
    assert keys_a == keys_b and np.array_equal(y, y_b), "the two models were not scored on the same images"
    is_pos = y == pos
    pos_idx, neg_idx = np.flatnonzero(is_pos), np.flatnonzero(~is_pos)
    rng = np.random.default_rng(0)

    def delta(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> tuple[float, float]:
        auc = roc_auc(is_pos[idx], b[idx, pos]) - roc_auc(is_pos[idx], a[idx, pos])
        acc = np.mean(b[idx].argmax(1) == y[idx]) - np.mean(a[idx].argmax(1) == y[idx])
        return auc, acc

    for condition, a, b in (("original", orig_a, orig_b), ("lungs-removed", removed_a, removed_b)):
        full = delta(a, b, np.arange(len(y)))
        boots = np.array(
            [
                delta(a, b, np.r_[rng.choice(pos_idx, pos_idx.size), rng.choice(neg_idx, neg_idx.size)])
                for _ in range(n_boot)
            ]
        )
        lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
        print(
            f"{condition}: lung-channel minus plain  ROC AUC {full[0]:+.4f} [{lo[0]:+.4f}, {hi[0]:+.4f}]  "
            f"accuracy {full[1]:+.4f} [{lo[1]:+.4f}, {hi[1]:+.4f}]  (paired stratified bootstrap, {n_boot})"
        )


if __name__ == "__main__":
    main(*sys.argv[1:3])
