"""An AnalysisResult with every field the exports use, built by hand on a synthetic image."""

from __future__ import annotations

import cv2
import numpy as np

from cxrviewer.services.result import AnalysisResult, Neighbour, OperatingPoint


def full_result(shape: tuple[int, int] = (256, 256), path: str = "chest.dcm") -> AnalysisResult:
    """Scores, operating point, warnings, heatmap, lung mask and neighbours (one with a thumbnail)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    heat = np.exp(-(((xx - 0.3 * w) / (0.15 * w)) ** 2 + ((yy - 0.5 * h) / (0.2 * h)) ** 2)).astype(
        np.float32
    )
    lungs = (((xx - 0.3 * w) / (0.16 * w)) ** 2 + ((yy - 0.5 * h) / (0.32 * h)) ** 2 < 1) | (
        ((xx - 0.7 * w) / (0.16 * w)) ** 2 + ((yy - 0.5 * h) / (0.32 * h)) ** 2 < 1
    )
    thumb = cv2.imencode(".png", np.full((64, 64), 128, np.uint8))[1].tobytes()
    return AnalysisResult(
        path=path,
        status="ok",
        probabilities={"covid": 0.734512, "normal": 0.165488, "pneumonia": 0.1},
        model_id="cxr-test-model-v1",
        backend="onnxruntime fp32",
        operating_point=OperatingPoint(
            "high-sensitivity", "covid", 0.31, 0.93, 0.72, (0.89, 0.96), (0.67, 0.77), positive=True
        ),
        warnings=["AP view: scores were validated on PA views"],
        neighbours=[
            Neighbour("case-001", "reference", "covid", 0.12, thumb, "cohen", "CC BY 4.0"),
            Neighbour("case-002", "reference", "normal", 0.2),
        ],
        neighbour_vote={"covid": 0.5, "normal": 0.5},
        heatmap=heat,
        heatmap_method="Grad-CAM",
        heatmap_class="covid",
        saliency_outside_lungs=0.12,
        lung_mask=lungs,
    )
