"""ONNX export of a registry classifier, parity check against torch, and int8 quantisation.

The exported graph has one input ``input`` of shape (batch, in_chans, size, size) and two outputs:

- ``logits``: (batch, num_classes), exactly ``model(x)`` in eval mode;
- ``features``: (batch, feature_dim, h, w), the map of ``model.forward_features(x)``.

With the feature map in the graph, class activation maps are exact and cheap without torch:
``CAM_c = ReLU(Σ_k w_ck F_k)`` with ``w`` the linear head's weight (the head follows global average pooling,
so this equals Grad-CAM on the last feature map), and the retrieval embedding is the spatial mean of ``F``.

The batch axis is dynamic, so the worklist can batch. Quantisation: :func:`quantize_int8` writes either a
dynamic-range model (weights int8, activations quantised on the fly) or, given calibration inputs, a static
QDQ model with per-channel weights (see ``docs/benchmarks.md`` for which is faster on which CPU).

The helper models use the same exporter (:func:`export_graph`, :func:`verify_graph`) with their own outputs:
the lung U-Net's graph outputs ``logits`` ``(batch, 1, size, size)`` (:data:`SEG_OUTPUT_NAMES`); the input
gate's outputs ``logits`` ``(batch, 3)`` and ``embedding`` ``(batch, D)``, the globally average-pooled feature
vector its Mahalanobis out-of-distribution check measures (:data:`GATE_OUTPUT_NAMES`, :func:`gate_graph_module`).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "features")
SEG_OUTPUT_NAMES = ("logits",)
GATE_OUTPUT_NAMES = ("logits", "embedding")
DEFAULT_OPSET = 17


class OnnxParityError(Exception):
    """The ONNX graph does not reproduce the torch model within tolerance."""


def _logits_and_features(model):
    """Wrap a Classifier so that forward returns ``(logits, feature_map)``."""
    from torch import nn

    class LogitsAndFeatures(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            fmap = self.inner.forward_features(x)
            return self.inner.forward_head(fmap), fmap

    return LogitsAndFeatures(model).eval()


def gate_graph_module(model):
    """Wrap a gate Classifier so that forward returns ``(logits, pooled embedding)`` (the gate's graph)."""
    import torch
    from torch import nn

    class LogitsAndEmbedding(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            fmap = self.inner.forward_features(x)
            return self.inner.forward_head(fmap), torch.flatten(self.inner.pool(fmap), 1)

    return LogitsAndEmbedding(model).eval()


def export_graph(
    module,
    out_path: str | Path,
    size: int,
    in_chans: int,
    output_names: tuple[str, ...],
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export ``module`` (eval mode, CPU, fp32) to ONNX: input ``input`` (batch, in_chans, size, size), a dynamic
    batch axis, and ``output_names`` for the module's outputs in order. Returns ``out_path`` as a Path."""
    import torch

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module = module.cpu().float().eval()
    dummy = torch.zeros(1, in_chans, size, size, dtype=torch.float32)
    axes = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in output_names}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter handles these plain CNNs without extra dependencies (onnxscript).
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module,
                (dummy,),
                str(out),
                input_names=[INPUT_NAME],
                output_names=list(output_names),
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        module.train(was_training)
    return out


def verify_graph(
    module, onnx_path: str | Path, x, output_names: tuple[str, ...], atol: float = 1e-4
) -> float:
    """Run ``x`` through ``module`` (torch, CPU, fp32) and the ONNX graph (ORT CPU, fp32); return the largest
    absolute difference over all outputs. Raises :class:`OnnxParityError` when it exceeds ``atol``."""
    import torch

    xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    xt = xt.float().cpu()
    module = module.cpu().float().eval()
    with torch.inference_mode():
        out = module(xt)
    ref = [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]
    from cxrviewer.ml.backends.ort_backend import cpu_session

    got = cpu_session(onnx_path).run(list(output_names), {INPUT_NAME: xt.numpy()})
    diff = max(float(np.max(np.abs(r - g))) for r, g in zip(ref, got, strict=True))
    if not diff <= atol:
        raise OnnxParityError(
            f"{Path(onnx_path).name} differs from the torch model by {diff:.3g} (tolerance {atol:g})"
        )
    return diff


def export_onnx(model, out_path: str | Path, size: int, in_chans: int, opset: int = DEFAULT_OPSET) -> Path:
    """Export ``model`` (a registry ``Classifier``) to ONNX with outputs ``logits`` and ``features``.

    Args:
        model: network with ``forward_features`` and ``forward_head``; exported in eval mode on CPU, fp32.
        out_path: the ``.onnx`` file to write (parent folders are created).
        size: side of the square input in pixels (the manifest's preprocessing size).
        in_chans: number of input channels.
        opset: ONNX opset version.

    Returns:
        ``out_path`` as a Path.
    """
    was_training = model.training
    try:
        return export_graph(_logits_and_features(model), out_path, size, in_chans, OUTPUT_NAMES, opset)
    finally:
        model.train(was_training)


def verify_onnx(model, onnx_path: str | Path, x, atol: float = 1e-4) -> float:
    """Run ``x`` through the torch model and the ONNX graph (ORT CPU, fp32); return the max abs difference.

    Both outputs (logits and feature map) are compared. Raises :class:`OnnxParityError` when the largest
    difference exceeds ``atol``.
    """
    return verify_graph(_logits_and_features(model), onnx_path, x, OUTPUT_NAMES, atol)


def onnx_manifest_entry(outputs: tuple[str, ...], diff: float, atol: float, checked_on: str) -> dict:
    """What a manifest records under ``extra["onnx"]`` about an exported graph and its parity check."""
    return {
        "opset": DEFAULT_OPSET,
        "outputs": list(outputs),
        "max_abs_diff_vs_torch": diff,
        "atol": atol,
        "checked_on": checked_on,
    }


class _ArrayReader:
    """onnxruntime CalibrationDataReader over a sequence of input batches."""

    def __init__(self, batches: Iterable[np.ndarray]):
        self._iter: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        if batch is None:
            return None
        a = np.asarray(batch, dtype=np.float32)
        return {INPUT_NAME: a[None] if a.ndim == 3 else a}

    def rewind(self) -> None:  # pragma: no cover - not used by the minmax calibrator
        raise NotImplementedError


def quantize_int8(
    onnx_path: str | Path, out_path: str | Path, calibration: Iterable[np.ndarray] | None = None
) -> Path:
    """Write an int8 version of an fp32 ONNX classifier.

    Args:
        onnx_path: the fp32 graph from :func:`export_onnx`.
        out_path: where to write the int8 graph.
        calibration: ``None`` for dynamic quantisation (int8 weights, activation ranges computed at run
            time; no data needed); otherwise preprocessed model inputs, each ``(C, H, W)`` or a batch
            ``(B, C, H, W)`` ``float32``, for static QDQ quantisation with per-channel weights (min/max
            calibration; a few hundred images of the training distribution are plenty).

    Returns:
        ``out_path``. Measure the accuracy change on a validation set before shipping the result: the
        manifest records it under ``extra["int8"]`` and the predictor uses int8 only if marked acceptable.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, out = Path(onnx_path), Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cxr-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        if calibration is None:
            quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, per_channel=True)
        else:
            quantize_static(
                str(prepared),
                str(out),
                _ArrayReader(calibration),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                calibrate_method=CalibrationMethod.MinMax,
                # The feature map output feeds the CAM and the embedding: keep it fp32 at the graph edge.
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
    return out
