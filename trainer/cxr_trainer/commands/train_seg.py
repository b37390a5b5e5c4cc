"""``cxr-trainer train-seg``: train the lung U-Net on masks.csv and write ``models/lung-unet/``.

Example::

    cxr-trainer train-seg --data ../shared/data/cxr --out models/lung-unet --minutes 18
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from pathlib import Path

DEFAULT_DATA = Path("../shared/data/cxr")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-seg",
        help="train the lung segmentation U-Net and write its model folder",
        description="Train the lung U-Net on the images of DATA/masks.csv (human masks are the truth for "
        "validation and test, model masks only train; split by patient and near-duplicate group) for a "
        "wall-clock budget, measure Dice at the original resolution per mask source and the mask-QA warning "
        "rate per source, and write OUT (model.safetensors + model.onnx + split.csv + manifest.json). The run "
        "log goes to --json (default runs/train-seg-<name of OUT>.json).",
    )
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="bundle folder with labels.csv + masks.csv"
    )
    p.add_argument("--out", type=Path, default=Path("models/lung-unet"), help="model folder to write")
    p.add_argument("--size", type=int, default=256, help="model input size in pixels")
    p.add_argument("--base", type=int, default=8, help="U-Net width (channels of the first level)")
    p.add_argument("--minutes", type=float, default=18.0, help="wall-clock training budget")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (the machine is shared)")
    p.add_argument("--cache", type=Path, default=Path(".cache/seg"), help="folder for the 8-bit array cache")
    p.add_argument(
        "--qa-sample",
        type=int,
        default=300,
        help="images of sources without masks on which to count mask-QA warnings",
    )
    p.add_argument(
        "--json", dest="json_out", type=Path, help="run log (default runs/train-seg-<OUT name>.json)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _qa_rates(segmenter_model, spec, data: Path, n: int, seed: int, show_progress: bool = False) -> dict:
    """Mask-QA warning rate on frontal images of each source (no ground truth needed)."""
    import torch

    from cxr_trainer.datasets import read_labels_csv
    from cxr_trainer.image_cache import read_gray
    from cxr_trainer.progress import progress
    from cxrviewer.core.preprocess import preprocess
    from cxrviewer.ml.segmentation import assess_mask, postprocess_mask

    recs = [r for r in read_labels_csv(data / "labels.csv").records if r.view not in ("L", "unknown")]
    rng = random.Random(seed)
    by_source: dict[str, list] = {}
    for r in recs:
        by_source.setdefault(r.source, []).append(r)
    out = {}
    per = max(1, n // max(1, len(by_source)))
    for source, rs in sorted(by_source.items()):
        pick = rng.sample(rs, min(per, len(rs)))
        warned = 0
        for r in progress(pick, desc=f"mask QA {source}", enabled=show_progress, unit="img"):
            x, _ = preprocess(read_gray(r.path), spec)
            with torch.inference_mode():
                prob = torch.sigmoid(segmenter_model(torch.from_numpy(x)[None, None]))[0, 0].numpy()
            warned += not assess_mask(postprocess_mask(prob)).ok
        out[source] = {"n": len(pick), "warning_rate": warned / len(pick)}
    return out


def run(args: argparse.Namespace) -> int:
    """Entry point of ``cxr-trainer train-seg``: train, write OUT, print a summary, write the run log."""
    from cxr_trainer.datasets import DatasetError
    from cxr_trainer.image_cache import ImageReadError
    from cxr_trainer.progress import default_log_path, run_with_log
    from cxr_trainer.splits import LeakageError

    log_path = args.json_out or default_log_path("train-seg", args.out)
    expected = (DatasetError, ImageReadError, LeakageError, ValueError, OSError)
    return run_with_log("train-seg", args, log_path, lambda log: _train(args, log), expected)


def _train(args: argparse.Namespace, log) -> int:
    import torch
    from safetensors.torch import save_file

    from cxr_trainer.seg.lung import (
        build_arrays,
        evaluate_original_resolution,
        load_masked_images,
        train_unet,
    )
    from cxr_trainer.splits import LeakageError
    from cxrviewer.core.preprocess import PreprocessSpec
    from cxrviewer.ml.manifest import ModelManifest, record_file, write_manifest
    from cxrviewer.ml.segmentation import MaskQASettings, build_unet

    torch.set_num_threads(args.threads)
    t_start = time.time()
    show = not args.quiet
    data = args.data.resolve()
    spec = PreprocessSpec(size=args.size, clahe=True)
    images, leakage = load_masked_images(data, fractions=(0.65, 0.10, 0.25), seed=args.seed)
    if not leakage["ok"]:
        raise LeakageError(f"split leaks: {leakage}")
    split = {s: [m for m in images if m.split == s] for s in ("train", "val", "test")}
    counts = {s: len(v) for s, v in split.items()}
    log.event("split", **counts)
    print("split: " + ", ".join(f"{s} {n}" for s, n in counts.items()) + " images with masks", flush=True)
    tag = f"{args.size}-{len(images)}-{args.seed}"
    x_tr, y_tr = build_arrays(split["train"], spec, args.cache / f"train-{tag}.npz", show, "train cache")
    x_va, y_va = build_arrays(split["val"], spec, args.cache / f"val-{tag}.npz", show, "val cache")
    model = build_unet(base=args.base)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"U-Net base {args.base}: {n_params / 1e6:.2f} M parameters", flush=True)

    def on_epoch(h: dict) -> None:
        log.event("epoch", **h)
        print(
            f"epoch {h['epoch']}: loss {h['loss']:.4f}  val Dice {h['val_dice']:.4f}  ({h['elapsed_s']:.0f} s)",
            flush=True,
        )

    result = train_unet(
        model,
        x_tr,
        y_tr,
        x_va,
        y_va,
        spec,
        args.minutes,
        args.batch,
        args.lr,
        args.seed,
        on_epoch=on_epoch,
        show_progress=show,
    )
    metrics = {
        "test": evaluate_original_resolution(model, split["test"], spec, show_progress=show),
        "val_dice_model_resolution": result.best_val_dice,
    }
    metrics["mask_qa_warning_rate"] = _qa_rates(model, spec, data, args.qa_sample, args.seed, show)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"name": "lung-unet"})
    with open(out / "split.csv", "w", encoding="utf-8") as fh:
        fh.write("path,split,mask_kinds\n")
        for m in images:
            fh.write(f"{m.key},{m.split},{'+'.join(sorted(m.masks))}\n")
    manifest = ModelManifest(
        name="lung-unet",
        version="1.0.0",
        kind="segmentation",
        architecture={
            "name": "lung-unet",
            "base": args.base,
            "in_chans": 1,
            "num_classes": 1,
            "parameters": n_params,
        },
        labels=["lung"],
        preprocessing=spec.to_dict(),
        task={"name": "lung-segmentation", "truth": ["manual", "radiologist"], "weak": ["model"]},
        metrics=metrics,
        training={
            "data": str(args.data),
            "split": {s: len(v) for s, v in split.items()},
            "split_file": "split.csv",
            "target_preference": ["manual", "radiologist", "model"],
            "seed": args.seed,
            "epochs": result.epochs,
            "train_seconds": round(result.seconds, 1),
            "wall_seconds": round(time.time() - t_start, 1),
            "history": result.history,
            "leakage": leakage,
            "hardware": f"{platform.machine()} CPU, {args.threads} torch threads",
            "command": f"cxr-trainer train-seg --data {args.data} --out {args.out} --size {args.size} "
            f"--base {args.base} --minutes {args.minutes} --seed {args.seed}",
        },
        extra={
            "threshold": 0.5,
            "postprocess": {"keep_components": 2, "fill_holes": True},
            "qa": MaskQASettings().__dict__,
        },
    )
    record_file(out, manifest, "weights", "model.safetensors")
    record_file(out, manifest, "split", "split.csv")
    write_manifest(out, manifest)
    from cxr_trainer.helper_export import export_helper_onnx

    onnx = export_helper_onnx(out, data=data)  # ONNX Runtime runs it without torch (the CPU build)
    log.result = {"out": str(out), "metrics": metrics, "epochs": result.epochs, "onnx": onnx}
    _print_summary(out, metrics, result, onnx, time.time() - t_start)
    return 0


def _print_summary(out: Path, metrics: dict, result, onnx: dict, seconds: float) -> None:
    """The end-of-run summary: training, test Dice per mask source, mask-QA warnings, what was written."""
    print(
        f"\nmodel written to {out}  ({seconds / 60:.1f} min)\n"
        f"  {result.epochs} epochs in {result.seconds / 60:.1f} min; best validation Dice "
        f"{result.best_val_dice:.3f} (model resolution)"
    )
    test = metrics["test"]
    for kind in ("manual", "radiologist", "all_human"):
        if kind in test:
            t = test[kind]
            print(
                f"  test {kind:12s} n={t['n']:4d}  Dice mean {t['dice_mean']:.3f}  median {t['dice_median']:.3f}"
                f"  5th pct {t['dice_p05']:.3f}  IoU {t['iou_mean']:.3f}  (original resolution)"
            )
    qa = metrics["mask_qa_warning_rate"]
    print(
        "  mask-QA warnings: "
        + ", ".join(f"{s} {100 * q['warning_rate']:.1f} % of {q['n']}" for s, q in qa.items())
    )
    print(f"  ONNX graph: {onnx['onnx']} (max |onnx - torch| {onnx['max_abs_diff']:.2e})")
