"""Dataset layouts (labels CSV, Kermany, class folders), label normalisation and task mapping."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from cxr_trainer.datasets import DatasetError, load_dataset, normalise_label
from cxr_trainer.tasks import get_task


def _png(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((20, 24), value, np.uint8))


@pytest.mark.parametrize(
    ("folder", "label"),
    [
        ("COVID", "covid"),
        ("covid-19", "covid"),
        ("non-covid", "non_covid"),
        ("Normal", "normal"),
        ("Viral Pneumonia", "pneumonia_viral"),
        ("Lung_Opacity", "lung_opacity"),
        ("PNEUMONIA", "pneumonia_unspecified"),
    ],
)
def test_folder_names_map_to_bundle_labels(folder, label):
    assert normalise_label(folder) == label


def test_kermany_layout_reads_bacteria_and_virus_from_file_names(tmp_path):
    root = tmp_path / "chest_xray"
    _png(root / "train/NORMAL/IM-0115-0001.jpeg")
    _png(root / "train/PNEUMONIA/person1_bacteria_1.jpeg")
    _png(root / "train/PNEUMONIA/person1_bacteria_2.jpeg")
    _png(root / "test/PNEUMONIA/person1_virus_6.jpeg")
    ds = load_dataset(root)
    assert ds.layout == "kermany"
    by = {r.key: r for r in ds.records}
    assert by["train/NORMAL/IM-0115-0001.jpeg"].label == "normal"
    assert by["train/PNEUMONIA/person1_bacteria_2.jpeg"].label == "pneumonia_bacterial"
    assert by["test/PNEUMONIA/person1_virus_6.jpeg"].label == "pneumonia_viral"
    # personN is numbered per class: bacteria person1 and virus person1 are different children
    assert (
        by["train/PNEUMONIA/person1_bacteria_1.jpeg"].patient_id
        == by["train/PNEUMONIA/person1_bacteria_2.jpeg"].patient_id
    )
    assert (
        by["train/PNEUMONIA/person1_bacteria_1.jpeg"].patient_id
        != by["test/PNEUMONIA/person1_virus_6.jpeg"].patient_id
    )


def test_class_folders_and_covid_xray_5k_layout(tmp_path):
    root = tmp_path / "COVID-Xray-5k"
    _png(root / "train/covid/a.png")
    _png(root / "train/non-covid/b.png")
    _png(root / "test/covid/c.jpg")
    ds = load_dataset(root)
    assert ds.layout == "class-folders"
    assert sorted(r.label for r in ds.records) == ["covid", "covid", "non_covid"]
    task = get_task("covid-vs-rest")
    assert [task.map_label(r.label) for r in ds.records if r.label == "non_covid"] == ["rest"]
    assert get_task("normal-pneumonia-covid").map_label("non_covid") is None  # excluded, not guessed


def test_labels_csv_needs_path_and_label(tmp_path):
    (tmp_path / "x.csv").write_text("file,diagnosis\na.png,covid\n")
    with pytest.raises(DatasetError, match="'path' and 'label'"):
        load_dataset(tmp_path / "x.csv")


def test_tasks_map_bundle_labels():
    npc = get_task("normal-pneumonia-covid")
    assert npc.map_label("pneumonia_viral") == "pneumonia" and npc.map_label("unknown") is None
    kat = get_task("normal-bacterial-covid")
    assert (
        kat.map_label("pneumonia_viral") is None
        and kat.map_label("pneumonia_bacterial") == "pneumonia_bacterial"
    )
    assert get_task("covid-vs-rest").labels == ("rest", "covid")
    with pytest.raises(ValueError, match="unknown task"):
        get_task("nope")


def test_shared_bundle_loads_with_near_duplicates(shared_data):
    ds = load_dataset(shared_data / "cxr")
    assert len(ds) > 6000 and len(ds.near_duplicates) > 300
    assert {"cohen", "covid19_radiography", "kermany", "hannover"} <= {r.source for r in ds.records}
    assert all(r.path.is_file() for r in ds.records[:50])
