"""CXR-safe augmentation on batches of tensors (after the one-time decode into the image cache).

No left-right flips by default (the heart is on the left; a flipped film is not a plausible radiograph):
small rotation, scale and translation through one affine resampling, then brightness, contrast and gamma.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms (uniform in ±range; ``hflip`` is a probability)."""

    rotation_deg: float = 7.0
    scale: float = 0.08
    translate: float = 0.06
    brightness: float = 0.08
    contrast: float = 0.15
    gamma: float = 0.15
    hflip: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def enabled(self) -> bool:
        return any(v > 0 for v in asdict(self).values())


def augment_batch(
    x: torch.Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator | None = None,
    photometric_channels: int | None = None,
) -> torch.Tensor:
    """Augment a float batch ``(B, C, H, W)`` with values in [0, 1]; returns a new tensor in [0, 1].

    Areas moved in from outside the image are black, like the square padding of the preprocessing. Every
    channel gets the same geometric transform; gamma, contrast and brightness change only the first
    ``photometric_channels`` channels (default all) — a lung-probability plane moves with the image but
    keeps its values.
    """
    b = x.shape[0]

    def u(r: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator) * 2 - 1) * r

    angle = u(math.radians(cfg.rotation_deg))
    scale = 1.0 + u(cfg.scale)
    tx, ty = u(cfg.translate * 2), u(cfg.translate * 2)  # affine_grid coordinates span 2 units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    flip = torch.where(torch.rand(b, generator=generator) < cfg.hflip, -1.0, 1.0)
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)
    n = x.shape[1] if photometric_channels is None else photometric_channels
    out = moved[:, :n]
    gamma = torch.exp(u(cfg.gamma)).view(b, 1, 1, 1).to(x.dtype)
    out = out.pow(gamma)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    contrast = (1.0 + u(cfg.contrast)).view(b, 1, 1, 1).to(x.dtype)
    bright = u(cfg.brightness).view(b, 1, 1, 1).to(x.dtype)
    out = ((out - mean) * contrast + mean + bright).clamp(0, 1)
    return out if n == x.shape[1] else torch.cat([out, moved[:, n:]], dim=1)
