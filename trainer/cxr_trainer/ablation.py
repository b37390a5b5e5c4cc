"""The shortcut check of paper 004 (Arias-Garzón et al.): score a model with the lungs blanked out, and on the
lungs alone, beside the original images.

For every evaluated image the shipped lung U-Net's probability plane on the classifier's grid (cached by
:mod:`cxr_trainer.lung_cache`, the same plane a lung-channel model takes as input) is post-processed into a
binary lung mask (:func:`cxrviewer.ml.lung_channel.lung_mask_from_plane`: threshold 0.5, two largest
components, holes filled). :func:`cxrviewer.ml.segmentation.apply_lung_ablation` then blanks the preprocessed
image (black, as in the paper) outside the lungs (``lungs-only``) or inside them (``lungs-removed``). Only the
image channel is ablated: a lung-channel model keeps the lung plane of the original image, so its input still
says where the lungs are, but it cannot see what is in them (or around them).

If a model separates the classes almost as well with the lungs removed as on the original images, it has
learnt signal that lies outside the lung fields — labels, devices, borders, source-specific processing —
rather than lung disease: a shortcut. :func:`ablation_summary` puts that in one plain sentence.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from cxr_trainer.metrics import binomial_ci, per_class_prf, roc_auc_ci, softmax
from cxrviewer.ml.segmentation import ABLATION_MODES, apply_lung_ablation

ORIGINAL = "original"


def ablation_modes(values: list[str] | None) -> list[str]:
    """Normalise ``--ablation`` values (repeatable, comma separated, ``both``) to an ordered list of modes."""
    modes: list[str] = []
    for v in values or []:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            chosen = list(ABLATION_MODES) if part == "both" else [part]
            for m in chosen:
                if m not in ABLATION_MODES:
                    raise ValueError(
                        f"unknown ablation {m!r}; use {', '.join(ABLATION_MODES)} or both (repeatable)"
                    )
                if m not in modes:
                    modes.append(m)
    return [m for m in ("lungs-removed", "lungs-only") if m in modes]


def lung_masks(lung_planes: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Post-processed binary lung masks ``uint8 (N, S, S)`` from ``uint8`` lung planes."""
    from cxrviewer.ml.lung_channel import lung_mask_from_plane

    planes = np.asarray(lung_planes)
    out = np.zeros(planes.shape, np.uint8)
    for i in range(len(planes)):
        out[i] = lung_mask_from_plane(planes[i], threshold)
    return out


def ablate(pixels: np.ndarray, masks: np.ndarray, mode: str) -> np.ndarray:
    """``pixels`` (N, S, S) uint8 with the lungs removed or kept alone (black fill)."""
    return np.stack([apply_lung_ablation(p, m, mode) for p, m in zip(pixels, masks, strict=True)])


def condition_metrics(
    logits: np.ndarray,
    y: np.ndarray,
    sources: list[str],
    labels: list[str],
    positive: int,
    temperature: float,
    n_boot: int,
) -> dict[str, Any]:
    """Accuracy (binomial CI), macro F1 and the positive class's ROC AUC (bootstrap CI), pooled and per
    source, for one condition."""

    def block(lg: np.ndarray, yy: np.ndarray) -> dict[str, Any]:
        probs = softmax(lg, temperature)
        pred = probs.argmax(1)
        is_pos = yy == positive
        acc = float(np.mean(pred == yy)) if len(yy) else float("nan")
        auc, ci = (
            roc_auc_ci(is_pos, probs[:, positive], n_boot=n_boot)
            if is_pos.any() and (~is_pos).any()
            else (None, None)
        )
        return {
            "n": int(len(yy)),
            "accuracy": acc,
            "accuracy_ci": binomial_ci(acc, len(yy)),
            "macro_f1": float(np.mean([v["f1"] for v in per_class_prf(yy, pred, labels).values()])),
            "roc_auc": auc,
            "roc_auc_ci": ci,
        }

    out = block(logits, y)
    src = np.asarray(sources)
    out["per_source"] = {s or "(none)": block(logits[src == s], y[src == s]) for s in sorted(set(sources))}
    return out


