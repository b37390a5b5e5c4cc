"""Assemble the loader's reliability corpus: real test files from packages plus generated hostile inputs.

Nothing binary is committed: :func:`build_corpus` writes the generated cases into a cache folder (``.cache/``
is git-ignored) and points at the package files where they are installed. Run it by hand to see the corpus::

    .venv/bin/python -m tests.reliability.build_corpus [CACHE_DIR]

Every :class:`Case` says which entry point it is fed to (``load_image`` or ``load_studies``) and what is
expected: ``load`` (must load), ``refuse`` (must raise ``LoadError``) or ``either`` (load or ``LoadError``;
anything else is a failure either way).

Categories (the summary in ``docs/reliability.md`` counts these):

- ``pydicom-test-files``: every file of ``pydicom/data/test_files`` (found from ``pydicom.data.__file__``);
- ``pydicom-data``: the larger ``pydicom-data`` package files (``data_store/data``);
- ``deid-data``: the ``deid-data`` package DICOMs (and its two cine ZIPs, for ``load_studies``);
- ``dicom-generated``: crafted DICOM edge cases (truncated or over-long pixel data, huge or empty
  dimensions, RLE and deflate bombs, deep sequence nesting, bad VRs and lengths, unsupported or unknown
  transfer syntaxes, garbage compressed fragments, MONOCHROME1 with a VOI LUT, pixel padding, 1×N, ...);
- ``not-dicom``: empty files, text, HTML, PDF, ELF, random bytes with a ``.dcm`` suffix, a bare preamble;
- ``polyglot``: DICOM with a ZIP appended, and the same bytes named ``.zip``;
- ``raster``: PNG/JPEG/TIFF bombs (30000 × 30000 grey PNG of a few hundred kB, lying headers), truncated,
  16-bit, palette, grey+alpha, 1×N;
- ``zip``: zip bombs (size and ratio), lying sizes, path traversal names, encryption, unsupported
  compression, too many members, nested archives, a truncated archive (all for ``load_studies``);
- ``dicomdir``: pydicom's DICOMDIR test sets and a DICOMDIR whose file references escape its folder;
- ``mutated``: seeded truncations and byte corruptions of a few small real files;
- ``fuzz-crashes``: the inputs the fuzzer (``fuzz/fuzz_loader.py``) found crashing, committed in
  ``tests/reliability/crashes/`` (a few kB each).
"""

from __future__ import annotations

import io
import json
import random
import struct
import sys
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

#: Bump when the generated cases change, so that a stale cache is rebuilt.
CORPUS_VERSION = 7
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
#: pydicom test files that must load (a regression in a common encoding fails the corpus test).
MUST_LOAD = ("CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
             "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_jpeg_dcmtk.dcm", "image_dfl.dcm",
             "liver_1frame.dcm", "examples_palette.dcm", "SC_ybr_full_422_uncompressed.dcm")  # fmt: skip
#: pydicom test files that must be refused (truncated pixels, no pixel data, not DICOM).
MUST_REFUSE = (
    "MR_truncated.dcm",
    "rtplan.dcm",
    "test-SR.dcm",
    "waveform_ecg.dcm",
    "README.txt",
    "crayons.icc",
)
SEED_FILES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "JPEG2000.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "image_dfl.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
)


@dataclass(frozen=True)
class Case:
    """One corpus input.

    Attributes:
        path: the file (or folder) fed to the loader.
        category: one of the categories listed in the module docstring.
        expect: ``load``, ``refuse`` or ``either``.
        entry: ``load_image`` or ``load_studies``.
        note: what the case exercises.
    """

    path: str
    category: str
    expect: str = "either"
    entry: str = "load_image"
    note: str = ""


def pydicom_test_files() -> Path:
    """pydicom's own test files folder (never ``get_testdata_files``, which may download)."""
    return Path(pydicom.data.__file__).parent / "test_files"


def package_dir(module: str, *parts: str) -> Path | None:
    """A data folder inside an installed package, or None when the package is missing."""
    try:
        mod = __import__(module)
    except ImportError:
        return None
    folder = Path(mod.__file__).parent.joinpath(*parts)
    return folder if folder.is_dir() else None


# -- DICOM generation -----------------------------------------------------------------------------------------


def dicom_dataset(
    rows: int = 64,
    cols: int = 48,
    *,
    bits: int = 16,
    photometric: str = "MONOCHROME2",
    syntax: str = ExplicitVRLittleEndian,
    pixels: bytes | None = None,
) -> Dataset:
    """A small DX image data set with made-up identifiers (pixel data: a ramp, or ``pixels`` as given)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "CORPUS^SYNTHETIC"
    ds.PatientID = "CORPUS-0"
    ds.Modality = "DX"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = 12 if bits == 16 else bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if pixels is None:
        dtype = np.uint16 if bits == 16 else np.uint8
        ramp = (np.arange(rows * cols, dtype=np.int64) % (1 << int(ds.BitsStored))).astype(dtype)
        pixels = ramp.tobytes()
    ds.PixelData = pixels
    ds["PixelData"].VR = "OW" if bits == 16 else "OB"
    return ds


def save(ds: Dataset, path: Path, *, implicit: bool | None = None) -> Path:
    """Write ``ds`` (with preamble and file meta) to ``path``."""
    syntax = ds.file_meta.TransferSyntaxUID
    if implicit is None:
        ds.save_as(path, enforce_file_format=True)
    else:  # keep the declared syntax but force the encoding (for unknown syntaxes)
        ds.save_as(path, implicit_vr=implicit, little_endian=True)
    ds.file_meta.TransferSyntaxUID = syntax
    return path


def dicom_bytes(ds: Dataset) -> bytes:
    """``ds`` as file bytes."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _rle_segment_of_zeros(n: int) -> bytes:
    """A PackBits segment expanding to ``n`` zero bytes (each 2-byte run gives 128 bytes)."""
    full, rest = divmod(n, 128)
    out = b"\x81\x00" * full
    if rest:
        out += bytes([257 - rest, 0]) if rest > 1 else b"\x00\x00"
    return out


