"""Evaluation figures: threshold tables with binomial CIs, operating points, ROC/PR AUC, calibration.

Confidence intervals of sensitivity and specificity use Minaee et al.'s binomial formula
``p ± 1.96·sqrt(p(1-p)/n)`` (clipped to [0, 1]); the ROC AUC interval is a stratified bootstrap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95
OPERATING_POINTS = ("high-sensitivity", "balanced", "high-specificity")
TARGET_SENSITIVITY = 0.95
TARGET_SPECIFICITY = 0.95


def binomial_ci(p: float, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """Normal-approximation 95% interval ``p ± z·sqrt(p(1-p)/n)`` clipped to [0, 1] (None when n = 0)."""
    if n <= 0:
        return None
    h = z * float(np.sqrt(p * (1 - p) / n))
    return max(0.0, p - h), min(1.0, p + h)


def sens_spec(scores: np.ndarray, positive: np.ndarray, threshold: float) -> dict[str, Any]:
    """Sensitivity and specificity (with CIs and counts) of ``score >= threshold``."""
    pred = scores >= threshold
    tp = int(np.sum(pred & positive))
    fn = int(np.sum(~pred & positive))
    tn = int(np.sum(~pred & ~positive))
    fp = int(np.sum(pred & ~positive))
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    return {
        "threshold": float(threshold),
        "sensitivity": sens,
        "specificity": spec,
        "sensitivity_ci": binomial_ci(sens, tp + fn) if tp + fn else None,
        "specificity_ci": binomial_ci(spec, tn + fp) if tn + fp else None,
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
    }


def threshold_table(scores: np.ndarray, positive: np.ndarray, thresholds=THRESHOLDS) -> list[dict[str, Any]]:
    """One :func:`sens_spec` row per threshold (0.05 … 0.95 by default)."""
    return [sens_spec(scores, positive, t) for t in thresholds]


def choose_operating_points(
    scores: np.ndarray,
    positive: np.ndarray,
    target_sensitivity: float = TARGET_SENSITIVITY,
    target_specificity: float = TARGET_SPECIFICITY,
) -> dict[str, dict[str, Any]]:
    """Named cut-offs on a fine grid (0.01 … 0.99), meant to be chosen on the VALIDATION split.

    - ``high-sensitivity``: the highest cut-off whose sensitivity is ≥ ``target_sensitivity``;
    - ``balanced``: the cut-off maximising Youden's J (sensitivity + specificity − 1);
    - ``high-specificity``: the lowest cut-off whose specificity is ≥ ``target_specificity``.
    """
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    rows = [sens_spec(scores, positive, t) for t in grid]
    sens = np.array([r["sensitivity"] for r in rows])
    spec = np.array([r["specificity"] for r in rows])
    j = np.nan_to_num(sens + spec - 1, nan=-1)
    ok_sens = np.flatnonzero(sens >= target_sensitivity)
    ok_spec = np.flatnonzero(spec >= target_specificity)
    hs = rows[int(ok_sens[-1])] if ok_sens.size else rows[0]
    hp = rows[int(ok_spec[0])] if ok_spec.size else rows[-1]
    return {"high-sensitivity": hs, "balanced": rows[int(np.argmax(j))], "high-specificity": hp}


def _auc_pos_neg(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC of positive vs negative scores: P(pos > neg) + ½·P(pos = neg), by binary search in the
    sorted negatives (the same figure as the rank formula, without ranking the whole array)."""
    neg = np.sort(neg)
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (pos.size * neg.size))


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank statistic (ties count one half); nan when one class is absent."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    if y.all() or not y.any():
        return float("nan")
    return _auc_pos_neg(s[y], s[~y])


def roc_auc_ci(
    y: np.ndarray, s: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> tuple[float, tuple[float, float] | None]:
    """ROC AUC and a stratified-bootstrap 95% interval (nan when one class is absent)."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    auc = roc_auc(y, s)
    if not np.isfinite(auc) or n_boot <= 0:
        return auc, None
    rng = np.random.default_rng(seed)
    pos, neg = s[y], s[~y]
    boots = np.empty(n_boot)
    for b in range(n_boot):  # positives and negatives resampled separately (stratified)
        boots[b] = _auc_pos_neg(rng.choice(pos, pos.size), rng.choice(neg, neg.size))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return auc, (float(lo), float(hi))


def pr_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve)."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(y).astype(bool)
    return float(average_precision_score(y, s)) if y.any() else float("nan")


def per_class_prf(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class (argmax predictions)."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, n = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(labels))), zero_division=0
    )
    return {
        lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(n[i])}
        for i, lab in enumerate(labels)
    }


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> list[list[int]]:
    """k × k confusion matrix, rows = true class, columns = predicted."""
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (y_true, y_pred), 1)
    return m.tolist()


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> tuple[float, list[dict]]:
    """ECE of the top-class confidence, and the reliability-diagram bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    ece, rows = 0.0, []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if not m.any():
            continue
        acc, c = float(correct[m].mean()), float(conf[m].mean())
        ece += m.mean() * abs(acc - c)
        rows.append({"lo": float(lo), "hi": float(hi), "accuracy": acc, "confidence": c, "n": int(m.sum())})
    return float(ece), rows


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T minimising the NLL of ``softmax(logits / T)`` (fit on the validation split)."""
    import torch

    lg = torch.as_tensor(logits, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lg / log_t.exp(), yt)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.exp().item())
    return t if np.isfinite(t) and 0.05 < t < 20 else 1.0
