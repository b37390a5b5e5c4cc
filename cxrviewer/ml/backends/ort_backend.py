"""ONNX Runtime on the CPU: the fast path on laptops without CUDA (fp32 or int8 graphs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrviewer.ml.backends.threads import physical_cores


def import_onnxruntime():
    """Import ONNX Runtime with its telemetry off: the environment switch is already set by importing
    ``cxrviewer`` (see its ``__init__``); the runtime switch is added for builds that only honour that one."""
    import onnxruntime as ort

    ort.disable_telemetry_events()
    return ort


def cpu_session(onnx_path: str | Path, threads: int | None = None, allow_spinning: bool = False):
    """An ONNX Runtime CPU session with full graph optimisation and laptop-friendly threading.

    Args:
        onnx_path: the model file.
        threads: intra-op threads (default: the number of physical cores); inter-op is 1 (sequential).
        allow_spinning: keep worker threads spinning between runs (slightly lower latency, but burns CPU
            while idle, which a laptop on battery should not do).
    """
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads or physical_cores())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])


class OrtBackend:
    """Runs an exported graph (outputs ``logits`` and ``features``) with ONNX Runtime on the CPU."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None, allow_spinning: bool = False):
        from cxrviewer.ml.onnx_export import INPUT_NAME, OUTPUT_NAMES

        self.session = cpu_session(onnx_path, threads=threads, allow_spinning=allow_spinning)
        self._input = INPUT_NAME
        self._outputs = list(OUTPUT_NAMES)
        self.threads = int(threads or physical_cores())

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(B, C, H, W) float32`` → ``(logits (B, K), features (B, D, h, w))`` as float32."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        logits, features = self.session.run(self._outputs, {self._input: x})
        return logits.astype(np.float32, copy=False), features.astype(np.float32, copy=False)
