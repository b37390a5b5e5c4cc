"""The :class:`Heatmap` result shared by Grad-CAM and occlusion, and the arithmetic around it (numpy only).

A raw map (Grad-CAM activations, occlusion score drops) at model resolution is normalised to [0, 1], drawn
back onto the original image with :meth:`cxrviewer.core.preprocess.Geometry.to_original`, and, when a lung
mask is known, checked for how much of its mass lies outside the lungs.

Why the outside-lung warning compares against the lung area: a map that carries no information about the
lungs (a uniform map) puts ``1 - lung_area_fraction`` of its mass outside them, which is 0.6-0.7 on typical
chest X-rays (the lungs cover about a third of the radiograph). A saliency map that is *no more
lung-concentrated than a uniform map* is evidence that the model looks at something else (text markers,
borders, the shoulders: the shortcut learning of paper 004), so :func:`build_heatmap` warns when
``outside_lung_fraction >= (1 - lung_area_fraction) + margin`` with a default margin of 0, computed per
image from its own mask rather than from one fixed number.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cxrviewer.core.preprocess import Geometry

METHODS = ("gradcam", "occlusion")


@dataclass(frozen=True)
class HeatmapSettings:
    """How a raw map becomes a :class:`Heatmap`.

    Attributes:
        restrict_to_lungs: zero the map outside the lung mask (after measuring the outside fraction) and
            renormalise, so the display shows lung regions only.
        warn_margin: warn when the outside-lung fraction reaches ``1 - lung_area_fraction + warn_margin``
            (0: no more lung-concentrated than a uniform map; see the module docstring).
        mask_threshold: a lung-mask value above this counts as lung (masks may be probabilities).
    """

    restrict_to_lungs: bool = False
    warn_margin: float = 0.0
    mask_threshold: float = 0.5


@dataclass(frozen=True)
class Heatmap:
    """A normalised saliency map on the original image grid.

    Attributes:
        map: float32 array in [0, 1], the shape of the original image (or of the model input when no
            geometry was given).
        method: ``"gradcam"`` or ``"occlusion"``.
        class_index: the explained class.
        outside_lung_fraction: share of the map's mass outside the lung mask, ``None`` without a mask.
        warning: a human sentence when the map is not lung-concentrated, else ``None``.
        lung_area_fraction: share of the image area covered by the lung mask (the uniform-map baseline).
    """

    map: np.ndarray
    method: str
    class_index: int
    outside_lung_fraction: float | None = None
    warning: str | None = None
    lung_area_fraction: float | None = None


def normalize_map(raw: np.ndarray) -> np.ndarray:
    """Clip negative evidence to 0 and scale so the maximum is 1 (an all-zero map stays zero)."""
    m = np.nan_to_num(np.asarray(raw, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    m = np.maximum(m, 0.0)
    peak = float(m.max()) if m.size else 0.0
    return m / peak if peak > 0 else np.zeros_like(m)


def outside_lung_fraction(heatmap: np.ndarray, lung_mask: np.ndarray, mask_threshold: float = 0.5) -> float:
    """Share of the (non-negative) map mass outside the lung mask; 0 for an all-zero map.

    ``heatmap`` and ``lung_mask`` must have the same shape; a ``bool`` mask is used as it is. Sums are
    accumulated in float64 (OpenCV), without float64 copies of the map.
    """
    m = np.asarray(heatmap)
    mask = np.asarray(lung_mask)
    lungs = mask if mask.dtype == bool else mask > mask_threshold
    if m.shape != lungs.shape:
        raise ValueError(f"heatmap shape {m.shape} and lung mask shape {lungs.shape} differ")
    if m.dtype != np.float32 or (m.size and float(m.min()) < 0.0):
        m = np.maximum(m.astype(np.float32), np.float32(0.0))
    return _mass_outside(m, lungs)


def _mass_outside(m: np.ndarray, lungs: np.ndarray) -> float:
    """:func:`outside_lung_fraction` of a non-negative float32 map and a bool mask of its shape."""
    if m.size == 0:
        return 0.0
    m = np.ascontiguousarray(m)
    total = float(cv2.sumElems(m)[0])
    if total <= 0:
        return 0.0
    outside = np.ascontiguousarray(~lungs)
    n_out = int(np.count_nonzero(outside))
    if n_out == 0:
        return 0.0
    mass = float(cv2.mean(m, mask=outside.view(np.uint8))[0]) * n_out
    return float(min(mass / total, 1.0))


def _renormalise_in_place(m: np.ndarray) -> np.ndarray:
    """:func:`normalize_map` of a finite non-negative float32 map (e.g. a normalised map resized with
    non-negative weights), done in place: the same numbers without the full-size copies."""
    peak = float(m.max()) if m.size else 0.0
    if peak > 0:
        m /= peak
    else:
        m[...] = 0.0
    return m


def build_heatmap(
    raw: np.ndarray,
    method: str,
    class_index: int,
    geometry: Geometry | None = None,
    lung_mask: np.ndarray | None = None,
    settings: HeatmapSettings | None = None,
) -> Heatmap:
    """Normalise a raw model-resolution map, map it onto the original image and check it against the lungs.

    Args:
        raw: 2-D map at model resolution (any square size; Grad-CAM maps are upsampled here).
        method: ``"gradcam"`` or ``"occlusion"``.
        class_index: the explained class.
        geometry: the preprocessing geometry of the image; without it the map stays at model resolution.
        lung_mask: lung mask (``bool``, 0/1, 0/255 or probabilities) on the same grid as the output (the
            original image when ``geometry`` is given). A ``bool`` mask is used as it is (the fast path for
            detector-size images: no float copies of it).
        settings: see :class:`HeatmapSettings`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown heatmap method {method!r}; use one of {METHODS}")
    settings = settings or HeatmapSettings()
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {raw.shape}")
    m = normalize_map(raw)
    if geometry is not None:  # renormalise: the crop may cut the peak, linear resizing may soften it
        m = _renormalise_in_place(geometry.to_original(m))  # finite and >= 0: no nan/clip passes needed
    if lung_mask is None:
        return Heatmap(map=m, method=method, class_index=int(class_index))

    mask = np.asarray(lung_mask)
    if mask.shape != m.shape:
        raise ValueError(f"lung mask shape {mask.shape} does not match the heatmap shape {m.shape}")
    if mask.dtype == bool:
        lungs = mask
    else:
        mask = mask.astype(np.float32, copy=False)
        if mask.max(initial=0.0) > 1.0:
            mask = mask / 255.0
        lungs = mask > settings.mask_threshold
    area = float(np.count_nonzero(lungs)) / lungs.size if lungs.size else 0.0
    outside = _mass_outside(m, lungs)  # m is finite, non-negative float32 here
    baseline = 1.0 - area
    warning = None
    if area == 0.0:
        warning = "The lung mask is empty, so the heatmap cannot be checked against the lungs."
    elif m.max() > 0 and outside >= baseline + settings.warn_margin - 1e-6:  # a uniform map counts
        warning = (
            f"{outside:.0%} of the heatmap lies outside the lungs, no less than a uniform map would "
            f"({baseline:.0%}): the model may rely on something other than the lungs."
        )
    if settings.restrict_to_lungs:
        m = normalize_map(np.where(lungs, m, 0.0))
    return Heatmap(
        map=m.astype(np.float32, copy=False),
        method=method,
        class_index=int(class_index),
        outside_lung_fraction=outside,
        warning=warning,
        lung_area_fraction=area,
    )
