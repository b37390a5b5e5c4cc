"""Decode and preprocess every image once into a uint8 memmap keyed by the preprocessing spec.

Training then reads ``(N, S, S)`` uint8 arrays and augments tensors; no JPEG is decoded twice. The stored
pixels are the output of :func:`cxrviewer.core.preprocess.preprocess` before normalisation (exactly 8-bit
values, so storing them loses nothing); :func:`normalise` applies the spec's mean/std on tensors.

Cache files live under ``<cache_dir>/<digest>.npy`` + ``.json``; the digest covers the geometric part of the
spec and every file's path, size and modification time, so a changed image or spec builds a new cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cxr_trainer.datasets import Record
from cxr_trainer.progress import progress
from cxrviewer.core.preprocess import PreprocessSpec, preprocess

CACHE_ENV = "CXR_TRAINER_CACHE"
_PIXEL_KEYS = ("mean", "std", "channels", "version")


class ImageReadError(Exception):
    """An image file could not be decoded."""


def default_cache_dir() -> Path:
    """``$CXR_TRAINER_CACHE``, else ``.cache/cxr-trainer`` in the working directory's repository, else the
    platform user cache."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    here = Path.cwd()
    for d in (here, *here.parents):
        if (d / ".git").exists() and (d / "pyproject.toml").is_file():
            return d / ".cache" / "cxr-trainer"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("cxr-trainer"))


def read_gray(path: str | Path) -> np.ndarray:
    """Decode an image file into 8-bit grayscale (raises :class:`ImageReadError`)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if img is None or img.size == 0:
        raise ImageReadError(f"{path}: not a decodable image (damaged, truncated or unsupported)")
    return img


def preprocess_uint8(gray: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """``preprocess()`` output before normalisation, as exact 8-bit values (S, S)."""
    out, _ = preprocess(gray, spec)
    return np.clip(np.rint((out * spec.std + spec.mean) * 255.0), 0, 255).astype(np.uint8)


def normalise(x, spec: PreprocessSpec):
    """uint8-valued tensor/array in [0, 255] (or float in [0, 1] with ``scaled=False``) → model input."""
    return (x * (1.0 / 255.0) - spec.mean) / spec.std


def normalise_unit(x, spec: PreprocessSpec):
    """Float image in [0, 1] → model input (the spec's mean/std)."""
    return (x - spec.mean) / spec.std


def cache_digest(records: list[Record], spec: PreprocessSpec) -> str:
    """Digest of the geometric spec and every file's identity (path, size, mtime)."""
    geo = {k: v for k, v in spec.to_dict().items() if k not in _PIXEL_KEYS}
    h = hashlib.sha256(json.dumps(geo, sort_keys=True).encode())
    for r in records:
        try:
            st = r.path.stat()
            h.update(f"{r.path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{r.path}|missing\n".encode())
    return h.hexdigest()[:24]


@dataclass
class ImageCache:
    """Preprocessed uint8 images of a record list; ``failed`` maps record index → reason."""

    pixels: np.ndarray
    failed: dict[int, str]
    digest: str
    path: Path | None = None

    @property
    def ok_indices(self) -> list[int]:
        return [i for i in range(len(self.pixels)) if i not in self.failed]


def build_cache(
    records: list[Record],
    spec: PreprocessSpec,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
    desc: str = "preprocess",
) -> ImageCache:
    """Preprocess ``records`` (or reuse a cache made by an earlier run) and return the memmapped array."""
    digest = cache_digest(records, spec)
    if cache_dir is None:
        cache_dir = default_cache_dir()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    npy, meta = cache_dir / f"{digest}.npy", cache_dir / f"{digest}.json"
    if npy.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("n") == len(records):
            arr = np.load(npy, mmap_mode="r")
            return ImageCache(arr, {int(k): v for k, v in info["failed"].items()}, digest, npy)
    tmp = cache_dir / f"{digest}.{os.getpid()}.tmp.npy"
    arr = np.lib.format.open_memmap(
        tmp, mode="w+", dtype=np.uint8, shape=(len(records), spec.size, spec.size)
    )
    failed: dict[int, str] = {}
    for i, r in enumerate(progress(records, desc=desc, enabled=show_progress, unit="img")):
        try:
            arr[i] = preprocess_uint8(read_gray(r.path), spec)
        except (ImageReadError, ValueError, cv2.error) as exc:
            failed[i] = str(exc)
            arr[i] = 0
    arr.flush()
    del arr
    tmp.replace(npy)
    meta.write_text(json.dumps({"n": len(records), "spec": spec.to_dict(), "failed": failed}))
    return ImageCache(np.load(npy, mmap_mode="r"), failed, digest, npy)
