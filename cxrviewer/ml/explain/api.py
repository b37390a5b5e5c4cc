"""One call from a model and a preprocessed image to a :class:`Heatmap` on the original image."""

from __future__ import annotations

import numpy as np
import torch

from cxrviewer.core.preprocess import Geometry
from cxrviewer.ml.explain.gradcam import forward_with_cam
from cxrviewer.ml.explain.heatmap import Heatmap, HeatmapSettings, build_heatmap
from cxrviewer.ml.explain.occlusion import CancelCheck, OcclusionSettings, ProgressFn, occlusion_map
from cxrviewer.ml.registry import Classifier


def explain_gradcam(
    model: Classifier,
    x: torch.Tensor,
    class_index: int,
    geometry: Geometry | None = None,
    lung_mask: np.ndarray | None = None,
    settings: HeatmapSettings | None = None,
) -> Heatmap:
    """Exact Grad-CAM of ``class_index`` (fast path) as a normalised :class:`Heatmap`.

    Args:
        model: a registry :class:`Classifier`.
        x: one preprocessed input ``(1, C, H, W)`` or ``(C, H, W)``.
        class_index: the class to explain.
        geometry: preprocessing geometry; the map is drawn onto the original image when given.
        lung_mask: lung mask on the output grid (original image with ``geometry``, else model input).
        settings: see :class:`HeatmapSettings`.
    """
    if not 0 <= class_index < model.num_classes:
        raise ValueError(f"class index {class_index} out of range for {model.num_classes} classes")
    x = x if x.dim() == 4 else x.unsqueeze(0)
    _, cams = forward_with_cam(model, x[:1])
    size = x.shape[-2:]
    cam = torch.nn.functional.interpolate(cams[:, class_index : class_index + 1], size=size, mode="bilinear")
    return build_heatmap(cam[0, 0].numpy(), "gradcam", class_index, geometry, lung_mask, settings)


def explain_occlusion(
    model: Classifier,
    x: torch.Tensor,
    class_index: int,
    geometry: Geometry | None = None,
    lung_mask: np.ndarray | None = None,
    occlusion: OcclusionSettings | None = None,
    settings: HeatmapSettings | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelCheck | None = None,
) -> Heatmap:
    """Occlusion sensitivity of ``class_index`` as a normalised :class:`Heatmap` (see
    :func:`cxrviewer.ml.explain.occlusion.occlusion_map` for progress and cancellation)."""
    raw = occlusion_map(model, x, class_index, occlusion, progress=progress, should_cancel=should_cancel)
    return build_heatmap(raw, "occlusion", class_index, geometry, lung_mask, settings)
