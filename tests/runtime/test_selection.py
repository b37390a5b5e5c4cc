"""Backend selection with CUDA mocked absent/present, and the reason strings."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from cxrviewer.ml.backends import selection
from cxrviewer.ml.backends.selection import BackendUnavailableError, select_backend
from cxrviewer.ml.manifest import ModelFile, ModelManifest
from cxrviewer.ml.predictor import Predictor, PredictorSettings


def _manifest(onnx: bool = True, int8: bool = False, acceptable: bool = False) -> ModelManifest:
    files = {"weights": ModelFile("model.safetensors", "0" * 64, 1)}
    if onnx:
        files["onnx"] = ModelFile("model.onnx", "1" * 64, 1)
    extra = {}
    if int8:
        files["onnx_int8"] = ModelFile("model.int8.onnx", "2" * 64, 1)
        extra["int8"] = {"accuracy_delta": -0.002, "acceptable": acceptable}
    return ModelManifest(
        name="m", version="1", kind="classifier", architecture={}, labels=["a", "b"],
        preprocessing={}, files=files, extra=extra,
    )  # fmt: skip


@pytest.fixture()
def no_cuda(monkeypatch):
    """A machine with an NVIDIA driver but no usable device: torch is asked and says no."""
    monkeypatch.setattr(selection, "nvidia_driver_present", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture()
def fake_cuda(monkeypatch):
    monkeypatch.setattr(selection, "nvidia_driver_present", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU 9000")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


def test_auto_without_cuda_uses_onnxruntime_fp32(no_cuda):
    c = select_backend(_manifest(), "auto")
    assert c.name == "onnxruntime-cpu-fp32" and c.onnx_role == "onnx"
    assert "no CUDA device is available" in c.reason and "ONNX Runtime" in c.reason


def test_auto_with_cuda_uses_torch_on_the_gpu(fake_cuda):
    c = select_backend(_manifest(), "auto")
    assert c.name == "torch-cuda-bf16" and c.uses_torch
    assert "Fake GPU 9000" in c.reason


def test_cuda_without_bf16_uses_fp16(fake_cuda, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert select_backend(_manifest(), "cuda").name == "torch-cuda-fp16"


def test_cpu_requested_ignores_cuda(fake_cuda):
    c = select_backend(_manifest(), "cpu")
    assert c.name == "onnxruntime-cpu-fp32" and c.reason.startswith("cpu device requested")


def test_cuda_requested_without_cuda_is_a_clear_error(no_cuda):
    with pytest.raises(BackendUnavailableError, match="CUDA was requested but no CUDA device"):
        select_backend(_manifest(), "cuda")


def test_int8_only_when_marked_acceptable(no_cuda):
    assert select_backend(_manifest(int8=True, acceptable=False)).name == "onnxruntime-cpu-fp32"
    c = select_backend(_manifest(int8=True, acceptable=True))
    assert c.name == "onnxruntime-cpu-int8" and c.onnx_role == "onnx_int8"
    assert "-0.0020" in c.reason and "acceptable" in c.reason
    assert (
        select_backend(_manifest(int8=True, acceptable=True), precision="fp32").name == "onnxruntime-cpu-fp32"
    )
    assert (
        select_backend(_manifest(int8=True, acceptable=False), precision="int8").name
        == "onnxruntime-cpu-int8"
    )
    with pytest.raises(BackendUnavailableError, match="no int8 graph"):
        select_backend(_manifest(), precision="int8")


def test_int8_recorded_as_slower_is_not_used(no_cuda):
    m = _manifest(int8=True, acceptable=True)
    m.extra["int8"]["speedup_vs_fp32"] = 0.74
    c = select_backend(m)
    assert c.name == "onnxruntime-cpu-fp32" and "slower than fp32 (0.74×)" in c.reason
    m.extra["int8"]["speedup_vs_fp32"] = 1.9
    assert select_backend(m).name == "onnxruntime-cpu-int8"


def test_torch_cpu_fallbacks(no_cuda, monkeypatch):
    c = select_backend(_manifest(onnx=False))
    assert c.name == "torch-cpu-fp32" and "ships no ONNX graph" in c.reason
    real = importlib.util.find_spec
    monkeypatch.setattr(
        selection.importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a)
    )
    c = select_backend(_manifest())
    assert c.name == "torch-cpu-fp32" and "onnxruntime is not installed" in c.reason


def test_without_a_driver_torch_is_not_asked(monkeypatch):
    def boom():
        raise AssertionError("torch.cuda.is_available must not be called without a driver")

    monkeypatch.setattr(selection, "nvidia_driver_present", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", boom)
    c = select_backend(_manifest(), "auto")
    assert c.name == "onnxruntime-cpu-fp32" and "no NVIDIA driver found" in c.reason
    with pytest.raises(BackendUnavailableError, match="CUDA was requested but no CUDA device"):
        select_backend(_manifest(), "cuda")


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="unknown device"):
        select_backend(_manifest(), "tpu")


def test_predictor_refuses_cuda_without_cuda_and_reports_its_choice(pristine_model_dir, no_cuda):
    d = pristine_model_dir
    with pytest.raises(BackendUnavailableError, match="CUDA was requested"):
        Predictor.load(d, device="cuda", settings=PredictorSettings(threads=1, warmup=False))
    p = Predictor.load(d, device="auto", settings=PredictorSettings(threads=1, warmup=False))
    assert p.backend == "onnxruntime-cpu-fp32"
    assert p.backend_reason.startswith("auto device: no CUDA device is available")
