"""Which backend runs a model, and why: ``auto`` | ``cpu`` | ``cuda`` × what the model directory ships.

Rules (the reason string says which applied):

- ``cuda``: torch on the GPU with bf16 autocast where the device supports it, else fp16. Without a usable
  CUDA device this is a :class:`BackendUnavailableError`, never a silent switch to the CPU.
- ``cpu``: ONNX Runtime when the model lists an ``onnx`` graph and onnxruntime imports; its ``onnx_int8``
  graph only when ``manifest.extra["int8"]["acceptable"]`` is true (the trainer measured the accuracy change),
  it is not recorded as slower (``extra["int8"]["speedup_vs_fp32"] < 1``; depthwise networks such as
  MobileNetV3 run slower in int8 on AVX2 CPUs) and precision allows it; otherwise torch on the CPU (fp32), the fallback.
- ``auto``: ``cuda`` when a CUDA device is available, else ``cpu``.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from cxrviewer.ml.backends.threads import prefer_passive_openmp
from cxrviewer.ml.manifest import ModelManifest

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "int8")


class BackendUnavailableError(RuntimeError):
    """The requested device or precision cannot run this model here."""


@dataclass(frozen=True)
class BackendChoice:
    """A chosen backend.

    Attributes:
        name: ``torch-cuda-bf16`` | ``torch-cuda-fp16`` | ``onnxruntime-cpu-fp32`` | ``onnxruntime-cpu-int8``
            | ``torch-cpu-fp32``.
        reason: one human sentence on why this backend was chosen.
        onnx_role: the manifest file role of the ONNX graph to run (``onnx``/``onnx_int8``), or None for torch.
    """

    name: str
    reason: str
    onnx_role: str | None = None

    @property
    def uses_torch(self) -> bool:
        return self.name.startswith("torch-")


class ChosenBackend:
    """Mixin for objects holding a :class:`BackendChoice` in ``_choice``: its name and reason."""

    _choice: BackendChoice

    @property
    def backend(self) -> str:
        """Name of the backend in use, e.g. ``onnxruntime-cpu-fp32``."""
        return self._choice.name

    @property
    def backend_reason(self) -> str:
        """Why this backend was chosen (one sentence)."""
        return self._choice.reason


def nvidia_driver_present() -> bool:
    """A cheap check that needs no torch import: could this machine have a CUDA device at all?

    Linux: the NVIDIA kernel driver is loaded; Windows: the CUDA driver library is installed; macOS: never.
    Other platforms answer True and let torch decide.
    """
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*"))
    if sys.platform == "win32":
        import ctypes.util

        return ctypes.util.find_library("nvcuda") is not None
    return True


def cuda_status() -> tuple[bool, str]:
    """Whether torch sees a usable CUDA device, and a human description (the device name or why not).

    Without an NVIDIA driver torch is not even imported (it costs seconds and hundreds of MB), so on a
    laptop without CUDA the ONNX Runtime path stays torch-free.
    """
    if not nvidia_driver_present():
        return False, "no CUDA device is available (no NVIDIA driver found)"
    if importlib.util.find_spec("torch") is None:
        return False, "torch is not installed"
    prefer_passive_openmp()
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA device is available"
    try:
        return True, f"CUDA device {torch.cuda.get_device_name(0)!r}"
    except (RuntimeError, AssertionError) as exc:
        return False, f"the CUDA device cannot be used ({exc})"


def _cuda_dtype() -> str:
    import torch

    try:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    except (RuntimeError, AssertionError):
        return "fp16"


def int8_verdict(manifest: ModelManifest) -> tuple[bool, str]:
    """Whether the model's int8 graph may be used, with the reason (from ``extra["int8"]``)."""
    if "onnx_int8" not in manifest.files:
        return False, "the model ships no int8 graph"
    info = manifest.extra.get("int8") or {}
    delta = info.get("accuracy_delta")
    delta_txt = "not measured" if delta is None else f"{float(delta):+.4f}"
    if not info.get("acceptable", False):
        return False, f"its int8 accuracy change ({delta_txt}) is not marked acceptable"
    speedup = info.get("speedup_vs_fp32")
    if speedup is not None and float(speedup) < 1.0:
        return False, f"its int8 graph was measured slower than fp32 ({float(speedup):.2f}×)"
    return True, f"its int8 accuracy change ({delta_txt}) is marked acceptable"


