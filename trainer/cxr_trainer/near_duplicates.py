"""Perceptual near-duplicate detection: 64-bit dHash with a Hamming cut-off, confirmed by thumbnail NCC.

The same rule the shared bundle was built with (SOURCES.md): dHash of a 9×8 INTER_AREA thumbnail,
Hamming ≤ 4, then normalised cross-correlation of 32×32 thumbnails ≥ 0.97 (dHash alone is not selective on
chest X-rays).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

HAMMING_MAX = 4
NCC_MIN = 0.97


@dataclass(frozen=True)
class Fingerprint:
    """dHash (64-bit) and a zero-mean unit-norm 32×32 thumbnail of one image."""

    dhash: int
    thumb: np.ndarray


def fingerprint(gray: np.ndarray) -> Fingerprint:
    """Fingerprint an 8-bit grayscale image."""
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    value = int(np.packbits(bits).view(">u8")[0])
    t = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    t -= t.mean()
    norm = float(np.linalg.norm(t))
    return Fingerprint(value, t / norm if norm > 0 else t)


def find_near_duplicates(
    prints: list[Fingerprint], hamming_max: int = HAMMING_MAX, ncc_min: float = NCC_MIN
) -> list[tuple[int, int, int, float]]:
    """All pairs ``(i, j, hamming, ncc)`` with ``i < j`` that pass both tests."""
    if len(prints) < 2:
        return []
    hashes = np.array([p.dhash for p in prints], dtype=np.uint64)
    thumbs = np.stack([p.thumb for p in prints])
    out = []
    for i in range(len(prints) - 1):
        ham = np.bitwise_count(hashes[i + 1 :] ^ hashes[i])
        cand = np.flatnonzero(ham <= hamming_max)
        if cand.size == 0:
            continue
        ncc = thumbs[i + 1 + cand] @ thumbs[i]
        for c, r in zip(cand, ncc, strict=True):
            if r >= ncc_min:
                out.append((i, i + 1 + int(c), int(ham[c]), float(r)))
    return out