def _share(auc: float | None, base: float | None) -> float | None:
    """How much of the original AUC's distance above chance (0.5) an ablated AUC keeps."""
    if auc is None or base is None or base <= 0.5 + 1e-9:
        return None
    return float((auc - 0.5) / (base - 0.5))


def ablation_summary(conditions: dict[str, dict[str, Any]], positive: str, chance_accuracy: float) -> str:
    """One plain sentence (or two) on how much of the model's signal lies outside the lungs."""

    def auc(c: dict[str, Any]) -> str:
        ci = c.get("roc_auc_ci")
        if c.get("roc_auc") is None:
            return "ROC AUC n/a"
        return f"ROC AUC {c['roc_auc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    orig = conditions[ORIGINAL]
    parts = []
    removed = conditions.get("lungs-removed")
    if removed is not None:
        share = _share(removed.get("roc_auc"), orig.get("roc_auc"))
        if share is None:
            verdict = "the share of signal outside the lungs cannot be measured here (no AUC above chance)"
        elif share >= 0.8:
            verdict = "most of the signal the model uses lies outside the lungs — a shortcut warning"
        elif share >= 0.5:
            verdict = "a large share of the signal the model uses lies outside the lungs — a shortcut warning"
        elif share >= 0.2:
            verdict = "some of the signal the model uses lies outside the lungs"
        else:
            verdict = "little of the signal the model uses lies outside the lungs"
        parts.append(
            f"With the lungs blanked out the model still scores {positive!r} with {auc(removed)} and "
            f"accuracy {removed['accuracy']:.3f} (original images: {auc(orig)}, accuracy "
            f"{orig['accuracy']:.3f}; majority-class accuracy {chance_accuracy:.3f}), keeping "
            + (f"{share:.0%} of its AUC above chance: " if share is not None else "an unknown share: ")
            + verdict
            + "."
        )
    only = conditions.get("lungs-only")
    if only is not None:
        parts.append(f"On the lungs alone it reaches {auc(only)} and accuracy {only['accuracy']:.3f}.")
    return " ".join(parts)


def run_ablations(
    model,
    spec,
    data,
    modes: list[str],
    labels: list[str],
    positive: int,
    temperature: float,
    n_boot: int = 1000,
    batch_size: int = 32,
    show_progress: bool = False,
    segmenter_id: str | None = None,
) -> dict[str, Any]:
    """Score ``model`` on the ablated images of ``data`` (an :class:`~cxr_trainer.evaluation.EvalData` with
    ``lung`` planes) beside the original ones; the ``ablation`` block of ``metrics.json``."""
    from cxr_trainer.inputs import predict
    from cxr_trainer.lung_cache import input_planes

    if data.lung is None:
        raise ValueError("the ablation check needs the lung planes (run_model_on_csv(..., lung=True))")
    masks = lung_masks(data.lung)
    keep_lung = data.lung if "lung" in spec.channels else None
    conditions = {
        ORIGINAL: condition_metrics(data.logits, data.y, data.sources, labels, positive, temperature, n_boot)
    }
    for mode in modes:
        planes = input_planes(ablate(data.pixels, masks, mode), keep_lung)
        logits, _ = predict(
            model, planes, np.arange(len(planes)), spec, "cpu", batch_size, show_progress=show_progress
        )
        conditions[mode] = condition_metrics(
            logits, data.y, data.sources, labels, positive, temperature, n_boot
        )
    counts = np.bincount(data.y, minlength=len(labels))
    chance = float(counts.max() / counts.sum()) if counts.sum() else float("nan")
    area = masks.reshape(len(masks), -1).mean(axis=1) if len(masks) else np.zeros(0)
    removed_auc = conditions.get("lungs-removed", {}).get("roc_auc")
    return {
        "modes": modes,
        "method": "lung U-Net probability on the model grid → threshold 0.5, two largest components, holes "
        "filled → image pixels set to 0 (black) outside (lungs-only) or inside (lungs-removed) the mask; "
        "a lung-channel model keeps the original lung plane",
        "segmenter": segmenter_id,
        "mask_area_fraction_mean": float(area.mean()) if area.size else None,
        "empty_masks": int(np.sum(area == 0)),
        "chance_accuracy": chance,
        "conditions": conditions,
        "roc_auc_share_kept_lungs_removed": _share(removed_auc, conditions[ORIGINAL].get("roc_auc")),
        "summary": ablation_summary(conditions, labels[positive], chance),
    }


