"""``evaluate()``: a model folder on a labelled set → ``metrics.json``, ``report.html``, PNG plots, JSON log."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path
from typing import Any

from cxr_trainer import __version__
from cxr_trainer.evaluation import METRICS_SCHEMA_VERSION, run_model_on_csv, summarise_predictions
from cxr_trainer.progress import RunLog


def _subset_csv(labels_csv: Path, split_csv: str, subset: str, tmp: Path) -> Path:
    """A labels CSV holding only the rows of ``labels_csv`` whose path is in ``subset`` of ``split_csv``."""
    from cxr_trainer.splits import read_split_csv

    keep = {k for k, s in read_split_csv(split_csv).items() if s == subset}
    with open(labels_csv, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in reader if r["path"] in keep]
        fields = reader.fieldnames
    out = tmp / labels_csv.name
    # paths stay relative to the original folder: write absolute paths
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "path": str((labels_csv.parent / r["path"]).resolve())})
    if not rows:
        raise ValueError(f"no image of {labels_csv} is in the '{subset}' split of {split_csv}")
    return out


def evaluate(
    model_dir: str | Path,
    labels: str | Path,
    out_dir: str | Path,
    split_csv: str | None = None,
    subset: str = "test",
    n_boot: int = 1000,
    tsne: bool = True,
    examples: bool = True,
    cache_dir: str | Path | None = None,
    threads: int = 2,
    show_progress: bool = True,
    ablations: list[str] | None = None,
) -> dict[str, Any]:
    """Evaluate and write ``out_dir/metrics.json``, ``report.html``, plots and ``evaluate_log.json``.

    ``ablations`` (``lungs-removed``, ``lungs-only``): also score the images with the lungs blanked out / kept
    alone (the shortcut check, :mod:`cxr_trainer.ablation`); the figures go to ``metrics["ablation"]``.
    """
    from cxr_trainer.report import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = RunLog(
        "evaluate", {"model": str(model_dir), "labels": str(labels), "split": split_csv, "subset": subset}
    )
    labels_path = Path(labels)
    if labels_path.is_dir() and (labels_path / "labels.csv").is_file():
        labels_path = labels_path / "labels.csv"
    with tempfile.TemporaryDirectory(prefix="cxr-eval-") as tmp:
        src = _subset_csv(labels_path, split_csv, subset, Path(tmp)) if split_csv else labels_path
        data, manifest, _model, task = run_model_on_csv(
            model_dir, src, cache_dir, show_progress, threads=threads, lung=bool(ablations)
        )
    if len(data.y) == 0:
        raise ValueError(f"no image of {labels} has a label the model's task ({task.name}) knows")
    labels_list = list(manifest.labels)
    pos_name = (manifest.thresholds or {}).get("positive_class", task.positive_class)
    positive = labels_list.index(pos_name) if pos_name in labels_list else len(labels_list) - 1
    temperature = float((manifest.calibration or {}).get("temperature", 1.0))
    metrics = summarise_predictions(
        data.logits,
        data.y,
        data.sources,
        labels_list,
        positive,
        temperature,
        manifest.thresholds or {},
        n_boot=n_boot,
    )
    metrics.update(
        schema_version=METRICS_SCHEMA_VERSION,
        generated_by=f"cxr-trainer {__version__}",
        model={
            "id": manifest.model_id,
            "dir": str(Path(model_dir).resolve()),
            "task": manifest.task,
            "labels": labels_list,
        },
        data={
            "labels_csv": str(Path(labels).resolve()),
            "split": split_csv,
            "subset": subset if split_csv else None,
            "excluded": data.excluded,
            "failed": data.failed,
        },
        inference={
            "ms_per_image_batched": round(data.ms_per_image, 3),
            "ms_per_image_single": round(data.ms_per_image_single, 3),
            "backend": "torch cpu fp32",
        },
    )
    from cxr_trainer.metrics import softmax

    cut = metrics["confusion_at_cutoff"]["threshold"]
    extra = (
        []
        if not examples
        else _example_grid(
            _model,
            manifest.preprocess_spec,
            data,
            softmax(data.logits, temperature),
            positive,
            labels_list[positive],
            cut,
            out,
        )
    )
    metrics["neighbour_vote_accuracy_k4"] = _neighbour_vote(data)
    if ablations:
        from cxr_trainer.ablation import plot_ablation, run_ablations

        metrics["ablation"] = run_ablations(
            _model,
            manifest.preprocess_spec,
            data,
            ablations,
            labels_list,
            positive,
            temperature,
            n_boot=n_boot,
            show_progress=show_progress,
            segmenter_id=data.lung_model,
        )
        extra.append(plot_ablation(metrics["ablation"], out))
    write_report(out, metrics, data, labels_list, positive, temperature, tsne=tsne, extra_images=extra)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    log.result = {
        k: metrics[k] for k in ("n", "accuracy", "macro_f1", "roc_auc", "roc_auc_ci", "pr_auc", "ece")
    }
    if "ablation" in metrics:
        log.result["ablation"] = metrics["ablation"]["summary"]
    log.write(out / "evaluate_log.json")
    return metrics


def _example_grid(
    model, spec, data, probs, positive: int, label: str, cut: float, out: Path, per_row: int = 5
) -> list[str]:
    """Grad-CAM grid (true positives, false positives, false negatives at the default cut-off) drawn by
    :func:`cxrviewer.ml.explain.render_example_grid`; the most confident examples of each outcome."""
    import numpy as np
    import torch

    from cxr_trainer.inputs import assemble_channels, to_unit
    from cxrviewer.ml.explain import GridItem, cam_from_features, render_example_grid
    from cxrviewer.ml.explain.heatmap import normalize_map

    if data.pixels is None or not len(data.y):
        return []
    s = probs[:, positive]
    pred, true = s >= cut, data.y == positive
    picks = []
    for outcome, mask, order in (("TP", pred & true, -s), ("FP", pred & ~true, -s), ("FN", ~pred & true, s)):
        idx = np.flatnonzero(mask)
        picks += [(outcome, int(i)) for i in idx[np.argsort(order[idx])][:per_row]]
    if not picks:
        return []
    rows = [i for _, i in picks]
    with torch.no_grad():
        fmap = model.forward_features(assemble_channels(to_unit(data.model_planes(rows, spec)), spec)).numpy()
    cams = cam_from_features(fmap, model.head.weight.detach().numpy(), positive)
    import cv2

    items = []
    for (outcome, i), cam in zip(picks, cams, strict=True):
        img = np.asarray(data.pixels[i])
        heat = cv2.resize(normalize_map(cam), img.shape[::-1], interpolation=cv2.INTER_LINEAR)
        items.append(GridItem(img, np.clip(heat, 0, 1), outcome, caption=f"P={s[i]:.2f}"))
    path = render_example_grid(
        items, out / "examples_gradcam.png", title=f"Grad-CAM of {label!r} at cut-off {cut:.2f}"
    )
    return [Path(path).name]


def _neighbour_vote(data) -> float | None:
    """Leave-one-out k=4 neighbour-vote accuracy of the embeddings (Goldstein et al. report 87 %)."""
    from cxrviewer.ml.retrieval import neighbour_vote_accuracy

    if len(data.y) < 5:
        return None
    return float(neighbour_vote_accuracy(data.embeddings, [str(v) for v in data.y], k=4))
