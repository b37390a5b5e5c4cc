"""The analysis pipeline: statuses, operating point, heatmap, lung mask, neighbours, errors as reasons."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from cxrviewer.services import analysis
from cxrviewer.services.analysis import NO_MODEL_REASON, AnalysisPipeline, AnalysisSettings
from tests.runtime.models import synthetic_cxr


@pytest.fixture(scope="module")
def model_dir(pristine_model_dir):
    return pristine_model_dir


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "chest.png"
    cv2.imwrite(str(path), synthetic_cxr(120, 100, seed=3))
    return path


def _settings(model_dir, **kw) -> AnalysisSettings:
    return AnalysisSettings(model_dir=model_dir, device="cpu", threads=1, warmup=False, **kw)


class RejectAll:
    def check(self, image):
        return False, "this does not look like a frontal chest X-ray"


class LeftHalfLungs:
    def segment(self, image):
        mask = np.zeros(image.shape, bool)
        mask[:, : image.shape[1] // 2] = True
        return mask


@dataclass
class FakeCase:
    library: str
    case_id: int
    label: str
    distance: float
    source: str = "test"
    licence: str = "CC0"


class FakeLibrary:
    def __init__(self):
        self.calls = []

    def query(self, embedding, k=4, *, model_id):
        self.calls.append((embedding, k, model_id))
        return [FakeCase("ref", 1, "covid", 0.1), FakeCase("ref", 2, "normal", 0.3)][:k]


class MismatchedLibrary:
    def query(self, embedding, k=4, *, model_id):
        raise RuntimeError("library 'ref' was built with model other@1")


def test_ok_result_with_operating_point_heatmap_and_timings(model_dir, png):
    r = AnalysisPipeline(_settings(model_dir)).analyze(png)
    assert r.status == "ok" and r.reason is None
    assert set(r.probabilities) == {"normal", "pneumonia", "covid"}
    assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    op = r.operating_point
    assert (op.name, op.positive_class, op.threshold, op.sensitivity) == ("balanced", "covid", 0.2, 0.94)
    assert op.positive == (r.probabilities["covid"] >= 0.2)
    assert r.backend == "onnxruntime-cpu-fp32" and r.backend_reason.startswith("cpu device requested")
    assert r.model_id.startswith("tiny-test-classifier@0.0.1:")
    assert r.heatmap.shape == (120, 100) and r.heatmap.min() >= 0.0 and r.heatmap.max() <= 1.0
    assert r.heatmap_method == "gradcam" and r.heatmap_class == r.top_label
    assert {"load", "preprocess", "classify", "heatmap", "total"} <= set(r.timings_ms)
    assert r.latency_ms == r.timings_ms["total"] >= r.timings_ms["classify"]
    assert any("no input gate" in w for w in r.warnings)
    assert r.to_json()["status"] == "ok"


def test_operating_point_choice_and_unknown_name(model_dir, png):
    r = AnalysisPipeline(_settings(model_dir, operating_point="high-specificity")).analyze(png)
    assert r.operating_point.threshold == 0.5
    bad = AnalysisPipeline(_settings(model_dir, operating_point="nope")).analyze(png)
    assert bad.status == "error" and "unknown operating point 'nope'" in bad.reason


def test_gate_abstains_without_scores(model_dir, png):
    r = AnalysisPipeline(_settings(model_dir), gate=RejectAll()).analyze(png)
    assert r.status == "abstained" and r.probabilities == {}
    assert r.reason == "this does not look like a frontal chest X-ray"
    assert r.backend == "onnxruntime-cpu-fp32" and "gate" in r.timings_ms


def test_lung_mask_and_saliency_outside_lungs(model_dir, png):
    r = AnalysisPipeline(_settings(model_dir), segmenter=LeftHalfLungs()).analyze(png)
    assert r.lung_mask.shape == (120, 100) and r.lung_mask.dtype == bool
    outside = float(r.heatmap[~r.lung_mask].sum() / r.heatmap.sum())
    assert r.saliency_outside_lungs == pytest.approx(outside, abs=1e-6)
    assert "segment" in r.timings_ms


def test_neighbours_and_vote_from_the_same_embedding(model_dir, png):
    lib = FakeLibrary()
    pipe = AnalysisPipeline(_settings(model_dir, neighbours=2), libraries=lib)
    r = pipe.analyze(png)
    emb, k, model_id = lib.calls[0]
    assert k == 2 and model_id == r.model_id and np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    assert [n.case_id for n in r.neighbours] == ["1", "2"] and r.neighbours[0].licence == "CC0"
    assert r.neighbour_vote["covid"] > r.neighbour_vote["normal"]
    r2 = AnalysisPipeline(_settings(model_dir), libraries=MismatchedLibrary()).analyze(png)
    assert r2.status == "ok" and any("built with model other@1" in w for w in r2.warnings)


def test_unreadable_and_missing_files_are_errors_with_reasons(model_dir, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    pipe = AnalysisPipeline(_settings(model_dir))
    missing, bad = pipe.analyze_many([tmp_path / "nope.png", broken])
    assert missing.status == "error" and "does not exist" in missing.reason
    assert bad.status == "error" and "broken.png" in bad.reason and "Traceback" not in bad.reason


def test_no_model_installed(tmp_path, png, monkeypatch):
    monkeypatch.setattr("cxrviewer.resources.models_dir", lambda: tmp_path / "models")
    r = AnalysisPipeline(AnalysisSettings()).analyze(png)
    assert (r.status, r.reason, r.probabilities) == ("error", NO_MODEL_REASON, {})
    assert analysis.default_model_dir(tmp_path) is None


def test_default_model_is_the_first_classifier(tmp_path, model_dir):
    import shutil

    shutil.copytree(model_dir, tmp_path / "b-classifier")
    (tmp_path / "a-seg").mkdir()
    (tmp_path / "a-seg" / "manifest.json").write_text('{"kind": "segmentation"}')
    assert analysis.default_model_dir(tmp_path) == tmp_path / "b-classifier"


def test_tampered_model_is_an_error_not_a_fallback(model_copy, png):
    d = model_copy
    data = bytearray((d / "model.onnx").read_bytes())
    data[len(data) // 3] ^= 0x10
    (d / "model.onnx").write_bytes(bytes(data))
    pipe = AnalysisPipeline(_settings(d))
    for r in pipe.analyze_many([png, png]):
        assert r.status == "error" and "SHA-256" in r.reason and r.backend is None


def test_cuda_requested_without_cuda_is_an_error(model_dir, png, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = AnalysisPipeline(AnalysisSettings(model_dir=model_dir, device="cuda", warmup=False)).analyze(png)
    assert r.status == "error" and "CUDA was requested" in r.reason


def test_batched_worklist_matches_single_images(model_dir, tmp_path):
    paths = []
    for i in range(5):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), synthetic_cxr(100 + 10 * i, 90, seed=i))
        paths.append(p)
    pipe = AnalysisPipeline(_settings(model_dir))
    batched = pipe.analyze_many(paths, batch_size=3)
    assert [r.path for r in batched] == [str(p) for p in paths]
    for p, r in zip(paths, batched, strict=True):
        single = pipe.analyze(p)
        for k in r.probabilities:
            assert r.probabilities[k] == pytest.approx(single.probabilities[k], abs=1e-5)


def test_array_input(model_dir):
    r = AnalysisPipeline(_settings(model_dir)).analyze(synthetic_cxr(), name="from-memory")
    assert r.status == "ok" and r.path == "from-memory"
    assert not any("smaller than the model input" in w for w in r.warnings)


def test_small_image_warning(model_dir):
    r = AnalysisPipeline(_settings(model_dir)).analyze(synthetic_cxr(40, 50))
    assert any("smaller than the model input (64 px)" in w for w in r.warnings)


def test_dicom_files_are_analysed(model_dir, shared_data):
    dicoms = sorted((shared_data / "dicom").rglob("*.dcm"))
    if not dicoms:
        pytest.skip("no DICOM files in the shared data")
    results = AnalysisPipeline(_settings(model_dir)).analyze_many(dicoms)
    for path, r in zip(dicoms, results, strict=True):
        assert r.status == "ok", (path.name, r.reason)
        assert r.heatmap is not None and r.heatmap.ndim == 2
