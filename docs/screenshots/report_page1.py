"""Renders docs/screenshots/report_page1.png: the PDF report, page 1, rasterised with poppler's pdftoppm.

The image and its lung mask (radiologist-drawn) are a CC BY 4.0 case of the ieee8023 COVID-19 image data
collection and the similar-case thumbnails CC BY 4.0 Kermany images, all from the shared data (see
shared/data/cxr/SOURCES.md). The scores, heatmap and operating point are ILLUSTRATIVE values written below,
not a model's output: the report shows them as such (model id and a warning say so).

    .venv/bin/python docs/screenshots/report_page1.py            # needs ../shared/data and poppler-utils
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from cxrviewer.services.export.report import ReportInfo, render_report  # noqa: E402
from cxrviewer.services.result import AnalysisResult, Neighbour, OperatingPoint  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "cxr"
IMAGE = "images/cohen/41182_2020_203_Fig3_HTML.jpg"


def _rows(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="") as f:
        return list(csv.DictReader(f))


def _thumbnail(rel: str) -> bytes:
    img = cv2.imread(str(DATA / rel), cv2.IMREAD_GRAYSCALE)
    return cv2.imencode(".png", cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA))[1].tobytes()


def main() -> None:
    masks = {r["image_path"]: r["mask_path"] for r in _rows("masks.csv")}
    image = cv2.imread(str(DATA / IMAGE), cv2.IMREAD_GRAYSCALE)
    lungs = cv2.imread(str(DATA / masks[IMAGE]), cv2.IMREAD_GRAYSCALE) > 127
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w]
    heat = 0.9 * np.exp(-(((xx - 0.68 * w) / (0.12 * w)) ** 2 + ((yy - 0.62 * h) / (0.16 * h)) ** 2))
    heat += 0.55 * np.exp(-(((xx - 0.3 * w) / (0.1 * w)) ** 2 + ((yy - 0.7 * h) / (0.12 * h)) ** 2))
    rows = [r for r in _rows("labels.csv") if r["license"] == "CC BY 4.0" and r["source"] == "kermany"][:32:8]
    neighbours = [
        Neighbour(
            Path(r["path"]).stem,
            "reference",
            r["label"],
            0.11 + 0.03 * i,
            _thumbnail(r["path"]),
            r["source"],
            r["license"],
        )
        for i, r in enumerate(rows)
    ]
    neighbours.append(Neighbour("case-without-thumbnail", "reference", "covid", 0.27))
    result = AnalysisResult(
        path=IMAGE,
        status="ok",
        probabilities={"covid": 0.71, "pneumonia": 0.21, "normal": 0.08},
        model_id="cxr-mobilenet_v3_small-128 (illustrative)",
        backend="onnxruntime fp32",
        operating_point=OperatingPoint(
            "high-sensitivity", "covid", 0.31, 0.93, 0.72, (0.89, 0.96), (0.67, 0.77), True
        ),
        warnings=[
            "Illustrative scores for the report layout, not the output of a model.",
            "The image is a figure from a publication (source confounding likely).",
        ],
        neighbours=neighbours,
        neighbour_vote={"pneumonia": 0.6, "normal": 0.2, "covid": 0.2},
        heatmap=(heat / heat.max()).astype(np.float32),
        heatmap_method="Grad-CAM",
        heatmap_class="covid",
        saliency_outside_lungs=0.18,
        lung_mask=lungs,
    )
    with tempfile.TemporaryDirectory() as tmp:
        pdf = render_report(
            result,
            image,
            Path(tmp) / "report.pdf",
            ReportInfo(study="CR chest PA (de-identified)", image=Path(IMAGE).name),
        )
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "110",
                "-f",
                "1",
                "-l",
                "1",
                "-singlefile",
                str(pdf),
                str(Path(__file__).with_name("report_page1")),
            ],
            check=True,
        )
    print(Path(__file__).with_name("report_page1.png"))


if __name__ == "__main__":
    main()
