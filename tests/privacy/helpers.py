"""Shared pieces of the privacy and data-safety tests: a canary DICOM, a network guard, a case library."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.runtime.models import synthetic_cxr

CANARY_NAME = "CANARY^LEAKTEST"
CANARY_ID = "CANARY-123456"
#: Strings that must never reach a log record (the name's parts, the ID, the other identifying values).
CANARY_STRINGS = ("CANARY", "LEAKTEST", "123456", "Canary General Hospital", "CANARYACC77")


def write_canary_dicom(path: Path, seed: int = 0, burned_in: bool = False) -> Path:
    """An 8-bit DX chest image whose identifying attributes all carry canary strings."""
    pixels = synthetic_cxr(160, 128, seed=seed)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID = CANARY_NAME, CANARY_ID
    ds.PatientBirthDate, ds.PatientSex = "19010203", "O"
    ds.InstitutionName = "Canary General Hospital"
    ds.AccessionNumber = "CANARYACC77"
    ds.ReferringPhysicianName = "LEAKTEST^DOCTOR"
    ds.StudyDate, ds.StudyTime, ds.Modality, ds.ViewPosition = "20200102", "101010", "DX", "PA"
    ds.StudyDescription = "CHEST PA"
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


class NetworkUsed(AssertionError):
    """Raised by the network guard when anything tries to resolve a name or open a connection."""


@contextmanager
def blocked_network() -> Iterator[list[tuple]]:
    """Make every name lookup and outgoing connection raise :class:`NetworkUsed`; yields the attempts."""
    import pytest

    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(tuple(repr(a)[:80] for a in args[:3]))
        raise NetworkUsed(f"network use at run time: {args[:3]!r}")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("connect", "connect_ex", "sendto", "sendmsg"):
            mp.setattr(socket.socket, name, refuse)
        for name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex"):
            mp.setattr(socket, name, refuse)
        yield attempts


def make_case_library(path: Path, model_dir: Path, n: int = 6) -> Path:
    """A user case library with ``n`` synthetic cases embedded by the model in ``model_dir``."""
    from cxrviewer.ml.predictor import Predictor
    from cxrviewer.services.case_library import CaseLibrary

    predictor = Predictor.load(model_dir, device="cpu")
    images = [synthetic_cxr(120, 100, seed=50 + i) for i in range(n)]
    preds = predictor.predict(images)
    with CaseLibrary.open(path, create=True, name="privacy-test", model_id=predictor.model_id) as lib:
        for i, (img, pred) in enumerate(zip(images, preds, strict=True)):
            lib.add_case(img, pred.embedding, ["normal", "pneumonia", "covid"][i % 3], model_id=predictor.model_id,
                         source="synthetic", licence="CC0", provenance=f"synthetic/{i}")  # fmt: skip
    return path
