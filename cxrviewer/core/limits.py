"""Size limits checked from the header before any pixel data is decoded (decompression-bomb guard)."""

from __future__ import annotations

from pathlib import Path

from cxrviewer.core.errors import LoadError

#: Largest image (one frame) that is decoded, in pixels: 100 megapixels. A large digital radiograph is
#: about 4,300 × 3,500 = 15 MP, so this leaves a wide margin while refusing a crafted header that would
#: make a decoder allocate gigabytes.
MAX_PIXELS = 100_000_000


def check_pixel_count(pixels: int, where: Path | None, limit: int = MAX_PIXELS) -> None:
    """Raise :class:`LoadError` when an image of ``pixels`` pixels exceeds ``limit``."""
    if pixels > limit:
        raise LoadError(
            f"image too large ({pixels / 1e6:.0f} megapixels, limit {limit / 1e6:.0f}); it was not decoded",
            where,
        )
