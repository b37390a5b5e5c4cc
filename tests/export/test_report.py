"""The PDF/PNG report: one A4 page, the disclaimer and the findings in its text, no patient data by default."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from cxrviewer.services.export.report import DISCLAIMER, ReportInfo, render_report
from cxrviewer.services.result import AnalysisResult
from tests.export.results import full_result
from tests.pacs.synthetic import synthetic_cxr

needs_poppler = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="poppler-utils is not installed (apt-get install poppler-utils)",
)


def _pdf_text(path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


@needs_poppler
def test_pdf_report_renders_one_a4_page_with_findings_and_disclaimer(tmp_path):
    pdf = render_report(
        full_result(), synthetic_cxr(256), tmp_path / "report.pdf", ReportInfo(image="chest.dcm")
    )
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in info.splitlines())}
    assert fields["Pages"] == "1"
    assert fields["Page size"].endswith("(A4)")
    text = _pdf_text(pdf)
    for expected in (
        DISCLAIMER,
        "Operating point",
        "high-sensitivity",
        "0.310",
        "93.0%",
        "0.73",
        "AP view",
        "case-001",
        "MODEL_CARD.md",
        "cxr-test-model-v1",
        "de-identified",
    ):
        assert expected in text, expected
    subprocess.run(
        ["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")], check=True
    )
    page = tmp_path / "page-1.png"
    assert page.is_file() and page.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page-1.png", "report.pdf"]  # no temp file left


@needs_poppler
def test_patient_details_appear_only_when_given(tmp_path):
    anon = render_report(full_result(path="/data/DOE_JANE/chest.dcm"), synthetic_cxr(128), tmp_path / "a.pdf")
    assert "DOE" not in _pdf_text(anon) and b"DOE" not in anon.read_bytes()
    named = render_report(
        full_result(), synthetic_cxr(128), tmp_path / "b.pdf", ReportInfo(patient="DOE^JANE")
    )
    assert "DOE^JANE" in _pdf_text(named)


def test_png_report_and_a_result_without_extras(tmp_path):
    from PIL import Image

    bare = AnalysisResult(path="x.png", status="ok", probabilities={"normal": 0.9, "covid": 0.1})
    png = render_report(
        bare,
        np.random.default_rng(0).integers(0, 4096, (300, 200)).astype(np.uint16),
        tmp_path / "r.png",
        dpi=50,
    )
    with Image.open(png) as im:
        assert abs(im.size[0] - 8.27 * 50) <= 1 and abs(im.size[1] - 11.69 * 50) <= 1  # A4 at 50 dpi
        grey = np.asarray(im.convert("L"))
    assert grey.std() > 20  # a drawn page, not a blank one


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match=".pdf or .png"):
        render_report(full_result(), synthetic_cxr(64), tmp_path / "r.docx")
