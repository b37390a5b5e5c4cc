"""Fixtures for the viewer tests: synthetic images on disk, an isolated QSettings file, and a window factory
with an injected analyzer (closed and its threads stopped after each test)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from tests.runtime.models import synthetic_cxr  # noqa: E402  (a CXR-like uint8 image)


@pytest.fixture
def png_files(tmp_path: Path) -> list[Path]:
    """Three synthetic PNG radiographs of different sizes in ``tmp_path/pngs``."""
    folder = tmp_path / "pngs"
    folder.mkdir()
    out = []
    for i, (h, w) in enumerate([(160, 140), (120, 150), (200, 180)]):
        p = folder / f"cxr_{i}.png"
        cv2.imwrite(str(p), synthetic_cxr(h, w, seed=i))
        out.append(p)
    return out


@pytest.fixture
def dicom_file(tmp_path: Path) -> Path:
    """A 16-bit MONOCHROME2 DICOM with PixelSpacing 0.2 mm and a stored window."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "chest.dcm"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    img = (synthetic_cxr(200, 160).astype(np.uint16) * 16).astype(np.uint16)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "TEST-1"
    ds.PatientName = "Test^Patient"
    ds.Modality = "DX"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [0.2, 0.2]
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = img.tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.fixture
def settings_store(tmp_path: Path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def make_window(qtbot, settings_store):
    """``make_window(analyzer_factory)`` -> a shown MainWindow using an isolated settings file."""
    from cxrviewer.ui.app import create_application
    from cxrviewer.ui.main_window import MainWindow
    from cxrviewer.ui.settings import ViewerSettings

    create_application()
    windows = []

    def make(factory, settings: ViewerSettings | None = None):
        w = MainWindow(analyzer_factory=factory, settings=settings or ViewerSettings(), store=settings_store)
        qtbot.addWidget(w)
        w.resize(1200, 800)
        w.show()
        qtbot.waitExposed(w)
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.analysis.shutdown(5000)
        w.loader.shutdown(5000)
