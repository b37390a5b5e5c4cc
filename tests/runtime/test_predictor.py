"""Predictor: backend parity (torch CPU vs ONNX Runtime fp32), outputs, batching, temperature, int8."""

from __future__ import annotations

import numpy as np
import pytest

from cxrviewer.ml.predictor import Predictor, PredictorSettings, model_input, softmax
from tests.runtime.models import make_runtime_model_dir, synthetic_cxr

FAST = PredictorSettings(threads=1, warmup=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_runtime_model_dir(tmp_path_factory.mktemp("pred") / "tiny", int8=True, temperature=1.7)


@pytest.fixture(scope="module")
def images():
    return [synthetic_cxr(96 + 8 * i, 80 + 4 * i, seed=i) for i in range(5)]


def test_torch_cpu_and_onnxruntime_fp32_agree_within_1e4(model_dir, images):
    ort = Predictor.load(model_dir, backend="onnxruntime-cpu-fp32", settings=FAST)
    pt = Predictor.load(model_dir, backend="torch-cpu-fp32", settings=FAST)
    assert (ort.backend, pt.backend) == ("onnxruntime-cpu-fp32", "torch-cpu-fp32")
    for a, b in zip(ort.predict(images), pt.predict(images), strict=True):
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-4, rtol=0)
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4, rtol=0)
        np.testing.assert_allclose(a.cams, b.cams, atol=1e-4, rtol=0)
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-4, rtol=0)
        assert a.geometry == b.geometry


def test_prediction_contents(model_dir, images):
    p = Predictor.load(model_dir, device="cpu", settings=FAST)
    assert p.backend == "onnxruntime-cpu-fp32"
    assert "not marked acceptable" in p.backend_reason
    pred = p.predict(images[:1])[0]
    assert pred.labels == ["normal", "pneumonia", "covid"]
    np.testing.assert_allclose(pred.probabilities, softmax(pred.logits[None], 1.7)[0], atol=1e-6)
    assert not np.allclose(pred.probabilities, softmax(pred.logits[None], 1.0)[0], atol=1e-4)
    assert pred.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert pred.cams.shape[0] == 3 and pred.cams.ndim == 3 and (pred.cams >= 0).all()
    assert pred.cam().shape == pred.cams.shape[1:]
    assert np.linalg.norm(pred.embedding) == pytest.approx(1.0, abs=1e-5)
    assert pred.geometry.original_shape == images[0].shape and pred.geometry.size == 64
    assert np.array_equal(p.predict(images[:1])[0].logits, pred.logits)  # deterministic


def test_cam_matches_head_arithmetic(model_dir, images):
    p = Predictor.load(model_dir, backend="onnxruntime-cpu-fp32", settings=FAST)
    x, geom = model_input(images[2], p.spec)
    logits, feats = p.run_batch(x[None])
    h, w = feats.shape[-2:]
    expected = np.maximum(np.einsum("kc,chw->khw", p.head_weight, feats[0]), 0) / (h * w)
    pred = p.predict_inputs(x[None], [geom])[0]
    np.testing.assert_allclose(pred.cams, expected, atol=1e-6)
    np.testing.assert_allclose(
        feats[0].mean(axis=(1, 2)) @ p.head_weight.T + p.head_bias, logits[0], atol=1e-4
    )


def test_batching_does_not_change_results(model_dir, images):
    p = Predictor.load(model_dir, device="cpu", settings=FAST)
    together = p.predict(images, batch_size=4)
    alone = [p.predict([img], batch_size=1)[0] for img in images]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)


def test_float_and_uint8_inputs_give_the_same_prediction(model_dir, images):
    p = Predictor.load(model_dir, device="cpu", settings=FAST)
    u8 = images[0]
    a, b = p.predict([u8, u8.astype(np.float32) / 255.0])
    np.testing.assert_array_equal(a.logits, b.logits)


def test_int8_backend_used_when_acceptable_and_close_to_fp32(tmp_path, images):
    d = make_runtime_model_dir(tmp_path / "q", int8=True, int8_acceptable=True)
    q = Predictor.load(d, device="auto", settings=FAST)
    assert q.backend == "onnxruntime-cpu-int8"
    assert "marked acceptable" in q.backend_reason and "-0.0040" in q.backend_reason
    f = Predictor.load(d, device="cpu", precision="fp32", settings=FAST)
    assert f.backend == "onnxruntime-cpu-fp32"
    for a, b in zip(q.predict(images), f.predict(images), strict=True):
        assert np.abs(a.probabilities - b.probabilities).max() < 0.2


def test_warmup_runs_on_load(model_dir):
    p = Predictor.load(model_dir, device="cpu", settings=PredictorSettings(threads=1))
    assert p.warmup_ms > 0 and p.threads == 1


def test_non_classifier_is_refused(model_copy):
    import json

    from cxrviewer.ml.manifest import ModelIntegrityError

    d = model_copy
    data = json.loads((d / "manifest.json").read_text())
    data["kind"] = "segmentation"
    (d / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelIntegrityError, match="not a classifier"):
        Predictor.load(d, settings=FAST)


@pytest.mark.gpu
def test_cuda_half_precision_close_to_onnxruntime_fp32(model_dir, images):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu = Predictor.load(model_dir, device="cuda", settings=FAST)
    assert gpu.backend in ("torch-cuda-bf16", "torch-cuda-fp16") and "CUDA device" in gpu.backend_reason
    cpu = Predictor.load(model_dir, backend="onnxruntime-cpu-fp32", settings=FAST)
    for a, b in zip(gpu.predict(images), cpu.predict(images), strict=True):
        assert np.abs(a.probabilities - b.probabilities).max() < 0.05
        assert a.top_index == b.top_index or np.ptp(np.sort(b.probabilities)[-2:]) < 0.05
