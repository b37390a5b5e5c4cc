"""Occlusion sensitivity of a loaded :class:`~cxrviewer.ml.predictor.Predictor` on the backend that serves it.

A model served by ONNX Runtime (``onnxruntime-cpu-fp32``/``-int8``, the default on a CPU and the only
backend of the CPU installer) is occluded through the predictor's own session with
:func:`~cxrviewer.ml.explain.occlusion_core.occlusion_map_batched`: no torch is imported, and the map is the
torch fast path's up to float32 rounding. A torch backend keeps the torch fast path
:func:`~cxrviewer.ml.explain.occlusion.occlusion_map` on a CPU copy of the network (``torch_model``, loaded
here when not given). Importing this module imports neither torch nor onnxruntime.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrviewer.core.preprocess import Geometry
from cxrviewer.ml.explain.heatmap import Heatmap, HeatmapSettings, build_heatmap
from cxrviewer.ml.explain.occlusion_core import (
    CancelCheck,
    OcclusionSettings,
    ProgressFn,
    occlusion_map_batched,
)


def runs_on_onnxruntime(predictor: Any) -> bool:
    """Whether ``predictor`` serves its model with ONNX Runtime (occlusion then needs no torch)."""
    return str(predictor.backend).startswith("onnxruntime")


def load_torch_occlusion_model(predictor: Any):
    """A CPU torch copy of the predictor's classifier for the torch occlusion path (imports torch)."""
    from cxrviewer.ml.model_io import load_classifier

    model, _ = load_classifier(predictor.model_dir)
    return model.eval()


def predictor_occlusion_map(
    predictor: Any,
    x: np.ndarray,
    class_index: int,
    settings: OcclusionSettings | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelCheck | None = None,
    torch_model: Any = None,
) -> np.ndarray:
    """Raw ``(H, W)`` occlusion map of ``class_index`` for one preprocessed input on ``predictor``'s backend.

    Args:
        predictor: a loaded :class:`~cxrviewer.ml.predictor.Predictor`.
        x: the model input ``(C, H, W)`` or ``(1, C, H, W)`` (``cxrviewer.ml.predictor.model_input``).
        class_index: the class whose score drop is measured.
        settings: see :class:`OcclusionSettings` (batch size, window, stride, fill, score).
        progress: ``progress(done, total, partial_map)`` after each batch.
        should_cancel: ``threading.Event`` or callable polled before each batch; raises
            :class:`~cxrviewer.ml.explain.occlusion_core.OcclusionCancelled` with the partial map.
        torch_model: for a torch backend, the CPU network to occlude (loaded from the model folder when None);
            ignored on ONNX Runtime.
    """
    if runs_on_onnxruntime(predictor):
        return occlusion_map_batched(
            lambda batch: predictor.run_batch(batch)[0],
            x,
            class_index,
            len(predictor.labels),
            settings,
            progress=progress,
            should_cancel=should_cancel,
        )
    import torch

    from cxrviewer.ml.explain.occlusion import occlusion_map

    model = torch_model if torch_model is not None else load_torch_occlusion_model(predictor)
    return occlusion_map(
        model,
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        class_index,
        settings,
        progress=progress,
        should_cancel=should_cancel,
    )


def explain_occlusion_with_predictor(
    predictor: Any,
    x: np.ndarray,
    class_index: int,
    geometry: Geometry | None = None,
    lung_mask: np.ndarray | None = None,
    occlusion: OcclusionSettings | None = None,
    settings: HeatmapSettings | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelCheck | None = None,
    torch_model: Any = None,
) -> Heatmap:
    """Occlusion sensitivity of ``class_index`` as a normalised :class:`Heatmap` on the original image, run on
    the predictor's backend (see :func:`predictor_occlusion_map`)."""
    raw = predictor_occlusion_map(
        predictor,
        x,
        class_index,
        occlusion,
        progress=progress,
        should_cancel=should_cancel,
        torch_model=torch_model,
    )
    return build_heatmap(raw, "occlusion", class_index, geometry, lung_mask, settings)
