"""Running a model folder on a labelled set and computing every figure of the evaluation report.

:func:`summarise_predictions` turns logits into the metrics dictionary (documented in the README,
section "Training"); :func:`evaluate_model_dir` is what ``cxr-trainer evaluate`` runs.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxr_trainer.metrics import (
    confusion,
    expected_calibration_error,
    per_class_prf,
    pr_auc,
    roc_auc_ci,
    sens_spec,
    softmax,
    threshold_table,
)

METRICS_SCHEMA_VERSION = 1


def _clean(v: Any) -> Any:
    """JSON-friendly: tuples → lists, NaN → None, numpy scalars → Python."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def summarise_predictions(
    logits: np.ndarray,
    y: np.ndarray,
    sources: list[str],
    labels: list[str],
    positive: int,
    temperature: float,
    thresholds: dict[str, Any],
    n_boot: int = 1000,
) -> dict[str, Any]:
    """All figures for one labelled set (see README "metrics.json")."""
    probs = softmax(logits, temperature)
    raw = softmax(logits, 1.0)
    pred = probs.argmax(1)
    pos_scores = probs[:, positive]
    is_pos = y == positive
    auc, auc_ci = roc_auc_ci(is_pos, pos_scores, n_boot=n_boot)
    ece_raw, _ = expected_calibration_error(raw, y)
    ece, bins = expected_calibration_error(probs, y)
    ops = {}
    for name, op in (thresholds.get("operating_points") or {}).items():
        ops[name] = {
            "threshold_from_validation": op["threshold"],
            **sens_spec(pos_scores, is_pos, op["threshold"]),
        }
    default = thresholds.get("default", "balanced")
    cut = ops.get(default, {}).get("threshold", 0.5)
    per_class_auc = {}
    for i, lab in enumerate(labels):
        a, ci = roc_auc_ci(y == i, probs[:, i], n_boot=0 if len(labels) > 2 else 0)
        per_class_auc[lab] = a
    out: dict[str, Any] = {
        "n": int(len(y)),
        "class_counts": {lab: int(np.sum(y == i)) for i, lab in enumerate(labels)},
        "positive_class": labels[positive],
        "accuracy": float(np.mean(pred == y)) if len(y) else float("nan"),
        "macro_f1": float(np.mean([v["f1"] for v in per_class_prf(y, pred, labels).values()]))
        if len(y)
        else float("nan"),
        "roc_auc": auc,
        "roc_auc_ci": auc_ci,
        "roc_auc_ci_method": f"stratified bootstrap, {n_boot} resamples",
        "pr_auc": pr_auc(is_pos, pos_scores),
        "per_class_auc_ovr": per_class_auc,
        "per_class": per_class_prf(y, pred, labels),
        "confusion_argmax": confusion(y, pred, len(labels)),
        "confusion_at_cutoff": {
            "operating_point": default,
            "threshold": cut,
            **{k: v for k, v in sens_spec(pos_scores, is_pos, cut).items() if k in ("tp", "fn", "tn", "fp")},
        },
        "threshold_table": threshold_table(pos_scores, is_pos),
        "operating_points": ops,
        "calibration": {"temperature": temperature, "ece_before": ece_raw, "ece": ece, "reliability": bins},
        "ece": ece,
        "per_source": {},
    }
    for src in sorted(set(sources)):
        m = np.array([s == src for s in sources])
        ys, ps = y[m], probs[m]
        sp = is_pos[m]
        entry: dict[str, Any] = {
            "n": int(m.sum()),
            "class_counts": {lab: int(np.sum(ys == i)) for i, lab in enumerate(labels)},
            "accuracy": float(np.mean(ps.argmax(1) == ys)),
        }
        if sp.any() and (~sp).any():
            entry["roc_auc"] = roc_auc_ci(sp, ps[:, positive], n_boot=0)[0]
        r = sens_spec(ps[:, positive], sp, cut)
        entry.update(
            {
                "sensitivity": r["sensitivity"],
                "specificity": r["specificity"],
                "sensitivity_ci": r["sensitivity_ci"],
                "specificity_ci": r["specificity_ci"],
            }
        )
        out["per_source"][src or "(none)"] = entry
    return _clean(out)


