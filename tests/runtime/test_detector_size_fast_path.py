"""A detector-size image (2048×2500) through the pipeline with the SHIPPED models: the fast path (preprocessing
shared by the gate, the lung U-Net and the classifier; bool lung mask; heatmap statistics without float64
copies) gives what the plain path gives — each model preprocessing on its own, float lung mask, the plain
heatmap formulas: probabilities within 1e-4, the same gate verdict and lung mask, a heatmap with correlation
≥ 0.99 at display size (it is in fact identical) and the same outside-lung share."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings
from tests.conftest import REPO_ROOT
from tests.explain.test_heatmap_fast_path import reference_heatmap

MODELS = REPO_ROOT / "models"
DISPLAY_MAX_SIDE = 1024  # cxrviewer.ui.overlay_data.DISPLAY_MAX_SIDE (not imported: no Qt here)


@pytest.fixture(scope="module")
def shipped():
    for name in ("cxr-classifier", "lung-unet", "input-gate"):
        if not (MODELS / name / "manifest.json").is_file():
            pytest.skip(f"models/{name} is not present")
    from cxrviewer.ml.gate import InputGate
    from cxrviewer.ml.segmentation import LungSegmenter

    gate = InputGate(MODELS / "input-gate", device="cpu", threads=1)
    seg = LungSegmenter(MODELS / "lung-unet", device="cpu", threads=1)
    return gate, seg


@pytest.fixture(scope="module")
def detector_images(shared_data):
    """Two frontal data-set radiographs enlarged to 2048×2500 (as ``bench_drop_to_results --large``)."""
    root = shared_data / "cxr"
    with open(root / "labels.csv", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["view"] in ("PA", "AP", "frontal")]
    by_source: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r["path"]):
        by_source.setdefault(r["source"], r)
    picked = list(by_source.values())[:2]
    images = []
    for r in picked:
        img = cv2.imread(str(root / r["path"]), cv2.IMREAD_GRAYSCALE)
        big = cv2.resize(img, (2048, 2500), interpolation=cv2.INTER_CUBIC)
        big[:60, :] = 0  # a black band, so the border crop is not the whole image
        images.append(big)
    return images


def _display(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    s = min(1.0, DISPLAY_MAX_SIDE / max(h, w))
    return cv2.resize(a.astype(np.float32), (round(w * s), round(h * s)), interpolation=cv2.INTER_LINEAR)


def _pipeline(shipped, share: bool) -> AnalysisPipeline:
    from cxrviewer.services.shipped_helpers import LungMaskAdapter

    gate, seg = shipped
    settings = AnalysisSettings(
        model_dir=MODELS / "cxr-classifier", device="cpu", threads=1, share_preprocessing=share
    )
    return AnalysisPipeline(settings, gate=gate, segmenter=LungMaskAdapter(seg))


def test_fast_path_matches_the_plain_path_on_detector_size_images(shipped, detector_images):
    gate, seg = shipped
    fast_pipe, unshared_pipe = _pipeline(shipped, True), _pipeline(shipped, False)
    predictor = fast_pipe.load()
    for image in detector_images:
        fast = fast_pipe.analyze(image, name="big")
        unshared = unshared_pipe.analyze(image, name="big")
        assert fast.status == "ok", fast.reason

        # the plain path, step by step: each model preprocesses the image itself
        assert gate.check(image).ok
        (pred,) = predictor.predict([image])
        plain_mask = seg.segment(image).mask.astype(np.float32)
        idx = pred.top_index
        ref_map, ref_outside, _ = reference_heatmap(pred.cam(idx), pred.geometry, plain_mask)

        for r in (fast, unshared):
            assert set(r.probabilities) == set(pred.labels)
            for label, p in zip(pred.labels, pred.probabilities, strict=True):
                assert abs(r.probabilities[label] - float(p)) <= 1e-4
            assert r.lung_mask.dtype == bool and np.array_equal(r.lung_mask, plain_mask > 0.5)
            assert r.heatmap.shape == image.shape and r.heatmap_class == pred.labels[idx]
            a, b = _display(r.heatmap), _display(ref_map)
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.99
            np.testing.assert_allclose(r.heatmap, ref_map, atol=1e-6)
            assert r.saliency_outside_lungs == pytest.approx(ref_outside, abs=1e-4)
        assert fast.to_json()["probabilities"] == unshared.to_json()["probabilities"]


def test_the_three_models_share_one_border_crop_and_the_128px_input(shipped, detector_images, monkeypatch):
    """What makes the fast path fast, counted rather than timed: one border crop per analysis for the gate,
    the lung U-Net and the classifier, and one preprocessing output for the gate's and the classifier's
    identical 128-px specs."""
    from cxrviewer.core import preprocess as preprocess_module

    calls = {"crop": 0, "preprocess": 0}
    real_crop, real_pre = preprocess_module.border_crop, preprocess_module._preprocess

    def crop(*a, **k):
        calls["crop"] += 1
        return real_crop(*a, **k)

    def pre(*a, **k):
        calls["preprocess"] += 1
        return real_pre(*a, **k)

    monkeypatch.setattr(preprocess_module, "border_crop", crop)
    monkeypatch.setattr(preprocess_module, "_preprocess", pre)
    image = detector_images[0]
    fast_pipe, unshared_pipe = _pipeline(shipped, True), _pipeline(shipped, False)
    fast_pipe.load()
    unshared_pipe.load()
    assert fast_pipe.analyze(image).status == "ok"
    assert calls == {"crop": 1, "preprocess": 2}  # 128 px (gate = classifier) and 160 px (U-Net)
    calls.update(crop=0, preprocess=0)
    assert unshared_pipe.analyze(image).status == "ok"
    assert calls == {"crop": 3, "preprocess": 3}
