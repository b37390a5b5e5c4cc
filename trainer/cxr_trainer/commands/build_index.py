"""``cxr-trainer build-index``: build a similar-case library from a labelled dataset and a trained model.

Each usable row of the dataset CSV (columns of ``shared/data/cxr/labels.csv``: ``path`` relative to the
CSV's folder, ``label``, and where present ``source``, ``license``, ``origin``, ``view``) is read as 8-bit
grayscale, preprocessed with the model's own spec, embedded with the model's penultimate layer and stored
with a 128-px thumbnail. Labels are mapped through the model's task ``label_map`` when it has one (rows whose
label the task leaves out are skipped), and ``unknown`` labels are always skipped.

With ``--redistributable-only`` only images whose licence allows redistribution are kept (the rule is
:func:`cxrviewer.services.case_library.licence_allows_redistribution` and is recorded in the library); a
library built without it says that it must not be shipped.

Near-duplicates (the same radiograph uploaded twice, listed in ``near_duplicates.csv`` beside the labels or
given with ``--near-duplicates``) are collapsed to the first eligible copy, so a query never shows one film
twice.

The library is written to ``OUT.partial`` and moved to ``OUT`` only when complete, so an interrupted build
never leaves a half-built library in place.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrviewer.services.case_library import (
    KINDS,
    CaseLibrary,
    CaseLibraryError,
    NewCase,
    licence_allows_redistribution,
    licence_rule,
    make_thumbnail,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``build-index`` sub-command."""
    p = sub.add_parser(
        "build-index",
        help="build a similar-case library (SQLite) from a labelled dataset",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--model", required=True, type=Path, help="model folder (manifest.json + weights)")
    p.add_argument("--labels", required=True, type=Path, help="dataset CSV (paths relative to its folder)")
    p.add_argument("--out", required=True, type=Path, help="library file to write (e.g. reference.cxrlib)")
    p.add_argument(
        "--redistributable-only",
        action="store_true",
        help="keep only images whose licence allows redistribution (for a library shipped with the app)",
    )
    p.add_argument(
        "--licence-allow",
        action="append",
        default=[],
        metavar="LICENCE",
        help="a further licence statement checked by hand and allowed (repeatable; NC/ND never pass)",
    )
    p.add_argument("--name", help="library display name (default: the output file name)")
    p.add_argument("--kind", choices=KINDS, default="reference", help="library kind (default: reference)")
    p.add_argument("--batch-size", type=int, default=32, help="images embedded per batch")
    p.add_argument(
        "--near-duplicates",
        default=None,
        metavar="CSV|none",
        help="pairs of the same radiograph (path_a, path_b); one case per group is kept (default: "
        "near_duplicates.csv beside --labels when present; 'none' keeps every copy)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="stop after this many eligible rows (trials; skip counts still cover the whole CSV)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument(
        "--json",
        dest="json_out",
        type=Path,
        help="write the JSON run log here (default runs/build-index-<OUT name>.json)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


@dataclass
class BuildSummary:
    """What a build did."""

    written: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    redistributable: int = 0
    seconds: float = 0.0
    bytes: int = 0
    model_id: str = ""
    statement: str = ""

    def to_dict(self, out: Path) -> dict:
        """The summary as JSON-ready values (the run log's ``result``)."""
        return {
            "library": str(out),
            "cases": sum(self.written.values()),
            "written": dict(self.written),
            "skipped": dict(self.skipped),
            "redistributable": self.redistributable,
            "seconds": round(self.seconds, 2),
            "bytes": self.bytes,
            "model_id": self.model_id,
            "statement": self.statement,
        }

    def lines(self, out: Path) -> list[str]:
        total = sum(self.written.values())
        lines = [
            f"wrote {total} cases to {out} ({self.bytes / 1e6:.1f} MB) in {self.seconds:.1f} s",
            f"model: {self.model_id}",
            "labels: " + ", ".join(f"{k} {v}" for k, v in sorted(self.written.items())),
            f"redistributable thumbnails: {self.redistributable} of {total}",
            f"statement: {self.statement}",
        ]
        if self.skipped:
            lines.append("skipped: " + ", ".join(f"{v} {k}" for k, v in self.skipped.most_common()))
        return lines


@dataclass(frozen=True)
class _Row:
    key: str  # the path as written in the CSV
    path: Path
    label: str
    source: str
    licence: str
    provenance: str
    redistributable: bool


def select_rows(
    csv_path: Path,
    label_map: dict[str, str] | None,
    redistributable_only: bool,
    licence_allow: list[str],
    summary: BuildSummary,
) -> list[_Row]:
    """The dataset rows that go into the library (skips are counted in ``summary.skipped``)."""
    root = csv_path.parent
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}")
        rows = list(reader)
    out: list[_Row] = []
    for r in rows:
        raw = (r.get("label") or "").strip()
        if not raw or raw == "unknown":
            summary.skipped["unlabelled"] += 1
            continue
        if label_map is not None and raw not in label_map:
            summary.skipped[f"label {raw} not in the model's task"] += 1
            continue
        licence = (r.get("license") or r.get("licence") or "").strip()
        ok = licence_allows_redistribution(licence, licence_allow)
        if redistributable_only and not ok:
            summary.skipped["licence does not allow redistribution"] += 1
            continue
        origin = (r.get("origin") or "").strip() or r["path"]
        details = [origin, f"dataset label {raw}"]
        if r.get("view"):
            details.append(f"view {r['view']}")
        out.append(
            _Row(
                key=r["path"],
                path=root / r["path"],
                label=label_map[raw] if label_map is not None else raw,
                source=(r.get("source") or "").strip(),
                licence=licence,
                provenance="; ".join(details),
                redistributable=ok,
            )
        )
    return out


def duplicate_pairs(spec: str | None, labels_csv: Path) -> list[tuple[str, str]]:
    """Near-duplicate pairs from ``spec`` (a CSV path, ``none``, or None for the one beside the labels)."""
    if spec is not None and spec.lower() == "none":
        return []
    path = Path(spec) if spec is not None else labels_csv.parent / "near_duplicates.csv"
    if not path.is_file():
        if spec is not None:
            raise FileNotFoundError(f"near-duplicates file not found: {path}")
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"path_a", "path_b"} <= set(reader.fieldnames or []):
            raise ValueError(f"{path} lacks the columns path_a and path_b")
        return [(r["path_a"], r["path_b"]) for r in reader]


def drop_near_duplicates(rows: list[_Row], pairs: list[tuple[str, str]], summary: BuildSummary) -> list[_Row]:
    """Keep the first row (in CSV order) of each group of near-duplicates linked by ``pairs``."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    seen: set[str] = set()
    kept = []
    for row in rows:
        group = find(row.key)
        if group in seen:
            summary.skipped["near-duplicate of a kept case"] += 1
            continue
        seen.add(group)
        kept.append(row)
    return kept


def statement(redistributable_only: bool, n_ok: int, total: int) -> str:
    """The library's redistribution statement."""
    if redistributable_only or n_ok == total:
        return "redistributable: every case's licence passed the licence rule"
    return (
        f"NOT redistributable: {total - n_ok} of {total} cases have licences that do not allow "
        "redistribution; for local use only, do not ship"
    )


def build_library(args: argparse.Namespace) -> BuildSummary:
    """Build the library described by parsed ``build-index`` arguments; returns the summary."""
    import cv2
    import torch
    from tqdm import tqdm

    from cxrviewer.ml.embeddings import embed_images
    from cxrviewer.ml.model_io import load_classifier
    from cxrviewer.ml.predictor import model_input

    torch.set_num_threads(max(1, min(int(args.threads), 2)))
    out: Path = args.out
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    t0 = time.perf_counter()
    summary = BuildSummary()
    model, manifest = load_classifier(args.model, verify=True)
    spec = manifest.preprocess_spec
    summary.model_id = manifest.model_id
    label_map = manifest.task.get("label_map") or None
    rows = select_rows(args.labels, label_map, args.redistributable_only, args.licence_allow, summary)
    rows = drop_near_duplicates(rows, duplicate_pairs(args.near_duplicates, args.labels), summary)
    if args.limit is not None:
        rows = rows[: args.limit]

    partial = out.with_name(out.name + ".partial")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)
    lib = CaseLibrary.open(
        partial,
        create=True,
        name=args.name or out.stem,
        kind=args.kind,
        model_id=summary.model_id,
        licence_rule_text=licence_rule(args.licence_allow),
        durable=False,
    )
    try:
        quiet = getattr(args, "quiet", False)
        with tqdm(total=len(rows), unit="img", desc="build-index", file=sys.stderr, disable=quiet) as bar:
            for start in range(0, len(rows), args.batch_size):
                batch, inputs, thumbs = [], [], []
                for row in rows[start : start + args.batch_size]:
                    img = cv2.imread(str(row.path), cv2.IMREAD_GRAYSCALE)
                    if img is None:
                        summary.skipped["unreadable image"] += 1
                        continue
                    batch.append(row)
                    inputs.append(model_input(img, spec)[0])
                    thumbs.append(make_thumbnail(img))
                if batch:
                    emb = embed_images(model, np.stack(inputs))
                    cases = [
                        NewCase(t, e, r.label, r.source, r.licence, r.provenance, r.redistributable)
                        for r, t, e in zip(batch, thumbs, emb, strict=True)
                    ]
                    lib.add_cases(cases, model_id=summary.model_id)
                    for r in batch:
                        summary.written[r.label] += 1
                        summary.redistributable += int(r.redistributable)
                bar.update(min(args.batch_size, len(rows) - start))
        total = sum(summary.written.values())
        if total == 0:
            raise CaseLibraryError("no case could be added: check the CSV, the licences and the labels")
        summary.statement = statement(args.redistributable_only, summary.redistributable, total)
        lib.set_statement(summary.statement)
        lib.finalise()
    except BaseException:
        lib.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)
        raise
    lib.close()
    os.replace(partial, out)
    summary.seconds = time.perf_counter() - t0
    summary.bytes = out.stat().st_size
    return summary


def run(args: argparse.Namespace) -> int:
    """Entry point of ``cxr-trainer build-index``."""
    from cxr_trainer.progress import RunLog
    from cxrviewer.ml.manifest import ModelIntegrityError

    log = RunLog("build-index", {k: v for k, v in vars(args).items() if k != "func"})
    log_path = getattr(args, "json_out", None) or Path(f"runs/build-index-{args.out.stem}.json")
    try:
        summary = build_library(args)
    except (ModelIntegrityError, CaseLibraryError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"build-index: error: {exc}", file=sys.stderr)
        print(f"JSON log: {log.write(log_path, status='error', error=str(exc))}", file=sys.stderr)
        return 2
    for line in summary.lines(args.out):
        print(line)
    log.result = summary.to_dict(args.out)
    print(f"JSON log: {log.write(log_path)}")
    return 0
