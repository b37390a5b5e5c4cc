"""PNG, JPEG and TIFF (8/16-bit, grey/RGB/RGBA), unicode paths, size guard."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrviewer.core import LoadError, load_image
from tests.core.dicom_factory import synthetic_cxr


def _write(path: Path, arr: np.ndarray) -> Path:
    ok, buf = cv2.imencode(path.suffix, arr)
    assert ok
    buf.tofile(str(path))
    return path


@pytest.fixture(scope="module")
def grey16() -> np.ndarray:
    return synthetic_cxr(200, 160, bits=16)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_8_and_16_bit_lossless(tmp_path: Path, grey16: np.ndarray, suffix: str) -> None:
    grey8 = (grey16 >> 8).astype(np.uint8)
    im8 = load_image(_write(tmp_path / f"g8{suffix}", grey8))
    np.testing.assert_array_equal(im8.pixels, grey8)
    np.testing.assert_array_equal(im8.display(), grey8)  # 8-bit images are shown as stored
    assert im8.metadata["bits_stored"] == 8 and im8.format in ("PNG", "TIFF")
    im16 = load_image(_write(tmp_path / f"g16{suffix}", grey16))
    np.testing.assert_array_equal(im16.pixels, grey16)
    assert im16.metadata["bits_stored"] == 16
    shown = im16.display()
    assert shown.min() == 0 and shown.max() == 255  # min–max window


def test_jpeg_and_colour(tmp_path: Path, grey16: np.ndarray) -> None:
    grey8 = (grey16 >> 8).astype(np.uint8)
    jpg = load_image(_write(tmp_path / "g.jpg", grey8))
    assert jpg.format == "JPEG" and jpg.shape == grey8.shape
    assert np.abs(jpg.pixels - grey8).mean() < 3
    bgr = cv2.merge([grey8, grey8, grey8])
    rgb = load_image(_write(tmp_path / "c.png", bgr))
    np.testing.assert_array_equal(rgb.pixels, grey8)
    assert rgb.metadata["converted_from_color"] and rgb.metadata["channels_in_file"] == 3
    bgra = cv2.merge([grey8, grey8, grey8, np.full_like(grey8, 128)])
    rgba = load_image(_write(tmp_path / "a.png", bgra))
    np.testing.assert_array_equal(rgba.pixels, grey8)
    tinted = bgr.copy()
    tinted[..., 2] = 255  # red channel
    expected = cv2.cvtColor(tinted, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(load_image(_write(tmp_path / "t.png", tinted)).pixels, expected)


def test_unicode_path_and_stable_ids(tmp_path: Path, grey16: np.ndarray) -> None:
    folder = tmp_path / "pätient ñame 胸部"
    folder.mkdir()
    path = _write(folder / "röntgen.png", (grey16 >> 8).astype(np.uint8))
    a, b = load_image(path), load_image(str(path))
    assert a.patient_id == b.patient_id and a.patient_id.startswith("FILE-")
    assert a.sop_instance_uid == b.sop_instance_uid and a.sop_instance_uid.startswith("2.25.")
    assert len({a.study_instance_uid, a.series_instance_uid, a.sop_instance_uid}) == 3
    assert len(a.sop_instance_uid) <= 64
    other = load_image(_write(folder / "other.png", (grey16 >> 8).astype(np.uint8)))
    assert other.sop_instance_uid != a.sop_instance_uid


def test_format_from_content_not_extension(tmp_path: Path, grey16: np.ndarray) -> None:
    png = _write(tmp_path / "x.png", (grey16 >> 8).astype(np.uint8))
    renamed = png.rename(tmp_path / "x.dcm")
    assert load_image(renamed).format == "PNG"


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_oversized_png_refused_from_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(50_000, 50_000) + b"\x00" * 100)
    with pytest.raises(LoadError, match=r"image too large \(2500 megapixels, limit 60\)"):
        load_image(path)
    path.write_bytes(_png_header(7746, 7746) + b"\x00" * 100)  # 60.0005 MP: just over MAX_PIXELS
    with pytest.raises(LoadError, match=r"image too large \(60 megapixels, limit 60\)"):
        load_image(path)


def test_frame_of_a_raster_image(tmp_path: Path, grey16: np.ndarray) -> None:
    path = _write(tmp_path / "x.png", (grey16 >> 8).astype(np.uint8))
    with pytest.raises(LoadError, match="only one"):
        load_image(path, frame=1)


def test_truncated_jpeg(tmp_path: Path, grey16: np.ndarray) -> None:
    path = _write(tmp_path / "x.jpg", (grey16 >> 8).astype(np.uint8))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(LoadError):
        load_image(path)
