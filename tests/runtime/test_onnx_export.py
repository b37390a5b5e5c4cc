"""ONNX export: outputs, dynamic batch, parity with torch, int8 quantisation."""

from __future__ import annotations

import numpy as np
import pytest

from cxrviewer.ml.backends.ort_backend import cpu_session
from cxrviewer.ml.model_io import load_classifier
from cxrviewer.ml.onnx_export import (
    OUTPUT_NAMES,
    OnnxParityError,
    export_onnx,
    quantize_int8,
    verify_onnx,
)
from tests.helpers.tiny_model import make_tiny_classifier_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model_dir = make_tiny_classifier_dir(tmp_path_factory.mktemp("onnx") / "tiny")
    model, manifest = load_classifier(model_dir)
    onnx_path = export_onnx(model, model_dir / "model.onnx", size=64, in_chans=1)
    return model, onnx_path


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 1, 64, 64)).astype(np.float32)


def test_graph_has_logits_and_feature_map_with_dynamic_batch(tiny):
    model, onnx_path = tiny
    sess = cpu_session(onnx_path, threads=1)
    assert [o.name for o in sess.get_outputs()] == list(OUTPUT_NAMES)
    for n in (1, 3):
        logits, feats = sess.run(None, {"input": _batch(n)})
        assert logits.shape == (n, 3)
        assert feats.shape[:2] == (n, model.feature_dim)


def test_onnx_matches_torch_within_1e4(tiny):
    model, onnx_path = tiny
    diff = verify_onnx(model, onnx_path, _batch(4, seed=1), atol=1e-4)
    assert 0.0 <= diff <= 1e-4


def test_parity_check_fails_on_a_different_model(tiny, tmp_path):
    model, onnx_path = tiny
    other = load_classifier(make_tiny_classifier_dir(tmp_path / "other", seed=7))[0]
    with pytest.raises(OnnxParityError, match="differs"):
        verify_onnx(other, onnx_path, _batch(2), atol=1e-4)


def test_head_weight_reproduces_logits_from_the_exported_feature_map(tiny):
    """The CAM fast path needs logits = head(mean(F)); check it on the ONNX outputs."""
    model, onnx_path = tiny
    logits, feats = cpu_session(onnx_path, threads=1).run(None, {"input": _batch(2, seed=3)})
    w = model.head.weight.detach().numpy()
    b = model.head.bias.detach().numpy()
    np.testing.assert_allclose(feats.mean(axis=(2, 3)) @ w.T + b, logits, atol=1e-4)


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static-qdq"])
def test_int8_model_runs_and_stays_close(tiny, tmp_path, static):
    model, onnx_path = tiny
    calib = [_batch(1, seed=s)[0] for s in range(8)] if static else None
    q = quantize_int8(onnx_path, tmp_path / "int8.onnx", calibration=calib)
    x = _batch(2, seed=5)
    ref = cpu_session(onnx_path, threads=1).run(["logits"], {"input": x})[0]
    got = cpu_session(q, threads=1).run(["logits"], {"input": x})[0]
    assert got.shape == ref.shape
    assert q.stat().st_size < onnx_path.stat().st_size
    scale = float(np.abs(ref).max())
    assert float(np.abs(got - ref).max()) < 0.25 * scale + 1e-3