def rle_bomb(rows: int, cols: int) -> Dataset:
    """An RLE Lossless 8-bit image of ``rows × cols`` zeros: ~1/64 of the decoded size on disk."""
    segment = _rle_segment_of_zeros(rows * cols)
    header = struct.pack("<16I", 1, 64, *([0] * 14))
    ds = dicom_dataset(rows, cols, bits=8, syntax=RLELossless, pixels=b"")
    ds.PixelData = encapsulate([header + segment])
    ds["PixelData"].VR = "OB"
    return ds


def zeros_deflate(n: int) -> bytes:
    """Raw deflate of ``n`` zero bytes: one compressed MiB (dictionary reset) repeated, then a final block.

    Gigabyte bombs are thus built in milliseconds; it continues any stream that ended with a full flush.
    """
    block = 1 << 20
    full, rest = divmod(n, block)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = comp.compress(bytes(block)) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    return one * full + tail.compress(bytes(rest)) + tail.flush()


def zeros_crc32(n: int) -> int:
    """CRC-32 of ``n`` zero bytes."""
    crc, block = 0, bytes(1 << 20)
    for _ in range(n >> 20):
        crc = zlib.crc32(block, crc)
    return zlib.crc32(bytes(n & ((1 << 20) - 1)), crc)


def deflate_bomb(path: Path, inflated_bytes: int, declared: int | None = None) -> Path:
    """A Deflated Explicit VR file whose data set inflates to ``inflated_bytes`` (mostly one private OB
    element declaring ``declared`` bytes, by default the inflated size)."""
    ds = dicom_dataset(8, 8, syntax=ExplicitVRLittleEndian)
    body = pydicom.filebase.DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    pydicom.filewriter.write_dataset(body, ds)
    length = inflated_bytes if declared is None else declared
    element = struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, length)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    head = pydicom.filebase.DicomBytesIO()
    head.write(b"\x00" * 128 + b"DICM")
    pydicom.filewriter.write_file_meta_info(head, meta)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = comp.compress(body.getvalue() + element) + comp.flush(zlib.Z_FULL_FLUSH)
    path.write_bytes(head.getvalue() + start + zeros_deflate(inflated_bytes))
    return path


def _raw_sequence(depth: int) -> bytes:
    """ReferencedImageSequence nested ``depth`` deep, undefined lengths, explicit VR little endian."""
    sq = struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    leaf = struct.pack("<HH2sH", 0x0008, 0x1155, b"UI", 6) + b"1.2.3\x00"
    end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return (sq + item) * depth + leaf + end * depth


def nested_sequence(depth: int) -> bytes:
    """A valid image whose ``ReferencedImageSequence`` nests ``depth`` levels deep (written by hand:
    pydicom's writer needs memory exponential in the depth)."""
    raw = dicom_bytes(dicom_dataset(16, 16))
    pos = raw.index(struct.pack("<HH", 0x0010, 0x0010), 132)
    return raw[:pos] + _raw_sequence(depth) + raw[pos:]


def patch_element(
    data: bytes, tag: tuple[int, int], vr: bytes | None = None, length: int | None = None
) -> bytes:
    """Rewrite the VR and/or 16-bit length of the first explicit-VR little-endian element ``tag``."""
    key = struct.pack("<HH", *tag)
    pos = data.index(key, 132)
    out = bytearray(data)
    if vr is not None:
        out[pos + 4 : pos + 6] = vr
    if length is not None:
        out[pos + 6 : pos + 8] = struct.pack("<H", length)
    return bytes(out)


