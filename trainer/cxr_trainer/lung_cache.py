"""The lung channel of every image, computed once with the shipped lung U-Net and cached beside the pixels.

For a classifier whose spec lists ``"lung"`` (Goldstein et al.'s CXR / lung probability / zeros input) and
for the lung-ablation shortcut check, each image's lung probability on the classifier's grid is made by
:func:`cxrviewer.ml.lung_channel.lung_plane` — the function the viewer calls — and stored as ``uint8`` in a
memmap ``<cache_dir>/<pixel digest>-<segmenter id>.npy``. The U-Net therefore runs once per image and
dataset, never per epoch; a changed image, spec or segmentation model builds a new cache.

:func:`input_planes` stacks the cached pixels and lung planes into the ``(N, 2, S, S)`` uint8 array that
:func:`cxr_trainer.inputs.assemble_channels` understands (channel 0 the image, channel 1 the lung).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cxr_trainer.datasets import Record
from cxr_trainer.image_cache import ImageReadError, cache_digest, default_cache_dir, read_gray
from cxr_trainer.progress import progress
from cxrviewer.core.preprocess import PreprocessSpec


def load_segmenter(model_dir: str | Path | None = None, threads: int | None = None) -> Any:
    """The lung segmenter (default: the shipped ``models/lung-unet``), hash-verified."""
    from cxrviewer.ml.segmentation import DEFAULT_MODEL_DIR, LungSegmenter

    return LungSegmenter(model_dir or DEFAULT_MODEL_DIR, threads=threads)


def build_lung_cache(
    records: list[Record],
    spec: PreprocessSpec,
    cache_dir: str | Path | None = None,
    segmenter: Any = None,
    show_progress: bool = True,
) -> np.ndarray:
    """``uint8 (N, S, S)`` lung planes of ``records`` on ``spec``'s grid (memmapped; zeros for unreadable
    images, which the image cache reports as failed)."""
    from cxrviewer.ml.lung_channel import lung_plane, segmenter_identity

    seg = segmenter if segmenter is not None else load_segmenter()
    digest = cache_digest(records, spec)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{digest}-{segmenter_identity(seg)}"
    npy, meta = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
    if npy.is_file() and meta.is_file() and json.loads(meta.read_text()).get("n") == len(records):
        return np.load(npy, mmap_mode="r")
    tmp = cache_dir / f"{stem}.{os.getpid()}.tmp.npy"
    arr = np.lib.format.open_memmap(
        tmp, mode="w+", dtype=np.uint8, shape=(len(records), spec.size, spec.size)
    )
    failed = 0
    for i, r in enumerate(progress(records, desc="lung U-Net", enabled=show_progress, unit="img")):
        try:
            arr[i] = lung_plane(read_gray(r.path), spec, seg)
        except (ImageReadError, ValueError, cv2.error):
            arr[i] = 0
            failed += 1
    arr.flush()
    del arr
    tmp.replace(npy)
    meta.write_text(json.dumps({"n": len(records), "spec": spec.to_dict(), "unreadable": failed}))
    return np.load(npy, mmap_mode="r")


def input_planes(pixels: np.ndarray, lung: np.ndarray | None) -> np.ndarray:
    """``pixels`` (N, S, S) alone, or stacked with ``lung`` into ``(N, 2, S, S)`` (image, lung)."""
    if lung is None:
        return pixels
    if lung.shape != pixels.shape:
        raise ValueError(f"lung planes {lung.shape} do not match the pixels {pixels.shape}")
    return np.stack([np.asarray(pixels), np.asarray(lung)], axis=1)
