"""``load_studies``: a file, folder (recursive), ZIP archive or DICOMDIR as patient → study → series → image.

Only headers are read (pixel data is skipped); each :class:`ImageRef` holds an :class:`ImageSource` that
:func:`cxrviewer.core.load_image` opens later. Files that are not images are skipped and reported in
:attr:`StudyTree.skipped` with the reason, never fatal.

- DICOM images are grouped by Patient ID, Study Instance UID and Series Instance UID.
- PNG/JPEG/TIFF images are one patient/study/series each (a folder of exported JPEGs may mix patients,
  so nothing is merged), with the same derived ids :func:`load_image` gives them.
- ZIP archives (given, or found in a folder) are read in memory, never extracted; members with unsafe
  names (absolute, ``..``), encrypted members, nested archives and members failing the zip-bomb limits of
  :mod:`cxrviewer.core.source` are skipped and reported.
- A DICOMDIR given as the path lists the images it references; a DICOMDIR met while walking a folder is
  reported as skipped (the folder's files are read directly).
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from pydicom.dataset import Dataset
from pydicom.fileset import FileSet

from cxrviewer.core.dicom_reader import NOT_CAUGHT, check_image_header, is_dicomdir, read_dataset, read_header
from cxrviewer.core.dicomdir import check_record_links
from cxrviewer.core.errors import LoadError
from cxrviewer.core.identifiers import derived_patient_id, derived_uid
from cxrviewer.core.image import CxrImage
from cxrviewer.core.limits import check_pixel_count
from cxrviewer.core.loader import NOT_AN_IMAGE, load_image
from cxrviewer.core.sniff import SNIFF_BYTES, raster_size, sniff_format
from cxrviewer.core.source import (
    MAX_ARCHIVE_BYTES,
    MAX_ARCHIVE_MEMBERS,
    ImageSource,
    check_member,
    is_safe_member_name,
)

#: Most files examined under one folder; the rest are reported as skipped.
MAX_FOLDER_FILES = 100_000
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


@dataclass
class ImageRef:
    """One image, known from its header; :meth:`load` reads its pixels."""

    source: ImageSource
    format: str
    sop_instance_uid: str
    instance_number: int | None = None
    number_of_frames: int = 1
    rows: int | None = None
    columns: int | None = None
    view_position: str | None = None
    modality: str | None = None

    @property
    def name(self) -> str:
        return self.source.name

    def load(self, frame: int = 0) -> CxrImage:
        """The image (see :func:`cxrviewer.core.load_image`); raises only :class:`LoadError`."""
        return load_image(self.source, frame)


@dataclass
class Series:
    series_instance_uid: str
    modality: str | None = None
    series_number: int | None = None
    description: str = ""
    images: list[ImageRef] = field(default_factory=list)


@dataclass
class Study:
    study_instance_uid: str
    study_date: str = ""
    description: str = ""
    accession_number: str = ""
    series: list[Series] = field(default_factory=list)


@dataclass
class Patient:
    patient_id: str
    patient_name: str = ""
    studies: list[Study] = field(default_factory=list)


class SkippedFile(NamedTuple):
    """A file (or archive member) that is not a loadable image, and why."""

    source: ImageSource
    reason: str


@dataclass
class StudyTree:
    """What :func:`load_studies` found: the patients, and every skipped file with its reason."""

    patients: list[Patient] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def images(self) -> list[ImageRef]:
        """Every image reference, in tree order."""
        return [ref for p in self.patients for st in p.studies for se in st.series for ref in se.images]


@dataclass
class _Header:
    ref: ImageRef
    patient_id: str
    patient_name: str
    study_uid: str
    study_date: str
    study_description: str
    accession: str
    series_uid: str
    series_number: int | None
    series_description: str


def load_studies(path: str | Path) -> StudyTree:
    """Group the images in a file, folder (recursive), ZIP archive or DICOMDIR into a :class:`StudyTree`.

    Never raises for a bad file inside; only when ``path`` itself does not exist or cannot be listed
    (:class:`LoadError`).
    """
    root = Path(path)
    headers: list[_Header] = []
    skipped: list[SkippedFile] = []
    if root.is_dir():
        _scan_folder(root, headers, skipped)
    elif root.is_file():
        _scan_file(root, headers, skipped, top_level=True)
    else:
        raise LoadError("the file or folder does not exist (moved or deleted?)", root)
    return StudyTree(patients=_group(headers), skipped=skipped)


def _scan_folder(root: Path, headers: list[_Header], skipped: list[SkippedFile]) -> None:
    seen = 0
    try:
        walker = os.walk(root, followlinks=False, onerror=None)
        for folder, dirs, files in walker:
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                seen += 1
                if seen > MAX_FOLDER_FILES:
                    skipped.append(
                        SkippedFile(ImageSource(path), f"more than {MAX_FOLDER_FILES} files: not read")
                    )
                    continue
                _scan_file(path, headers, skipped, top_level=False)
    except OSError as exc:
        raise LoadError(f"the folder could not be listed ({exc})", root) from exc


def _scan_file(path: Path, headers: list[_Header], skipped: list[SkippedFile], *, top_level: bool) -> None:
    source = ImageSource(path)
    try:
        head = source.read_bytes(SNIFF_BYTES)
        if head.startswith(_ZIP_MAGIC):
            _scan_zip(path, headers, skipped)
            return
        if top_level and sniff_format(head) in ("DICOM", "DICOM-RAW"):
            ds = read_dataset(source, force=sniff_format(head) == "DICOM-RAW", stop_before_pixels=True)
            if is_dicomdir(ds):
                _scan_dicomdir(path, ds, headers, skipped)
                return
        headers.append(_header(source, head, None))
    except LoadError as exc:
        skipped.append(SkippedFile(source, exc.reason))
    except BaseException as exc:  # noqa: BLE001 - one bad file never stops the scan
        if isinstance(exc, NOT_CAUGHT):
            raise
        skipped.append(
            SkippedFile(source, f"the file is damaged or unsupported ({type(exc).__name__}: {exc})")
        )


def _scan_dicomdir(path: Path, ds: Dataset, headers: list[_Header], skipped: list[SkippedFile]) -> None:
    try:
        check_record_links(ds)  # pydicom's FileSet would loop forever on a cyclic index
    except LoadError as exc:
        skipped.append(SkippedFile(ImageSource(path), f"{exc.reason}: not read"))
        return
    try:
        files = [Path(instance.path) for instance in FileSet(ds)]
    except Exception as exc:  # noqa: BLE001 - a damaged index is reported, not fatal
        skipped.append(SkippedFile(ImageSource(path), f"the DICOMDIR could not be read ({exc})"))
        return
    for file in files:
        if not file.is_file():
            skipped.append(SkippedFile(ImageSource(file), "listed in the DICOMDIR but missing"))
            continue
        _scan_file(file, headers, skipped, top_level=False)


def _scan_zip(path: Path, headers: list[_Header], skipped: list[SkippedFile]) -> None:
    archive = ImageSource(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            total = sum(i.file_size for i in infos)
            if total > MAX_ARCHIVE_BYTES:
                skipped.append(SkippedFile(archive, f"the archive expands to {total / 1e9:.1f} GB "
                                                    f"(limit {MAX_ARCHIVE_BYTES / 1e9:.0f} GB): not opened"))  # fmt: skip
                return
            for count, info in enumerate(infos):
                member = ImageSource(path, info.filename)
                if count >= MAX_ARCHIVE_MEMBERS:
                    skipped.append(
                        SkippedFile(member, f"more than {MAX_ARCHIVE_MEMBERS} files in the archive")
                    )
                    continue
                reason = _member_problem(info)
                if reason:
                    skipped.append(SkippedFile(member, reason))
                    continue
                try:
                    check_member(info)
                    with zf.open(info) as fh:
                        data = fh.read()
                    if data.startswith(_ZIP_MAGIC):
                        skipped.append(SkippedFile(member, "an archive inside an archive is not opened"))
                        continue
                    headers.append(_header(member, data[:SNIFF_BYTES], data))
                except LoadError as exc:
                    skipped.append(SkippedFile(member, exc.reason))
                except BaseException as exc:  # noqa: BLE001 - one bad member never stops the scan
                    if isinstance(exc, NOT_CAUGHT):
                        raise
                    skipped.append(
                        SkippedFile(member, f"damaged or unsupported ({type(exc).__name__}: {exc})")
                    )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, NotImplementedError) as exc:
        skipped.append(SkippedFile(archive, f"the ZIP archive is damaged or unsupported ({exc})"))


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    if not is_safe_member_name(info.filename):
        return "unsafe name in the archive (absolute or '..' path): not read"
    if info.flag_bits & 0x1:
        return "encrypted in the archive: not read"
    return None


def _header(source: ImageSource, head: bytes, data: bytes | None) -> _Header:
    """The header of one file or member (``data`` = the member's bytes, None for a file on disk)."""
    fmt = sniff_format(head)
    if fmt is None:
        raise LoadError(NOT_AN_IMAGE, source.error_path)
    if fmt in ("DICOM", "DICOM-RAW"):
        return _dicom_header(source, fmt, data)
    size = raster_size(head, fmt)
    if size is None and fmt == "TIFF":  # the TIFF directory may sit at the end of the file
        size = raster_size(data if data is not None else source.read_bytes(), fmt)
    if size is not None:
        check_pixel_count(size[0] * size[1], source.error_path)
    ref = ImageRef(
        source=source, format=fmt, sop_instance_uid=derived_uid(source, "instance"),
        rows=size[1] if size else None, columns=size[0] if size else None,
    )  # fmt: skip
    return _Header(
        ref=ref, patient_id=derived_patient_id(source), patient_name="", study_uid=derived_uid(source, "study"),
        study_date="", study_description=source.name, accession="", series_uid=derived_uid(source, "series"),
        series_number=None, series_description=fmt,
    )  # fmt: skip


def _dicom_header(source: ImageSource, fmt: str, data: bytes | None) -> _Header:
    stream = io.BytesIO(data) if data is not None else None
    ds, has_pixels = read_header(source, force=fmt == "DICOM-RAW", stream=stream)
    if is_dicomdir(ds):
        raise LoadError("a DICOMDIR index (the images it lists are read directly from the folder)",
                        source.error_path)  # fmt: skip
    rows, cols, frames = check_image_header(ds, source, has_pixels)

    def text(keyword: str) -> str:
        try:
            return str(ds.get(keyword, "") or "").strip()
        except Exception:  # noqa: BLE001 - a malformed element counts as absent
            return ""

    def number(keyword: str) -> int | None:
        try:
            value = ds.get(keyword)
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    ref = ImageRef(
        source=source, format="DICOM", sop_instance_uid=text("SOPInstanceUID") or derived_uid(source, "instance"),
        instance_number=number("InstanceNumber"), number_of_frames=frames, rows=rows, columns=cols,
        view_position=text("ViewPosition") or None, modality=text("Modality") or None,
    )  # fmt: skip
    return _Header(
        ref=ref, patient_id=text("PatientID") or derived_patient_id(source), patient_name=text("PatientName"),
        study_uid=text("StudyInstanceUID") or derived_uid(source, "study"), study_date=text("StudyDate"),
        study_description=text("StudyDescription"), accession=text("AccessionNumber"),
        series_uid=text("SeriesInstanceUID") or derived_uid(source, "series"),
        series_number=number("SeriesNumber"), series_description=text("SeriesDescription"),
    )  # fmt: skip


def _group(headers: list[_Header]) -> list[Patient]:
    patients: dict[str, Patient] = {}
    studies: dict[tuple[str, str], Study] = {}
    series: dict[tuple[str, str, str], Series] = {}
    for h in headers:
        patient = patients.setdefault(h.patient_id, Patient(h.patient_id, h.patient_name))
        study_key = (h.patient_id, h.study_uid)
        if study_key not in studies:
            studies[study_key] = Study(h.study_uid, h.study_date, h.study_description, h.accession)
            patient.studies.append(studies[study_key])
        series_key = (h.patient_id, h.study_uid, h.series_uid)
        if series_key not in series:
            series[series_key] = Series(h.series_uid, h.ref.modality, h.series_number, h.series_description)
            studies[study_key].series.append(series[series_key])
        series[series_key].images.append(h.ref)
    for patient in patients.values():
        patient.studies.sort(key=lambda s: (s.study_date, s.study_instance_uid))
        for study in patient.studies:
            study.series.sort(
                key=lambda s: (s.series_number is None, s.series_number or 0, s.series_instance_uid)
            )
            for s in study.series:
                s.images.sort(
                    key=lambda r: (r.instance_number is None, r.instance_number or 0, r.source.name)
                )
    return sorted(patients.values(), key=lambda p: p.patient_id)
