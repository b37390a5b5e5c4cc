"""``cxr-trainer train-seg``: train the lung U-Net on masks.csv and write ``models/lung-unet/``.

Example::

    cxr-trainer train-seg --data ../shared/data/cxr --out models/lung-unet --minutes 18
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

DEFAULT_DATA = Path("../shared/data/cxr")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-seg", help="train the lung segmentation U-Net and write its model folder")
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
    p.set_defaults(func=run)


def _qa_rates(segmenter_model, spec, data: Path, n: int, seed: int) -> dict:
    """Mask-QA warning rate on frontal images of each source (no ground truth needed)."""
    import torch

    from cxr_trainer.datasets import read_labels_csv
    from cxr_trainer.image_cache import read_gray
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
        for r in pick:
            x, _ = preprocess(read_gray(r.path), spec)
            with torch.inference_mode():
                prob = torch.sigmoid(segmenter_model(torch.from_numpy(x)[None, None]))[0, 0].numpy()
            warned += not assess_mask(postprocess_mask(prob)).ok
        out[source] = {"n": len(pick), "warning_rate": warned / len(pick)}
    return out


def run(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import save_file

    from cxr_trainer.seg.lung import (
        build_arrays,
        evaluate_original_resolution,
        load_masked_images,
        train_unet,
    )
    from cxrviewer.core.preprocess import PreprocessSpec
    from cxrviewer.ml.manifest import ModelManifest, record_file, write_manifest
    from cxrviewer.ml.segmentation import MaskQASettings, build_unet

    torch.set_num_threads(args.threads)
    t_start = time.time()
    data = args.data.resolve()
    spec = PreprocessSpec(size=args.size, clahe=True)
    images, leakage = load_masked_images(data, fractions=(0.65, 0.10, 0.25), seed=args.seed)
    if not leakage["ok"]:
        raise SystemExit(f"split leaks: {leakage}")
    split = {s: [m for m in images if m.split == s] for s in ("train", "val", "test")}
    print(json.dumps({s: len(v) for s, v in split.items()}), flush=True)
    tag = f"{args.size}-{len(images)}-{args.seed}"
    x_tr, y_tr = build_arrays(split["train"], spec, args.cache / f"train-{tag}.npz")
    x_va, y_va = build_arrays(split["val"], spec, args.cache / f"val-{tag}.npz")
    model = build_unet(base=args.base)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"U-Net base {args.base}: {n_params / 1e6:.2f} M parameters", flush=True)
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
        log=lambda s: print(s, flush=True),
    )
    metrics = {
        "test": evaluate_original_resolution(model, split["test"], spec),
        "val_dice_model_resolution": result.best_val_dice,
    }
    metrics["mask_qa_warning_rate"] = _qa_rates(model, spec, data, args.qa_sample, args.seed)
    print(json.dumps(metrics, indent=1), flush=True)

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
    print(f"ONNX graph: {onnx['onnx']} (max |onnx - torch| {onnx['max_abs_diff']:.2e})", flush=True)
    print(f"wrote {out}", flush=True)
    return 0