def _generated_dicom(root: Path) -> Iterator[Case]:
    d = root / "dicom-generated"
    d.mkdir(parents=True, exist_ok=True)
    cat = "dicom-generated"

    def case(name: str, ds: Dataset, expect: str, note: str) -> Case:
        return Case(str(save(ds, d / name)), cat, expect, note=note)

    yield case("valid_mono2_16bit.dcm", dicom_dataset(), "load", "baseline valid image")
    yield case("valid_8bit.dcm", dicom_dataset(bits=8), "load", "8-bit")
    ds = dicom_dataset(syntax=ImplicitVRLittleEndian)
    yield case("implicit_vr.dcm", ds, "load", "implicit VR little endian")
    ds = dicom_dataset(syntax=ExplicitVRBigEndian)
    yield case("big_endian.dcm", ds, "load", "explicit VR big endian (retired)")
    raw = dicom_bytes(dicom_dataset())
    (d / "no_preamble.dcm").write_bytes(raw[132 + _meta_length(raw) :])
    yield Case(str(d / "no_preamble.dcm"), cat, "either", note="data set without preamble or file meta")

    ds = dicom_dataset(photometric="MONOCHROME1")
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    yield case("mono1_window.dcm", ds, "load", "MONOCHROME1 with a window")
    ds = dicom_dataset(photometric="MONOCHROME1")
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.LUTData = list(range(4095, -1, -1))
    lut["LUTData"].VR = "US"
    ds.VOILUTSequence = Sequence([lut])
    yield case("mono1_voi_lut.dcm", ds, "load", "MONOCHROME1 with a VOI LUT sequence")
    ds = dicom_dataset()
    lut = Dataset()
    lut.LUTDescriptor = [0, 0, 16]
    lut.LUTData = [1, 2, 3]
    lut["LUTData"].VR = "US"
    ds.VOILUTSequence = Sequence([lut])
    yield case("voi_lut_bad_descriptor.dcm", ds, "either", "VOI LUT whose descriptor disagrees with its data")
    ds = dicom_dataset()
    ds.WindowCenter, ds.WindowWidth = 100, 0
    yield case("window_width_zero.dcm", ds, "load", "window width 0 (invalid window)")
    ds = dicom_dataset()
    ds.WindowCenter, ds.WindowWidth = "NaN", "-5"
    yield case("window_nan.dcm", ds, "either", "NaN / negative window")
    ds = dicom_dataset()
    ds.RescaleSlope, ds.RescaleIntercept = "1e308", "-1e308"
    yield case("rescale_huge.dcm", ds, "either", "rescale slope 1e308")
    ds = dicom_dataset()
    ds.RescaleSlope, ds.RescaleIntercept = "NaN", "0"
    yield case("rescale_nan.dcm", ds, "either", "rescale slope NaN")
    ds = dicom_dataset()
    ds.PixelPaddingValue = 0
    yield case("padding_value.dcm", ds, "load", "pixel padding value")
    ds = dicom_dataset()
    ds.PixelPaddingValue, ds.PixelPaddingRangeLimit = 0, 100
    yield case("padding_range.dcm", ds, "load", "pixel padding range")
    ds = dicom_dataset(photometric="MONOCHROME1")
    ds.PixelPaddingValue = 4095
    yield case("padding_mono1.dcm", ds, "load", "pixel padding on MONOCHROME1")

    for rows, cols in ((1, 1), (1, 4096), (4096, 1), (1, 32768)):
        yield case(f"shape_{rows}x{cols}.dcm", dicom_dataset(rows, cols), "load", f"{rows} × {cols} image")
    ds = dicom_dataset(3, 3, bits=8)
    ds.NumberOfFrames = 3
    ds.PixelData = bytes(range(27))
    yield case("multiframe.dcm", ds, "load", "3-frame image (frame 0 loaded)")

    full = dicom_dataset(256, 256)
    for name, cut in (("half", 256 * 256), ("two_bytes_short", 2 * 256 * 256 - 2), ("empty", 0)):
        ds = dicom_dataset(256, 256, pixels=full.PixelData[:cut])
        yield case(f"truncated_pixels_{name}.dcm", ds, "refuse", f"pixel data truncated ({name})")
    ds = dicom_dataset(8, 8, pixels=bytes(4096))
    yield case("pixels_too_long.dcm", ds, "either", "pixel data longer than rows × columns")
    raw = dicom_bytes(dicom_dataset(128, 128))
    (d / "file_cut_in_pixels.dcm").write_bytes(raw[: len(raw) - 20000])
    yield Case(str(d / "file_cut_in_pixels.dcm"), cat, "refuse", note="file cut inside the pixel data")

    for rows, cols, frames in ((65535, 65535, 1), (20000, 20000, 1), (1024, 1024, 100000), (0, 64, 1)):
        ds = dicom_dataset(rows, cols, pixels=bytes(64))
        if frames > 1:
            ds.NumberOfFrames = frames
        expect = "refuse" if rows * cols > 100_000_000 or rows == 0 else "either"
        yield case(f"declared_{rows}x{cols}x{frames}.dcm", ds, expect, "huge/empty declared size, tiny data")
    ds = dicom_dataset(64, 64)
    ds.SamplesPerPixel = 65535
    yield case("samples_65535.dcm", ds, "refuse", "SamplesPerPixel 65535")
    for bits in (0, 7, 64):
        ds = dicom_dataset(16, 16, bits=8)
        ds.BitsAllocated = bits
        yield case(f"bits_allocated_{bits}.dcm", ds, "either", f"BitsAllocated {bits}")
    ds = dicom_dataset()
    ds.BitsStored, ds.HighBit = 24, 30
    yield case("bits_stored_gt_allocated.dcm", ds, "either", "BitsStored > BitsAllocated")
    ds = dicom_dataset()
    ds.PhotometricInterpretation = "FOO"
    yield case("photometric_unknown.dcm", ds, "either", "unknown photometric interpretation")
    ds = dicom_dataset(bits=8)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    yield case("palette_without_lut.dcm", ds, "either", "PALETTE COLOR without its LUTs")
    ds = dicom_dataset(16, 16)
    del ds.PixelData
    ds.FloatPixelData = np.linspace(-1, 1, 256, dtype=np.float32).tobytes()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    yield case("float_pixel_data.dcm", ds, "either", "FloatPixelData")
    ds = dicom_dataset()
    del ds.PixelData
    yield case("no_pixel_data.dcm", ds, "refuse", "image header without pixel data")
    ds = dicom_dataset()
    del ds.Rows
    yield case("no_rows.dcm", ds, "refuse", "Rows missing")

    yield case("rle_bomb_100mp.dcm", rle_bomb(10000, 10000), "either", "RLE: 100 MP (the limit) from ~1.6 MB")
    yield case("rle_bomb_400mp.dcm", rle_bomb(20000, 20000), "refuse", "RLE: 400 MP declared")
    ds = dicom_dataset(512, 512, bits=8, syntax=RLELossless, pixels=b"")
    ds.PixelData = encapsulate([struct.pack("<16I", 15, *([64] * 15)) + _rle_segment_of_zeros(1 << 24)])
    yield case("rle_15_segments_overlapping.dcm", ds, "either", "RLE header with 15 overlapping segments")
    yield Case(str(deflate_bomb(d / "deflate_bomb_300mb.dcm", 300 << 20)), cat, "either",
               note="deflated data set inflating to 300 MB")  # fmt: skip
    yield Case(str(deflate_bomb(d / "deflate_bomb_600mb.dcm", 600 << 20, (4 << 30) - 2)), cat, "either",
               note="deflated data set inflating to 600 MB, declaring a 4 GB element")  # fmt: skip

    for depth in (50, 500, 5000):
        (d / f"nested_sq_{depth}.dcm").write_bytes(nested_sequence(depth))
        yield Case(str(d / f"nested_sq_{depth}.dcm"), cat, "either", note=f"sequences nested {depth} deep")

    base = dicom_bytes(dicom_dataset(32, 32))
    patched = {
        "bad_vr_rows_zz.dcm": patch_element(base, (0x0028, 0x0010), vr=b"ZZ"),
        "bad_vr_rows_sq.dcm": patch_element(base, (0x0028, 0x0010), vr=b"SQ"),
        "bad_vr_rows_un.dcm": patch_element(base, (0x0028, 0x0010), vr=b"UN"),
        "rows_length_3.dcm": patch_element(base, (0x0028, 0x0010), length=3),
        "name_length_huge.dcm": patch_element(base, (0x0010, 0x0010), length=0xFFF0),
        "modality_vr_null.dcm": patch_element(base, (0x0008, 0x0060), vr=b"\x00\x00"),
    }
    for name, data in patched.items():
        (d / name).write_bytes(data)
        yield Case(str(d / name), cat, "either", note="bad VR or length")
    pix = base.index(struct.pack("<HH", 0x7FE0, 0x0010), 132)
    for name, length in (("pixel_length_ffffffff.dcm", 0xFFFFFFFF), ("pixel_length_huge.dcm", 0x7FFFFFF0)):
        data = bytearray(base)
        data[pix + 8 : pix + 12] = struct.pack("<I", length)
        (d / name).write_bytes(bytes(data))
        yield Case(str(d / name), cat, "refuse", note="pixel data element length lies")

    for name, uid in (
        ("syntax_unknown.dcm", "1.2.3.4.5.6"),
        ("syntax_mpeg2.dcm", "1.2.840.10008.1.2.4.100"),
        ("syntax_htj2k.dcm", "1.2.840.10008.1.2.4.201"),
        ("syntax_jpegxl.dcm", "1.2.840.10008.1.2.4.110"),
        ("syntax_empty.dcm", ""),
    ):
        ds = dicom_dataset(16, 16, bits=8, pixels=b"")
        ds.PixelData = encapsulate([b"\x00" * 64])
        ds.file_meta.TransferSyntaxUID = uid
        (d / name).write_bytes(_force_write(ds))
        yield Case(str(d / name), cat, "refuse", note=f"transfer syntax {uid or '(empty)'}")
    for name, uid in (("garbage_jpeg.dcm", JPEGBaseline8Bit), ("garbage_j2k.dcm", JPEG2000),
                      ("garbage_jpegls.dcm", JPEGLSLossless), ("garbage_rle.dcm", RLELossless)):  # fmt: skip
        ds = dicom_dataset(64, 64, bits=8, syntax=uid, pixels=b"")
        ds.PixelData = encapsulate([random.Random(name).randbytes(3000)])
        yield case(name, ds, "refuse", f"random bytes as {uid.name}")
    ds = dicom_dataset(64, 64, bits=8, syntax=JPEGBaseline8Bit, pixels=b"")
    ds.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    yield case("encapsulated_no_fragments.dcm", ds, "refuse", "encapsulated pixel data without fragments")

    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
    sr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.SOPClassUID = sr.file_meta.MediaStorageSOPClassUID
    sr.SOPInstanceUID = sr.file_meta.MediaStorageSOPInstanceUID
    sr.Modality = "SR"
    yield case("structured_report.dcm", sr, "refuse", "SR: no pixel data")

    raw = dicom_bytes(dicom_dataset(16, 16))
    meta_len = _meta_length(raw)
    data = bytearray(raw)
    data[140:144] = struct.pack("<I", meta_len + 5000)
    (d / "meta_group_length_wrong.dcm").write_bytes(bytes(data))
    yield Case(str(d / "meta_group_length_wrong.dcm"), cat, "either", note="file meta group length wrong")
    (d / "meta_only.dcm").write_bytes(raw[: 132 + meta_len])
    yield Case(str(d / "meta_only.dcm"), cat, "refuse", note="preamble and file meta, no data set")


