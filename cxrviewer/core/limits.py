"""Size limits checked from the header before any pixel data is decoded (decompression-bomb guard)."""

from __future__ import annotations

from pathlib import Path

from cxrviewer.core.errors import LoadError

#: Largest image (one frame) that is decoded, in pixels: 60 megapixels. The largest real chest detector,
#: 43 × 43 cm at 0.1 mm, gives 4,300 × 4,300 = 18.5 MP, so this leaves a wide margin while refusing a crafted
#: header that would make a decoder allocate gigabytes. It is set by memory: a 16-bit image keeps the stored
#: uint16 values (2 B/pixel), the float32 working copy (4 B) and the uint8 display (1 B), plus decoder
#: buffers; a 16-bit PNG of 60 MP grows the resident set by 637 MiB when loaded and displayed (100 MP took
#: 1.05 GiB, over the 1 GiB per-image budget of the reliability corpus).
MAX_PIXELS = 60_000_000


def check_pixel_count(pixels: int, where: Path | None, limit: int = MAX_PIXELS) -> None:
    """Raise :class:`LoadError` when an image of ``pixels`` pixels exceeds ``limit``."""
    if pixels > limit:
        raise LoadError(
            f"image too large ({pixels / 1e6:.0f} megapixels, limit {limit / 1e6:.0f}); it was not decoded",
            where,
        )
