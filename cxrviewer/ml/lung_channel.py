"""The lung-probability input channel (Goldstein et al.: channels CXR, lung probability, zeros).

A classifier whose preprocessing lists ``"lung"`` in ``channels`` gets the lung U-Net's probability map as
that channel, on the classifier's own model grid. The trainer (cached once per image) and the viewer (per
analysed image) both build it with :func:`lung_plane`, so a model sees the same lung channel in training and
in use:

1. the U-Net runs on the image preprocessed with *its* spec (one image per call, as in the viewer);
2. its probability map is carried onto the classifier's grid — a plain resize when both specs crop and pad
   the image identically (the usual case: they differ only in size and CLAHE), else through the original
   grid (:meth:`~cxrviewer.core.preprocess.Geometry.to_original` then ``from_original``);
3. it is quantised to 8 bits (``uint8`` 0-255), the form the trainer caches and the viewer normalises with
   the classifier's mean/std exactly like the ``cxr`` channel.

:func:`lung_mask_from_plane` turns such a plane into the post-processed binary lung mask on the classifier's
grid (two largest components, holes filled) — what ``cxr-trainer evaluate --ablation`` blanks.

numpy/OpenCV only; the segmenter decides which runtime runs the network.
"""

from __future__ import annotations

from typing import Any, Protocol

import cv2
import numpy as np

from cxrviewer.core.preprocess import Geometry, PreprocessSpec, preprocess
from cxrviewer.ml.segmentation import postprocess_mask


class ProbabilitySegmenter(Protocol):
    """What :func:`lung_plane` needs of :class:`cxrviewer.ml.segmentation.LungSegmenter`."""

    spec: PreprocessSpec

    def probability(self, batch: np.ndarray) -> np.ndarray:
        """Lung probabilities ``(B, size, size)`` for preprocessed inputs ``(B, size, size)``."""
        ...


def carry_to_grid(probability: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray:
    """A model-grid map of ``source``'s preprocessing moved onto ``target``'s model grid (float32).

    Both geometries must describe the same original image.
    """
    p = np.asarray(probability, dtype=np.float32)
    if source.original_shape != target.original_shape:
        raise ValueError(
            f"the geometries describe different images ({source.original_shape} vs {target.original_shape})"
        )
    if source.crop == target.crop and source.pad == target.pad:
        if p.shape == (target.size, target.size):
            return p.copy()
        interp = cv2.INTER_AREA if p.shape[0] > target.size else cv2.INTER_LINEAR
        return cv2.resize(p, (target.size, target.size), interpolation=interp)
    return target.from_original(source.to_original(p))


def quantise(plane: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] → ``uint8`` 0-255 (rounded), the stored form of the lung channel."""
    return np.clip(np.rint(np.asarray(plane, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def lung_plane_from_probability(probability: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray:
    """The ``uint8`` lung channel on ``target``'s grid from a U-Net probability map on ``source``'s grid."""
    return quantise(np.clip(carry_to_grid(probability, source, target), 0.0, 1.0))


def lung_plane(image: np.ndarray, spec: PreprocessSpec, segmenter: ProbabilitySegmenter) -> np.ndarray:
    """The lung channel of ``image`` for a classifier with preprocessing ``spec``: ``uint8`` (size, size).

    Args:
        image: display-ready grayscale image (``uint8``, or float in [0, 1]) on its original grid.
        spec: the classifier's preprocessing spec (its size, crop and padding decide the grid).
        segmenter: a loaded lung segmenter (:class:`cxrviewer.ml.segmentation.LungSegmenter`).
    """
    x, source = preprocess(image, segmenter.spec)
    probability = segmenter.probability(x[None])[0]
    _, target = preprocess(image, spec)
    return lung_plane_from_probability(probability, source, target)


def lung_mask_from_plane(plane: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The post-processed binary lung mask (``uint8`` 0/1) of a ``uint8`` lung plane on the same grid."""
    return postprocess_mask(np.asarray(plane, dtype=np.float32) / 255.0, threshold)


def segmenter_identity(segmenter: Any) -> str:
    """A short identity of the segmentation model (name, version, weights hash prefix) for cache keys."""
    m = segmenter.manifest
    weights = m.files.get("weights")
    return f"{m.name}-{m.version}-{(weights.sha256 if weights else 'none')[:12]}"


def lung_input(segmenter: Any, image: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """One U-Net run for a lung-channel classifier in the viewer: ``(mask, plane)``.

    ``mask`` is the post-processed lung mask on the image's own grid (``uint8`` 0/1, for display and the
    heatmap), ``plane`` the ``uint8`` lung channel on ``spec``'s grid — identical to :func:`lung_plane`, which
    the trainer caches. ``segmenter`` is a :class:`~cxrviewer.ml.segmentation.LungSegmenter` or an adapter
    holding one as ``.segmenter`` (``cxrviewer.services.shipped_helpers.LungMaskAdapter``).

    Raises:
        ValueError: the segmenter returns only a mask, not the U-Net's probability map.
    """
    seg = getattr(segmenter, "segmenter", segmenter)
    result = seg.segment(image)
    probability = getattr(result, "probability", None)
    geometry = getattr(result, "geometry", None)
    if probability is None or geometry is None:
        raise ValueError(
            "this model takes the lung U-Net's probability map as an input channel, but the installed lung "
            "segmenter returns only a mask"
        )
    _, target = preprocess(image, spec)
    return np.asarray(result.mask, dtype=np.uint8), lung_plane_from_probability(probability, geometry, target)