def _meta_length(raw: bytes) -> int:
    """Length of the file meta group (group length element included) of file bytes ``raw``."""
    (group_len,) = struct.unpack("<I", raw[140:144])
    return 12 + group_len


def _force_write(ds: Dataset) -> bytes:
    """Write ``ds`` as explicit VR little endian whatever its (possibly invalid) declared syntax."""
    fp = pydicom.filebase.DicomBytesIO()
    fp.write(b"\x00" * 128 + b"DICM")
    pydicom.filewriter.write_file_meta_info(fp, ds.file_meta, enforce_standard=False)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    pydicom.filewriter.write_dataset(fp, ds)
    return fp.getvalue()


# -- non-DICOM, polyglots, rasters --------------------------------------------------------------------------


def _not_dicom(root: Path) -> Iterator[Case]:
    d = root / "not-dicom"
    d.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(12)
    files = {
        "empty.dcm": b"",
        "one_byte.dcm": b"\x00",
        "text.dcm": b"Patient notes: nothing to see here.\n" * 20,
        "html.dcm": b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
        "pdf.dcm": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
        "random_1k.dcm": rnd.randbytes(1024),
        "random_64k.dcm": rnd.randbytes(65536),
        "zeros_4k.dcm": bytes(4096),
        "preamble_only.dcm": b"\x00" * 128 + b"DICM",
        "preamble_garbage.dcm": b"\x00" * 128 + b"DICM" + rnd.randbytes(500),
        "elf.dcm": Path(sys.executable).resolve().read_bytes()[:8192],
        "raw_dicom_lookalike.dcm": struct.pack("<HH2sH", 0x0008, 0x0016, b"UI", 0xFFFF) + b"1" * 64,
        "gif.dcm": b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
        b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;",
        "png_signature_only.png": b"\x89PNG\r\n\x1a\n",
        "jpeg_soi_only.jpg": b"\xff\xd8\xff",
        "tiff_header_only.tif": b"II*\x00\x08\x00\x00\x00",
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
        yield Case(str(d / name), "not-dicom", "refuse", note="not an image")
    (d / "a_folder.dcm").mkdir(exist_ok=True)
    yield Case(str(d / "a_folder.dcm"), "not-dicom", "refuse", note="a folder named .dcm")


def _zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _polyglots(root: Path) -> Iterator[Case]:
    d = root / "polyglot"
    d.mkdir(parents=True, exist_ok=True)
    dcm = dicom_bytes(dicom_dataset(32, 32))
    png = cv2.imencode(".png", np.full((8, 8), 200, np.uint8))[1].tobytes()
    both = dcm + _zip_bytes({"inner.png": png, "inner.dcm": dcm})
    (d / "dicom_zip.dcm").write_bytes(both)
    (d / "dicom_zip.zip").write_bytes(both)
    yield Case(str(d / "dicom_zip.dcm"), "polyglot", "load", note="DICOM with a ZIP appended (as an image)")
    yield Case(
        str(d / "dicom_zip.zip"), "polyglot", "either", "load_studies", "DICOM+ZIP polyglot as a study"
    )
    (d / "zip_then_dicom.dcm").write_bytes(_zip_bytes({"x.dcm": dcm}) + dcm)
    yield Case(str(d / "zip_then_dicom.dcm"), "polyglot", "refuse", note="ZIP with DICOM appended")
    (d / "png_named.dcm").write_bytes(png)
    yield Case(str(d / "png_named.dcm"), "polyglot", "load", note="PNG with a .dcm suffix")
    (d / "dicom_named.png").write_bytes(dcm)
    yield Case(str(d / "dicom_named.png"), "polyglot", "load", note="DICOM with a .png suffix")


def _png(width: int, height: int, bit_depth: int = 8, colour: int = 0, row_bytes: int | None = None) -> bytes:
    """An all-zero PNG written by hand (so a huge image costs only its compressed size)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    per_row = row_bytes if row_bytes is not None else (width * channels * bit_depth + 7) // 8
    raw = height * (1 + per_row)  # filter byte 0 + zero samples: all zeros
    adler = ((raw % 65521) << 16) | 1
    idat = b"\x78\xda" + zeros_deflate(raw) + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _tiff(width: int, height: int, strip: bytes, compression: int = 1) -> bytes:
    """A one-strip little-endian 8-bit grey TIFF with the given (possibly lying) size."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, compression), (262, 3, 1),
               (273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, len(strip))]  # fmt: skip
    ifd_offset = 8 + len(strip)
    ifd = struct.pack("<H", len(entries))
    for tag, typ, value in entries:
        ifd += struct.pack("<HHI", tag, typ, 1) + (
            struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        )
    return b"II*\x00" + struct.pack("<I", ifd_offset) + strip + ifd + b"\x00\x00\x00\x00"


