"""Grad-CAM for every registered backbone: a hook-based autograd reference and the exact fast path.

The target layer is the Classifier's last feature map (``model.features``, what ``forward_features``
returns), the same for every architecture in the registry. Because every head is global average pooling +
dropout + linear, Grad-CAM has a closed form (see :mod:`cxrviewer.ml.explain.cam`): :func:`forward_with_cam`
returns the logits and the maps of all classes from one forward pass, no backward, and equals
:func:`gradcam_reference` (not only up to scale).
"""

from __future__ import annotations

import torch

from cxrviewer.ml.registry import Classifier


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) or (C, H, W) input, got shape {tuple(x.shape)}")
    return x


def forward_with_cam(model: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and exact Grad-CAM maps of every class from a single forward pass.

    Args:
        model: a registry :class:`Classifier`; it is put in eval mode (dropout off, batch-norm statistics
            frozen), as for any prediction.
        x: ``(B, C, H, W)`` (or ``(C, H, W)``) preprocessed input.

    Returns:
        ``(logits (B, K), cams (B, K, h, w))`` where ``h × w`` is the last feature map (7 × 7 for ResNets at
        224 px); maps are ReLU'd, not normalised.
    """
    model.eval()
    with torch.inference_mode():
        fmap = model.forward_features(_as_batch(x))
        logits = model.forward_head(fmap)
        h, w = fmap.shape[-2:]
        weight = model.head.weight.to(fmap.dtype)
        cams = torch.relu(torch.einsum("kc,bchw->bkhw", weight, fmap)) / (h * w)
    return logits, cams


def gradcam_reference(
    model: Classifier, x: torch.Tensor, class_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Textbook Grad-CAM with autograd hooks on ``model.features`` (the reference for the fast path).

    Channel weights are the spatial mean of the gradient of the class logit with respect to the last feature
    map; the map is the ReLU of the weighted channel sum. Runs in eval mode.

    Returns:
        ``(logits (B, K), cam (B, h, w))``.
    """
    if not 0 <= class_index < model.num_classes:
        raise ValueError(f"class index {class_index} out of range for {model.num_classes} classes")
    model.eval()
    captured: dict[str, torch.Tensor] = {}

    def keep(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        captured["fmap"] = output

    handle = model.features.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            xin = _as_batch(x).detach().requires_grad_(True)  # gradients must flow even into a frozen trunk
            logits = model(xin)
            logits[:, class_index].sum().backward()
    finally:
        handle.remove()
    fmap = captured["fmap"]
    weights = fmap.grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * fmap).sum(dim=1))
    model.zero_grad(set_to_none=True)
    return logits.detach(), cam.detach()
