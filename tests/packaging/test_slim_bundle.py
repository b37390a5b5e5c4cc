"""packaging/slim_bundle.py: the post-build size cuts, checked on small libraries built here and on the venv's
own ICU (no PyInstaller build needed), and the guard that keeps the viewer's OpenCV calls away from the
FFmpeg/OpenBLAS libraries the CPU build replaces."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("slim_bundle", REPO / "packaging" / "slim_bundle.py")
slim = importlib.util.module_from_spec(_spec)
sys.modules["slim_bundle"] = slim  # dataclasses look the module up by name
_spec.loader.exec_module(slim)

needs_toolchain = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not all(shutil.which(t) for t in ("cc", "readelf", "strip")),
    reason="Linux with cc, readelf and strip",
)

#: OpenCV functions (and constants) the frozen viewer may call: none uses video I/O (FFmpeg) or OpenCV's
#: LAPACK/BLAS paths (cv::solve, invert, SVD, eigen, PCA, homography/affine estimation, large gemm), which the
#: CPU build replaces by stand-ins that abort. Add a function here only after checking that it needs neither.
OPENCV_ALLOWED = {
    "resize", "imdecode", "imencode", "copyMakeBorder", "findContours", "cvtColor", "convertScaleAbs",
    "connectedComponentsWithStats", "subtract", "putText", "max", "getTextSize", "floodFill", "erode",
    "drawContours", "dilate", "createCLAHE", "compare", "bitwise_not", "GaussianBlur", "threshold",
    "morphologyEx", "getStructuringElement", "bitwise_and", "bitwise_or", "add", "addWeighted", "normalize",
    "applyColorMap", "equalizeHist", "medianBlur", "blur", "contourArea", "boundingRect", "fillPoly",
    "polylines", "rectangle", "line", "circle", "minMaxLoc", "countNonZero", "LUT", "flip", "rotate",
    "distanceTransform", "moments", "approxPolyDP", "convexHull", "arcLength", "merge", "split", "absdiff",
    "min", "multiply", "divide", "inRange", "imread", "imwrite", "setNumThreads", "getNumThreads", "sumElems",
    "mean",
}  # fmt: skip


def test_viewer_uses_only_opencv_calls_the_cpu_build_keeps():
    used: dict[str, set[str]] = {}
    for path in sorted((REPO / "cxrviewer").rglob("*.py")):
        for name in re.findall(r"\bcv2\.([A-Za-z_][A-Za-z0-9_]*)", path.read_text(encoding="utf-8")):
            if not name[0].isupper():  # constants (INTER_AREA, COLOR_BGR2GRAY, ...) need no library
                used.setdefault(name, set()).add(str(path.relative_to(REPO)))
    assert used, "no cv2 calls found: the scan is broken"
    unknown = {name: sorted(paths) for name, paths in used.items() if name not in OPENCV_ALLOWED}
    assert not unknown, (
        f"cxrviewer calls OpenCV functions not known to be safe in the CPU build: {unknown}. The build replaces "
        "OpenCV's FFmpeg and OpenBLAS libraries (packaging/slim_bundle.py); if the function uses neither, add it "
        "to OPENCV_ALLOWED, else remove those libraries from OPENCV_UNUSED."
    )


def _fake_icu_package(items: dict[str, bytes]) -> bytes:
    header = bytes([0x90, 0x00, 0xDA, 0x27]) + b"\x14\x00\x00\x00" + b"CmnD" + b"\x01\x00\x00\x00" * 2
    header += b"\0" * (0x90 - len(header))
    return slim.IcuPackage(header, sorted(items.items())).to_bytes()


def test_icu_package_round_trip_and_alignment():
    items = {"icudt73l/coll/root.res": b"R" * 33, "icudt73l/a.cnv": b"C" * 5, "icudt73l/brkitr/x.dict": b"D"}
    blob = _fake_icu_package(items)
    pkg = slim.IcuPackage.parse(blob)
    # The format stores no item lengths: an item reads back with its zero padding to 16 bytes.
    assert {k: v[: len(items[k])] for k, v in pkg.items} == items
    assert all(len(v) % 16 == 0 and not v[len(items[k]) :].strip(b"\0") for k, v in pkg.items)
    assert pkg.to_bytes() == blob
    toc = blob[0x90:]
    for i in range(len(items)):  # every item starts 16-byte aligned (ICU maps .res/.icu data in place)
        assert int.from_bytes(toc[4 + 8 * i + 4 : 4 + 8 * i + 8], "little") % 16 == 0
    with pytest.raises(ValueError, match="magic"):
        slim.IcuPackage.parse(b"\x90\x00\x00\x00" + blob[4:])


def test_icu_items_dropped_and_kept():
    dropped = ["icudt73l/ibm-943_P15A-2003.cnv", "icudt73l/brkitr/cjdict.dict", "icudt73l/lang/de.res",
               "icudt73l/curr/fr.res", "icudt73l/unit/en.res", "icudt73l/region/ja.res", "icudt73l/unames.icu",
               "icudt73l/translit/root.res", "icudt73l/rbnf/en.res"]  # fmt: skip
    kept = ["icudt73l/coll/sv.res", "icudt73l/coll/ucadata.icu", "icudt73l/de.res", "icudt73l/root.res",
            "icudt73l/zoneinfo64.res", "icudt73l/zone/de.res", "icudt73l/cnvalias.icu", "icudt73l/nfkc.nrm",
            "icudt73l/uprops.icu", "icudt73l/likelySubtags.res"]  # fmt: skip
    assert [n for n in dropped if not slim.icu_item_dropped(n)] == []
    assert [n for n in kept if slim.icu_item_dropped(n)] == []


def _venv_icu() -> Path | None:
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = Path(list(spec.submodule_search_locations)[0]) / "Qt" / "lib"
    return lib if (lib / "libicudata.so.73").is_file() else None


@needs_toolchain
def test_trimmed_icu_data_serves_what_qt_asks_and_the_check_catches_missing_collation(tmp_path):
    """The venv's PySide6 ICU with the trimmed data library passes the ICU check (collation, case mapping,
    converters, time zones); with the collation data also removed, the check fails."""
    qt_lib = _venv_icu()
    if qt_lib is None:
        pytest.skip("PySide6's ICU 73 libraries are not installed")
    # A miniature bundle: the ICU libraries where trim_icu expects them (RUNPATH $ORIGIN finds the data).
    lib_dir = tmp_path / "_internal" / "PySide6" / "Qt" / "lib"
    lib_dir.mkdir(parents=True)
    for name in ("libicudata.so.73", "libicuuc.so.73", "libicui18n.so.73"):
        shutil.copy2(qt_lib / name, lib_dir / name)
    saving = slim.trim_icu(tmp_path / "_internal")
    assert not any("failed" in n for n in saving.notes), saving.notes
    assert saving.after < saving.before * 0.5, saving.line()
    assert slim.check_icu(lib_dir, "73") is None

    name, vaddr, size = slim._symbol(lib_dir / "libicudata.so.73", r"icudt73_dat")
    off = slim._file_offset(lib_dir / "libicudata.so.73", vaddr)
    pkg = slim.IcuPackage.parse((lib_dir / "libicudata.so.73").read_bytes()[off : off + size])
    assert not [n for n, _ in pkg.items if slim.icu_item_dropped(n)]
    no_coll = slim.IcuPackage(pkg.header, [it for it in pkg.items if "/coll/" not in it[0]])
    slim.build_data_library(
        lib_dir / "libicudata.so.73", "libicudata.so.73", name, no_coll.to_bytes(), tmp_path
    )
    problem = slim.check_icu(lib_dir, "73")
    assert problem is not None and "'collation': (4, None)" in problem  # U_FILE_ACCESS_ERROR, no collator


@needs_toolchain
def test_stub_library_exports_versioned_symbols_and_aborts_with_a_message_when_called(tmp_path):
    symbols = [
        slim.DynSymbol("cxr_demo_open", "DEMO_1", "FUNC", 0),
        slim.DynSymbol("cxr_demo_table", "DEMO_1", "OBJECT", 48),
    ]
    out = tmp_path / "libdemo-abc.so.1"
    slim.build_stub_library(out, "libdemo-abc.so.1", "libdemo", symbols, tmp_path)
    assert slim.dynamic_tags(out)["SONAME"] == ["libdemo-abc.so.1"]
    defined = slim.defined_symbols(out)
    assert defined["cxr_demo_open"].version == "DEMO_1" and defined["cxr_demo_open"].kind == "FUNC"
    assert defined["cxr_demo_table"].kind == "OBJECT" and defined["cxr_demo_table"].size == 48
    call = (
        "import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]); print('loaded', flush=True); lib.cxr_demo_open()"
    )
    proc = subprocess.run([sys.executable, "-c", call, str(out)], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "loaded"
    assert proc.returncode != 0  # abort(), never a silent wrong result
    assert "cxr_demo_open() of libdemo was called, but this build left libdemo out" in proc.stderr


@needs_toolchain
def test_data_library_exports_the_bytes_aligned(tmp_path):
    data = bytes(range(256)) * 3
    out = tmp_path / "libblob.so.1"
    slim.build_data_library(out, "libblob.so.1", "cxr_blob_dat", data, tmp_path)
    name, vaddr, size = slim._symbol(out, r"cxr_blob_dat")
    assert (name, size, vaddr % 16) == ("cxr_blob_dat", len(data), 0)
    off = slim._file_offset(out, vaddr)
    assert out.read_bytes()[off : off + size] == data


@needs_toolchain
def test_strip_keeps_what_still_loads_and_skips_edited_libraries(tmp_path):
    internal = tmp_path / "_internal"
    (internal / "pkg").mkdir(parents=True)
    (internal / "wheel.libs").mkdir()
    src = tmp_path / "f.c"
    src.write_text("int cxr_answer(void) { return 42; }\n")
    plain = internal / "pkg" / "libplain.so"
    edited = internal / "pkg" / "libedited.so"
    grafted = internal / "wheel.libs" / "libgrafted-1234.so.1"
    subprocess.run(["cc", "-shared", "-fPIC", "-g", "-o", str(plain), str(src)], check=True)
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-g", "-Wl,-rpath,$ORIGIN", "-o", str(edited), str(src)], check=True
    )
    absolute = internal / "pkg" / "libabsolute.so"  # an absolute RUNPATH from the original link (pyenv's)
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-g", "-Wl,-rpath,/usr/lib", "-o", str(absolute), str(src)], check=True
    )
    shutil.copy2(plain, grafted)
    sizes = {p: p.stat().st_size for p in (plain, edited, grafted, absolute)}
    saving = slim.strip_unedited(internal)
    assert plain.stat().st_size < sizes[plain]  # debug info and symbol table gone
    assert absolute.stat().st_size < sizes[absolute]
    assert edited.stat().st_size == sizes[edited]  # has an $ORIGIN RPATH (as patchelf writes): left alone
    assert grafted.stat().st_size == sizes[grafted]  # in a *.libs folder: left alone
    assert saving.notes[0] == "2 files"
    assert slim.loads([plain, absolute], internal) == {}
    assert "cxr_answer" in slim.defined_symbols(plain)  # the dynamic symbol table survives
