"""The loader's display image equals pydicom's apply_modality_lut → apply_voi_lut → inversion."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from cxrviewer.core import LoadError, load_image
from cxrviewer.core.dicom_reader import voi_lut_output_max
from tests.core.conftest import corpus_files
from tests.core.pydicom_reference import reference_display, reference_pixels, windowing_output_range


def _grey_files_with_voi_or_mono1() -> list[Path]:
    chosen = []
    for _, path in corpus_files():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM: not a candidate
            continue
        photometric = str(ds.get("PhotometricInterpretation", ""))
        has_voi = "WindowCenter" in ds or "VOILUTSequence" in ds
        if photometric.startswith("MONOCHROME") and (has_voi or photometric == "MONOCHROME1"):
            chosen.append(path)
    return chosen


CANDIDATES = _grey_files_with_voi_or_mono1()


def _voi_lut_max(path: Path) -> float | None:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if not ds.get("VOILUTSequence"):
        return None
    item = ds.VOILUTSequence[0]
    return voi_lut_output_max(np.asarray(item.LUTData), int(item.LUTDescriptor[2]))


def test_there_are_candidates() -> None:
    names = {p.name for p in CANDIDATES}
    assert len(CANDIDATES) >= 20
    assert {"vlut_04.dcm", "Fake_MONOHR1.dcm", "RG1_UNCR.dcm", "mlut_18.dcm"} & names


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", CANDIDATES, ids=[p.name for p in CANDIDATES])
def test_display_matches_pydicom(path: Path) -> None:
    try:
        image = load_image(path)
    except LoadError:
        pytest.skip("refused by the loader (covered by the corpus test)")
    if not image.windows and not image.has_voi_lut_sequence:
        # MONOCHROME1 without VOI: compare through pydicom with our automatic window written in.
        ds = pydicom.dcmread(path)
        ds.WindowCenter, ds.WindowWidth = image.auto_window.center, image.auto_window.width
        stored = reference_pixels(ds, 0)
        voi = apply_voi_lut(apply_modality_lut(stored, ds), ds)
        y_min, y_max = windowing_output_range(ds)
        expected = 1.0 - (voi - y_min) / (y_max - y_min)
    else:
        expected = reference_display(path, voi_lut_max=_voi_lut_max(path))
    got = image.display(as_float=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    got8 = image.display().astype(int)
    assert np.abs(got8 - np.rint(expected * 255)).max() <= 1
