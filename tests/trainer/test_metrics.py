"""Metrics: Minaee's binomial CI, threshold tables, operating points, AUC, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cxr_trainer.metrics import (
    THRESHOLDS,
    binomial_ci,
    choose_operating_points,
    expected_calibration_error,
    fit_temperature,
    roc_auc_ci,
    sens_spec,
    softmax,
    threshold_table,
)


def test_binomial_ci_is_minaees_formula():
    lo, hi = binomial_ci(0.9, 100)
    assert lo == pytest.approx(0.9 - 1.96 * math.sqrt(0.9 * 0.1 / 100))
    assert hi == pytest.approx(0.9 + 1.96 * math.sqrt(0.9 * 0.1 / 100))
    assert binomial_ci(1.0, 10) == (1.0, 1.0)
    assert binomial_ci(0.5, 0) is None


def test_sensitivity_and_specificity_counts():
    s = np.array([0.1, 0.4, 0.6, 0.9, 0.2, 0.7])
    p = np.array([False, False, True, True, True, False])
    r = sens_spec(s, p, 0.5)
    assert (r["tp"], r["fn"], r["tn"], r["fp"]) == (2, 1, 2, 1)
    assert r["sensitivity"] == pytest.approx(2 / 3) and r["specificity"] == pytest.approx(2 / 3)
    table = threshold_table(s, p)
    assert [row["threshold"] for row in table] == list(THRESHOLDS)
    assert THRESHOLDS[0] == 0.05 and THRESHOLDS[-1] == 0.95 and len(THRESHOLDS) == 19


def test_operating_points_are_ordered():
    rng = np.random.default_rng(0)
    pos = rng.random(2000) < 0.3
    s = np.clip(np.where(pos, rng.normal(0.7, 0.15, 2000), rng.normal(0.3, 0.15, 2000)), 0, 1)
    ops = choose_operating_points(s, pos)
    hs, bal, hp = ops["high-sensitivity"], ops["balanced"], ops["high-specificity"]
    assert hs["threshold"] <= bal["threshold"] <= hp["threshold"]
    assert hs["sensitivity"] >= 0.95 and hp["specificity"] >= 0.95
    assert 0.4 < bal["threshold"] < 0.6  # Youden optimum of two symmetric normals lies near 0.5


def test_auc_matches_sklearn_and_ci_covers_it():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.random(400) < 0.4
    s = y * 0.8 + rng.normal(0, 0.6, 400)
    s[:20] = 0.5  # ties
    auc, (lo, hi) = roc_auc_ci(y, s, n_boot=300)
    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert lo < auc < hi and hi - lo < 0.15
    assert math.isnan(roc_auc_ci(np.ones(5, bool), np.arange(5.0))[0])


def test_bootstrap_ci_equals_rank_statistic_on_the_same_resamples():
    """The fast pos/neg AUC gives exactly the rank-formula bootstrap (same resamples, ties included)."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(3)
    y = rng.random(60) < 0.3
    s = np.round(rng.random(60), 1)  # many ties
    pos, neg = s[y], s[~y]
    draw = np.random.default_rng(0)
    ref = []
    for _ in range(200):
        bp, bn = draw.choice(pos, pos.size), draw.choice(neg, neg.size)
        r = rankdata(np.r_[bp, bn])
        ref.append((r[: bp.size].sum() - bp.size * (bp.size + 1) / 2) / (bp.size * bn.size))
    _, (lo, hi) = roc_auc_ci(y, s, n_boot=200, seed=0)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(ref, [2.5, 97.5])), abs=1e-12)


def test_temperature_scaling_recovers_overconfidence_and_lowers_ece():
    rng = np.random.default_rng(2)
    true_logits = rng.normal(0, 1.5, (3000, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    over = true_logits * 3.0  # a model three times too confident
    t = fit_temperature(over, y)
    assert t == pytest.approx(3.0, rel=0.15)
    ece_before, _ = expected_calibration_error(softmax(over), y)
    ece_after, bins = expected_calibration_error(softmax(over, t), y)
    assert ece_after < ece_before / 2
    assert sum(b["n"] for b in bins) == len(y)
