"""No patient identifiers in logs: a DICOM whose identifying attributes are canary strings goes through
load_studies, load_image, the analysis pipeline (and ``cxrviewer analyze``), the worklist export and the
de-identified DICOM export with every logger at DEBUG (plus captured warnings), into caplog and a log file.
No record, argument, exception text or file line may contain a canary string.

pydicom's element-by-element trace (``pydicom.config.debug(True)``) is a developer switch that prints every
element read, by design; the application never turns it on, so neither does this test.
"""

from __future__ import annotations

import logging
import shutil

import cv2
import pytest
from pydicom import dcmread

from tests.privacy.helpers import CANARY_STRINGS, write_canary_dicom
from tests.runtime.models import make_runtime_model_dir, synthetic_cxr


def leaks(records: list[logging.LogRecord], text: str = "") -> list[str]:
    """Log lines (or file text) that contain a canary string (case-insensitive)."""
    found = []
    for rec in records:
        parts = [rec.getMessage(), repr(rec.args), rec.exc_text or "", str(rec.exc_info and rec.exc_info[1])]
        line = " | ".join(parts)
        if any(c.lower() in line.lower() for c in CANARY_STRINGS):
            found.append(f"{rec.name}: {line[:300]}")
    found += [line for line in text.splitlines() if any(c.lower() in line.lower() for c in CANARY_STRINGS)]
    return found


@pytest.fixture()
def debug_logging(tmp_path, caplog):
    """Every logger at DEBUG, warnings captured, a file handler on the root; restored afterwards."""
    log_file = tmp_path / "debug.log"
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    saved = {name: (lg.level, lg.propagate) for name, lg in logging.root.manager.loggerDict.items()
             if isinstance(lg, logging.Logger)}  # fmt: skip
    old_root = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    caplog.set_level(logging.DEBUG)

    def all_debug():
        for lg in logging.root.manager.loggerDict.values():
            if isinstance(lg, logging.Logger):
                lg.setLevel(logging.DEBUG)
                lg.propagate = True

    all_debug()
    yield all_debug, log_file
    logging.captureWarnings(False)
    root.removeHandler(handler)
    handler.close()
    root.setLevel(old_root)
    for name, (level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.setLevel(level)
        lg.propagate = propagate


def test_detector_finds_a_leak(debug_logging, caplog):
    _, log_file = debug_logging
    logging.getLogger("cxrviewer.test").debug("opened %s", "CANARY^LEAKTEST")
    assert leaks(caplog.records, log_file.read_text())


def test_no_identifiers_in_any_log_record(tmp_path, debug_logging, caplog):
    from cxrviewer.cli_analyze import main
    from cxrviewer.core import LoadError, load_image, load_studies
    from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings
    from cxrviewer.services.export.dicom_export import export_dicom
    from cxrviewer.services.worklist import Worklist

    all_debug, log_file = debug_logging
    study = tmp_path / "study"
    study.mkdir()
    dcm = write_canary_dicom(study / "img1.dcm")
    cv2.imwrite(str(study / "img2.png"), synthetic_cxr(120, 100, seed=1))
    cut = study / "img3.dcm"
    cut.write_bytes(dcm.read_bytes()[:-5000])
    shutil.make_archive(str(tmp_path / "study"), "zip", study)
    model_dir = make_runtime_model_dir(tmp_path / "model")
    all_debug()  # loggers created by the imports above

    trees = [load_studies(study), load_studies(tmp_path / "study.zip")]
    assert any("CANARY" in p.patient_name for t in trees for p in t.patients)  # the canary was read
    pipeline = AnalysisPipeline(AnalysisSettings(model_dir=model_dir, device="cpu", threads=1))
    worklist = Worklist.from_sources([ref.source for t in trees for ref in t.images()])
    for item in worklist:
        try:
            image = load_image(item.source)
        except LoadError as exc:
            assert not any(c.lower() in str(exc).lower() for c in CANARY_STRINGS)
            logging.getLogger("cxrviewer").warning("could not load: %s", exc)
            worklist.set_failed(item.key, str(exc))
            continue
        all_debug()
        worklist.set_result(item.key, pipeline.analyze(image.display(), name=item.name))
    results = [item.result for item in worklist if item.result is not None]
    assert results and all(r.status == "ok" for r in results)
    out = tmp_path / "out"
    out.mkdir()
    worklist.export_json(out / "worklist.json")
    worklist.export_csv(out / "worklist.csv")
    exported = export_dicom(dcmread(dcm), results[0])
    assert exported.structured_report.PatientName != "CANARY^LEAKTEST"
    assert main([str(study), "--model", str(model_dir), "--device", "cpu", "--threads", "1",
                 "--out", str(out / "cli.json")]) in (0, 1)  # fmt: skip

    assert any("could not load" in r.getMessage() for r in caplog.records)  # capture works here too
    found = leaks(caplog.records, log_file.read_text(encoding="utf-8"))
    assert not found, "patient identifiers in the logs:\n" + "\n".join(found)
