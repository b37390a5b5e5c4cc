"""Weights and libraries: what SHA-256 verification refuses, what it cannot, and what is never executed.

Complements tests/ml/test_model_io.py (flipped byte, truncated weights, path outside the folder, missing
manifest) and tests/runtime/test_integrity.py (tampered ONNX/safetensors, missing ONNX, unknown fields).

Threat model (docs/reliability.md): ``manifest.json`` is the trust root of a model folder. Verification
catches corruption and a swapped or edited file; an attacker who can write the model folder can also rewrite
the manifest's hashes, which this check cannot detect (that would need a signature). What such an attacker
still cannot do through the model folder is execute code: only safetensors and ONNX are read, never pickles.
"""

from __future__ import annotations

import json
import pickle
import sqlite3

import numpy as np
import pytest

from cxrviewer.ml.manifest import ModelIntegrityError, sha256_file
from tests.runtime.models import make_runtime_model_dir


@pytest.fixture()
def model_dir(tmp_path):
    return make_runtime_model_dir(tmp_path / "tiny")


def _manifest(model_dir):
    return json.loads((model_dir / "manifest.json").read_text())


def _rewrite_entry(model_dir, role: str) -> None:
    """What an attacker with write access does: record the current file's hash and size in the manifest."""
    data = _manifest(model_dir)
    p = model_dir / data["files"][role]["path"]
    data["files"][role].update(sha256=sha256_file(p), bytes=p.stat().st_size)
    (model_dir / "manifest.json").write_text(json.dumps(data))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_edited_hash_for_an_untouched_file_is_refused(model_dir):
    from cxrviewer.ml.predictor import Predictor

    data = _manifest(model_dir)
    data["files"]["onnx"]["sha256"] = "0" * 64
    (model_dir / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelIntegrityError, match="does not match its recorded SHA-256"):
        Predictor.load(model_dir, device="cpu")


def test_truncated_onnx_is_refused_before_onnxruntime_reads_it(model_dir):
    from cxrviewer.ml.predictor import Predictor

    onnx = model_dir / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
    with pytest.raises(ModelIntegrityError, match="truncated or replaced"):
        Predictor.load(model_dir, device="cpu")


def test_pickle_in_place_of_the_weights_is_never_unpickled(model_dir, tmp_path):
    from cxrviewer.ml.model_io import load_classifier

    marker = tmp_path / "pwned"
    (model_dir / "model.safetensors").write_bytes(pickle.dumps({"state": _Payload(marker)}))
    _rewrite_entry(model_dir, "weights")  # the attacker also fixes the manifest
    with pytest.raises(ModelIntegrityError, match="cannot be read"):
        load_classifier(model_dir)
    assert not marker.exists(), "the pickle was executed"


def test_threat_model_a_rewritten_manifest_is_the_trust_root(model_dir, tmp_path):
    """A swapped ONNX graph with the manifest's hash rewritten to match loads: documented, not defended."""
    from cxrviewer.ml.predictor import Predictor

    other = make_runtime_model_dir(tmp_path / "other", seed=7)
    (model_dir / "model.onnx").write_bytes((other / "model.onnx").read_bytes())
    with pytest.raises(ModelIntegrityError):
        Predictor.load(model_dir, device="cpu")
    _rewrite_entry(model_dir, "onnx")
    predictor = Predictor.load(model_dir, device="cpu")
    assert predictor.backend.startswith("onnx")


def test_truncated_case_library_is_a_clear_error(tmp_path):
    from cxrviewer.services.case_library import CaseLibrary, CaseLibraryError

    path = tmp_path / "lib.cxrlib"
    rng = np.random.default_rng(0)
    with CaseLibrary.open(path, create=True, name="t", model_id="m@1") as lib:
        for _i in range(40):
            lib.add_case((rng.random((64, 64)) * 255).astype(np.uint8), rng.normal(size=16).astype(np.float32),
                         "normal", model_id="m@1")  # fmt: skip
        lib.finalise()
    data = path.read_bytes()
    for keep in (len(data) // 2, 4096, 100):
        path.write_bytes(data[:keep])
        with pytest.raises(CaseLibraryError) as err, CaseLibrary.open(path, read_only=True) as lib:
            lib.query(np.ones(16, np.float32), 3, model_id="m@1")
            lib.integrity_check()
            raise CaseLibraryError("the truncated library opened and answered")  # pragma: no cover
        assert "truncated library opened" not in str(err.value) and str(err.value)
        assert not isinstance(err.value, sqlite3.Error)
