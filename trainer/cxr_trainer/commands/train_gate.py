"""``cxr-trainer train-gate``: train the input gate (frontal / lateral / not a CXR + OOD distance), measure it.

Example::

    cxr-trainer train-gate --data ../shared/data/cxr --out models/input-gate --minutes 8

The figures (pass rate of frontal CXRs, refusal rate of laterals and of every non-CXR family) are measured
with the saved model folder through :class:`cxrviewer.ml.gate.InputGate`, on test images none of which (nor
any same-patient or near-duplicate image) was used for training or for choosing thresholds.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections import defaultdict
from pathlib import Path

DEFAULT_DATA = Path("../shared/data/cxr")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-gate",
        help="train and measure the input gate (view + out-of-distribution)",
        description="Train the input gate (frontal / lateral / not a CXR, plus a Mahalanobis out-of-distribution "
        "distance) for a wall-clock budget, choose its thresholds on validation frontals and measure the saved "
        "OUT folder on held-out frontals, laterals, non-CXR images and real DICOMs. The run log goes to --json "
        "(default runs/train-gate-<name of OUT>.json).",
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="bundle folder with labels.csv")
    p.add_argument(
        "--dicom",
        type=Path,
        default=Path("../shared/data/dicom"),
        help="folder of real CXR DICOMs that must pass (optional)",
    )
    p.add_argument("--out", type=Path, default=Path("models/input-gate"))
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--minutes", type=float, default=6.0, help="wall-clock training budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine schedule)")
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="GATE_DIR",
        help="start from the weights of this gate folder (continued training; same split and seeds)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", type=Path, default=Path(".cache/gate"))
    p.add_argument(
        "--evaluate-only",
        action="store_true",
        help="do not train: measure the existing --out model on the same test material",
    )
    p.add_argument(
        "--with-lung-qa",
        type=Path,
        default=None,
        metavar="LUNG_MODEL",
        help="measure the gate with the lung-mask quality check of this lung model as a 4th check",
    )
    p.add_argument(
        "--json", dest="json_out", type=Path, help="run log (default runs/train-gate-<OUT name>.json)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _rate(flags: list[bool]) -> dict:
    n = len(flags)
    k = int(sum(flags))
    return {"n": n, "k": k, "rate": k / n if n else float("nan")}


def run(args: argparse.Namespace) -> int:
    """Entry point of ``cxr-trainer train-gate``: train (unless --evaluate-only), measure, summarise, log."""
    from cxr_trainer.datasets import DatasetError
    from cxr_trainer.image_cache import ImageReadError
    from cxr_trainer.progress import default_log_path, run_with_log
    from cxr_trainer.splits import LeakageError
    from cxrviewer.ml.manifest import ModelIntegrityError

    log_path = args.json_out or default_log_path("train-gate", args.out)
    expected = (DatasetError, ImageReadError, LeakageError, ModelIntegrityError, ValueError, OSError)
    return run_with_log("train-gate", args, log_path, lambda log: _train(args, log), expected)


def _train(args: argparse.Namespace, log) -> int:
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from cxr_trainer.datasets import read_labels_csv
    from cxr_trainer.image_cache import build_cache, read_gray
    from cxr_trainer.progress import progress
    from cxr_trainer.seg import negatives as neg
    from cxr_trainer.seg.gate_training import (
        fit_mahalanobis,
        mahalanobis,
        preprocess_items,
        scores_and_embeddings,
        train_gate_model,
        view_class,
    )
    from cxr_trainer.splits import LeakageError, leakage_report, make_split, write_split_csv
    from cxrviewer.core.preprocess import PreprocessSpec
    from cxrviewer.ml.gate import GATE_LABELS, GateRules, InputGate, modality_check
    from cxrviewer.ml.manifest import ModelManifest, record_file, write_manifest
    from cxrviewer.ml.model_io import save_classifier
    from cxrviewer.ml.registry import create_model

    torch.set_num_threads(args.threads)
    t_start = time.time()
    show = not args.quiet
    say = lambda s: print(s, flush=True)  # noqa: E731
    spec = PreprocessSpec(size=args.size)
    ds = read_labels_csv(args.data / "labels.csv")
    recs = [r for r in ds.records if view_class(r)]
    views = [view_class(r) for r in recs]
    plan = make_split(recs, ds.near_duplicates, labels=views, fractions=(0.7, 0.1, 0.2), seed=args.seed)
    leak = leakage_report(recs, ds.near_duplicates, plan.assignment)
    if not leak.ok:
        raise LeakageError(leak.summary())
    cache = build_cache(recs, spec, args.cache, show_progress=show, desc="gate cache")
    by = defaultdict(list)
    for i, (r, v) in enumerate(zip(recs, views, strict=True)):
        if i not in cache.failed:
            by[(plan.assignment[r.key], v)].append(i)
    split_counts = {f"{s}/{v}": len(ix) for (s, v), ix in sorted(by.items())}
    log.event("split", **split_counts)
    say("split: " + ", ".join(f"{k} {n}" for k, n in split_counts.items()))

    # non-CXR material: DICOMs split by picture, generated families by seed, photo families held out
    rng = random.Random(args.seed)
    dicom_neg, dicom_cxr = neg.package_dicoms()
    dicom_train, dicom_test = neg.split_by_content(dicom_neg, 0.5, args.seed)
    train_cxr_imgs = [read_gray(recs[i].path) for i in rng.sample(by[("train", "frontal")], 600)]
    crop_cxr_imgs = [read_gray(recs[i].path) for i in rng.sample(by[("train", "frontal")], 600)]
    test_cxr_imgs = [read_gray(recs[i].path) for i in rng.sample(by[("test", "frontal")], 150)]
    photos_sk = neg.photographs("sklearn")
    other_train = (
        neg.generated(300, seed=args.seed + 1)
        + neg.spoiled_radiographs(train_cxr_imgs, args.seed)
        + neg.heavy_crops(crop_cxr_imgs, 2, args.seed + 2)
        + dicom_train
        + neg.photo_crops(dicom_train, 4, args.seed)
        + photos_sk
        + neg.photo_crops(photos_sk, 160, args.seed, channels=True)
    )
    held_photos = neg.photographs("skimage") + neg.photographs("matplotlib")
    other_test = (
        neg.generated(60, seed=args.seed + 1000)
        + neg.spoiled_radiographs(test_cxr_imgs, args.seed + 1)
        + dicom_test
        + held_photos
        + neg.photo_crops(held_photos, 2, args.seed + 1)
    )
    seen = {it.family for it in other_train}
    log.event("non_cxr", train=len(other_train), test=len(other_test))
    say(f"non-CXR: {len(other_train)} train, {len(other_test)} test")

    if not args.evaluate_only:
        pools = {
            "frontal": cache.pixels[by[("train", "frontal")]],
            "lateral": cache.pixels[by[("train", "lateral")]],
            "other": preprocess_items(other_train, spec),
        }
        model = create_model("mobilenet_v3_small", num_classes=3, in_chans=1, dropout=0.2)
        prior: dict = {}
        if args.init is not None:
            from cxrviewer.ml.model_io import load_classifier

            start, start_manifest = load_classifier(args.init)
            model.load_state_dict(start.state_dict())
            prior = dict(start_manifest.training)
            say(f"continuing from {args.init} ({prior.get('total_steps', prior.get('steps'))} steps)")

        def on_history(h: dict) -> None:
            log.event("steps", **h)
            say(f"step {h['step']}: loss {h['loss']:.4f}  ({h['elapsed_s']:.0f} s)")

        result = train_gate_model(
            model,
            pools,
            spec,
            args.minutes,
            lr=args.lr,
            seed=args.seed,
            on_history=on_history,
            show_progress=show,
        )

        # OOD statistics from training frontals; thresholds from validation frontals only
        sub = sorted(rng.sample(by[("train", "frontal")], min(3000, len(by[("train", "frontal")]))))
        _, emb_tr = scores_and_embeddings(model, cache.pixels[sub], spec)
        mean, precision = fit_mahalanobis(emb_tr)
        p_val, emb_val = scores_and_embeddings(model, cache.pixels[by[("val", "frontal")]], spec)
        d_val = mahalanobis(emb_val, mean, precision)
        p_val_lat, _ = scores_and_embeddings(model, cache.pixels[by[("val", "lateral")]], spec)
        thresholds = {
            "min_frontal": float(min(0.5, np.quantile(p_val[:, 0], 0.003))),
            "max_lateral": 0.5,
            "max_distance": float(np.quantile(d_val, 0.997) * 1.05),
            "chosen_on": "validation frontal CXRs: 0.3rd percentile of the frontal score (at most 0.5), "
            "99.7th percentile of the Mahalanobis distance + 5 %",
        }
        log.event("thresholds", **thresholds)
        say(
            f"thresholds (validation frontals): frontal score >= {thresholds['min_frontal']:.3f}, "
            f"Mahalanobis distance <= {thresholds['max_distance']:.1f}"
        )

        out = args.out
        manifest = ModelManifest(
            name="input-gate",
            version="1.1.0",
            kind="gate",
            architecture={"name": "mobilenet_v3_small", "num_classes": 3, "in_chans": 1},
            labels=list(GATE_LABELS),
            preprocessing=spec.to_dict(),
            task={
                "name": "input-gate",
                "classes": {
                    "frontal": list(("PA", "AP", "AP Supine", "frontal")),
                    "lateral": ["L"],
                    "other": "non-CXR images (see docs)",
                },
            },
            thresholds=thresholds,
            extra={"rules": GateRules().__dict__},
        )
        save_classifier(model, manifest, out)
        save_file(
            {"mean": torch.from_numpy(mean), "precision": torch.from_numpy(precision)},
            str(out / "ood.safetensors"),
        )
        record_file(out, manifest, "ood", "ood.safetensors")
        write_split_csv(out / "split.csv", recs, plan.assignment)
        record_file(out, manifest, "split", "split.csv")
        write_manifest(out, manifest)

    # measure the saved artifact end to end on raw test images
    out = args.out
    lung = None
    if args.with_lung_qa is not None:
        from cxrviewer.ml.segmentation import LungSegmenter

        lung = LungSegmenter(args.with_lung_qa, threads=args.threads)
    gate = InputGate(out, lung_segmenter=lung)
    metrics: dict = {}
    test_front = [read_gray(recs[i].path) for i in progress(by[("test", "frontal")], "test frontals", show)]
    res = gate.check_many(test_front)
    src = [recs[i].source for i in by[("test", "frontal")]]
    metrics["frontal_cxr_pass"] = _rate([r.ok for r in res])
    metrics["frontal_cxr_pass_by_source"] = {
        s: _rate([r.ok for r, s2 in zip(res, src, strict=True) if s2 == s]) for s in sorted(set(src))
    }
    lat_imgs = [read_gray(recs[i].path) for i in by[("test", "lateral")] + by[("val", "lateral")]]
    metrics["lateral_refused_test_and_val"] = _rate([not r.ok for r in gate.check_many(lat_imgs)])
    metrics["lateral_refused_test"] = _rate(
        [not r.ok for r in gate.check_many(lat_imgs[: len(by[("test", "lateral")])])]
    )
    if not args.evaluate_only:
        metrics["val_lateral_scored_lateral"] = _rate(list(p_val_lat[:, 1] > 0.5))
    # as the viewer does: DICOM images come with their Modality (CT, US, ... refused by name)
    res_o = gate.check_many([it.image for it in other_test], [it.modality for it in other_test])
    res_px = gate.check_many([it.image for it in other_test])  # pixels only, for comparison
    fam, fam_px = defaultdict(list), defaultdict(list)
    for it, r, r_px in zip(other_test, res_o, res_px, strict=True):
        fam[it.family].append(not r.ok)
        fam_px[it.family].append(not r_px.ok)
    metrics["non_cxr_refused"] = _rate([not r.ok for r in res_o])
    metrics["non_cxr_refused_by_family"] = {
        f: {
            **_rate(v),
            "family_seen_in_training": f in seen,
            "refused_from_pixels_alone": _rate(fam_px[f])["rate"],
        }
        for f, v in sorted(fam.items())
    }
    metrics["non_cxr_refused_from_pixels_alone"] = _rate([not r.ok for r in res_px])
    metrics["non_cxr_refused_by_modality_rule"] = sum(bool(modality_check(it.modality)) for it in other_test)
    unseen = [v for f, v in fam.items() if f not in seen]
    metrics["non_cxr_refused_unseen_families"] = _rate([x for v in unseen for x in v])
    metrics["non_cxr_failures"] = [it.name for it, r in zip(other_test, res_o, strict=True) if r.ok][:50]
    dicom_pos = [it.image for it in dicom_cxr]
    dicom_mod = [it.modality for it in dicom_cxr]
    names = [it.name for it in dicom_cxr]
    if args.dicom.is_dir():
        import pydicom

        for p in sorted(args.dicom.rglob("*.dcm")):
            try:
                d = pydicom.dcmread(p)
                if str(getattr(d, "Modality", "")) in ("CR", "DX"):
                    dicom_pos += neg.dicom_to_uint8(d)[:1]
                    dicom_mod.append(str(d.Modality))
                    names.append(p.name)
            except Exception as exc:  # report, do not hide
                say(f"skipped {p.name}: {exc}")
    res_d = gate.check_many(dicom_pos, dicom_mod)
    metrics["dicom_cxr_pass"] = {
        **_rate([r.ok for r in res_d]),
        "files": {n: r.message for n, r in zip(names, res_d, strict=True)},
    }
    log.result = {"out": str(out), "metrics": metrics}

    if args.evaluate_only:
        name = "lung_qa" if lung is not None else "gate"
        report = Path("runs") / f"evaluation_{name}.json"
        report.parent.mkdir(exist_ok=True)
        report.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
        say(f"\nmeasured {out}  ({(time.time() - t_start) / 60:.1f} min)")
        _print_summary(metrics)
        say(f"  measurements: {report}")
        return 0
    manifest.metrics = metrics
    manifest.training = {
        "data": str(args.data),
        "seed": args.seed,
        "steps": result.steps,
        "total_steps": result.steps + int(prior.get("total_steps", prior.get("steps", 0)) if prior else 0),
        "continued_from": (
            {
                "path": str(args.init),
                "command": prior.get("command"),
                "steps": prior.get("total_steps", prior.get("steps")),
            }
            if prior
            else None
        ),
        "train_seconds": round(result.seconds, 1),
        "wall_seconds": round(time.time() - t_start, 1),
        "split": {f"{s}/{v}": len(ix) for (s, v), ix in sorted(by.items())},
        "non_cxr": {
            "train": len(other_train),
            "test": len(other_test),
            "train_families": sorted(seen),
            "test_families": sorted(fam),
        },
        "leakage": leak.to_dict(),
        "history": result.history,
        "hardware": f"{platform.machine()} CPU, {args.threads} torch threads",
        "command": f"cxr-trainer train-gate --data {args.data} --out {args.out} --size {args.size} "
        f"--minutes {args.minutes} --seed {args.seed} --lr {args.lr} --threads {args.threads}"
        + (f" --init {args.init}" if args.init is not None else ""),
    }
    write_manifest(out, manifest)
    from cxr_trainer.helper_export import export_helper_onnx

    onnx = export_helper_onnx(out, data=args.data)  # so the CPU build can run the gate
    log.result["onnx"] = onnx
    say(f"\nmodel written to {out}  ({(time.time() - t_start) / 60:.1f} min)")
    say(f"  {result.steps} steps in {result.seconds / 60:.1f} min")
    _print_summary(metrics)
    say(f"  ONNX graph: {onnx['onnx']} (max |onnx - torch| {onnx['max_abs_diff']:.2e})")
    return 0


def _pct(r: dict) -> str:
    """``{"n": 200, "k": 198, "rate": 0.99}`` as ``99.0 % (198/200)``."""
    return f"{100 * r['rate']:.1f} % ({r['k']}/{r['n']})" if r["n"] else "n/a (none)"


def _print_summary(metrics: dict) -> None:
    """The gate's measured figures, one line each (the full table is in the manifest and the run log)."""
    by_source = ", ".join(f"{s} {_pct(r)}" for s, r in metrics["frontal_cxr_pass_by_source"].items())
    print(f"  frontal CXRs passed: {_pct(metrics['frontal_cxr_pass'])}  [{by_source}]")
    print(f"  laterals refused (test + val): {_pct(metrics['lateral_refused_test_and_val'])}")
    print(
        f"  non-CXR refused: {_pct(metrics['non_cxr_refused'])}; from pixels alone "
        f"{_pct(metrics['non_cxr_refused_from_pixels_alone'])}; families unseen in training "
        f"{_pct(metrics['non_cxr_refused_unseen_families'])}"
    )
    worst = sorted(metrics["non_cxr_refused_by_family"].items(), key=lambda kv: kv[1]["rate"])[:3]
    print("  least refused families: " + ", ".join(f"{f} {_pct(r)}" for f, r in worst))
    print(f"  DICOM CXRs passed: {_pct(metrics['dicom_cxr_pass'])}")
