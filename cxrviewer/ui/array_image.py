"""A grey image held in memory (e.g. a similar case's PNG thumbnail) with the display interface of
``cxrviewer.core.CxrImage`` that the view uses, so it can be shown in the second view."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from cxrviewer.core.windowing import Window, percentile_window, window_normalised


@dataclass(frozen=True)
class NamedSource:
    """Stands in for an image source: a display name and a stable key."""

    name: str

    def stable_key(self) -> str:
        return f"memory::{self.name}"


@dataclass(eq=False)
class ArrayImage:
    """8-bit or float grey pixels without DICOM attributes (no spacing, MONOCHROME2)."""

    pixels: np.ndarray
    source: NamedSource
    format: str = "PNG"
    photometric_interpretation: str = "MONOCHROME2"
    invert: bool = False
    pixel_spacing: tuple[float, float] | None = None
    pixel_spacing_source: str | None = None
    view_position: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    frame: int = 0
    number_of_frames: int = 1

    @property
    def default_window(self) -> Window:
        return percentile_window(self.pixels) or Window(127.5, 256.0, "full range")

    def padding_mask(self) -> None:
        return None

    def display(self, center: float, width: float) -> np.ndarray:
        """uint8 display image for the window (LINEAR)."""
        out = window_normalised(self.pixels.astype(np.float32), center, max(float(width), 1.0), "LINEAR")
        return np.rint(out * 255.0).astype(np.uint8)


def decode_png(
    data: bytes, name: str, metadata: dict[str, Any] | None = None, display_size: int = 0
) -> ArrayImage:
    """Decode grey (or colour, converted to grey) PNG bytes; with ``display_size`` a smaller image is
    enlarged (bicubic) to that longest side so that a thumbnail is not shown as blocks beside a full image.

    Raises:
        ValueError: the bytes are not a decodable image.
    """
    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"{name}: the thumbnail is not a readable PNG")
    if display_size and max(img.shape) < display_size:
        scale = display_size / max(img.shape)
        size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
        img = np.clip(cv2.resize(img.astype(np.float32), size, interpolation=cv2.INTER_CUBIC), 0, 255)
    return ArrayImage(pixels=img.astype(np.float32), source=NamedSource(name), metadata=dict(metadata or {}))
