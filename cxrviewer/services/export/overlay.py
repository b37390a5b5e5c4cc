"""The analysis drawn over the image: heatmap blended in, lung outline, for the report and the Secondary Capture."""

from __future__ import annotations

import cv2
import numpy as np
from pydicom.dataset import Dataset

from cxrviewer.services.result import AnalysisResult

LUNG_OUTLINE_RGB = (0, 229, 255)
#: Heatmap values below this are not drawn (keeps the image readable where the model did not look).
HEAT_FLOOR = 0.2


def to_display_uint8(image: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """A greyscale image stretched to 0..255 between two percentiles (uint8 input is returned as is)."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., :3].mean(axis=2) if image.shape[2] >= 3 else image[..., 0]
    if image.dtype == np.uint8:
        return image
    data = image.astype(np.float32)
    lo, hi = np.percentile(data, percentiles)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((data - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def dicom_display_image(ds: Dataset) -> np.ndarray:
    """The first frame of a DICOM image as displayed: modality LUT, first VOI window, MONOCHROME1 inverted."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    pixels = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    if ds.get("PhotometricInterpretation", "MONOCHROME2") not in ("MONOCHROME1", "MONOCHROME2"):
        return to_display_uint8(pixels)
    values = apply_modality_lut(pixels, ds)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        values = apply_voi_lut(values, ds, index=0)
        lo, hi = float(np.min(values)), float(np.max(values))
        out = np.clip((values - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)
    else:
        out = to_display_uint8(values)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        out = 255 - out
    return out


def _fit(array: np.ndarray, shape: tuple[int, int], interpolation: int) -> np.ndarray:
    if array.shape[:2] == shape:
        return array
    return cv2.resize(array, (shape[1], shape[0]), interpolation=interpolation)


def heat_rgb(heat: np.ndarray) -> np.ndarray:
    """The heatmap (floats 0..1) in the 'inferno' colour map, RGB uint8."""
    from matplotlib import colormaps

    return (colormaps["inferno"](np.clip(heat, 0, 1))[..., :3] * 255).astype(np.uint8)


def render_overlay(
    image: np.ndarray, result: AnalysisResult, heat_alpha: float = 0.55, lung_outline: bool = True
) -> np.ndarray:
    """RGB uint8: the image with the result's heatmap blended in (where it exceeds :data:`HEAT_FLOOR`) and
    the lung mask's outline. Heatmap and mask are resized to the image when their grid differs."""
    grey = to_display_uint8(image)
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    shape = grey.shape[:2]
    if result.heatmap is not None:
        heat = _fit(np.asarray(result.heatmap, np.float32), shape, cv2.INTER_LINEAR)
        weight = np.clip((heat - HEAT_FLOOR) / (1 - HEAT_FLOOR), 0, 1)[..., None] * heat_alpha
        rgb = rgb * (1 - weight) + heat_rgb(heat).astype(np.float32) * weight
    out = np.clip(rgb, 0, 255).astype(np.uint8)
    if lung_outline and result.lung_mask is not None:
        mask = _fit(np.asarray(result.lung_mask).astype(np.uint8), shape, cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        thickness = max(1, round(max(shape) / 400))
        cv2.drawContours(out, contours, -1, LUNG_OUTLINE_RGB, thickness, lineType=cv2.LINE_AA)
    return np.ascontiguousarray(out)


def burn_caption(rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """A copy of ``rgb`` with ``lines`` of text on a dark band at the top (for the Secondary Capture)."""
    out = rgb.copy()
    h, w = out.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.35, w / 1400)
    widest = max((cv2.getTextSize(t, font, scale, 1)[0][0] for t in lines), default=0)
    if widest > w - 12:
        scale *= (w - 12) / widest
    line_h = int(28 * scale) + 4
    band = min(h, line_h * len(lines) + 8)
    out[:band] = (out[:band].astype(np.float32) * 0.25).astype(np.uint8)
    for i, text in enumerate(lines):
        y = 4 + line_h * (i + 1) - 6
        cv2.putText(out, text, (6, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
