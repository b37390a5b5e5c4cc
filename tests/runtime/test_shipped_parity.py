"""The SHIPPED models give the same answers on ONNX Runtime (CPU) as on torch (issue #9).

``models/cxr-classifier``, ``models/lung-unet`` and ``models/input-gate``, each loaded twice (forced
``onnxruntime-cpu-fp32`` and ``torch-cpu-fp32``) and run on the bundled samples and on real shared images
(held-out test-split images of the lung U-Net and the gate, frontal and lateral; skipped without the shared
data) plus generated non-radiographs (so that the gate's refusals are compared too): logits and probabilities
within 1e-4, identical gate decisions, lung masks with IoU ≥ 0.999.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

MODELS = REPO_ROOT / "models"
SAMPLES = REPO_ROOT / "resources" / "samples"
ORT, TORCH = "onnxruntime-cpu-fp32", "torch-cpu-fp32"
ATOL = 1e-4


def _shipped(name: str) -> Path:
    d = MODELS / name
    if not (d / "manifest.json").is_file():
        pytest.skip(f"models/{name} is not present")
    return d


def _bundled_samples() -> list[np.ndarray]:
    from cxrviewer.services.analysis import read_display_image

    return [read_display_image(p) for p in sorted(SAMPLES.iterdir()) if p.suffix in (".dcm", ".png")]


def _test_split_images(
    shared_data: Path, model: str, n: int, view: set[str] | None = None
) -> list[np.ndarray]:
    """``n`` images of a shipped model's test split spread over the split (optionally of some views only)."""
    import cv2

    cxr = shared_data / "cxr"
    views = {}
    if view is not None:
        with open(cxr / "labels.csv", newline="", encoding="utf-8") as fh:
            views = {r["path"]: r["view"] for r in csv.DictReader(fh)}
    with open(MODELS / model / "split.csv", newline="", encoding="utf-8") as fh:
        paths = [
            r["path"]
            for r in csv.DictReader(fh)
            if r["split"] == "test" and (view is None or views.get(r["path"]) in view)
        ]
    picked = paths[:: max(1, len(paths) // n)][:n]
    return [cv2.imread(str(cxr / p), cv2.IMREAD_GRAYSCALE) for p in picked]


@pytest.fixture(scope="module")
def real_images(shared_data) -> list[np.ndarray]:
    """Six lung-U-Net test images, six frontal and three lateral gate test images (real, held out)."""
    frontal = {"PA", "AP", "AP Supine", "frontal"}
    return (
        _test_split_images(shared_data, "lung-unet", 6)
        + _test_split_images(shared_data, "input-gate", 6, frontal)
        + _test_split_images(shared_data, "input-gate", 3, {"L"})
    )


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _classifier_pair():
    from cxrviewer.ml.predictor import Predictor, PredictorSettings

    d = _shipped("cxr-classifier")
    settings = PredictorSettings(threads=1, warmup=False)
    return Predictor.load(d, backend=ORT, settings=settings), Predictor.load(
        d, backend=TORCH, settings=settings
    )


def _assert_classifier_parity(images):
    ort, torch_ = _classifier_pair()
    a, b = ort.predict(images), torch_.predict(images)
    assert _max_diff([p.logits for p in a], [p.logits for p in b]) <= ATOL
    assert _max_diff([p.probabilities for p in a], [p.probabilities for p in b]) <= ATOL
    assert _max_diff([p.embedding for p in a], [p.embedding for p in b]) <= ATOL
    assert [p.top_index for p in a] == [p.top_index for p in b]


def _assert_unet_parity(images):
    from cxrviewer.ml.segmentation import LungSegmenter, dice_iou

    d = _shipped("lung-unet")
    ort, torch_ = LungSegmenter(d, threads=1, backend=ORT), LungSegmenter(d, threads=1, backend=TORCH)
    assert (ort.backend, torch_.backend) == (ORT, TORCH)
    for image in images:
        a, b = ort.segment(image), torch_.segment(image)
        assert _max_diff(a.probability, b.probability) <= ATOL
        assert dice_iou(a.model_mask, b.model_mask)[1] >= 0.999
        assert dice_iou(a.mask, b.mask)[1] >= 0.999
        assert a.mask.sum() > 0  # a real mask, not two empty ones
        assert a.qa.warnings == b.qa.warnings


def _assert_gate_parity(images):
    from cxrviewer.ml.gate import InputGate

    d = _shipped("input-gate")
    ort, torch_ = InputGate(d, threads=1, backend=ORT), InputGate(d, threads=1, backend=TORCH)
    assert (ort.backend, torch_.backend) == (ORT, TORCH)
    p_ort, d_ort = ort.scores(images)
    p_torch, d_torch = torch_.scores(images)
    assert _max_diff(p_ort, p_torch) <= ATOL
    assert np.all(np.abs(d_ort - d_torch) <= ATOL * np.maximum(1.0, d_torch)), (d_ort, d_torch)
    a, b = ort.check_many(images), torch_.check_many(images)
    assert [(r.ok, r.reason) for r in a] == [(r.ok, r.reason) for r in b]
    return a


def test_classifier_parity_on_the_bundled_samples():
    _assert_classifier_parity(_bundled_samples())


def test_lung_unet_parity_on_the_bundled_samples():
    _assert_unet_parity(_bundled_samples())


def test_gate_parity_on_the_bundled_samples():
    results = _assert_gate_parity(_bundled_samples())
    assert all(r.ok for r in results)  # the bundled study is three frontal radiographs


def test_classifier_parity_on_real_images(real_images):
    _assert_classifier_parity(real_images)


def test_lung_unet_parity_on_real_images(real_images):
    _assert_unet_parity(real_images[:8])


def test_gate_parity_on_real_images_and_non_radiographs(real_images):
    from cxr_trainer.seg.negatives import generated

    others = [it.image for it in generated(4, seed=424242)]
    results = _assert_gate_parity(real_images + others)
    assert sum(not r.ok for r in results[-7:]) >= 5  # laterals and non-CXRs: refusals are compared too
