"""torch eager inference: CUDA with fp16/bf16 autocast, or CPU fp32 as the fallback."""

from __future__ import annotations

import numpy as np


class TorchBackend:
    """Runs a registry ``Classifier`` and returns its logits and last feature map.

    Args:
        model: the classifier (eval mode is set here).
        device: ``"cpu"`` or ``"cuda"`` (or ``"cuda:N"``).
        dtype: ``"fp32"``, ``"fp16"`` or ``"bf16"``; half precisions use autocast and are meant for CUDA.
        threads: CPU intra-op threads (default: physical cores); ignored for CUDA compute.
    """

    def __init__(self, model, device: str = "cpu", dtype: str = "fp32", threads: int | None = None):
        import torch

        from cxrviewer.ml.backends.threads import configure_torch_threads

        self.threads = configure_torch_threads(threads)
        self.device = torch.device(device)
        self.dtype = dtype
        self._autocast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(dtype)
        if dtype != "fp32" and self._autocast is None:
            raise ValueError(f"unknown precision {dtype!r}; use fp32, fp16 or bf16")
        self.model = model.to(self.device).eval()

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(B, C, H, W) float32`` → ``(logits (B, K), features (B, D, h, w))`` as float32 numpy."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            if self._autocast is not None:
                with torch.autocast(device_type=self.device.type, dtype=self._autocast):
                    fmap = self.model.forward_features(x)
                    logits = self.model.forward_head(fmap)
            else:
                fmap = self.model.forward_features(x)
                logits = self.model.forward_head(fmap)
        return (
            logits.float().cpu().numpy(),
            fmap.float().cpu().numpy(),
        )
