"""DICOM files generated at test time: transfer syntaxes, MONOCHROME1, VOI LUT, rescale, padding,
multi-frame, no preamble, and the failures a radiologist must see explained."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.pixels import get_encoder
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from cxrviewer.core import MAX_PIXELS, LoadError, dicom_reader, load_image
from tests.core.dicom_factory import base_dataset, synthetic_cxr, write_dicom, write_jpeg_dicom
from tests.core.pydicom_reference import reference_display

LOSSLESS = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEG2000Lossless,
    JPEGLSLossless,
]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cxr() -> np.ndarray:
    return synthetic_cxr(320, 256, bits=12)


@pytest.mark.parametrize("ts", LOSSLESS, ids=lambda t: t.keyword)
def test_lossless_transfer_syntaxes_round_trip(tmp_path: Path, cxr: np.ndarray, ts) -> None:
    if ts.is_compressed and not get_encoder(ts).is_available:
        pytest.skip(f"no {ts.name} encoder installed here (decoding is covered by pydicom's test files)")
    path = write_dicom(tmp_path / "x.dcm", cxr, transfer_syntax=ts, bits_stored=12, window=([1500], [2500]))
    before = _digest(path)
    image = load_image(path)
    assert _digest(path) == before, "the loader must not modify the file"
    np.testing.assert_array_equal(image.pixels, cxr.astype(np.float32))
    assert image.metadata["transfer_syntax_uid"] == str(ts)
    assert image.windows[0].center == 1500 and image.windows[0].width == 2500
    np.testing.assert_allclose(image.display(as_float=True), reference_display(path), atol=1e-6)


def test_lossy_jpeg2000(tmp_path: Path, cxr: np.ndarray) -> None:
    path = write_dicom(tmp_path / "j2k.dcm", cxr, transfer_syntax=JPEG2000, bits_stored=12)
    image = load_image(path)
    assert image.shape == cxr.shape
    assert np.abs(image.pixels - cxr).mean() < 40  # lossy, 10:1


def test_jpeg_baseline_from_a_shared_jpeg(tmp_path: Path, shared_data: Path) -> None:
    jpeg = next(iter(sorted((shared_data / "cxr" / "images" / "hannover").glob("*.jpg"))))
    data = jpeg.read_bytes()
    grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert grey.ndim == 2
    path = write_jpeg_dicom(tmp_path / "jpeg.dcm", data, *grey.shape)
    image = load_image(path)
    assert image.metadata["transfer_syntax"] == "JPEG Baseline (Process 1)"
    assert image.shape == grey.shape
    assert np.abs(image.pixels - grey.astype(np.float32)).mean() < 2.0  # decoders differ by rounding


def test_monochrome1_is_inverted(tmp_path: Path, cxr: np.ndarray) -> None:
    m2 = load_image(write_dicom(tmp_path / "m2.dcm", cxr, bits_stored=12, window=([2000], [4000])))
    m1_path = write_dicom(
        tmp_path / "m1.dcm", cxr, bits_stored=12, window=([2000], [4000]), photometric="MONOCHROME1"
    )
    m1 = load_image(m1_path)
    assert m1.invert and not m2.invert
    np.testing.assert_allclose(m1.display(as_float=True), 1.0 - m2.display(as_float=True), atol=1e-6)
    np.testing.assert_allclose(m1.display(as_float=True), reference_display(m1_path), atol=1e-6)


def test_voi_lut_sequence_16bit(tmp_path: Path, cxr: np.ndarray) -> None:
    lut = (np.sqrt(np.arange(4096) / 4095.0) * 65535).astype(np.uint16)  # a gamma-like VOI LUT
    path = write_dicom(tmp_path / "lut.dcm", cxr, bits_stored=12, voi_lut=(0, 16, lut), window=([100], [50]))
    image = load_image(path)
    assert image.has_voi_lut_sequence
    got = image.display(as_float=True)
    np.testing.assert_allclose(got, reference_display(path, voi_lut_max=65535.0), atol=1e-6)
    # the LUT sequence wins over the window (as pydicom's apply_voi_lut prefers it) unless the user chooses
    custom = image.display(center=2000, width=1000)
    assert not np.array_equal(custom, image.display())


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_voi_functions_and_multiple_windows(tmp_path: Path, cxr: np.ndarray, function: str) -> None:
    path = write_dicom(
        tmp_path / "w.dcm", cxr, bits_stored=12, window=([1800, 1000], [2400, 800]),
        window_explanations=["LUNG", "BONE"], voi_function=function,
    )  # fmt: skip
    image = load_image(path)
    assert [w.explanation for w in image.windows] == ["LUNG", "BONE"]
    assert image.voi_lut_function == function
    np.testing.assert_allclose(image.display(as_float=True), reference_display(path), atol=1e-6)
    second = image.display(window_index=1)
    ds = pydicom.dcmread(path)
    ds.WindowCenter, ds.WindowWidth = 1000, 800
    ds.save_as(tmp_path / "w2.dcm")
    expected = np.rint(reference_display(tmp_path / "w2.dcm") * 255)
    assert np.abs(second.astype(int) - expected).max() <= 1
    with pytest.raises(ValueError):
        image.display(window_index=2)


def test_rescale_slope_intercept_signed(tmp_path: Path, cxr: np.ndarray) -> None:
    stored = cxr.astype(np.int16) - 2048
    path = write_dicom(
        tmp_path / "r.dcm", stored, bits_stored=16, rescale=(0.5, 100.0), window=([150], [1500])
    )
    image = load_image(path)
    np.testing.assert_allclose(image.pixels, stored.astype(np.float64) * 0.5 + 100.0, atol=1e-3)
    expected = reference_display(path)
    np.testing.assert_allclose(image.display(as_float=True), expected, atol=1e-6)
    # the 8-bit display takes the OpenCV path for linear windows: same image within one grey level
    for center, width, function in ((150, 1500, "LINEAR"), (-300, 2, "LINEAR"), (0, 0.5, "LINEAR_EXACT")):
        image.voi_lut_function = function
        fast = image.display(center, width).astype(int)
        exact = np.rint(image.display(center, width, as_float=True) * 255.0)
        assert np.abs(fast - exact).max() <= 1, (center, width, function)


def test_pixel_padding_masked_black_and_excluded_from_auto_window(tmp_path: Path, cxr: np.ndarray) -> None:
    padded = cxr.copy()
    padded[:, :40] = 4095  # a collimator border stored at the padding value
    path = write_dicom(
        tmp_path / "p.dcm", padded, bits_stored=12, padding=(4095, None), photometric="MONOCHROME1"
    )
    image = load_image(path)
    mask = image.padding_mask()
    assert mask is not None and mask[:, :40].all() and mask.sum() == padded.shape[0] * 40
    shown = image.display()
    assert (shown[:, :40] == 0).all(), "padding is shown black, even for MONOCHROME1"
    inside = cxr[:, 40:]
    assert image.auto_window.high <= np.percentile(inside, 99.9) + 1
    unpadded = load_image(write_dicom(tmp_path / "np.dcm", padded, bits_stored=12))
    assert unpadded.auto_window.high > image.auto_window.high  # the border would have widened the window


def test_padding_range_limit(tmp_path: Path, cxr: np.ndarray) -> None:
    padded = cxr.copy()
    padded[:20] = 0
    padded[20:30] = 3
    path = write_dicom(tmp_path / "p.dcm", padded, bits_stored=12, padding=(0, 5), window=([2000], [3000]))
    image = load_image(path)
    mask = image.padding_mask()
    assert mask is not None and mask[:30].all()
    np.testing.assert_allclose(image.display(as_float=True), reference_display(path), atol=1e-6)


def test_auto_window_when_no_voi(tmp_path: Path, cxr: np.ndarray) -> None:
    image = load_image(write_dicom(tmp_path / "a.dcm", cxr, bits_stored=12))
    assert not image.windows
    low, high = np.percentile(cxr, [0.5, 99.5])
    assert abs(image.auto_window.low - low) <= 2 and abs(image.auto_window.high - high) <= 2
    shown = image.display()
    assert shown.min() == 0 and shown.max() == 255


def test_user_window(tmp_path: Path, cxr: np.ndarray) -> None:
    image = load_image(write_dicom(tmp_path / "u.dcm", cxr, bits_stored=12, window=([2000], [4000])))
    shown = image.display(center=1000, width=2)
    assert set(np.unique(shown)) <= {0, 255}
    with pytest.raises(ValueError):
        image.display(center=1000)
    image.voi_lut_function = "LINEAR_EXACT"
    for center, width in ((1000, 0), (float("nan"), 100), (1000, float("inf"))):
        with pytest.raises(ValueError):
            image.display(center, width)


def test_multi_frame(tmp_path: Path, cxr: np.ndarray) -> None:
    frames = np.stack([cxr, cxr // 2, cxr // 3])
    for ts in (ExplicitVRLittleEndian, RLELossless):
        path = write_dicom(tmp_path / f"mf_{ts.keyword}.dcm", frames, bits_stored=12, transfer_syntax=ts)
        first, last = load_image(path), load_image(path, frame=2)
        assert first.number_of_frames == 3 and first.frame == 0 and last.frame == 2
        np.testing.assert_array_equal(first.pixels, cxr)
        np.testing.assert_array_equal(last.pixels, cxr // 3)
        with pytest.raises(LoadError, match="frame 4 was requested but the file has 3"):
            load_image(path, frame=3)


def test_no_preamble(tmp_path: Path, cxr: np.ndarray) -> None:
    for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        path = write_dicom(
            tmp_path / f"raw_{ts.keyword}", cxr, bits_stored=12, transfer_syntax=ts, preamble=False
        )
        assert path.read_bytes()[128:132] != b"DICM"
        image = load_image(path)
        np.testing.assert_array_equal(image.pixels, cxr)


def test_spacing_view_ids_and_metadata(tmp_path: Path, cxr: np.ndarray) -> None:
    path = write_dicom(tmp_path / "s.dcm", cxr, bits_stored=12, imager_pixel_spacing=(0.15, 0.148), view="AP")
    image = load_image(path)
    assert image.pixel_spacing == (0.15, 0.148) and image.pixel_spacing_source == "ImagerPixelSpacing"
    both = load_image(
        write_dicom(tmp_path / "b.dcm", cxr, pixel_spacing=(0.2, 0.2), imager_pixel_spacing=(0.1, 0.1))
    )
    assert both.pixel_spacing == (0.2, 0.2) and both.pixel_spacing_source == "PixelSpacing"
    none = load_image(write_dicom(tmp_path / "n.dcm", cxr))
    assert none.pixel_spacing is None and none.pixel_spacing_source is None
    ds = pydicom.dcmread(path)
    assert image.view_position == "AP"
    assert (image.patient_id, image.study_instance_uid) == (ds.PatientID, ds.StudyInstanceUID)
    assert (image.series_instance_uid, image.sop_instance_uid) == (ds.SeriesInstanceUID, ds.SOPInstanceUID)
    meta = image.metadata
    assert meta["modality"] == "DX" and meta["body_part"] == "CHEST" and meta["bits_stored"] == 12
    assert meta["rows"] == 320 and meta["columns"] == 256 and meta["study_date"] == "20240101"


# --- failures ---------------------------------------------------------------------------------------------


def test_truncated_pixel_data(tmp_path: Path, cxr: np.ndarray) -> None:
    path = write_dicom(tmp_path / "t.dcm", cxr, bits_stored=12)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])
    with pytest.raises(LoadError, match="truncated"):
        load_image(path)


def test_header_too_large_is_refused_before_decoding(tmp_path: Path) -> None:
    ds = base_dataset(20_000, 20_000)
    ds.PixelData = b"\x00" * 16  # a tiny body claiming 400 megapixels
    ds.save_as(tmp_path / "bomb.dcm", enforce_file_format=True)
    with pytest.raises(LoadError, match=r"image too large \(400 megapixels, limit 60\)"):
        load_image(tmp_path / "bomb.dcm")
    assert MAX_PIXELS == 60_000_000


def test_structured_report_is_explained(tmp_path: Path) -> None:
    ds = base_dataset(1, 1)
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
                    "BitsStored", "HighBit", "PixelRepresentation"):  # fmt: skip
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    with pytest.raises(LoadError, match=r"DICOM without pixel data \(Basic Text SR Storage"):
        load_image(tmp_path / "sr.dcm")


def test_missing_decoder_is_explained(tmp_path: Path, cxr: np.ndarray, monkeypatch) -> None:
    path = write_dicom(tmp_path / "j.dcm", cxr, bits_stored=12, transfer_syntax=JPEG2000Lossless)

    class Unavailable:
        is_available = False

    monkeypatch.setattr(dicom_reader, "get_decoder", lambda ts: Unavailable())
    with pytest.raises(LoadError, match="compressed with JPEG 2000 .* but no decoder is installed"):
        load_image(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b"hello, this is a text file\n" * 10, "not a DICOM or image file"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "PNG image is damaged or truncated"),
        (
            b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x00abcd" + b"\xff" * 40,
            "the file is truncated or damaged: a value declares 8,192 bytes but only 32 bytes follow",
        ),
    ],
    ids=["empty", "text", "bad-png", "garbage-dicom"],
)
def test_bad_files_raise_only_load_error(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.dcm"
    path.write_bytes(content)
    with pytest.raises(LoadError, match=reason) as info:
        load_image(path)
    assert "bad.dcm" in str(info.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="does not exist"):
        load_image(tmp_path / "nope.dcm")
    with pytest.raises(LoadError, match="folder"):
        load_image(tmp_path)
