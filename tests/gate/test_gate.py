"""The input gate: model-free rules, and the shipped gate on held-out radiographs and non-radiographs."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrviewer.ml.gate import DEFAULT_MODEL_DIR, GateResult, GateRules, modality_check, rule_check
from cxrviewer.ml.manifest import ModelIntegrityError


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


HAVE_MODEL = (DEFAULT_MODEL_DIR / "manifest.json").is_file()
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason="models/input-gate is not present")


def test_rules_refuse_tiny_and_blank_images():
    rules = GateRules()
    assert "too small" in rule_check(np.zeros((16, 16), np.uint8), rules)
    assert "blank" in rule_check(np.full((300, 300), 128, np.uint8), rules)
    rng = np.random.default_rng(0)
    assert rule_check((rng.random((300, 300)) * 255).astype(np.uint8), rules) == ""


def test_modality_rule_refuses_non_radiograph_modalities_by_name():
    for m in ("CT", "MR", "US", "NM", "PT", "XA", "MG", " ct ", "RTDOSE", "SEG"):
        assert modality_check(m).startswith(f"DICOM modality {m.strip().upper()} ("), m
        assert modality_check(m).endswith("is not a radiograph")
    # projection radiographs, 'other', secondary captures (digitised films) and unknown go to the pixel checks
    for m in ("CR", "DX", "OT", "SC", "", None, "XYZ"):
        assert modality_check(m) == "", m


def test_result_unpacks_and_formats_abstention():
    ok, reason = GateResult(False, "the image is blank (almost uniform)")
    assert not ok and "blank" in reason
    assert GateResult(False, "x").message == "abstained: x"
    assert GateResult(True).message == "ok"


@pytest.fixture(scope="module")
def gate():
    if not HAVE_MODEL:
        pytest.skip("models/input-gate is not present")
    from cxrviewer.ml.gate import InputGate

    return InputGate(DEFAULT_MODEL_DIR)


def _test_split(view_filter) -> list[str]:
    split = {r["path"]: r["split"] for r in _rows(DEFAULT_MODEL_DIR / "split.csv")}
    return [p for p, s in split.items() if s == "test" and view_filter(p)]


@needs_model
def test_held_out_frontal_radiographs_pass(gate, shared_data):
    import cv2

    cxr = shared_data / "cxr"
    views = {r["path"]: r["view"] for r in _rows(cxr / "labels.csv")}
    paths = _test_split(lambda p: views.get(p) in ("PA", "AP", "AP Supine", "frontal"))[::40][:30]
    imgs = [cv2.imread(str(cxr / p), cv2.IMREAD_GRAYSCALE) for p in paths]
    results = gate.check_many(imgs)
    passed = sum(r.ok for r in results)
    assert passed >= len(paths) - 1, [r.reason for r in results if not r.ok]
    assert all(set(r.scores) == {"frontal", "lateral", "other"} for r in results if r.ok)


@needs_model
def test_held_out_laterals_are_refused(gate, shared_data):
    import cv2

    cxr = shared_data / "cxr"
    views = {r["path"]: r["view"] for r in _rows(cxr / "labels.csv")}
    paths = _test_split(lambda p: views.get(p) == "L")
    assert len(paths) >= 5
    results = gate.check_many([cv2.imread(str(cxr / p), cv2.IMREAD_GRAYSCALE) for p in paths])
    refused = sum(not r.ok for r in results)
    assert refused >= 0.8 * len(paths)


@needs_model
def test_non_radiographs_are_refused(gate):
    """Fresh generated images (a seed never used in training) and an inverted radiograph-like image."""
    from cxr_trainer.seg.negatives import generated

    items = generated(4, seed=987654)
    results = gate.check_many([it.image for it in items])
    refused = [not r.ok for r in results]
    assert sum(refused) >= len(items) - 1, [it.name for it, r in zip(items, results, strict=True) if r.ok]
    assert all(r.message.startswith("abstained: ") for r in results if not r.ok)


@needs_model
def test_ct_slice_from_pydicom_is_refused(gate):
    import pydicom
    from cxr_trainer.seg.negatives import dicom_to_uint8

    path = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    pixels = dicom_to_uint8(pydicom.dcmread(path))[0]
    ok, reason = gate.check(pixels)  # from the pixels alone (e.g. a screenshot of the slice)
    assert not ok and reason
    ok, reason = gate.check(pixels, modality="CT")
    assert not ok and reason.startswith("DICOM modality CT")


@needs_model
def test_tampered_gate_is_refused(tmp_path):
    from cxrviewer.ml.gate import InputGate

    copy = tmp_path / "gate"
    shutil.copytree(DEFAULT_MODEL_DIR, copy)
    p = copy / "ood.safetensors"
    data = bytearray(p.read_bytes())
    data[-5] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        InputGate(copy)


@needs_model
def test_lung_quality_check_as_fourth_check(shared_data):
    """With a lung segmenter the gate also refuses images without a plausible pair of lungs."""
    import cv2

    from cxrviewer.ml.gate import InputGate
    from cxrviewer.ml.segmentation import DEFAULT_MODEL_DIR as LUNG_DIR
    from cxrviewer.ml.segmentation import LungSegmenter

    if not (LUNG_DIR / "manifest.json").is_file():
        pytest.skip("models/lung-unet is not present")
    gate = InputGate(DEFAULT_MODEL_DIR, lung_segmenter=LungSegmenter(LUNG_DIR))
    cxr = shared_data / "cxr"
    views = {r["path"]: r["view"] for r in _rows(cxr / "labels.csv")}
    paths = _test_split(lambda p: views.get(p) in ("PA", "AP"))[::97][:8]
    results = gate.check_many([cv2.imread(str(cxr / p), cv2.IMREAD_GRAYSCALE) for p in paths])
    assert sum(r.ok for r in results) >= len(paths) - 1, [r.reason for r in results]
    rng = np.random.default_rng(5)
    blobs = cv2.GaussianBlur(rng.normal(0, 1, (300, 300)), (0, 0), 12)
    blobs = ((blobs - blobs.min()) / np.ptp(blobs) * 255).astype(np.uint8)
    ok, reason = gate.check(blobs)
    assert not ok and reason
