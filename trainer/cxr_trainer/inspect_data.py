"""What ``cxr-trainer data inspect`` computes: counts, patients, near-duplicates, unreadable files, leakage."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from cxr_trainer.datasets import load_dataset
from cxr_trainer.progress import progress
from cxr_trainer.splits import leakage_report, make_split, patient_key, read_split_csv, write_split_csv
from cxr_trainer.tasks import get_task


def _nested(pairs: Counter) -> dict[str, dict[str, int]]:
    d: dict[str, dict[str, int]] = defaultdict(dict)
    for (a, b), n in sorted(pairs.items()):
        d[a][b] = n
    return dict(d)


def inspect_dataset(
    location: str | Path,
    task_name: str = "normal-pneumonia-covid",
    split_csv: str | None = None,
    holdout_sources: tuple[str, ...] = (),
    seed: int = 0,
    decode: bool = True,
    show_progress: bool = True,
    write_split: str | None = None,
) -> dict[str, Any]:
    """The inspection report as plain data (also the JSON log's ``result``)."""
    from cxr_trainer.image_cache import ImageReadError, read_gray
    from cxr_trainer.near_duplicates import find_near_duplicates, fingerprint

    ds = load_dataset(location)
    recs = ds.records
    patients = {patient_key(r) for r in recs if patient_key(r)}
    rep: dict[str, Any] = {
        "root": str(ds.root),
        "layout": ds.layout,
        "images": len(recs),
        "patients": len(patients),
        "images_without_patient_id": sum(1 for r in recs if not r.patient_id),
        "counts": {
            "label": dict(Counter(r.label for r in recs)),
            "source": dict(Counter(r.source for r in recs)),
            "view": dict(Counter(r.view for r in recs)),
            "label_source": _nested(Counter((r.label, r.source) for r in recs)),
            "source_view": _nested(Counter((r.source, r.view) for r in recs)),
            "label_source_view": [
                {"label": lab, "source": s, "view": v, "n": n}
                for (lab, s, v), n in sorted(Counter((r.label, r.source, r.view) for r in recs).items())
            ],
        },
    }
    pairs = list(ds.near_duplicates)
    nd: dict[str, Any] = {"listed_pairs": len(pairs)}
    if decode:
        prints, ok_idx, unreadable = [], [], {}
        for i, r in enumerate(progress(recs, desc="hash", enabled=show_progress, unit="img")):
            try:
                prints.append(fingerprint(read_gray(r.path)))
                ok_idx.append(i)
            except ImageReadError as exc:
                unreadable[r.key] = str(exc)
        found = [
            (recs[ok_idx[a]].key, recs[ok_idx[b]].key, h, c) for a, b, h, c in find_near_duplicates(prints)
        ]
        listed = {frozenset(p) for p in pairs}
        new = [f for f in found if frozenset(f[:2]) not in listed]
        by_key = {r.key: r for r in recs}
        nd.update(
            found_pairs=len(found),
            found_not_listed=len(new),
            label_conflicts=sum(1 for a, b, *_ in found if by_key[a].label != by_key[b].label),
            examples=[{"a": a, "b": b, "hamming": h, "ncc": round(c, 4)} for a, b, h, c in new[:20]],
        )
        rep["unreadable"] = unreadable
        pairs = pairs + [(a, b) for a, b, *_ in new]
    rep["near_duplicates"] = nd
    task = get_task(task_name)
    mappable = [r for r in recs if task.map_label(r.label) is not None]
    if split_csv:
        assignment, origin = read_split_csv(split_csv), f"file {split_csv}"
    else:
        plan = make_split(
            mappable,
            pairs,
            [task.map_label(r.label) for r in mappable],
            seed=seed,
            holdout_sources=holdout_sources,
        )
        assignment, origin = (
            plan.assignment,
            f"proposed (seed {seed}"
            + (f", held-out {', '.join(holdout_sources)})" if holdout_sources else ")"),
        )
        if write_split:
            write_split_csv(write_split, mappable, assignment)
    leak = leakage_report(recs, pairs, assignment)
    by_split: dict[str, Counter] = defaultdict(Counter)
    for r in recs:
        if r.key in assignment:
            by_split[assignment[r.key]][task.map_label(r.label) or r.label] += 1
    rep["split"] = {
        "origin": origin,
        "task": task.name,
        "counts": dict(Counter(assignment.values())),
        "class_counts": {s: dict(c) for s, c in sorted(by_split.items())},
        "leakage": leak.to_dict(),
        "leakage_summary": leak.summary(),
    }
    return rep
