"""load_studies: folders, ZIP archives, DICOMDIR; non-images skipped and reported; files left untouched."""

from __future__ import annotations

import hashlib
import struct
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from cxrviewer.core import ImageSource, LoadError, StudyTree, load_image, load_studies
from cxrviewer.core import source as source_module
from tests.core.conftest import corpus_dirs
from tests.core.dicom_factory import synthetic_cxr, write_dicom


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture()
def study_folder(tmp_path: Path) -> Path:
    """Two patients: A with one study of two series (PA + lateral, 2 images), B with one image; a PNG, a
    text file, a structured-report-like DICOM without pixels, and a nested folder."""
    root = tmp_path / "import"
    (root / "sub" / "deeper").mkdir(parents=True)
    img = synthetic_cxr(64, 48)
    study_a, pa_series, lat_series = generate_uid(), generate_uid(), generate_uid()
    write_dicom(root / "a1.dcm", img, bits_stored=12, patient_id="A", study_uid=study_a, series_uid=pa_series,
                InstanceNumber=2)  # fmt: skip
    write_dicom(root / "sub" / "a2.dcm", img, bits_stored=12, patient_id="A", study_uid=study_a,
                series_uid=pa_series, InstanceNumber=1)  # fmt: skip
    write_dicom(root / "sub" / "deeper" / "a_lat", img, bits_stored=12, patient_id="A", study_uid=study_a,
                series_uid=lat_series, view="LL", SeriesNumber=2)  # fmt: skip
    write_dicom(root / "b.dcm", img, bits_stored=12, patient_id="B", preamble=False)
    cv2.imwrite(str(root / "photo.png"), (img >> 4).astype(np.uint8))
    (root / "notes.txt").write_text("not an image")
    sr = pydicom.dcmread(root / "b.dcm", force=True)
    del sr.PixelData
    sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
    sr.file_meta = pydicom.dataset.FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID
    sr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword in ("Rows", "Columns"):
        delattr(sr, keyword)
    sr.save_as(root / "sub" / "report.dcm", enforce_file_format=True)
    return root


def _check_tree(tree: StudyTree) -> None:
    ids = [p.patient_id for p in tree.patients]
    assert "A" in ids and "B" in ids and len(ids) == 3  # A, B and the PNG's own made-up patient
    a = next(p for p in tree.patients if p.patient_id == "A")
    assert len(a.studies) == 1 and [len(s.images) for s in a.studies[0].series] == [2, 1]
    pa = a.studies[0].series[0]
    assert [r.instance_number for r in pa.images] == [1, 2]
    assert a.studies[0].series[1].images[0].view_position == "LL"
    reasons = {s.source.name.split(":")[-1].split("/")[-1]: s.reason for s in tree.skipped}
    assert "not a DICOM or image file" in reasons["notes.txt"]
    assert "DICOM without pixel data (Enhanced SR Storage" in reasons["report.dcm"]
    assert len(tree.images()) == 5
    for ref in tree.images():  # every reference is loadable later, pixels on demand
        image = ref.load()
        assert image.shape == (64, 48)
        assert image.sop_instance_uid == ref.sop_instance_uid


def test_folder(study_folder: Path) -> None:
    before = _hashes(study_folder)
    tree = load_studies(study_folder)
    _check_tree(tree)
    assert _hashes(study_folder) == before, "the user's files must not change"


def test_single_file(study_folder: Path) -> None:
    tree = load_studies(study_folder / "a1.dcm")
    assert [r.name for r in tree.images()] == ["a1.dcm"] and not tree.skipped
    tree = load_studies(study_folder / "notes.txt")
    assert not tree.patients and len(tree.skipped) == 1


def test_zip_archive(study_folder: Path, tmp_path: Path) -> None:
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(study_folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(study_folder).as_posix())
        zf.writestr("../escape.dcm", (study_folder / "a1.dcm").read_bytes())
        zf.writestr("inner.zip", b"PK\x03\x04" + b"\x00" * 40)
    listing_before = sorted(p.name for p in tmp_path.iterdir())
    before = _hashes(tmp_path)
    tree = load_studies(archive)
    _check_tree(tree)
    reasons = {s.source.member: s.reason for s in tree.skipped}
    assert "unsafe name" in reasons["../escape.dcm"]
    assert "archive inside an archive" in reasons["inner.zip"]
    assert all(r.source.path == archive and r.source.member for r in tree.images())
    assert sorted(p.name for p in tmp_path.iterdir()) == listing_before, "nothing extracted"
    assert _hashes(tmp_path) == before
    image = load_image(ImageSource(archive, "sub/a2.dcm"))
    assert image.source.name == "study.zip:sub/a2.dcm"
    with pytest.raises(LoadError, match="ZIP archive, not an image: open it as a study"):
        load_image(archive)


