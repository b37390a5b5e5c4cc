"""Labelled chest X-ray datasets as one list of :class:`Record` rows, whatever their layout on disk.

Supported layouts (auto-detected by :func:`load_dataset`):

- **labels CSV** (the shared bundle ``labels.csv`` and any generic CSV): columns ``path`` (relative to the
  CSV's folder) and ``label``; optional ``source``, ``view``, ``patient_id``. A ``near_duplicates.csv``
  (``path_a``, ``path_b``) beside the CSV is read too.
- **Kermany** ``chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}``: bacterial / viral from the file names
  (``personN_bacteria_*``, ``personN_virus_*``), patient ids from ``personN`` (numbered per class).
- **class-per-folder** (COVID-Xray-5k ``{train,test}/{covid,non-covid}``, COVID-19 Radiography Database
  ``COVID/``, ``Normal/``, ``Viral Pneumonia/`` ...): the folder name is the label, normalised to the bundle's
  label names by :func:`normalise_label`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
NEAR_DUPLICATES_NAME = "near_duplicates.csv"


class DatasetError(Exception):
    """A dataset cannot be read (unknown layout, missing columns, empty)."""


@dataclass(frozen=True)
class Record:
    """One labelled image. ``path`` is absolute; ``key`` is the path as the dataset names it."""

    path: Path
    key: str
    label: str
    source: str = ""
    view: str = ""
    patient_id: str = ""


@dataclass
class Dataset:
    """A labelled image collection and the near-duplicate pairs known for it (as record keys)."""

    root: Path
    layout: str
    records: list[Record]
    near_duplicates: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def name(self) -> str:
        return self.root.name


_LABEL_ALIASES = [
    (re.compile(r"^(non[-_ ]?covid|noncovid|rest)$"), "non_covid"),
    (re.compile(r"covid"), "covid"),
    (re.compile(r"^(normal|no[-_ ]finding|healthy)$"), "normal"),
    (re.compile(r"bacteri"), "pneumonia_bacterial"),
    (re.compile(r"viral|virus"), "pneumonia_viral"),
    (re.compile(r"fung"), "pneumonia_fungal"),
    (re.compile(r"opacity"), "lung_opacity"),
    (re.compile(r"^pneumonia$"), "pneumonia_unspecified"),
]


def normalise_label(name: str) -> str:
    """Map a folder or CSV label (``COVID``, ``Viral Pneumonia``, ``non-covid`` ...) to a bundle label."""
    s = name.strip().lower().replace("-19", "")
    for pattern, label in _LABEL_ALIASES:
        if pattern.search(s):
            return label
    return re.sub(r"[^a-z0-9]+", "_", s).strip("_") or "unknown"


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_labels_csv(csv_path: str | Path) -> Dataset:
    """Read a labels CSV (``path`` relative to the CSV's folder) and a ``near_duplicates.csv`` beside it."""
    csv_path = Path(csv_path)
    root = csv_path.parent.resolve()
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        if not {"path", "label"} <= cols:
            raise DatasetError(
                f"{csv_path}: a labels CSV needs the columns 'path' and 'label' (has {sorted(cols)})"
            )
        records = [
            Record(
                path=(root / row["path"]).resolve(),
                key=row["path"],
                label=row["label"].strip(),
                source=(row.get("source") or "").strip(),
                view=(row.get("view") or "").strip(),
                patient_id=(row.get("patient_id") or "").strip(),
            )
            for row in reader
            if row.get("path")
        ]
    if not records:
        raise DatasetError(f"{csv_path} lists no images")
    pairs: list[tuple[str, str]] = []
    dup_csv = root / NEAR_DUPLICATES_NAME
    if dup_csv.is_file() and dup_csv.resolve() != csv_path.resolve():
        with open(dup_csv, newline="", encoding="utf-8") as fh:
            pairs = [
                (r["path_a"], r["path_b"]) for r in csv.DictReader(fh) if r.get("path_a") and r.get("path_b")
            ]
    return Dataset(root=root, layout="labels-csv", records=records, near_duplicates=pairs)


_KERMANY_PERSON = re.compile(r"(person\d+)_(bacteria|virus)", re.IGNORECASE)


def read_kermany(root: str | Path) -> Dataset:
    """Read ``chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}`` (Kermany et al. 2018)."""
    root = Path(root).resolve()
    records = []
    for path in _images_under(root):
        rel = path.relative_to(root).as_posix()
        cls = path.parent.name.upper()
        if cls == "NORMAL":
            label = "normal"
            patient = "kermany_" + re.sub(r"(-\d+)+$", "", path.stem)
        elif cls == "PNEUMONIA":
            m = _KERMANY_PERSON.search(path.stem)
            kind = m.group(2).lower() if m else ""
            label = {"bacteria": "pneumonia_bacterial", "virus": "pneumonia_viral"}.get(
                kind, "pneumonia_unspecified"
            )
            patient = f"kermany_{kind}_{m.group(1).lower()}" if m else ""
        else:
            continue
        records.append(Record(path, rel, label, source="kermany", view="AP", patient_id=patient))
    if not records:
        raise DatasetError(f"{root}: no images under */NORMAL or */PNEUMONIA")
    return Dataset(root=root, layout="kermany", records=records)


def read_class_folders(root: str | Path) -> Dataset:
    """Read a class-per-folder dataset: the image's parent folder name is its label.

    The source is the dataset folder's name; images in nested split folders (``train/covid``) are found too.
    """
    root = Path(root).resolve()
    records = []
    for path in _images_under(root):
        if path.parent == root:
            continue
        rel = path.relative_to(root).as_posix()
        records.append(Record(path, rel, normalise_label(path.parent.name), source=root.name, view="frontal"))
    if not records:
        raise DatasetError(f"{root}: no images in class sub-folders")
    return Dataset(root=root, layout="class-folders", records=records)


def _looks_like_kermany(root: Path) -> bool:
    subs = {p.name.upper() for p in root.glob("*/*") if p.is_dir()} | {
        p.name.upper() for p in root.iterdir() if p.is_dir()
    }
    return {"NORMAL", "PNEUMONIA"} <= subs


def load_dataset(location: str | Path) -> Dataset:
    """Open a dataset: a labels CSV file, a folder with ``labels.csv``, a Kermany tree or class folders."""
    p = Path(location)
    if p.is_file():
        return read_labels_csv(p)
    if not p.is_dir():
        raise DatasetError(f"{p} is neither a labels CSV nor a dataset folder")
    if (p / "labels.csv").is_file():
        return read_labels_csv(p / "labels.csv")
    if _looks_like_kermany(p):
        return read_kermany(p)
    return read_class_folders(p)
