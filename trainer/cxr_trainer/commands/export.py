"""``cxr-trainer export``: safetensors + manifest.json + ONNX verified against torch, optional int8 ONNX."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="add a verified ONNX graph (and optionally an int8 one, accuracy change measured) to a model folder",
        description="Export a trained model folder for the viewer: ONNX with outputs logits + features, "
        "verified against torch within --atol on real images; --int8 adds a quantised graph whose accuracy "
        "change is measured (by default on the model's own test split) and recorded in the manifest.",
    )
    p.add_argument("--model", required=True, help="trained model folder")
    p.add_argument("--out", help="write an exported copy here instead of adding files to --model")
    p.add_argument("--int8", choices=["dynamic", "static"], help="also write an int8 ONNX graph")
    p.add_argument(
        "--labels",
        help="labelled set for the parity check / int8 measurement (default: training data); for a lung "
        "U-Net or input-gate folder, the data folder its split.csv paths are relative to",
    )
    p.add_argument("--split", dest="split_csv", help="only this split CSV's --subset images of --labels")
    p.add_argument("--subset", default="test")
    p.add_argument("--limit", type=int, default=400, help="at most this many images for the int8 measurement")
    p.add_argument("--atol", type=float, default=1e-4, help="ONNX vs torch tolerance")
    p.add_argument("--cache-dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def _is_helper_model(model_dir: str) -> bool:
    """True for a lung U-Net or input-gate folder (exported by :mod:`cxr_trainer.helper_export`)."""
    from cxr_trainer.helper_export import HELPER_KINDS
    from cxrviewer.ml.manifest import ModelIntegrityError, load_manifest

    try:
        return load_manifest(model_dir, verify=False).kind in HELPER_KINDS
    except ModelIntegrityError:
        return False  # export_model reports the problem


def _export_helper(args: argparse.Namespace) -> int:
    """``export`` of a segmentation or gate folder: ``model.onnx`` in place, verified on test-split images."""
    from cxr_trainer.helper_export import export_helper_onnx
    from cxrviewer.ml.manifest import ModelIntegrityError
    from cxrviewer.ml.onnx_export import OnnxParityError

    if args.out or args.int8:
        print("cxr-trainer export: --out and --int8 apply to classifiers only", file=sys.stderr)
        return 2
    try:
        r = export_helper_onnx(args.model, data=args.labels, atol=args.atol)
    except (ModelIntegrityError, OnnxParityError, ValueError) as exc:
        print(f"cxr-trainer export: {exc}", file=sys.stderr)
        return 1
    print(f"ONNX: {r['onnx']}  (max |onnx - torch| = {r['max_abs_diff']:.2e} on {r['checked_on']})")
    return 0


def run(args: argparse.Namespace) -> int:
    from cxr_trainer.exporting import export_model
    from cxr_trainer.progress import RunLog
    from cxrviewer.ml.manifest import ModelIntegrityError
    from cxrviewer.ml.onnx_export import OnnxParityError

    log = RunLog("export", {k: v for k, v in vars(args).items() if k != "func"})
    if _is_helper_model(args.model):
        return _export_helper(args)
    try:
        r = export_model(
            args.model,
            args.out,
            args.int8,
            args.labels,
            args.split_csv,
            args.subset,
            args.limit,
            args.atol,
            args.cache_dir,
            show_progress=not args.quiet,
        )
    except (ModelIntegrityError, OnnxParityError, ValueError) as exc:
        print(f"cxr-trainer export: {exc}", file=sys.stderr)
        log.write(Path(args.out or args.model) / "export_log.json", status="error", error=str(exc))
        return 1
    log.result = r
    print(f"ONNX: {r['onnx']}  (max |onnx - torch| = {r['max_abs_diff']:.2e}, tolerance {args.atol:g})")
    q = r.get("int8")
    if q:
        if q.get("accuracy_delta") is None:
            print("int8: written, accuracy change NOT measured (no labelled data): not marked acceptable")
        else:
            print(
                f"int8 ({q['mode']}): accuracy {q['accuracy_fp32']:.4f} → {q['accuracy_int8']:.4f} "
                f"(Δ {q['accuracy_delta']:+.4f}, n={q['n']}), argmax agreement {q['argmax_agreement']:.4f}; "
                f"{'acceptable' if q['acceptable'] else 'NOT acceptable'} ({q['rule']})"
            )
    print(f"model folder: {r['model_dir']}  log: {log.write(Path(r['model_dir']) / 'export_log.json')}")
    return 0
