"""The shipped lung U-Net (``models/lung-unet``): integrity, and real masks on held-out test images."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from cxrviewer.ml.manifest import ModelIntegrityError
from cxrviewer.ml.segmentation import DEFAULT_MODEL_DIR, LungSegmenter, dice_iou


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "manifest.json").is_file(), reason="models/lung-unet is not present"
)


@pytest.fixture(scope="module")
def segmenter() -> LungSegmenter:
    return LungSegmenter(DEFAULT_MODEL_DIR, threads=2)


def _test_images_with_truth(limit: int) -> list[tuple[str, str]]:
    rows = _rows(DEFAULT_MODEL_DIR / "split.csv")
    return [(r["path"], r["mask_kinds"]) for r in rows if r["split"] == "test"][:limit]


def test_manifest_records_preprocessing_and_per_source_metrics(segmenter):
    m = segmenter.manifest
    assert m.kind == "segmentation" and m.labels == ["lung"]
    assert segmenter.spec.size == m.preprocessing["size"]
    assert {"manual", "radiologist"} <= set(m.metrics["test"])
    size_mb = sum(f.bytes for f in m.files.values()) / 1e6
    assert size_mb < 50


def test_held_out_masks_match_the_human_masks(segmenter, shared_data):
    """Images of the test split (never trained on): Dice against every human mask at original resolution."""
    import cv2

    cxr = shared_data / "cxr"
    masks = {}
    for r in _rows(cxr / "masks.csv"):
        if r["mask_kind"] in ("manual", "radiologist"):
            masks.setdefault(r["image_path"], []).append(r["mask_path"])
    scores = []
    for path, _ in _test_images_with_truth(12):
        img = cv2.imread(str(cxr / path), cv2.IMREAD_GRAYSCALE)
        result = segmenter.segment(img)
        assert result.mask.shape == img.shape and result.mask.dtype == np.uint8
        for mp in masks.get(path, []):
            truth = cv2.imread(str(cxr / mp), cv2.IMREAD_GRAYSCALE) >= 128
            scores.append(dice_iou(result.mask, truth)[0])
    assert len(scores) >= 12
    assert np.median(scores) > 0.9, scores


def test_a_non_radiograph_gets_a_quality_warning(segmenter):
    rng = np.random.default_rng(3)
    noise = (rng.random((300, 300)) * 255).astype(np.uint8)
    result = segmenter.segment(noise)
    assert not result.qa.ok


def test_tampered_weights_are_refused(tmp_path):
    copy = tmp_path / "lung-unet"
    shutil.copytree(DEFAULT_MODEL_DIR, copy)
    w = copy / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0x01
    w.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        LungSegmenter(copy)
