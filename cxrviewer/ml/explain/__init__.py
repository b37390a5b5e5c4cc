"""Explainability: Grad-CAM and occlusion heatmaps for every registered classifier (issue 6).

Submodules, each with one job:

- :mod:`.heatmap` (numpy): the :class:`Heatmap` result, normalisation, mapping onto the image, the
  outside-lung fraction and its warning;
- :mod:`.cam` (numpy): :func:`cam_from_features`, exact Grad-CAM from a feature map and the head weights,
  for the ONNX Runtime backend;
- :mod:`.gradcam` (torch): :func:`forward_with_cam` (scores and all class maps from one forward pass) and
  the hook-based :func:`gradcam_reference`;
- :mod:`.occlusion_core` (numpy): :class:`OcclusionSettings`, :class:`OcclusionCancelled` and
  :func:`occlusion_map_batched`, the same batched loop over any ``run_logits`` function (ONNX Runtime);
- :mod:`.occlusion` (torch): :func:`occlusion_map` (batched, coarse-to-fine, cancellable) and the naive
  reference :func:`occlusion_map_naive`;
- :mod:`.predictor_occlusion` (no torch on ONNX Runtime): :func:`explain_occlusion_with_predictor` and
  :func:`predictor_occlusion_map`, occlusion on the backend that serves a loaded predictor;
- :mod:`.api` (torch): :func:`explain_gradcam` and :func:`explain_occlusion`, which return a
  :class:`Heatmap` on the original image;
- :mod:`.grid` (matplotlib): :func:`render_example_grid` for the trainer report.

Names are loaded lazily, so ``import cxrviewer.ml.explain`` (and ``from cxrviewer.ml.explain import
cam_from_features``) does not import torch or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Heatmap": "heatmap",
    "HeatmapSettings": "heatmap",
    "build_heatmap": "heatmap",
    "normalize_map": "heatmap",
    "outside_lung_fraction": "heatmap",
    "cam_from_features": "cam",
    "forward_with_cam": "gradcam",
    "gradcam_reference": "gradcam",
    "OcclusionCancelled": "occlusion_core",
    "OcclusionSettings": "occlusion_core",
    "occlusion_map_batched": "occlusion_core",
    "occlusion_offsets": "occlusion_core",
    "occlusion_map": "occlusion",
    "occlusion_map_naive": "occlusion",
    "explain_occlusion_with_predictor": "predictor_occlusion",
    "predictor_occlusion_map": "predictor_occlusion",
    "runs_on_onnxruntime": "predictor_occlusion",
    "explain_gradcam": "api",
    "explain_occlusion": "api",
    "GridItem": "grid",
    "render_example_grid": "grid",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
