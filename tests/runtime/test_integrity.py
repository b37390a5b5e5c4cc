"""Tampered or mismatched model files are refused before anything is loaded, never silently replaced."""

from __future__ import annotations

import json

import pytest

from cxrviewer.ml.manifest import ModelIntegrityError, load_manifest, record_file, write_manifest
from cxrviewer.ml.predictor import Predictor, PredictorSettings

FAST = PredictorSettings(threads=1, warmup=False)


@pytest.fixture()
def model_dir(model_copy):
    return model_copy


def _flip_byte(path, where=0.5):
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_tampered_onnx_is_refused(model_dir, device):
    _flip_byte(model_dir / "model.onnx")
    with pytest.raises(
        ModelIntegrityError, match=r"onnx file model\.onnx does not match its recorded SHA-256"
    ):
        Predictor.load(model_dir, device=device, settings=FAST)


def test_tampered_safetensors_is_refused_even_for_the_onnx_backend(model_dir):
    _flip_byte(model_dir / "model.safetensors", 0.9)
    with pytest.raises(ModelIntegrityError, match="weights file model.safetensors does not match"):
        Predictor.load(model_dir, backend="onnxruntime-cpu-fp32", settings=FAST)
    with pytest.raises(ModelIntegrityError, match="SHA-256"):
        Predictor.load(model_dir, backend="torch-cpu-fp32", settings=FAST)


def test_missing_onnx_is_refused_not_replaced_by_torch(model_dir):
    (model_dir / "model.onnx").unlink()
    with pytest.raises(ModelIntegrityError, match="missing"):
        Predictor.load(model_dir, device="cpu", settings=FAST)


def test_graph_without_feature_output_is_refused(model_dir, tmp_path):
    """A correctly hashed but foreign graph (only logits) is refused with a clear message."""
    import onnx

    graph = onnx.load(str(model_dir / "model.onnx"))
    keep = [o for o in graph.graph.output if o.name == "logits"]
    del graph.graph.output[:]
    graph.graph.output.extend(keep)
    onnx.save(graph, str(model_dir / "model.onnx"))
    manifest = load_manifest(model_dir, verify=False)
    record_file(model_dir, manifest, "onnx", "model.onnx")
    write_manifest(model_dir, manifest)
    with pytest.raises(ModelIntegrityError, match="expected logits and features"):
        Predictor.load(model_dir, device="cpu", settings=FAST)


def test_manifest_with_unknown_fields_is_refused(model_dir):
    path = model_dir / "manifest.json"
    data = json.loads(path.read_text())
    data["pickle_loader"] = "yes"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelIntegrityError, match="unknown fields"):
        Predictor.load(model_dir, settings=FAST)