def _rasters(root: Path) -> Iterator[Case]:
    d = root / "raster"
    d.mkdir(parents=True, exist_ok=True)
    cat = "raster"

    def put(name: str, data: bytes, expect: str, note: str) -> Case:
        (d / name).write_bytes(data)
        return Case(str(d / name), cat, expect, note=note)

    yield put("png_bomb_30000x30000.png", _png(30000, 30000), "refuse",
              "30000 × 30000 grey PNG (900 MP) in under 1 MB")  # fmt: skip
    yield put("png_limit_10000x10000.png", _png(10000, 10000), "either",
              "10000 × 10000 grey PNG: exactly the 100 MP limit")  # fmt: skip
    yield put("png_16bit_10000x10000.png", _png(10000, 10000, bit_depth=16), "either",
              "10000 × 10000 16-bit PNG at the limit")  # fmt: skip
    yield put("png_1x200000.png", _png(1, 200000), "load", "1 × 200000 PNG")
    yield put("png_200000x1.png", _png(200000, 1), "load", "200000 × 1 PNG")
    yield put(
        "png_idat_short.png", _png(4000, 4000, row_bytes=100), "either", "IDAT far shorter than IHDR says"
    )
    lying = _png(16, 16)
    lying = lying[:16] + struct.pack(">II", 60000, 60000) + lying[24:]
    yield put("png_ihdr_lies_huge.png", lying, "refuse", "IHDR says 60000² (bad CRC), data for 16²")
    ok = cv2.imencode(".png", (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8))[1].tobytes()
    yield put("png_valid.png", ok, "load", "valid grey PNG")
    yield put("png_truncated.png", ok[: len(ok) // 2], "either", "PNG cut in half")
    yield put("png_bad_crc.png", ok[:30] + bytes([ok[30] ^ 0xFF]) + ok[31:], "either", "PNG with a bad CRC")
    yield put("png_16bit.png", cv2.imencode(".png", np.arange(4096, dtype=np.uint16).reshape(64, 64))[1].tobytes(),
              "load", "16-bit grey PNG")  # fmt: skip
    rgba = np.dstack([np.full((32, 32), v, np.uint8) for v in (10, 100, 200, 128)])
    yield put("png_rgba.png", cv2.imencode(".png", rgba)[1].tobytes(), "load", "RGBA PNG")
    rgb16 = np.dstack([np.full((32, 32), v, np.uint16) for v in (10, 1000, 60000)])
    yield put("png_rgb16.png", cv2.imencode(".png", rgb16)[1].tobytes(), "load", "16-bit RGB PNG")
    yield put("png_grey_alpha.png", _png(8, 8, colour=4), "load", "grey + alpha PNG")
    yield put("png_1bit.png", _png(64, 64, bit_depth=1), "load", "1-bit PNG")

    jpeg = cv2.imencode(".jpg", np.full((64, 64), 90, np.uint8))[1].tobytes()
    yield put("jpeg_valid.jpg", jpeg, "load", "valid grey JPEG")
    yield put("jpeg_truncated.jpg", jpeg[: len(jpeg) // 2], "either", "JPEG cut in half")
    sof = jpeg.index(b"\xff\xc0")
    huge = bytearray(jpeg)
    huge[sof + 5 : sof + 9] = struct.pack(">HH", 65500, 65500)
    yield put("jpeg_sof_65500.jpg", bytes(huge), "refuse", "JPEG header declaring 65500 × 65500")
    zero = bytearray(jpeg)
    zero[sof + 5 : sof + 7] = b"\x00\x00"
    yield put("jpeg_sof_height_0.jpg", bytes(zero), "either", "JPEG height 0 (DNL)")
    big = cv2.imencode(".jpg", np.zeros((12000, 12000), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 10])[1]
    yield put("jpeg_bomb_12000.jpg", big.tobytes(), "refuse", "12000 × 12000 JPEG (144 MP) of zeros")
    app = b"\xff\xe1" + struct.pack(">H", 65535) + bytes(65533)
    yield put("jpeg_big_app_segment.jpg", jpeg[:2] + app * 4 + jpeg[2:], "load", "JPEG with 256 kB of APP1")

    yield put("tiff_valid.tif", _tiff(16, 16, bytes(256)), "load", "valid one-strip TIFF")
    yield put("tiff_declared_100000.tif", _tiff(100000, 100000, bytes(256)), "refuse", "TIFF declaring 10 GP")
    bomb = b"\x78\xda" + zeros_deflate(20000 * 20000) + struct.pack(">I", ((20000 * 20000 % 65521) << 16) | 1)
    yield put("tiff_deflate_20000.tif", _tiff(20000, 20000, bomb, compression=8), "refuse",
              "deflate TIFF declaring 400 MP")  # fmt: skip
    t = bytearray(_tiff(16, 16, bytes(256)))
    t[4:8] = struct.pack("<I", 10**9)
    yield put("tiff_ifd_beyond_end.tif", bytes(t), "refuse", "TIFF IFD offset beyond the file")
    t = bytearray(_tiff(16, 16, bytes(256)))
    t[8 + 256 : 8 + 256 + 2] = struct.pack("<H", 60000)
    yield put("tiff_ifd_count_huge.tif", bytes(t), "either", "TIFF IFD claiming 60000 entries")


# -- ZIP and DICOMDIR (load_studies) ------------------------------------------------------------------------


def zip_of_zeros(members: list[tuple[str, int]], extra: dict[str, bytes] | None = None) -> bytes:
    """A ZIP written by hand whose deflated members hold ``size`` zero bytes each (zip bombs), plus
    ``extra`` stored members. Sizes must stay below 4 GiB (no ZIP64)."""
    entries = [(name, 8, zeros_deflate(size), size, zeros_crc32(size)) for name, size in members]
    entries += [(name, 0, data, len(data), zlib.crc32(data)) for name, data in (extra or {}).items()]
    out, central = bytearray(), bytearray()
    for name, method, data, size, crc in entries:
        raw = name.encode()
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(data),
                               size, len(raw), 0, 0, 0, 0, 0, len(out)) + raw  # fmt: skip
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data), size,
                           len(raw), 0) + raw + data  # fmt: skip
    eocd = struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(out), 0
    )
    return bytes(out + central + eocd)