def plot_ablation(block: dict[str, Any], out: Path) -> str:
    """Bar chart of ROC AUC (with CI) and accuracy per condition; returns the PNG's file name."""
    from cxr_trainer.report import _plt, _save

    plt = _plt()
    conds = block["conditions"]
    names = list(conds)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, ci_key, title in (
        (axes[0], "roc_auc", "roc_auc_ci", "ROC AUC (positive class)"),
        (axes[1], "accuracy", "accuracy_ci", "accuracy (argmax)"),
    ):
        vals = [conds[n].get(key) or 0.0 for n in names]
        err = [
            [v - (conds[n].get(ci_key) or [v, v])[0] for n, v in zip(names, vals, strict=True)],
            [(conds[n].get(ci_key) or [v, v])[1] - v for n, v in zip(names, vals, strict=True)],
        ]
        ax.bar(names, vals, yerr=err, capsize=4, color=["#4c72b0", "#dd8452", "#55a868"][: len(names)])
        ax.set_ylim(0, 1)
        ax.set_title(title)
        if key == "accuracy":
            ax.axhline(block["chance_accuracy"], color="gray", ls="--", lw=1, label="majority class")
            ax.legend(loc="lower right", fontsize=8)
        else:
            ax.axhline(0.5, color="gray", ls="--", lw=1)
    fig.suptitle("Lung ablation (shortcut check)")
    return _save(fig, out / "ablation.png")


def ablation_html(block: dict[str, Any] | None) -> str:
    """The report section for the ``ablation`` block of ``metrics.json`` (empty without one)."""
    from cxr_trainer.report import _table

    if not block:
        return ""
    conds = block["conditions"]
    sources = sorted({s for c in conds.values() for s in c["per_source"]})
    rows = [
        [n, c["n"], c["accuracy"], c["accuracy_ci"], c["macro_f1"], c["roc_auc"], c["roc_auc_ci"]]
        for n, c in conds.items()
    ]
    per_source = [
        [
            s,
            n,
            c["per_source"][s]["n"],
            c["per_source"][s]["accuracy"],
            c["per_source"][s]["accuracy_ci"],
            c["per_source"][s]["roc_auc"],
            c["per_source"][s]["roc_auc_ci"],
        ]
        for s in sources
        for n, c in conds.items()
        if s in c["per_source"]
    ]
    return "\n".join(
        [
            "<h2>Lung ablation: how much signal lies outside the lungs (Arias-Garzón et al.)</h2>",
            f"<p><b>{html.escape(block['summary'])}</b></p>",
            f"<p>Method: {html.escape(block['method'])}. Mean lung area "
            f"{block['mask_area_fraction_mean'] or 0:.1%} of the model input; {block['empty_masks']} empty "
            "masks. CIs: accuracy p ± 1.96·sqrt(p(1−p)/n); ROC AUC stratified bootstrap.</p>",
            _table(["condition", "n", "accuracy", "95% CI", "macro F1", "ROC AUC", "95% CI"], rows),
            _table(["source", "condition", "n", "accuracy", "95% CI", "ROC AUC", "95% CI"], per_source),
        ]
    )
