"""The automatic window of a 16-bit raster spans the image's minimum to maximum (read without float copies)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cxrviewer.core import load_image
from cxrviewer.core.windowing import Window


def test_16_bit_png_auto_window_is_minimum_to_maximum(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    grey = rng.integers(300, 3900, size=(250, 204), dtype=np.uint16)  # 12 bits used, as on a detector
    grey[7, 9], grey[120, 33] = 211, 4011
    path = tmp_path / "detector.png"
    assert cv2.imwrite(str(path), grey)
    image = load_image(path)
    expected = Window.from_range(211.0, 4011.0, "image minimum to maximum")
    assert (image.auto_window.center, image.auto_window.width) == (expected.center, expected.width)
    shown = image.display()
    assert shown.dtype == np.uint8 and shown.min() == 0 and shown.max() == 255
