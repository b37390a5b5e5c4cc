"""Damaged copies of valid files (cut short, bytes overwritten) load or raise LoadError, nothing else."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from cxrviewer.core import LoadError, load_image, load_studies
from tests.core.dicom_factory import synthetic_cxr, write_dicom


def _originals(folder: Path) -> list[Path]:
    img = synthetic_cxr(48, 40)
    files = [
        write_dicom(
            folder / f"{ts.keyword}.dcm",
            img,
            bits_stored=12,
            transfer_syntax=ts,
            window=([2000], [3000]),
            padding=(0, None),
        )  # fmt: skip
        for ts in (ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless)
    ]
    for suffix in (".png", ".jpg", ".tif"):
        path = folder / f"img{suffix}"
        cv2.imencode(suffix, (img >> 4).astype(np.uint8))[1].tofile(str(path))
        files.append(path)
    return files


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_damaged_copies_raise_only_load_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    src, bad = tmp_path / "src", tmp_path / "bad"
    src.mkdir(), bad.mkdir()
    outcomes = {"loaded": 0, "refused": 0}
    for original in _originals(src):
        data = original.read_bytes()
        for i in range(24):
            damaged = bytearray(data)
            if i % 3 == 0:
                damaged = damaged[: int(rng.integers(1, len(data)))]
            else:
                for pos in rng.integers(0, len(data), size=int(rng.integers(1, 12))):
                    damaged[pos] = int(rng.integers(0, 256))
            path = bad / f"{original.stem}_{i}{original.suffix}"
            path.write_bytes(bytes(damaged))
            try:
                image = load_image(path)
                image.display()
                outcomes["loaded"] += 1
            except LoadError as exc:
                assert path.name in str(exc)
                outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0, outcomes
    tree = load_studies(bad)  # the folder of damaged files never makes the scan fail
    assert len(tree.images()) + len(tree.skipped) == len(list(bad.iterdir()))
