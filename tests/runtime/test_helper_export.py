"""``export_helper_onnx`` / ``cxr-trainer export`` on helper model folders, and the helpers' backend rules.

Works on copies of the shipped lung U-Net and input gate in a temporary folder (the shipped folders are
never written).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrviewer.ml.backends.selection import BackendUnavailableError
from cxrviewer.ml.manifest import ModelIntegrityError, load_manifest, record_file, sha256_file, write_manifest
from tests.conftest import REPO_ROOT
from tests.runtime.models import synthetic_cxr

MODELS = REPO_ROOT / "models"


def _copy(name: str, tmp_path: Path, onnx: bool) -> Path:
    src = MODELS / name
    if not (src / "manifest.json").is_file():
        pytest.skip(f"models/{name} is not present")
    dst = Path(shutil.copytree(src, tmp_path / name))
    if not onnx:
        manifest = load_manifest(dst)
        manifest.files.pop("onnx", None)
        manifest.extra.pop("onnx", None)
        (dst / "model.onnx").unlink(missing_ok=True)
        write_manifest(dst, manifest)
    return dst


@pytest.mark.parametrize("name", ["lung-unet", "input-gate"])
def test_export_adds_a_verified_graph_and_changes_nothing_else(name, tmp_path):
    from cxr_trainer.helper_export import export_helper_onnx

    d = _copy(name, tmp_path, onnx=False)
    before = load_manifest(d)
    hashes = {
        f: sha256_file(d / f)
        for f in ("model.safetensors", "ood.safetensors", "split.csv")
        if (d / f).exists()
    }
    images = [synthetic_cxr(300, 260, seed=i) for i in range(3)]
    result = export_helper_onnx(d, images=images)
    after = load_manifest(d, verify=True)
    assert after.files["onnx"].sha256 == sha256_file(d / "model.onnx")
    assert after.extra["onnx"]["max_abs_diff_vs_torch"] == result["max_abs_diff"] <= 1e-4
    assert after.extra["onnx"]["checked_on"] == "3 preprocessed images"
    assert {f: sha256_file(d / f) for f in hashes} == hashes  # weights, OOD statistics, split untouched
    assert after.thresholds == before.thresholds and after.metrics == before.metrics
    assert {k: v for k, v in after.extra.items() if k != "onnx"} == before.extra
    assert set(after.files) == set(before.files) | {"onnx"}


def test_export_refuses_a_classifier_folder(pristine_model_dir):
    from cxr_trainer.helper_export import export_helper_onnx

    with pytest.raises(ValueError, match="classifier"):
        export_helper_onnx(pristine_model_dir)


def test_cli_export_of_a_lung_model_folder(tmp_path, capsys):
    from cxr_trainer.cli import main

    d = _copy("lung-unet", tmp_path, onnx=False)
    assert main(["export", "--model", str(d), "--labels", str(tmp_path / "no-data")]) == 0
    assert "max |onnx - torch|" in capsys.readouterr().out
    record = json.loads((d / "manifest.json").read_text())["extra"]["onnx"]
    assert record["outputs"] == ["logits"] and record["checked_on"].startswith("8 random inputs")
    assert main(["export", "--model", str(d), "--int8", "dynamic"]) == 2


def test_without_a_graph_the_helpers_run_on_torch(tmp_path):
    from cxrviewer.ml.gate import InputGate
    from cxrviewer.ml.segmentation import LungSegmenter

    seg = LungSegmenter(_copy("lung-unet", tmp_path, onnx=False), threads=1, device="cpu")
    gate = InputGate(_copy("input-gate", tmp_path, onnx=False), threads=1, device="cpu")
    assert seg.backend == gate.backend == "torch-cpu-fp32"
    assert "ships no ONNX graph" in seg.backend_reason
    assert seg.segment(synthetic_cxr(200, 180)).mask.shape == (200, 180)


def test_cuda_request_without_cuda_is_refused_not_switched(tmp_path):
    from cxrviewer.ml.backends.selection import cuda_status
    from cxrviewer.ml.segmentation import LungSegmenter

    if cuda_status()[0]:
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        LungSegmenter(MODELS / "lung-unet", device="cuda")
    with pytest.raises(ValueError, match="not offered"):
        LungSegmenter(MODELS / "lung-unet", backend="onnxruntime-cpu-int8")


def test_a_graph_with_the_wrong_outputs_is_refused(tmp_path):
    """The U-Net's graph recorded as the gate's: hashes match, but it cannot serve the OOD check."""
    from cxrviewer.ml.gate import InputGate

    gate_dir = _copy("input-gate", tmp_path, onnx=True)
    shutil.copy(MODELS / "lung-unet" / "model.onnx", gate_dir / "model.onnx")
    manifest = load_manifest(gate_dir, verify=False)
    record_file(gate_dir, manifest, "onnx", "model.onnx")
    write_manifest(gate_dir, manifest)
    with pytest.raises(ModelIntegrityError, match="expected \\['logits', 'embedding'\\]"):
        InputGate(gate_dir, device="cpu")


def test_a_tampered_graph_is_refused(tmp_path):
    from cxrviewer.ml.segmentation import LungSegmenter

    d = _copy("lung-unet", tmp_path, onnx=True)
    data = bytearray((d / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (d / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="model.onnx"):
        LungSegmenter(d)


def test_sigmoid_matches_the_logistic_function_without_overflow():
    from cxrviewer.ml.backends.helper_backend import sigmoid

    x = np.array([-1e4, -20.0, -1.0, 0.0, 2.5, 1e4], np.float32)
    with np.errstate(all="raise"):
        got = sigmoid(x)
    ref = 1.0 / (1.0 + np.exp(-x.astype(np.float64).clip(-700, 700)))
    assert got.dtype == np.float32 and np.max(np.abs(got - ref)) < 1e-6
