"""De-identified exports, tested on the ``deid-data`` package's DICOMs (real-looking headers with names,
IDs, institutions, physicians, private tags): the PACS engineer's
:class:`~cxrviewer.services.export.deidentify.Deidentifier` (the basic confidentiality profile subset it
documents) and the burned-in-annotation refusal of :func:`~cxrviewer.services.export.dicom_export.export_dicom`.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pydicom
import pytest

from cxrviewer.services.export.deidentify import KEPT_UID_KEYWORDS, REMOVED_KEYWORDS, Deidentifier
from tests.reliability.build_corpus import package_dir

DEID = package_dir("deid_data", "data")
FILES = sorted(DEID.rglob("*.dcm")) if DEID is not None else []
#: Identifying attributes whose original values must not survive anywhere in the exported bytes.
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "InstitutionAddress",
               "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "AccessionNumber",
               "StationName", "DeviceSerialNumber", "OtherPatientIDs", "PatientAddress", "RequestingPhysician",
               "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord", "PatientTelephoneNumbers", "GantryID",
               "ReasonForStudy", "AdmittingDiagnosesDescription", "ReasonForTheRequestedProcedure")  # fmt: skip
#: Attributes the basic profile removes (action X) that the Deidentifier keeps: reported to the export's
#: owner (issue 12); a file that leaks only through these is an expected failure, anything else fails.
KNOWN_GAPS: dict[str, str] = {}

pytestmark = pytest.mark.skipif(not FILES, reason="deid-data is not installed")


def _values(ds, keyword: str) -> list[str]:
    """Non-trivial string values of ``keyword`` anywhere in ``ds`` (sequences included)."""
    out = []
    for elem in ds.iterall():
        if elem.keyword == keyword and elem.value not in (None, ""):
            values = elem.value if elem.VM > 1 else [elem.value]
            out += [str(v).strip() for v in values if len(str(v).strip()) >= 4]
    return out


def _bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_exported_header_keeps_no_identifier(path: Path):
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    before = ds.to_json_dict(bulk_data_threshold=64)
    secrets = {v: kw for kw in IDENTIFYING for v in _values(ds, kw)}
    uids = {str(e.value) for e in ds.iterall() if e.VR == "UI" and e.keyword not in KEPT_UID_KEYWORDS and e.VM == 1
            and e.value and not str(e.value).startswith("1.2.840.10008.")}  # fmt: skip

    out = Deidentifier(date_shift_days=-3650).apply(ds)
    data = _bytes(out)

    leaked = {kw for v, kw in secrets.items() if v.encode("latin-1", "replace") in data}
    assert not leaked - set(KNOWN_GAPS), f"identifying values still in the export: {sorted(leaked)}"
    assert not [u for u in uids if u.encode() in data], "original UIDs still in the export"
    assert not [e.tag for e in out.iterall() if e.tag.is_private], "private tags kept"
    assert not [kw for kw in REMOVED_KEYWORDS if kw in out and out[kw].value not in (None, "")]
    assert out.PatientIdentityRemoved == "YES" and str(out.PatientName).startswith("ANONYMOUS^")
    for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        if ds.get(kw):
            assert out.get(kw) != ds.get(kw), f"{kw} not shifted"
    assert ds.to_json_dict(bulk_data_threshold=64) == before, "the source data set was modified"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, "the source file was modified"
    if leaked:
        pytest.xfail(
            "known de-identification gaps: " + "; ".join(f"{k}: {KNOWN_GAPS[k]}" for k in sorted(leaked))
        )


def test_dates_removed_when_not_shifted():
    ds = pydicom.dcmread(next(p for p in FILES if p.name == "ctbrain1.dcm"), stop_before_pixels=True)
    out = Deidentifier(date_shift_days=None).apply(ds)
    dates = {str(e.value) for e in out.iterall() if e.VR in ("DA", "DT") and e.value}
    assert not dates, f"dates left: {sorted(dates)[:5]}"


def test_burned_in_annotation_blocks_the_secondary_capture():
    from cxrviewer.services.export.dicom_export import ExportError, export_dicom
    from tests.export.results import full_result

    burned = [
        p
        for p in FILES
        if str(pydicom.dcmread(p, stop_before_pixels=True).get("BurnedInAnnotation", "")) == "YES"
    ]
    assert burned, "deid-data should hold images flagged BurnedInAnnotation = YES"
    ds = pydicom.dcmread(next(p for p in burned if p.name == "GREYSCALE_IMAGE.dcm"))
    result = full_result(shape=(int(ds.Rows), int(ds.Columns)))
    with pytest.raises(ExportError, match="burned into its pixels"):
        export_dicom(ds, result)
    only_sr = export_dicom(ds, result, include_secondary_capture=False)
    assert only_sr.secondary_capture is None and only_sr.structured_report.PatientIdentityRemoved == "YES"
    allowed = export_dicom(ds, result, allow_burned_in=True)
    assert allowed.secondary_capture is not None
    assert str(allowed.secondary_capture.PatientName) != str(ds.PatientName)
