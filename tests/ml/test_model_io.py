"""Model directories: round-trip, hash verification, refusal of tampered or truncated weights."""

from __future__ import annotations

import json

import pytest
import torch

from cxrviewer.ml.manifest import ModelIntegrityError, load_manifest
from cxrviewer.ml.model_io import load_classifier
from tests.helpers.tiny_model import make_tiny_classifier_dir


@pytest.fixture()
def model_dir(tmp_path):
    return make_tiny_classifier_dir(tmp_path / "tiny")


def test_round_trip_gives_identical_outputs(model_dir):
    model, manifest = load_classifier(model_dir)
    again, _ = load_classifier(model_dir)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert manifest.labels == ["normal", "pneumonia", "covid"]
    assert manifest.preprocess_spec.size == 64
    assert manifest.intended_use.lower().startswith("research use only")
    assert manifest.model_id.startswith("tiny-test-classifier@0.0.1:")


def test_flipped_byte_is_refused(model_dir):
    weights = model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="SHA-256"):
        load_classifier(model_dir)


def test_truncated_weights_are_refused(model_dir):
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelIntegrityError, match="truncated"):
        load_classifier(model_dir)


def test_manifest_cannot_point_outside_its_folder(model_dir):
    path = model_dir / "manifest.json"
    data = json.loads(path.read_text())
    data["files"]["weights"]["path"] = "../../etc/passwd"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelIntegrityError, match="outside"):
        load_manifest(model_dir)


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(ModelIntegrityError, match="not a model folder"):
        load_manifest(tmp_path)
