"""Leak-free splits: patient and near-duplicate groups stay together; leakage is reported and refused."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from cxr_trainer.datasets import Record, load_dataset
from cxr_trainer.splits import (
    LeakageError,
    group_ids,
    leakage_report,
    make_split,
    read_split_csv,
    write_split_csv,
)


def rec(key: str, label: str = "covid", source: str = "s", patient: str = "") -> Record:
    return Record(Path("/x") / key, key, label, source, "PA", patient)


def test_groups_join_patients_and_near_duplicates_transitively():
    records = [rec("a", patient="1"), rec("b", patient="1"), rec("c", patient="2"), rec("d"), rec("e")]
    g = group_ids(records, [("b", "c"), ("d", "zzz-not-in-dataset")])
    assert g[0] == g[1] == g[2]  # a-b same patient, b-c duplicates
    assert len({g[0], g[3], g[4]}) == 3  # d and e are on their own


def test_same_patient_id_in_two_sources_is_two_patients():
    records = [rec("a", source="cohen", patient="7"), rec("b", source="kermany", patient="7")]
    g = group_ids(records, [])
    assert g[0] != g[1]


def test_split_is_stratified_and_never_splits_a_group():
    records = []
    for i in range(300):
        label = ["normal", "pneumonia", "covid"][i % 3]
        records.append(rec(f"img{i}", label=label, patient=f"p{i // 3 if label == 'covid' else i}"))
    dups = [("img1", "img2"), ("img4", "img301-missing")]
    plan = make_split(records, dups, seed=3)
    groups = group_ids(records, dups)
    split_of_group: dict[int, set] = {}
    for r, g in zip(records, groups, strict=True):
        split_of_group.setdefault(g, set()).add(plan.assignment[r.key])
    assert all(len(s) == 1 for s in split_of_group.values())
    assert leakage_report(records, dups, plan.assignment).ok
    counts = Counter(plan.assignment.values())
    assert 190 <= counts["train"] <= 230 and 30 <= counts["val"] <= 60 and 30 <= counts["test"] <= 60
    for split in ("val", "test"):
        per = Counter(r.label for r in records if plan.assignment[r.key] == split)
        assert min(per.values()) >= 8, per  # every class present in every split


def test_holdout_source_goes_whole_to_test_with_its_duplicates():
    records = [rec(f"a{i}", source="A", patient=f"a{i}") for i in range(20)]
    records += [rec(f"b{i}", source="B", patient=f"b{i}") for i in range(20)]
    plan = make_split(records, [("a0", "b0")], seed=0, holdout_sources=("B",))
    assert all(plan.assignment[f"b{i}"] == "test" for i in range(20))
    assert plan.assignment["a0"] == "test"  # pulled along by its duplicate
    assert all(plan.assignment[f"a{i}"] in ("train", "val") for i in range(1, 20))
    assert plan.notes and "1 images" in plan.notes[0]


def test_leakage_report_finds_shared_patients_and_duplicates(tmp_path):
    records = [rec("a", patient="1"), rec("b", patient="1"), rec("c"), rec("d")]
    assignment = {"a": "train", "b": "test", "c": "train", "d": "val"}
    rep = leakage_report(records, [("c", "d")], assignment)
    assert not rep.ok
    assert rep.shared_patients == [("s:1", ["test", "train"])]
    assert rep.duplicate_pairs_across == [("c", "train", "d", "val")]
    path = write_split_csv(tmp_path / "split.csv", records, assignment)
    assert read_split_csv(path) == assignment


def test_training_refuses_a_leaky_split(synthetic_dataset, tmp_path):
    from cxr_trainer.training import TrainConfig, run_training

    ds = load_dataset(synthetic_dataset)
    assignment = {r.key: "train" for r in ds.records}
    assignment["images/beta/covid_dup.png"] = "test"  # its duplicate images/alpha/covid_000.png is in train
    assignment["images/alpha/normal_000.png"] = "val"
    split = write_split_csv(tmp_path / "leaky.csv", ds.records, assignment)
    cfg = TrainConfig(
        dataset=str(synthetic_dataset),
        out=str(tmp_path / "m"),
        split_csv=str(split),
        size=32,
        arch="squeezenet1_1",
        epochs=1,
        progress=False,
        cache_dir=str(tmp_path / "cache"),
    )
    with pytest.raises(LeakageError, match="near-duplicate"):
        run_training(cfg)
