"""``cxr-trainer data inspect DATASET``: counts, patients, near-duplicates, unreadable images, leakage."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from cxr_trainer.tasks import TASKS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect datasets", description="Dataset tools.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    q = dsub.add_parser(
        "inspect",
        help="counts per label × source × view, patients, near-duplicates, unreadable images, split leakage",
        description="Inspect a dataset (labels CSV, bundle folder, Kermany tree or class folders): counts per "
        "label × source × view, patients, near-duplicates (dHash + NCC), images that fail to load, and the "
        "leakage report of a proposed split (or of --split FILE).",
    )
    q.add_argument("dataset")
    q.add_argument(
        "--task", choices=sorted(TASKS), default="normal-pneumonia-covid", help="task for the proposed split"
    )
    q.add_argument(
        "--split", dest="split_csv", help="check this split CSV (path,split) instead of proposing one"
    )
    q.add_argument("--holdout-source", dest="holdout_sources", action="append", default=[])
    q.add_argument("--seed", type=int, default=0)
    q.add_argument(
        "--no-hash", action="store_true", help="skip decoding (no near-duplicate search, no load check)"
    )
    q.add_argument(
        "--json", dest="json_out", help="write the JSON log here (default runs/inspect-<name>.json)"
    )
    q.add_argument("--write-split", help="write the proposed split CSV here")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.set_defaults(func=run_inspect)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _table(counter: Counter, rows: list[str], cols: list[str]) -> str:
    w = max([len(r) for r in rows] + [6])
    head = " " * w + "".join(f"{c[:12]:>13s}" for c in cols) + f"{'total':>8s}"
    lines = [head]
    for r in rows:
        vals = [counter[(r, c)] for c in cols]
        lines.append(f"{r:<{w}s}" + "".join(f"{v:>13d}" for v in vals) + f"{sum(vals):>8d}")
    return "\n".join(lines)


def run_inspect(args: argparse.Namespace) -> int:
    from cxr_trainer.inspect_data import inspect_dataset
    from cxr_trainer.progress import RunLog

    log = RunLog("data inspect", vars(args) | {"func": None})
    out = Path(args.json_out or f"runs/inspect-{Path(args.dataset).resolve().name}.json")
    try:
        rep = inspect_dataset(
            args.dataset,
            args.task,
            args.split_csv,
            tuple(args.holdout_sources),
            args.seed,
            decode=not args.no_hash,
            show_progress=not args.quiet,
            write_split=args.write_split,
        )
    except Exception as exc:  # noqa: BLE001 - report any failure as a message and in the log
        print(f"cxr-trainer data inspect: {exc}", file=sys.stderr)
        print(f"JSON log: {log.write(out, status='error', error=str(exc))}", file=sys.stderr)
        return 1
    log.result = rep
    c = Counter({(lab, src): n for lab, d in rep["counts"]["label_source"].items() for src, n in d.items()})
    labels, sources = sorted(rep["counts"]["label"]), sorted(rep["counts"]["source"])
    print(
        f"dataset {rep['root']} ({rep['layout']}): {rep['images']} images, {rep['patients']} patient ids "
        f"({rep['images_without_patient_id']} images without one)\n"
    )
    print("label × source\n" + _table(c, labels, sources) + "\n")
    cv = Counter({(src, v): n for src, d in rep["counts"]["source_view"].items() for v, n in d.items()})
    print("source × view\n" + _table(cv, sources, sorted(rep["counts"]["view"])) + "\n")
    nd = rep["near_duplicates"]
    print(
        f"near-duplicates: {nd['listed_pairs']} listed pairs; "
        + (
            f"{nd['found_pairs']} found by dHash+NCC ({nd['found_not_listed']} not listed, "
            f"{nd['label_conflicts']} with different labels)"
            if nd.get("found_pairs") is not None
            else "search skipped"
        )
    )
    if rep.get("unreadable") is not None:
        print(
            f"unreadable images: {len(rep['unreadable'])}"
            + "".join(f"\n  {k}: {m}" for k, m in list(rep["unreadable"].items())[:10])
        )
    s = rep["split"]
    print(
        f"\nsplit ({s['origin']}, task {args.task}): " + ", ".join(f"{k} {v}" for k, v in s["counts"].items())
    )
    for name, per in s["class_counts"].items():
        print(f"  {name:5s} " + ", ".join(f"{k} {v}" for k, v in per.items()))
    print("  " + s["leakage_summary"])
    print(f"\nJSON log: {log.write(out)}")
    return 0 if s["leakage"]["ok"] else 3
