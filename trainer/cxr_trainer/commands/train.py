"""``cxr-trainer train``: train a classifier from a config file and/or options; writes a model folder."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from cxr_trainer.tasks import TASKS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a classifier (leak-free split, cached preprocessing, two-stage transfer)",
        description="Train a classifier and write a model folder (safetensors + manifest.json + split.csv + "
        "train_log.json). Options override the keys of an optional JSON/TOML CONFIG file.",
    )
    p.add_argument("config", nargs="?", help="JSON or TOML file with TrainConfig keys")
    p.add_argument("--data", dest="dataset", help="labels CSV, bundle folder, Kermany tree or class folders")
    p.add_argument("--out", help="model folder to write (e.g. runs/my-model)")
    p.add_argument("--task", choices=sorted(TASKS), help="label mapping / output classes")
    p.add_argument("--arch", help="backbone from the registry (resnet18, mobilenet_v3_small ...)")
    p.add_argument("--size", type=int, help="input size in pixels (default 128)")
    p.add_argument("--clahe", action="store_true", default=None, help="CLAHE in the preprocessing")
    p.add_argument("--channels", help="input channels, comma separated: cxr[,lung,zeros]")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--patience", type=int, help="early stopping patience in epochs (default 10)")
    p.add_argument("--lr-patience", type=int, help="ReduceLROnPlateau patience (default 5)")
    p.add_argument("--init", help="scratch | ImageNet weights file | model folder / checkpoint to start from")
    p.add_argument("--two-stage", choices=["auto", "yes", "no"], help="frozen trunk first, then all layers")
    p.add_argument("--stage1-epochs", type=int)
    p.add_argument(
        "--no-cache-features",
        dest="cache_features",
        action="store_false",
        default=None,
        help="stage 1 runs the frozen trunk every epoch instead of caching its features",
    )
    p.add_argument("--class-balance", choices=["loss", "sampler", "none"])
    p.add_argument("--hflip", type=float, help="probability of a left-right flip (default 0: off)")
    p.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto: AMP on CUDA, bf16 on CPUs with native bf16, else fp32",
    )
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None)
    p.add_argument("--threads", type=int, help="torch CPU threads (default 2)")
    p.add_argument("--split", dest="split_csv", help="use this split CSV (path,split) instead of making one")
    p.add_argument(
        "--holdout-source",
        dest="holdout_sources",
        action="append",
        help="put this source whole into the test split (repeatable)",
    )
    p.add_argument("--max-images", type=int, help="train on a random subset (quick runs)")
    p.add_argument("--max-minutes", type=float, help="stop starting new epochs after this many minutes")
    p.add_argument("--cache-dir", help="preprocessed-image cache (default .cache/cxr-trainer)")
    p.add_argument("--name", help="model name in the manifest")
    p.add_argument("--resume", action="store_true", default=None, help="continue from OUT/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """A :class:`TrainConfig` from the config file (if any) and the options given."""
    from cxr_trainer.augment import AugmentConfig
    from cxr_trainer.training import TrainConfig

    keys = [
        "dataset",
        "out",
        "task",
        "arch",
        "size",
        "clahe",
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "patience",
        "lr_patience",
        "init",
        "stage1_epochs",
        "cache_features",
        "class_balance",
        "seed",
        "device",
        "precision",
        "channels_last",
        "threads",
        "split_csv",
        "max_images",
        "max_minutes",
        "cache_dir",
        "name",
        "resume",
    ]
    over = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    if args.channels:
        over["channels"] = tuple(c.strip() for c in args.channels.split(","))
    if args.holdout_sources:
        over["holdout_sources"] = tuple(args.holdout_sources)
    if args.two_stage and args.two_stage != "auto":
        over["two_stage"] = args.two_stage == "yes"
    if args.no_augment:
        over["augment"] = AugmentConfig(0, 0, 0, 0, 0, 0, 0)
    elif args.hflip is not None:
        over["augment"] = AugmentConfig(hflip=args.hflip)
    over["progress"] = not args.quiet
    over["command"] = "cxr-trainer " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.config:
        return TrainConfig.from_file(args.config, **over)
    missing = [k for k in ("dataset", "out") if k not in over]
    if missing:
        raise SystemExit("cxr-trainer train: give a CONFIG file or --data and --out")
    return TrainConfig(**over)


def run(args: argparse.Namespace) -> int:
    from cxr_trainer.datasets import DatasetError
    from cxr_trainer.progress import RunLog
    from cxr_trainer.splits import LeakageError
    from cxr_trainer.training import LOG_NAME, run_training

    cfg = config_from_args(args)
    log = RunLog("train", cfg.to_dict())
    t0 = time.time()
    try:
        out = run_training(cfg, log)
    except (LeakageError, DatasetError, ValueError, FileNotFoundError) as exc:
        log.write(Path(cfg.out) / LOG_NAME, status="error", error=str(exc))
        print(f"cxr-trainer train: {exc}", file=sys.stderr)
        return 1
    if out is None:  # a non-zero rank under torchrun
        return 0
    r = log.result
    test = r.get("test") or {}
    print(f"\nmodel written to {out}  ({(time.time() - t0) / 60:.1f} min)")
    setup = next((e for e in log.events if e["event"] == "setup"), {})
    init = setup.get("init")
    if isinstance(init, dict):
        print(
            f"  initialised from {init['path']}: {init['trunk_tensors']} trunk tensors"
            + (f", first convolution {init['first_conv']}" if init["first_conv"] else "")
            + (", head loaded" if init["head_loaded"] else ", head new for this task")
        )
    stages = [e for e in log.events if e["event"] == "stage"]
    if len(stages) > 1 or any(e["stage"] == 2 for e in stages):
        s1 = sum(1 for e in log.events if e["event"] == "stage1_epoch") or sum(
            1 for e in log.events if e["event"] == "epoch" and e.get("frozen_trunk")
        )
        s2 = sum(1 for e in log.events if e["event"] == "epoch" and not e.get("frozen_trunk"))
        print(f"  two-stage transfer: {s1} epochs frozen trunk (head only), then {s2} epochs all layers")
    print(f"  temperature (validation) {r.get('temperature', 1.0):.3f}")
    for name, op in (r.get("operating_points") or {}).items():
        print(
            f"  {name:17s} threshold {op['threshold']:.2f}  sens {op['sensitivity']:.3f}  spec {op['specificity']:.3f} (validation)"
        )
    if test.get("n"):
        ci = test.get("roc_auc_ci") or [float("nan")] * 2
        print(
            f"  test: n={test['n']}  accuracy {test['accuracy']:.3f}  macro F1 {test['macro_f1']:.3f}  "
            f"ROC AUC {test['roc_auc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]  PR AUC {test['pr_auc']:.3f}"
        )
    print(f"  log: {Path(out) / LOG_NAME}")
    return 0