@dataclass
class EvalData:
    """Predictions of a model on a labelled set."""

    keys: list[str]
    sources: list[str]
    y: np.ndarray
    logits: np.ndarray
    embeddings: np.ndarray
    excluded: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    ms_per_image: float = 0.0
    ms_per_image_single: float = 0.0
    pixels: np.ndarray | None = None  # preprocessed uint8 images, row i = keys[i]
    lung: np.ndarray | None = None  # uint8 lung-probability planes on the same grid (lung models, ablation)
    lung_model: str | None = None  # the segmentation model that made ``lung``

    def model_planes(self, rows, spec) -> np.ndarray:
        """What :func:`cxr_trainer.inputs.to_unit` takes for ``rows``: the image, plus the lung plane when
        ``spec`` has a lung channel."""
        from cxr_trainer.lung_cache import input_planes

        lung = self.lung[rows] if "lung" in spec.channels and self.lung is not None else None
        return input_planes(self.pixels[rows], lung)


def run_model_on_csv(
    model_dir: str | Path,
    labels_csv: str | Path,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
    batch_size: int = 32,
    threads: int = 2,
    lung: bool = False,
):
    """Load a model folder (hash-verified) and predict every mappable image of ``labels_csv``.

    The lung U-Net's planes are computed (once, cached) when the model takes a lung channel or ``lung`` is
    set (the ablation check needs the masks); they are returned in ``EvalData.lung``.
    """
    import torch

    from cxr_trainer.datasets import load_dataset
    from cxr_trainer.image_cache import build_cache
    from cxr_trainer.inputs import assemble_channels, predict, to_unit
    from cxr_trainer.tasks import TaskDef
    from cxrviewer.ml.model_io import load_classifier

    torch.set_num_threads(threads)
    model, manifest = load_classifier(model_dir)
    spec = manifest.preprocess_spec
    task = TaskDef.from_dict(manifest.task, manifest.labels)
    ds = load_dataset(labels_csv)
    excluded = Counter(r.label for r in ds.records if task.map_label(r.label) not in manifest.labels)
    recs = [r for r in ds.records if task.map_label(r.label) in manifest.labels]
    cache = build_cache(recs, spec, cache_dir, show_progress=show_progress, desc="preprocess")
    ok = cache.ok_indices
    lung_planes, lung_model = None, None
    if lung or "lung" in spec.channels:
        from cxr_trainer.lung_cache import build_lung_cache, load_segmenter
        from cxrviewer.ml.lung_channel import segmenter_identity

        seg = load_segmenter(threads=threads)
        lung_model = segmenter_identity(seg)
        lung_planes = build_lung_cache(recs, spec, cache_dir, seg, show_progress=show_progress)
    planes = cache.pixels
    if "lung" in spec.channels:
        from cxr_trainer.lung_cache import input_planes

        planes = input_planes(cache.pixels, lung_planes)
    t0 = time.perf_counter()
    logits, emb = predict(
        model, planes, ok, spec, "cpu", batch_size, embeddings=True, show_progress=show_progress
    )
    ms = (time.perf_counter() - t0) * 1000 / max(len(ok), 1)
    single = []
    with torch.no_grad():
        for i in ok[: min(20, len(ok))]:
            x = assemble_channels(to_unit(planes[i : i + 1]), spec)
            t = time.perf_counter()
            model(x)
            single.append((time.perf_counter() - t) * 1000)
    data = EvalData(
        keys=[recs[i].key for i in ok],
        sources=[recs[i].source for i in ok],
        y=np.array([manifest.labels.index(task.map_label(recs[i].label)) for i in ok], dtype=np.int64),
        logits=logits,
        embeddings=emb if emb is not None else np.zeros((0, 0)),
        excluded=dict(excluded),
        failed={recs[i].key: m for i, m in cache.failed.items()},
        ms_per_image=ms,
        ms_per_image_single=float(np.median(single[1:] if len(single) > 1 else single)) if single else 0.0,
        pixels=cache.pixels[ok] if ok else None,
        lung=np.asarray(lung_planes[ok]) if lung_planes is not None and ok else None,
        lung_model=lung_model,
    )
    return data, manifest, model, task
