"""De-identification: identifying fields gone, dates shifted or removed, UIDs remapped consistently."""

from __future__ import annotations

import pytest

from cxrviewer.services.export.deidentify import (
    BurnedInAnnotationError,
    Deidentifier,
    check_burned_in,
)
from tests.pacs.synthetic import make_cr

IDENTIFYING = {
    "DOE^JANE",
    "PID-0001",
    "19700101",
    "General Hospital",
    "1 Hospital Road",
    "HOUSE^GREGORY",
    "WATSON^JOHN",
    "TECH^ANNA",
    "XR-ROOM-2",
    "SN-99",
    "ACC0001",
    "private secret",
}


def _all_values(ds) -> set[str]:
    return {str(e.value) for e in ds.iterall() if e.tag != 0x7FE00010}


def test_identifying_values_are_gone_and_source_is_untouched():
    ds = make_cr()
    before = ds.to_json_dict()
    out = Deidentifier().apply(ds)
    assert not (_all_values(out) & IDENTIFYING)
    assert str(out.PatientName).startswith("ANONYMOUS^ANON-")
    assert out.PatientID.startswith("ANON-")
    assert out.PatientIdentityRemoved == "YES"
    assert not any(e.tag.is_private for e in out)
    assert "AccessionNumber" in out and out.AccessionNumber == ""  # Type 2: present, empty
    assert ds.to_json_dict() == before
    assert out.PixelData == ds.PixelData
    assert out.SOPClassUID == ds.SOPClassUID


def test_dates_shift_by_the_chosen_days_or_are_removed():
    ds = make_cr(study_date="20240315")
    shifted = Deidentifier(date_shift_days=-30).apply(ds)
    assert shifted.StudyDate == "20240214" and shifted.SeriesDate == "20240214"
    assert shifted.LongitudinalTemporalInformationModified == "MODIFIED"
    assert shifted.PatientBirthDate == ""
    removed = Deidentifier(date_shift_days=None).apply(ds)
    assert removed.StudyDate == "" and "SeriesDate" not in removed
    assert all(not e.value for e in removed if e.VR in ("DA", "DT", "TM"))


def test_uids_are_remapped_consistently_within_one_deidentifier():
    a = make_cr()
    b = make_cr(study_uid=a.StudyInstanceUID, series_uid=a.SeriesInstanceUID, seed=1)
    d = Deidentifier()
    da, db = d.apply(a), d.apply(b)
    assert da.StudyInstanceUID == db.StudyInstanceUID != a.StudyInstanceUID
    assert da.SeriesInstanceUID == db.SeriesInstanceUID != a.SeriesInstanceUID
    assert da.SOPInstanceUID != db.SOPInstanceUID
    assert da.file_meta.MediaStorageSOPInstanceUID == da.SOPInstanceUID
    assert da.StudyInstanceUID.startswith("2.25.") and len(da.StudyInstanceUID) <= 64
    assert da.PatientID == db.PatientID  # same patient, same pseudonym
    other = Deidentifier().apply(a)  # another secret: not linkable
    assert other.StudyInstanceUID != da.StudyInstanceUID and other.PatientID != da.PatientID
    same_key = Deidentifier(secret=d.secret).apply(a)
    assert same_key.StudyInstanceUID == da.StudyInstanceUID


def test_burned_in_annotation_is_refused_unless_allowed():
    check_burned_in(make_cr(burned_in="NO"))
    check_burned_in(make_cr(burned_in=None))
    with pytest.raises(BurnedInAnnotationError, match="burned into its pixels"):
        check_burned_in(make_cr(burned_in="YES"))
    check_burned_in(make_cr(burned_in="YES"), allow=True)


def test_repr_shows_no_secret():
    d = Deidentifier()
    assert d.secret.hex() not in repr(d)