def test_zip_found_in_a_folder(study_folder: Path) -> None:
    with zipfile.ZipFile(study_folder / "more.zip", "w") as zf:
        zf.write(study_folder / "a1.dcm", "copy.dcm")
    tree = load_studies(study_folder)
    members = [r.source.member for r in tree.images() if r.source.member]
    assert members == ["copy.dcm"]


def test_zip_bomb_member_refused(tmp_path: Path, monkeypatch) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.dcm", b"\x00" * (4 << 20))  # 4 MB of zeros compress ~1000-fold
    monkeypatch.setattr(source_module, "RATIO_CHECK_MIN_BYTES", 1 << 20)
    tree = load_studies(archive)
    assert not tree.patients
    assert "zip bomb" in tree.skipped[0].reason
    with pytest.raises(LoadError, match="zip bomb"):
        load_image(ImageSource(archive, "zeros.dcm"))
    monkeypatch.setattr(source_module, "MAX_MEMBER_BYTES", 1 << 20)
    with pytest.raises(LoadError, match="too large"):
        load_image(ImageSource(archive, "zeros.dcm"))


def test_damaged_zip(tmp_path: Path) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04" + b"\x13" * 100)
    tree = load_studies(archive)
    assert not tree.patients and "ZIP archive is damaged" in tree.skipped[0].reason


def test_dicomdir(study_folder: Path, tmp_path: Path) -> None:
    fs = FileSet()
    for path in (
        study_folder / "a1.dcm",
        study_folder / "sub" / "a2.dcm",
        study_folder / "sub" / "deeper" / "a_lat",
    ):
        fs.add(pydicom.dcmread(path))
    out = tmp_path / "disc"
    fs.write(out)
    dicomdir = out / "DICOMDIR"
    tree = load_studies(dicomdir)
    assert [p.patient_id for p in tree.patients] == ["A"]
    assert len(tree.images()) == 3 and not tree.skipped
    assert tree.images()[0].load().shape == (64, 48)
    walked = load_studies(out)  # walking the folder: same images, the index itself reported
    assert len(walked.images()) == 3
    assert [s.source.name for s in walked.skipped] == ["DICOMDIR"]


def test_pydicom_dicomdir_test_set() -> None:
    root = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"
    tree = load_studies(root / "DICOMDIR")
    assert len(tree.patients) == 2 and len(tree.images()) == 31


@pytest.mark.parametrize("link", ["next-to-itself", "next-to-earlier", "lower-to-parent", "dangling"])
def test_dicomdir_with_bad_record_links_is_skipped_not_followed(tmp_path: Path, link: str) -> None:
    """pydicom's FileSet loops forever on a cyclic index: the links are checked first, the index skipped."""
    source = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests" / "DICOMDIR"
    ds = pydicom.dcmread(source)
    records = list(ds.DirectoryRecordSequence)
    first, second = records[0], records[1]  # the first patient and its first study
    assert second.seq_item_tell == first.OffsetOfReferencedLowerLevelDirectoryEntity
    data = bytearray(source.read_bytes())

    def set_offset(record, keyword: str, value: int) -> None:
        tag = {"next": (0x0004, 0x1400), "lower": (0x0004, 0x1420)}[keyword]
        pos = data.index(struct.pack("<HHH", *tag, 0x4C55), record.seq_item_tell)  # tag + "UL"
        data[pos + 8 : pos + 12] = struct.pack("<I", value)

    if link == "next-to-itself":
        set_offset(first, "next", first.seq_item_tell)
    elif link == "next-to-earlier":
        set_offset(second, "next", first.seq_item_tell)
    elif link == "lower-to-parent":
        set_offset(second, "lower", first.seq_item_tell)
    else:
        set_offset(first, "next", 12345)
    (tmp_path / "DICOMDIR").write_bytes(bytes(data))
    tree = load_studies(tmp_path / "DICOMDIR")
    assert not tree.images()
    expected = "does not exist" if link == "dangling" else "link in a loop"
    assert [s.source.name for s in tree.skipped] == ["DICOMDIR"] and expected in tree.skipped[0].reason


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="does not exist"):
        load_studies(tmp_path / "nothing")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_headers_only_listing_agrees_with_load_image() -> None:
    """Every corpus file that load_image opens is listed by the header-only scan (no false refusals), and
    the scan refuses no more than the files load_image cannot open either."""
    folders = corpus_dirs()
    for name in ("pydicom",):  # the small files; pydicom-data repeats them at full size
        tree = load_studies(folders[name])
        listed = {r.source.path for r in tree.images()}
        skipped = {s.source.path for s in tree.skipped}
        for path in sorted(p for p in folders[name].rglob("*") if p.is_file()):
            if path.suffix == ".py" or "__pycache__" in path.parts or path.name.startswith("DICOMDIR"):
                continue
            try:
                load_image(path)
            except LoadError:
                continue
            assert path in listed, f"{path.name} loads but was not listed ({path in skipped=})"
