"""``cxr-trainer evaluate --model MODEL_DIR --labels LABELS_CSV --out OUT_DIR``: metrics.json + report.html.

This interface is how models are judged on data the project has never seen: keep it stable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="run a model folder on a labelled set; write metrics.json and report.html (+ PNG plots)",
        description="Run a model on a labelled set. LABELS_CSV has the columns of the shared labels.csv "
        "(path relative to the CSV's folder, label; optional source, view, patient_id). Labels are mapped by "
        "the model's task definition; labels it does not know are reported as excluded.",
    )
    p.add_argument("--model", required=True, help="model folder (manifest.json + model.safetensors)")
    p.add_argument(
        "--labels", required=True, help="labels CSV (or a dataset folder / Kermany tree / class folders)"
    )
    p.add_argument("--out", required=True, help="output folder for metrics.json, report.html and the plots")
    p.add_argument("--split", dest="split_csv", help="only images of this split CSV ...")
    p.add_argument("--subset", default="test", help="... in this split (default test)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the ROC AUC CI")
    p.add_argument("--no-tsne", action="store_true", help="skip the t-SNE plot")
    p.add_argument(
        "--no-examples",
        action="store_true",
        help="no Grad-CAM example grid (it shows the evaluated images: leave it out when their licence forbids "
        "redistributing them)",
    )
    p.add_argument(
        "--ablation",
        action="append",
        metavar="MODE",
        help="shortcut check (Arias-Garzón): also score the images with the lungs blanked out "
        "(lungs-removed) and/or on the lungs alone (lungs-only), using the shipped lung U-Net; repeatable, "
        "comma separated, or 'both'",
    )
    p.add_argument("--cache-dir", help="preprocessed-image cache (default .cache/cxr-trainer)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cxr_trainer.ablation import ablation_modes
    from cxr_trainer.datasets import DatasetError
    from cxr_trainer.evaluate_model import evaluate
    from cxrviewer.ml.manifest import ModelIntegrityError

    try:
        metrics = evaluate(
            args.model,
            args.labels,
            args.out,
            split_csv=args.split_csv,
            subset=args.subset,
            n_boot=args.bootstrap,
            tsne=not args.no_tsne,
            examples=not args.no_examples,
            cache_dir=args.cache_dir,
            threads=args.threads,
            show_progress=not args.quiet,
            ablations=ablation_modes(args.ablation),
        )
    except (ModelIntegrityError, DatasetError, ValueError, FileNotFoundError) as exc:
        print(f"cxr-trainer evaluate: {exc}", file=sys.stderr)
        from cxr_trainer.progress import RunLog

        log = RunLog("evaluate", {k: v for k, v in vars(args).items() if k != "func"})
        path = log.write(Path(args.out) / "evaluate_log.json", status="error", error=str(exc))
        print(f"JSON log: {path}", file=sys.stderr)
        return 1
    m = metrics
    out = Path(args.out)
    print(
        f"{m['n']} images evaluated ({', '.join(f'{k} {v}' for k, v in m['class_counts'].items())})"
        + (f"; excluded labels: {m['data']['excluded']}" if m["data"]["excluded"] else "")
        + (f"; unreadable: {len(m['data']['failed'])}" if m["data"]["failed"] else "")
    )
    ci = m.get("roc_auc_ci") or [float("nan")] * 2
    print(
        f"accuracy {m['accuracy']:.3f}  macro F1 {m['macro_f1']:.3f}  ROC AUC ({m['positive_class']}) "
        f"{m['roc_auc'] if m['roc_auc'] is not None else float('nan'):.3f} [{ci[0]:.3f}, {ci[1]:.3f}]  "
        f"PR AUC {m['pr_auc'] if m['pr_auc'] is not None else float('nan'):.3f}  ECE {m['ece']:.3f}"
    )
    for name, op in m["operating_points"].items():
        sens = op["sensitivity"] if op["sensitivity"] is not None else float("nan")
        spec = op["specificity"] if op["specificity"] is not None else float("nan")
        print(f"  {name:17s} cut-off {op['threshold']:.2f}: sensitivity {sens:.3f}  specificity {spec:.3f}")
    for src, e in m["per_source"].items():
        print(f"  source {src:20s} n={e['n']:5d}  accuracy {e['accuracy']:.3f}")
    print(
        f"{m['inference']['ms_per_image_batched']:.1f} ms/image batched, {m['inference']['ms_per_image_single']:.1f} ms single"
    )
    if "ablation" in m:
        for name, c in m["ablation"]["conditions"].items():
            auc = c["roc_auc"] if c["roc_auc"] is not None else float("nan")
            print(f"  {name:14s} accuracy {c['accuracy']:.3f}  ROC AUC {auc:.3f}")
        print(m["ablation"]["summary"])
    print(f"report: {out / 'report.html'}\nmetrics: {out / 'metrics.json'}")
    return 0
