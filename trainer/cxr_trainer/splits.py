"""Leak-free splits: patient groups joined through near-duplicates, stratified, optional source hold-out.

Groups are the connected components of a union-find over (a) images of the same patient (ids namespaced by
source) and (b) near-duplicate pairs; a group never spans two splits. :func:`leakage_report` checks any split
(ours or a user's) for shared patients and near-duplicates across splits.
"""

from __future__ import annotations

import csv
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from cxr_trainer.datasets import Record

SPLITS = ("train", "val", "test")


class LeakageError(Exception):
    """A split puts the same patient or the same radiograph in more than one split."""


class UnionFind:
    """Disjoint sets over ``0..n-1`` with path halving."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def patient_key(r: Record) -> str | None:
    """Patient id namespaced by source (cohen "12" and kermany "12" are different people)."""
    return f"{r.source}:{r.patient_id}" if r.patient_id else None


def group_ids(records: list[Record], near_duplicates: list[tuple[str, str]]) -> list[int]:
    """Group index per record: same patient or near-duplicate (transitively) → same group."""
    uf = UnionFind(len(records))
    first_of_patient: dict[str, int] = {}
    index_of = {r.key: i for i, r in enumerate(records)}
    for i, r in enumerate(records):
        pk = patient_key(r)
        if pk is not None:
            uf.union(i, first_of_patient.setdefault(pk, i))
    for a, b in near_duplicates:
        if a in index_of and b in index_of:
            uf.union(index_of[a], index_of[b])
    roots = [uf.find(i) for i in range(len(records))]
    renum: dict[int, int] = {}
    return [renum.setdefault(r, len(renum)) for r in roots]


@dataclass
class SplitPlan:
    """Split name per record key, and how it was made."""

    assignment: dict[str, str]
    seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    holdout_sources: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    def keys(self, split: str) -> list[str]:
        return [k for k, s in self.assignment.items() if s == split]


def make_split(
    records: list[Record],
    near_duplicates: list[tuple[str, str]],
    labels: list[str] | None = None,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    holdout_sources: tuple[str, ...] = (),
) -> SplitPlan:
    """Stratified group split of ``records`` into train/val/test.

    ``labels`` (one per record, default the records' labels) are what is stratified on (use the task's
    classes). With ``holdout_sources`` every group touching one of those sources goes to test whole and the
    rest is split train/val in the ratio of the first two fractions.
    """
    labels = labels if labels is not None else [r.label for r in records]
    groups = group_ids(records, near_duplicates)
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    assignment: dict[str, str] = {}
    plan = SplitPlan(assignment, seed, fractions, tuple(holdout_sources))
    fr = list(fractions)
    free = list(members)
    if holdout_sources:
        held = {g for g, idx in members.items() if any(records[i].source in holdout_sources for i in idx)}
        for g in held:
            for i in members[g]:
                assignment[records[i].key] = "test"
        free = [g for g in free if g not in held]
        fr = [fractions[0], fractions[1], 0.0]
        pulled = sum(1 for g in held for i in members[g] if records[i].source not in holdout_sources)
        if pulled:
            plan.notes.append(
                f"{pulled} images of other sources joined the held-out test split (same patient or duplicate)"
            )
    total = sum(fr)
    fr = [f / total for f in fr]
    rng = random.Random(seed)
    rng.shuffle(free)
    free.sort(key=lambda g: -len(members[g]))
    label_totals = Counter(labels[i] for g in free for i in members[g])
    counts = {s: Counter() for s in SPLITS}
    for g in free:
        idx = members[g]
        glabels = Counter(labels[i] for i in idx)

        def deficit(s: int, glabels: Counter = glabels) -> float:
            name = SPLITS[s]
            return sum(
                n * (fr[s] * label_totals[lab] - counts[name][lab]) / max(label_totals[lab], 1)
                for lab, n in glabels.items()
            )

        best = max((s for s in range(3) if fr[s] > 0), key=deficit)
        counts[SPLITS[best]].update(glabels)
        for i in idx:
            assignment[records[i].key] = SPLITS[best]
    return plan


@dataclass
class LeakageReport:
    """Patients and near-duplicate pairs found in more than one split."""

    shared_patients: list[tuple[str, list[str]]]
    duplicate_pairs_across: list[tuple[str, str, str, str]]
    unassigned: int = 0

    @property
    def ok(self) -> bool:
        return not self.shared_patients and not self.duplicate_pairs_across

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "shared_patients": len(self.shared_patients),
            "duplicate_pairs_across_splits": len(self.duplicate_pairs_across),
            "unassigned_images": self.unassigned,
            "examples": {
                "patients": [{"patient": p, "splits": s} for p, s in self.shared_patients[:10]],
                "duplicates": [
                    {"a": a, "split_a": sa, "b": b, "split_b": sb}
                    for a, sa, b, sb in self.duplicate_pairs_across[:10]
                ],
            },
        }

    def summary(self) -> str:
        if self.ok:
            return "no leakage: no patient and no near-duplicate pair spans two splits"
        return (
            f"LEAKAGE: {len(self.shared_patients)} patients and {len(self.duplicate_pairs_across)} "
            "near-duplicate pairs appear in more than one split"
        )


def leakage_report(
    records: list[Record], near_duplicates: list[tuple[str, str]], assignment: dict[str, str]
) -> LeakageReport:
    """Check a split for patients and near-duplicates that cross splits."""
    by_patient: dict[str, set[str]] = defaultdict(set)
    unassigned = 0
    for r in records:
        s = assignment.get(r.key)
        if s is None:
            unassigned += 1
            continue
        pk = patient_key(r)
        if pk is not None:
            by_patient[pk].add(s)
    shared = sorted((p, sorted(s)) for p, s in by_patient.items() if len(s) > 1)
    across = [
        (a, assignment[a], b, assignment[b])
        for a, b in near_duplicates
        if a in assignment and b in assignment and assignment[a] != assignment[b]
    ]
    return LeakageReport(shared, across, unassigned)


def write_split_csv(path: str | Path, records: list[Record], assignment: dict[str, str]) -> Path:
    """Write ``path,split,label,source,patient_id`` rows (the exact split, stored in the model folder)."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "split", "label", "source", "patient_id"])
        for r in records:
            if r.key in assignment:
                w.writerow([r.key, assignment[r.key], r.label, r.source, r.patient_id])
    return path


def read_split_csv(path: str | Path) -> dict[str, str]:
    """Read a split CSV (``path``, ``split`` columns) into key → split."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    bad = {r["split"] for r in rows} - set(SPLITS)
    if bad:
        raise ValueError(f"{path}: unknown split names {sorted(bad)}; use train, val, test")
    return {r["path"]: r["split"] for r in rows}
