"""``cxr-trainer reproduce RECIPE``: rebuild every shipped model from ``models/recipe.toml``, in order."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="rebuild the shipped models from a recipe file (lung U-Net, gate, classifier, export, library)",
        description="Run each step of a recipe TOML (one cxr-trainer command per step) in order, writing "
        "under --out and a reproduce_log.json there (per-step wall time, hardware, data split hashes). "
        "models/ is only touched with --install, after every selected step succeeded.",
    )
    p.add_argument("recipe", help="recipe TOML file, e.g. models/recipe.toml")
    p.add_argument(
        "--out", type=Path, default=Path("runs/reproduce"), help="output folder (default runs/reproduce)"
    )
    p.add_argument("--only", action="append", metavar="STEP", help="run only this step (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="check that every command parses and print them")
    p.add_argument(
        "--install", action="store_true", help="copy the results over the shipped models at the end"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cxr_trainer.reproduce import RecipeError, ReproduceError, ReproduceOptions, load_recipe, reproduce

    try:
        recipe = load_recipe(args.recipe)
        log = reproduce(
            recipe, ReproduceOptions(out=args.out, only=args.only, dry_run=args.dry_run, install=args.install)
        )
    except (RecipeError, ReproduceError) as exc:
        print(f"cxr-trainer reproduce: {exc}", file=sys.stderr)
        return 1
    if not args.dry_run:
        print(
            f"all {len(log['steps'])} steps done in {log['wall_s']:.0f} s; log: {args.out / 'reproduce_log.json'}"
        )
    return 0
