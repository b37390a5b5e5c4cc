"""A small synthetic labelled CXR-like dataset (PNG files + labels.csv + near_duplicates.csv)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

CLASSES = {"normal": 0, "pneumonia_bacterial": 1, "covid": 2}


def _image(rng: np.random.Generator, label: str, size: int = 96) -> np.ndarray:
    """A gray 'chest' with two dark lungs; pneumonia adds a bright blob on the right lung, covid on both
    lower zones. Random position jitter and noise make every image different."""
    img = np.full((size + 8, size), 150, np.uint8)
    jx, jy = rng.integers(-3, 4, size=2)
    c = size // 2 + jx
    cv2.ellipse(img, (c - size // 5, size // 2 + jy), (size // 8, size // 4), 0, 0, 360, 50, -1)
    cv2.ellipse(img, (c + size // 5, size // 2 + jy), (size // 8, size // 4), 0, 0, 360, 50, -1)
    if label == "pneumonia_bacterial":
        cv2.circle(img, (c - size // 5, size // 2 + jy), size // 10, 200, -1)
    elif label == "covid":
        for dx in (-1, 1):
            cv2.circle(img, (c + dx * size // 5, size // 2 + size // 8 + jy), size // 12, 180, -1)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def make_synthetic_dataset(root: Path, per_class: int = 20, seed: int = 0) -> Path:
    """Write ``root/images/<source>/*.png`` and ``root/labels.csv``; returns the CSV path.

    Two sources, patients with two images each, one near-duplicate pair across patients, one 'other' label
    (excluded by the 3-class task) and one damaged file.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for label in CLASSES:
        for i in range(per_class):
            source = "alpha" if i % 2 == 0 else "beta"
            rel = f"images/{source}/{label}_{i:03d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), _image(rng, label))
            rows.append([rel, source, label, "PA", f"p{label[:3]}{i // 2}"])
    (root / "images/alpha/other_000.png").write_bytes(
        cv2.imencode(".png", _image(rng, "normal"))[1].tobytes()
    )
    rows.append(["images/alpha/other_000.png", "alpha", "other", "AP", "pother"])
    (root / "images/beta/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    rows.append(["images/beta/broken.png", "beta", "normal", "PA", "pbroken"])
    # an exact copy of one image under another patient id: a near-duplicate listed in near_duplicates.csv
    src_rel = "images/alpha/covid_000.png"
    dup_rel = "images/beta/covid_dup.png"
    (root / dup_rel).write_bytes((root / src_rel).read_bytes())
    rows.append([dup_rel, "beta", "covid", "PA", "pdupe"])
    csv_path = root / "labels.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "source", "label", "view", "patient_id"])
        w.writerows(rows)
    with open(root / "near_duplicates.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path_a", "path_b", "hamming", "ncc"])
        w.writerow([src_rel, dup_rel, 0, 1.0])
    return csv_path


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """labels.csv of the synthetic dataset (built once per session)."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic_cxr"))
