"""Backends for the helper models (lung U-Net, input gate): ONNX Runtime on the CPU, or torch.

The helpers follow the classifier's selection rules (:func:`~cxrviewer.ml.backends.selection.select_backend`)
in fp32 only: ``cuda`` (or ``auto`` with a CUDA device) runs torch fp32 on the GPU, the CPU runs ONNX Runtime
when the manifest lists an ``onnx`` graph and onnxruntime is installed, and torch on the CPU otherwise. Half
precision and int8 are not offered: the gate's thresholds and the mask threshold were chosen on fp32 outputs.

A runner takes a preprocessed batch ``(B, C, H, W) float32`` and returns the graph's outputs as float32 numpy
arrays in a fixed order (:data:`~cxrviewer.ml.onnx_export.SEG_OUTPUT_NAMES`,
:data:`~cxrviewer.ml.onnx_export.GATE_OUTPUT_NAMES`). :class:`OrtGraph` never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cxrviewer.ml.backends.selection import (
    BackendChoice,
    BackendUnavailableError,
    explicit_backend,
    select_backend,
)
from cxrviewer.ml.manifest import ModelIntegrityError, ModelManifest

HELPER_BACKENDS = ("onnxruntime-cpu-fp32", "torch-cpu-fp32", "torch-cuda-fp32")


def choose_helper_backend(
    manifest: ModelManifest, device: str = "auto", backend: str | None = None
) -> BackendChoice:
    """The backend for a helper model: ``backend`` when forced (one of :data:`HELPER_BACKENDS`), else the
    classifier's rules for ``device`` (``auto`` | ``cpu`` | ``cuda``) in fp32.

    Raises:
        ValueError: unknown device or backend name.
        BackendUnavailableError: CUDA requested without a usable device; a forced backend that cannot run.
    """
    if backend is not None:
        if backend not in HELPER_BACKENDS:
            raise ValueError(
                f"backend {backend!r} is not offered for {manifest.name}; use one of {', '.join(HELPER_BACKENDS)}"
            )
        return explicit_backend(manifest, backend)
    choice = select_backend(manifest, device=device, precision="fp32")
    reason = choice.reason.replace("fp32 requested", "fp32 (helper models run in fp32)")
    return BackendChoice(choice.name, reason, choice.onnx_role)


class OrtGraph:
    """An exported helper graph on ONNX Runtime (CPU); checks that the graph has the expected outputs.

    Raises:
        ModelIntegrityError: the graph cannot be loaded or lacks one of ``output_names``.
    """

    def __init__(
        self,
        onnx_path: str | Path,
        output_names: tuple[str, ...],
        model_name: str,
        threads: int | None = None,
    ):
        from cxrviewer.ml.backends.ort_backend import cpu_session
        from cxrviewer.ml.backends.threads import physical_cores
        from cxrviewer.ml.onnx_export import INPUT_NAME

        try:
            self.session = cpu_session(onnx_path, threads=threads)
        except Exception as exc:  # onnxruntime raises its own exception types for invalid graphs
            raise ModelIntegrityError(f"model {model_name}: the onnx graph cannot be loaded ({exc})") from exc
        found = [o.name for o in self.session.get_outputs()]
        if list(output_names) != found[: len(output_names)]:
            raise ModelIntegrityError(
                f"model {model_name}: the onnx graph has outputs {found}, expected {list(output_names)}; "
                "re-export it with cxr-trainer export"
            )
        self._input = INPUT_NAME
        self._outputs = list(output_names)
        self.threads = int(threads or physical_cores())

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """``(B, C, H, W) float32`` → the graph's outputs (float32), in ``output_names`` order."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return [o.astype(np.float32, copy=False) for o in self.session.run(self._outputs, {self._input: x})]


class TorchGraph:
    """A torch module returning a tensor or a tuple of tensors, run in fp32 on the CPU or a CUDA device."""

    def __init__(self, module, device: str = "cpu", threads: int | None = None, channels_last: bool = False):
        import torch

        from cxrviewer.ml.backends.threads import configure_torch_threads

        self.threads = configure_torch_threads(threads)
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.module = module.to(self.device).eval()
        if channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """``(B, C, H, W) float32`` → the module's outputs as float32 numpy arrays."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.module(x)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [t.float().cpu().numpy() for t in outs]


def build_helper_runner(
    manifest: ModelManifest,
    model_dir: str | Path,
    choice: BackendChoice,
    output_names: tuple[str, ...],
    torch_module: Callable[[], object],
    threads: int | None = None,
    channels_last: bool = False,
):
    """The runner for ``choice``: :class:`OrtGraph` on the manifest's ``onnx`` file, or :class:`TorchGraph`
    around ``torch_module()`` (called only on the torch path, so the ONNX path never imports torch)."""
    if choice.onnx_role is not None:
        if choice.onnx_role != "onnx":
            raise BackendUnavailableError(f"{choice.name} is not offered for {manifest.name}")
        path = Path(model_dir) / manifest.files["onnx"].path
        return OrtGraph(path, output_names, manifest.name, threads=threads)
    if "-fp32" not in choice.name:
        raise BackendUnavailableError(
            f"{choice.name} is not offered for {manifest.name}; helpers run in fp32"
        )
    from cxrviewer.ml.backends.threads import prefer_passive_openmp

    prefer_passive_openmp()  # before torch_module() imports torch
    device = "cuda" if "cuda" in choice.name else "cpu"
    return TorchGraph(torch_module(), device=device, threads=threads, channels_last=channels_last)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logistic function in float32 without overflow warnings (``0.5 · (1 + tanh(x / 2))``)."""
    x = np.asarray(logits, dtype=np.float32)
    return (np.float32(0.5) * (np.float32(1.0) + np.tanh(np.float32(0.5) * x))).astype(np.float32)
