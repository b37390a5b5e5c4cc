"""Grad-CAM from a feature map and the linear head, in numpy (for the ONNX Runtime backend; no torch).

For a :class:`~cxrviewer.ml.registry.Classifier` the logit of class c is ``w_c · mean_hw(F) + b_c``, so the
gradient of the logit with respect to ``F_k[i, j]`` is ``w_ck / (h·w)`` at every position. Grad-CAM's channel
weights (the spatial mean of that gradient) are therefore ``w_ck / (h·w)`` and

    CAM_c = ReLU(Σ_k w_ck F_k) / (h·w)

exactly: the same numbers the hook-based autograd implementation produces, from the forward pass alone.
"""

from __future__ import annotations

import numpy as np


def cam_from_features(
    features: np.ndarray, head_weight: np.ndarray, class_index: int | None = None
) -> np.ndarray:
    """Exact Grad-CAM of a GAP + linear head from the last feature map.

    Args:
        features: ``(C, h, w)`` or ``(B, C, h, w)`` feature map (the ONNX model's second output).
        head_weight: ``(num_classes, C)`` weight of the linear head.
        class_index: the class to explain; ``None`` returns maps for every class.

    Returns:
        ``(h, w)`` / ``(B, h, w)`` for one class, ``(K, h, w)`` / ``(B, K, h, w)`` for all classes;
        float32, not normalised (see :func:`cxrviewer.ml.explain.heatmap.normalize_map`).
    """
    f = np.asarray(features, dtype=np.float32)
    w = np.asarray(head_weight, dtype=np.float32)
    if f.ndim not in (3, 4):
        raise ValueError(f"expected a (C, h, w) or (B, C, h, w) feature map, got shape {f.shape}")
    if w.ndim != 2 or w.shape[1] != f.shape[-3]:
        raise ValueError(f"head weight shape {w.shape} does not fit {f.shape[-3]} feature channels")
    if class_index is not None:
        if not 0 <= class_index < w.shape[0]:
            raise ValueError(f"class index {class_index} out of range for {w.shape[0]} classes")
        w = w[class_index : class_index + 1]
    h, wd = f.shape[-2:]
    cams = np.einsum("kc,...chw->...khw", w, f, optimize=True) / np.float32(h * wd)
    cams = np.maximum(cams, 0.0, dtype=np.float32)
    return cams[..., 0, :, :] if class_index is not None else cams