def _zips(root: Path) -> Iterator[Case]:
    d = root / "zip"
    d.mkdir(parents=True, exist_ok=True)
    cat = "zip"
    dcm = dicom_bytes(dicom_dataset(32, 32))

    def put(name: str, data: bytes, expect: str, note: str) -> Case:
        (d / name).write_bytes(data)
        return Case(str(d / name), cat, expect, "load_studies", note)

    yield put("valid.zip", _zip_bytes({"study/a.dcm": dcm, "study/b.dcm": dcm}), "load", "two DICOMs")
    for name, size in (("zip_bomb_1100mb.zip", 1100 << 20), ("zip_ratio_bomb_300mb.zip", 300 << 20)):
        yield put(name, zip_of_zeros([("study/bomb.dcm", size)], {"study/ok.dcm": dcm}), "either",
                  f"member inflating to {size >> 20} MB")  # fmt: skip
    yield put("zip_bomb_many_members.zip", zip_of_zeros([(f"s/{i}.dcm", 15 << 20) for i in range(20)]), "either",
              "20 members of 15 MB zeros each (300 MB, each under the ratio check's size)")  # fmt: skip
    data = bytearray(zip_of_zeros([("big.dcm", 64 << 20)]))
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size in local + central header
        pos = data.index(sig)
        data[pos + off : pos + off + 4] = struct.pack("<I", 200)
    yield put("zip_size_lies.zip", bytes(data), "either", "headers say 200 B, stream inflates to 64 MB")
    traversal = {"../../escape.dcm": dcm, "/abs/escape.dcm": dcm, "C:/escape.dcm": dcm,
                 "ok/../../../escape2.dcm": dcm, "..\\..\\escape3.dcm": dcm, "fine/good.dcm": dcm}  # fmt: skip
    yield put("zip_traversal.zip", _zip_bytes(traversal), "either", "member names escaping the archive")
    yield put("zip_nested.zip", _zip_bytes({"inner.zip": _zip_bytes({"a.dcm": dcm}), "b.dcm": dcm}), "either",
              "a ZIP inside a ZIP")  # fmt: skip
    enc = bytearray(_zip_bytes({"secret.dcm": dcm}, zipfile.ZIP_STORED))
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = enc.index(sig)
        enc[pos + off] |= 0x01
    yield put("zip_encrypted.zip", bytes(enc), "either", "member flagged as encrypted")
    odd = bytearray(_zip_bytes({"odd.dcm": dcm}, zipfile.ZIP_STORED))
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        pos = odd.index(sig)
        odd[pos + off : pos + off + 2] = struct.pack("<H", 98)  # PPMd: unsupported
    yield put("zip_ppmd.zip", bytes(odd), "either", "unsupported compression method")
    bad = bytearray(_zip_bytes({"a.dcm": dcm}, zipfile.ZIP_STORED))
    bad[len(bad) // 2] ^= 0xFF
    yield put("zip_crc_mismatch.zip", bytes(bad), "either", "member bytes changed after the CRC was written")
    whole = _zip_bytes({"a.dcm": dcm, "b.dcm": dcm})
    yield put("zip_truncated.zip", whole[: len(whole) // 2], "either", "archive cut in half (no directory)")
    yield put("zip_empty.zip", _zip_bytes({}), "either", "archive without members")
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w", zipfile.ZIP_STORED) as zf:
        for i in range(25000):
            zf.writestr(f"m/{i}.txt", b"")
    yield put("zip_25000_members.zip", many.getvalue(), "either", "25000 empty members")
    yield put("zip_not_images.zip", _zip_bytes({"notes.txt": b"hello", "x.dcm": b"not dicom"}), "either",
              "members that are not images")  # fmt: skip


def _dicomdirs(root: Path) -> Iterator[Case]:
    src = pydicom_test_files() / "dicomdirtests"
    for name in ("DICOMDIR", "DICOMDIR-bigEnd", "DICOMDIR-implicit", "DICOMDIR-nooffset", "DICOMDIR-nopatient",
                 "DICOMDIR-reordered", "DICOMDIR-empty.dcm"):  # fmt: skip
        if (src / name).is_file():
            yield Case(str(src / name), "dicomdir", "either", "load_studies", f"pydicom {name}")
    if src.is_dir():
        yield Case(str(src), "dicomdir", "either", "load_studies", "pydicom DICOMDIR folder")
    d = root / "dicomdir"
    d.mkdir(parents=True, exist_ok=True)
    data = (src / "DICOMDIR").read_bytes()
    escaped = data.replace(b"77654033\\CR1\\6154", b"..\\..\\..\\..\\x6154", 1)
    (d / "DICOMDIR").write_bytes(escaped)
    yield Case(
        str(d / "DICOMDIR"), "dicomdir", "either", "load_studies", "ReferencedFileID escaping the folder"
    )
    looped = bytearray(data)
    pos = looped.index(struct.pack("<HH", 0x0004, 0x1400))  # first OffsetOfTheNextDirectoryRecord
    own = looped.rfind(b"\xfe\xff\x00\xe0", 0, pos)  # the item holding it
    looped[pos + 8 : pos + 12] = struct.pack("<I", own)
    (d / "DICOMDIR-loop").mkdir(exist_ok=True)
    (d / "DICOMDIR-loop" / "DICOMDIR").write_bytes(bytes(looped))
    yield Case(str(d / "DICOMDIR-loop" / "DICOMDIR"), "dicomdir", "either", "load_studies",
               "a directory record whose next-record offset points at itself")  # fmt: skip


# -- real files and mutations -------------------------------------------------------------------------------


def _package_files() -> Iterator[Case]:
    tests = pydicom_test_files()
    for f in sorted(p for p in tests.rglob("*") if p.is_file()):
        entry = "load_studies" if f.suffix.lower() == ".zip" else "load_image"
        expect = "load" if f.name in MUST_LOAD else "refuse" if f.name in MUST_REFUSE else "either"
        yield Case(str(f), "pydicom-test-files", expect, entry, "pydicom test file")
    store = package_dir("data_store", "data")
    if store is not None:
        for f in sorted(p for p in store.rglob("*") if p.is_file()):
            yield Case(str(f), "pydicom-data", "either", note="pydicom-data file")
    deid = package_dir("deid_data", "data")
    if deid is not None:
        for f in sorted(p for p in deid.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            if f.suffix.lower() in (".dcm", ".zip"):
                entry = "load_studies" if f.suffix.lower() == ".zip" else "load_image"
                yield Case(str(f), "deid-data", "either", entry, "deid-data file")


def _mutations(root: Path) -> Iterator[Case]:
    d = root / "mutated"
    d.mkdir(parents=True, exist_ok=True)
    tests = pydicom_test_files()
    for seed_name in SEED_FILES:
        seed = tests / seed_name
        if not seed.is_file():
            continue
        data = seed.read_bytes()
        rnd = random.Random(seed_name)
        for frac in (0.05, 0.2, 0.5, 0.8, 0.95, 0.999):
            out = d / f"{seed.stem}_cut{int(frac * 1000):03d}.dcm"
            out.write_bytes(data[: int(len(data) * frac)])
            yield Case(str(out), "mutated", "either", note=f"{seed_name} truncated to {frac:.1%}")
        for i in range(8):
            buf = bytearray(data)
            for _ in range(1 + i):
                pos = rnd.randrange(0, min(len(buf), 2048 if i % 2 else len(buf)))
                buf[pos] = rnd.randrange(256)
            out = d / f"{seed.stem}_flip{i}.dcm"
            out.write_bytes(bytes(buf))
            yield Case(str(out), "mutated", "either", note=f"{seed_name} with {1 + i} random bytes changed")


def _fuzz_crashes() -> Iterator[Case]:
    for f in sorted((Path(__file__).parent / "crashes").glob("*")):
        if f.is_file() and f.suffix != ".md":
            yield Case(str(f), "fuzz-crashes", "either", note="found by the fuzzer")


def build_corpus(cache_dir: str | Path) -> list[Case]:
    """Write the generated cases under ``cache_dir`` (reused when already built) and list every case."""
    root = Path(cache_dir) / f"v{CORPUS_VERSION}"
    index = root / "index.json"
    if index.is_file():
        cases = [Case(**c) for c in json.loads(index.read_text())]
        if all(Path(c.path).exists() for c in cases):
            return cases
    root.mkdir(parents=True, exist_ok=True)
    cases = [
        *_package_files(),
        *_generated_dicom(root),
        *_not_dicom(root),
        *_polyglots(root),
        *_rasters(root),
        *_zips(root),
        *_dicomdirs(root),
        *_mutations(root),
        *_fuzz_crashes(),
    ]
    index.write_text(json.dumps([asdict(c) for c in cases], indent=0))
    return cases


def counts_by_category(cases: list[Case]) -> dict[str, int]:
    """How many cases each category holds."""
    out: dict[str, int] = {}
    for c in cases:
        out[c.category] = out.get(c.category, 0) + 1
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".cache/reliability-corpus")
    built = build_corpus(target)
    print(f"{len(built)} cases in {target}: {counts_by_category(built)}")
