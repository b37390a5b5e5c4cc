"""Decoder plugin order: python-gdcm (which can abort the process on a corrupt JPEG) is never tried while
another installed plugin decodes the transfer syntax."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydicom.pixels import get_decoder
from pydicom.pixels.decoders.base import _PIXEL_DATA_DECODERS
from pydicom.uid import UID

from cxrviewer.core.dicom_reader import decoding_plugins
from tests.conftest import REPO_ROOT

COMPRESSED = sorted(UID(ts) for ts in _PIXEL_DATA_DECODERS if UID(ts).is_compressed)
CRASH = REPO_ROOT / "tests" / "reliability" / "crashes" / "gdcm_jpeg_baseline_abort.dcm"


@pytest.mark.parametrize("ts", COMPRESSED, ids=lambda ts: ts.name[:40])
def test_gdcm_only_when_nothing_else_decodes(ts: UID) -> None:
    available = set(get_decoder(ts).available_plugins)
    order = decoding_plugins(ts)
    assert set(order) <= available
    if available - {"gdcm"}:
        assert "gdcm" not in order and set(order) == available - {"gdcm"}
        if "pylibjpeg" in available:
            assert order[0] == "pylibjpeg"
    else:
        assert order == sorted(available)


def test_with_the_project_dependencies_no_syntax_reaches_gdcm() -> None:
    assert all("gdcm" not in decoding_plugins(ts) for ts in COMPRESSED)


def test_corrupt_jpeg_that_aborts_gdcm_no_longer_kills_the_process() -> None:
    """The fuzzer's reproducer: GDCM throws an uncaught C++ exception on it (SIGABRT)."""
    code = (
        "import sys\nfrom cxrviewer.core import LoadError, load_image\n"
        "try:\n    load_image(sys.argv[1])\nexcept LoadError:\n    pass\nprint('survived')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(CRASH)], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )
    assert done.returncode == 0 and "survived" in done.stdout, done.stderr[-500:]