def _cpu_choice(manifest: ModelManifest, precision: str, prefix: str) -> BackendChoice:
    if "onnx" not in manifest.files and "onnx_int8" not in manifest.files:
        return BackendChoice(
            "torch-cpu-fp32", f"{prefix}; the model ships no ONNX graph, so torch on the CPU"
        )
    if importlib.util.find_spec("onnxruntime") is None:
        return BackendChoice("torch-cpu-fp32", f"{prefix}; onnxruntime is not installed, so torch on the CPU")
    int8_ok, int8_why = int8_verdict(manifest)
    if precision == "int8":
        if "onnx_int8" not in manifest.files:
            raise BackendUnavailableError(f"int8 was requested but model {manifest.name} ships no int8 graph")
        return BackendChoice(
            "onnxruntime-cpu-int8", f"{prefix}; int8 requested ({int8_why})", onnx_role="onnx_int8"
        )
    if precision == "auto" and int8_ok:
        return BackendChoice(
            "onnxruntime-cpu-int8", f"{prefix}; ONNX Runtime int8 because {int8_why}", onnx_role="onnx_int8"
        )
    if "onnx" not in manifest.files:
        return BackendChoice(
            "torch-cpu-fp32", f"{prefix}; the model ships no fp32 ONNX graph, so torch on the CPU"
        )
    why = "fp32 requested" if precision == "fp32" else f"fp32 because {int8_why}"
    return BackendChoice("onnxruntime-cpu-fp32", f"{prefix}; ONNX Runtime {why}", onnx_role="onnx")


BACKENDS = (
    "torch-cuda-bf16",
    "torch-cuda-fp16",
    "torch-cuda-fp32",
    "onnxruntime-cpu-fp32",
    "onnxruntime-cpu-int8",
    "torch-cpu-fp32",
)


def explicit_backend(manifest: ModelManifest, name: str) -> BackendChoice:
    """The backend ``name`` (one of :data:`BACKENDS`) for benchmarks and tests, refused if it cannot run."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
    reason = f"backend {name} explicitly requested"
    if name.startswith("torch-cuda"):
        ok, what = cuda_status()
        if not ok:
            raise BackendUnavailableError(f"{name} was requested but {what}")
        return BackendChoice(name, reason)
    if name.startswith("onnxruntime"):
        role = "onnx_int8" if name.endswith("int8") else "onnx"
        if role not in manifest.files:
            raise BackendUnavailableError(
                f"{name} was requested but model {manifest.name} ships no {role} file"
            )
        if importlib.util.find_spec("onnxruntime") is None:
            raise BackendUnavailableError(f"{name} was requested but onnxruntime is not installed")
        return BackendChoice(name, reason, onnx_role=role)
    return BackendChoice(name, reason)


def select_backend(manifest: ModelManifest, device: str = "auto", precision: str = "auto") -> BackendChoice:
    """Choose the backend for ``manifest`` on this machine (see the module docstring).

    Raises:
        ValueError: unknown ``device`` or ``precision``.
        BackendUnavailableError: ``cuda`` requested without a usable CUDA device, or int8 requested for a
            model without an int8 graph or on CUDA.
    """
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if device in ("auto", "cuda"):
        ok, what = cuda_status()
        if ok and precision != "int8":
            dtype = "fp32" if precision == "fp32" else _cuda_dtype()
            return BackendChoice(
                f"torch-cuda-{dtype}", f"{device} device: {what} found, torch {dtype} on the GPU"
            )
        if device == "cuda":
            if ok:
                raise BackendUnavailableError("int8 runs on the CPU only; use --device cpu or auto")
            raise BackendUnavailableError(
                f"CUDA was requested but {what}; use --device cpu or auto to run on the CPU"
            )
        why = "int8 was requested, which runs on the CPU" if ok else f"{what}, so the CPU"
        return _cpu_choice(manifest, precision, f"auto device: {why}")
    return _cpu_choice(manifest, precision, "cpu device requested")
