"""Guards before pydicom parses: deflated data sets inflating too far are refused, and an element declaring
gigabytes in a small file is read without allocating them."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

from cxrviewer.core import LoadError, dicom_guards, load_image, load_studies
from cxrviewer.core.dicom_guards import ClampedFile, check_inflated_size
from tests.conftest import REPO_ROOT
from tests.core.dicom_factory import synthetic_cxr, write_dicom


@pytest.fixture()
def deflated(tmp_path: Path) -> Path:
    """A deflated 1024 × 1024 16-bit image: 2 MiB inflated, a few kB on disk."""
    pixels = np.zeros((1024, 1024), np.uint16)
    return write_dicom(tmp_path / "deflated.dcm", pixels, transfer_syntax=DeflatedExplicitVRLittleEndian)


def test_deflated_file_within_the_limit_loads(deflated: Path) -> None:
    assert deflated.stat().st_size < 64 << 10
    assert load_image(deflated).shape == (1024, 1024)


def test_deflated_file_inflating_past_the_limit_is_refused_before_pydicom_inflates_it(
    deflated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dicom_guards, "MAX_INFLATED_BYTES", 1 << 20)
    with pytest.raises(LoadError, match="decompression bomb"):
        load_image(deflated)
    tree = load_studies(deflated.parent)
    assert not tree.images() and "decompression bomb" in tree.skipped[0].reason


def test_inflated_size_check_leaves_the_stream_at_its_start(deflated: Path) -> None:
    with ClampedFile(deflated) as fh:
        check_inflated_size(fh, None, force=False, limit=4 << 20)
        assert fh.tell() == 0
        with pytest.raises(LoadError, match="more than 1 MiB"):
            check_inflated_size(fh, None, force=False, limit=1 << 20)
        assert fh.tell() == 0


def test_clamped_file_never_reads_past_its_end(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abcdef")
    with ClampedFile(path) as fh:
        assert fh.read(3) == b"abc" and fh.read(1 << 40) == b"def" and fh.read(5) == b""
        fh.seek(1)
        assert fh.read() == b"bcdef"


def test_element_declaring_two_gigabytes_does_not_allocate_them(tmp_path: Path) -> None:
    """Under an address space of +512 MiB, pydicom's read of a 2 GB declared length must not fail."""
    path = write_dicom(tmp_path / "huge_length.dcm", synthetic_cxr(32, 32, bits=12))
    data = bytearray(path.read_bytes())
    pos = data.index(struct.pack("<HH", 0x0010, 0x0010), 132)  # PatientName, explicit VR: length at +6
    data[pos + 6 : pos + 8] = struct.pack("<H", 0xFFF0)
    pix = data.index(struct.pack("<HH", 0x7FE0, 0x0010), 132)
    data[pix + 8 : pix + 12] = struct.pack("<I", 0x7FFFFFF0)
    path.write_bytes(bytes(data))
    code = (
        "import resource, sys\n"
        "from cxrviewer.core import LoadError, load_image, load_studies\n"
        "size = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + (512 << 20), resource.RLIM_INFINITY))\n"
        "try:\n    load_image(sys.argv[1])\nexcept LoadError as exc:\n    print(exc)\n"
        "print(len(load_studies(sys.argv[1]).skipped))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )
    assert done.returncode == 0, done.stderr[-800:]
    assert "memory" not in done.stdout, done.stdout
    assert "a value declares 65,520 bytes but only" in done.stdout  # the name (0xFFF0) is the first overrun


def test_clamped_read_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abcdef")
    with ClampedFile(path) as fh:
        fh.read(6)
        fh.read(8)  # at the end: nothing left, not an overrun (pydicom probes for the next tag)
        assert fh.overrun is None
        fh.seek(2)
        fh.read(100)
        assert fh.overrun == (100, 4, 2)


def test_bytes_appended_after_a_complete_image_do_not_refuse_it(tmp_path: Path) -> None:
    """A ZIP or other data appended to a DICOM file reads as an element declaring more than is left."""
    path = write_dicom(tmp_path / "appended.dcm", synthetic_cxr(32, 32, bits=12))
    tail = struct.pack("<HH2sHI", 0x7FE1, 0x0010, b"OB", 0, 0x10000000) + b"PK\x03\x04" * 25
    path.write_bytes(path.read_bytes() + tail)
    assert load_image(path).shape == (32, 32)
