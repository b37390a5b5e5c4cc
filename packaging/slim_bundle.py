"""Post-build size cuts for the Linux one-folder app (run by packaging/build.sh after PyInstaller).

Each cut is checked before it is kept; docs/packaging.md lists what each one saves and why it is safe:

1. ``strip`` the symbol tables of shared objects that no tool has edited: libraries whose RPATH/RUNPATH (if
   any) does not use ``$ORIGIN``, outside the ``*.libs`` folders that auditwheel fills. ``strip`` corrupts patchelf-edited files
   (NumPy's OpenBLAS then fails with "ELF load command address/offset not page-aligned"), so every stripped
   file is loaded again with ``dlopen`` and the original put back if that fails.
2. Trim Qt's ICU data library (``libicudata.so.73``, 31 MB). Qt 6 calls ICU only for collation, case mapping,
   legacy text codecs and time-zone names; the converters (``*.cnv``), break-iterator dictionaries, locale
   display names (languages, regions, currencies, units), transliteration and spelled-out numbers are removed
   from the data package; collation, locale and time-zone data stay. ICU answers a lookup of a removed item
   with an error code, which Qt treats as "not available" (e.g. an unknown codec). The library is rebuilt with
   the same soname and data symbol, then checked with the bundle's own ICU (:data:`ICU_CHECK`): Swedish
   collation, Turkish upper-casing, UTF-8/Latin-1 converters and a time-zone lookup; on failure the original
   is put back.
3. Replace OpenCV's FFmpeg and OpenBLAS libraries (video I/O and LAPACK/BLAS, 74 MB) with small stand-ins that
   export the same symbols (and symbol versions) and abort with a message if ever called. ``cv2`` links them
   but the viewer never uses video I/O or OpenCV's linear algebra (``tests/packaging/test_slim_bundle.py``
   keeps the viewer's OpenCV calls to a list of functions that need neither). Libraries that only the
   removed ones needed (libvpx, OpenSSL 1.1, libdrm, libgfortran, libquadmath, libswresample) are deleted.
4. Rewrite highdicom's DICOM standard tables as compact JSON (same content, no indentation).

Run: ``python packaging/slim_bundle.py dist/cxrviewer`` (prints one line per cut). Linux/ELF only.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: ICU data package items removed (prefixes of the item names inside the package, after "icudt73l/").
ICU_DROP_DIRS = ("brkitr/", "curr/", "lang/", "region/", "unit/", "translit/", "rbnf/")
ICU_DROP_SUFFIXES = (".cnv",)
ICU_DROP_ITEMS = ("unames.icu",)

#: OpenCV's bundled libraries (auditwheel names start with these) that the viewer never calls into.
OPENCV_LIBS_DIR = "opencv_python_headless.libs"
OPENCV_UNUSED = (
    "libavcodec",
    "libavformat",
    "libavutil",
    "libswscale",
    "libswresample",
    "libvpx",
    "libcrypto",
    "libssl",
    "libdrm",
    "libopenblas",
    "libgfortran",
    "libquadmath",
)


@dataclass
class Saving:
    """What one cut did: bytes before and after, and a line for the build log."""

    name: str
    before: int = 0
    after: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        mb = (self.before - self.after) / 1e6
        extra = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"slim: {self.name}: {self.before / 1e6:.1f} -> {self.after / 1e6:.1f} MB, saved {mb:.1f} MB{extra}"


def _run(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {res.returncode}): {res.stderr.strip()[-2000:]}")
    return res.stdout


def is_elf(path: Path) -> bool:
    """True for an ELF file (a shared object or executable)."""
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_files(root: Path) -> list[Path]:
    """Every regular ELF file under ``root`` (links not followed)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and is_elf(p))


def dynamic_tags(path: Path) -> dict[str, list[str]]:
    """The ``NEEDED``, ``SONAME``, ``RPATH`` and ``RUNPATH`` entries of an ELF file's dynamic section."""
    out: dict[str, list[str]] = {"NEEDED": [], "SONAME": [], "RPATH": [], "RUNPATH": []}
    for line in _run(["readelf", "-d", "-W", str(path)]).splitlines():
        m = re.search(r"\((NEEDED|SONAME|RPATH|RUNPATH)\)\s+.*?\[(.*)\]", line)
        if m:
            out[m.group(1)].append(m.group(2))
    return out


def loads(paths: list[Path], library_path: Path) -> dict[Path, str]:
    """``dlopen`` each file in a fresh interpreter (all symbols bound now); {path: error} for those that fail.

    Python extension modules resolve the interpreter's symbols from the running process, so this checks what
    the frozen app's import would (a corrupted ELF, an unresolved symbol), without running module code.
    """
    # os._exit: no interpreter shutdown, whose C++ destructors crash in modules loaded without an import.
    script = (
        "import ctypes, os, sys\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        ctypes.CDLL(p, mode=os.RTLD_NOW | os.RTLD_LOCAL)\n"
        "    except OSError as e:\n"
        "        print(p + '\\t' + str(e).replace(chr(10), ' '))\n"
        "sys.stdout.flush()\n"
        "os._exit(0)\n"
    )
    env = {"LD_LIBRARY_PATH": str(library_path), "PATH": "/usr/bin:/bin"}
    errors: dict[Path, str] = {}
    for i in range(0, len(paths), 200):
        chunk = paths[i : i + 200]
        res = subprocess.run(
            [sys.executable, "-c", script, *map(str, chunk)], capture_output=True, text=True, env=env
        )
        if res.returncode != 0:  # a crash: check one by one
            for p in chunk:
                one = subprocess.run(
                    [sys.executable, "-c", script, str(p)], capture_output=True, text=True, env=env
                )
                if one.returncode != 0 or one.stdout.strip():
                    errors[p] = (one.stdout + one.stderr).strip()[-300:] or f"exit {one.returncode}"
            continue
        for line in res.stdout.splitlines():
            p, _, err = line.partition("\t")
            errors[Path(p)] = err
    return errors


def strip_unedited(internal: Path) -> Saving:
    """Cut 1: strip libraries outside ``*.libs`` with no ``$ORIGIN`` RPATH/RUNPATH; restore any that fail to load."""
    saving = Saving("strip symbols of unedited libraries")
    stripped: list[Path] = []
    backup = Path(tempfile.mkdtemp(prefix="cxr-strip-"))
    try:
        for path in elf_files(internal):
            # Shared objects only: the app's executable carries PyInstaller's archive after the ELF image.
            if not re.search(r"\.so(\.|$)", path.name):
                continue
            if any(part.endswith(".libs") for part in path.relative_to(internal).parts):
                continue
            # auditwheel/patchelf point RPATH at "$ORIGIN/..."; an absolute RUNPATH (the interpreter's, from
            # pyenv) comes from the original link and is no edit.
            tags = dynamic_tags(path)
            if any("$ORIGIN" in entry for entry in tags["RPATH"] + tags["RUNPATH"]):
                continue
            before = path.stat().st_size
            saved = backup / str(len(stripped))
            shutil.copy2(path, saved)
            if subprocess.run(["strip", "--strip-unneeded", str(path)], capture_output=True).returncode != 0:
                shutil.copy2(saved, path)
                continue
            if path.stat().st_size >= before:  # nothing to strip: keep the file as it was
                shutil.copy2(saved, path)
                continue
            saving.before += before
            saving.after += path.stat().st_size
            stripped.append(path)
        failed = loads(stripped, internal)
        for i, path in enumerate(stripped):
            if path in failed:
                saving.after += (backup / str(i)).stat().st_size - path.stat().st_size
                shutil.copy2(backup / str(i), path)
                saving.notes.append(f"kept unstripped, {path.name}: {failed[path]}")
    finally:
        shutil.rmtree(backup, ignore_errors=True)
    saving.notes.insert(0, f"{len(stripped)} files")
    return saving


# --- ICU -----------------------------------------------------------------------------------------------------


@dataclass
class IcuPackage:
    """An ICU common data package (``icudtNNl.dat`` layout): header bytes and (name, data) items in order."""

    header: bytes
    items: list[tuple[str, bytes]]

    @classmethod
    def parse(cls, blob: bytes) -> IcuPackage:
        header_size = struct.unpack_from("<H", blob, 0)[0]
        if blob[2:4] != b"\xda\x27":
            raise ValueError("not an ICU data package (bad magic)")
        toc = blob[header_size:]
        count = struct.unpack_from("<I", toc, 0)[0]
        entries = [struct.unpack_from("<II", toc, 4 + 8 * i) for i in range(count)]
        items = []
        for i, (name_off, data_off) in enumerate(entries):
            name = toc[name_off : toc.index(b"\0", name_off)].decode("ascii")
            end = entries[i + 1][1] if i + 1 < count else len(toc)
            items.append((name, toc[data_off:end]))
        return cls(blob[:header_size], items)

    def to_bytes(self) -> bytes:
        """The package with the same header and the items, names sorted, each item 16-byte aligned."""
        items = sorted(self.items, key=lambda it: it[0].encode("ascii"))
        names = b""
        name_offsets = []
        table_size = 4 + 8 * len(items)
        for name, _ in items:
            name_offsets.append(table_size + len(names))
            names += name.encode("ascii") + b"\0"
        pos = _align(table_size + len(names))
        body = b""
        data_offsets = []
        for _, data in items:
            data_offsets.append(pos + len(body))
            body += data + b"\0" * (_align(len(data)) - len(data))
        toc = struct.pack("<I", len(items))
        toc += b"".join(struct.pack("<II", n, d) for n, d in zip(name_offsets, data_offsets, strict=True))
        toc += names + b"\0" * (pos - table_size - len(names))
        return self.header + toc + body


def _align(n: int, to: int = 16) -> int:
    return (n + to - 1) // to * to


def icu_item_dropped(name: str) -> bool:
    """True for the ICU data items the viewer's Qt never needs (see the module docstring)."""
    rel = name.split("/", 1)[1] if "/" in name else name
    return rel.startswith(ICU_DROP_DIRS) or rel.endswith(ICU_DROP_SUFFIXES) or rel in ICU_DROP_ITEMS


def _symbol(lib: Path, pattern: str) -> tuple[str, int, int]:
    """(name, value, size) of the one defined dynamic symbol matching ``pattern``."""
    for line in _run(["readelf", "--dyn-syms", "-W", str(lib)]).splitlines():
        f = line.split()
        if len(f) >= 8 and f[6] != "UND" and re.fullmatch(pattern, f[7]):
            return f[7], int(f[1], 16), int(f[2], 0)
    raise ValueError(f"{lib.name}: no symbol matching {pattern}")


def _file_offset(lib: Path, vaddr: int) -> int:
    """File offset of virtual address ``vaddr`` (from the section headers)."""
    for line in _run(["readelf", "-S", "-W", str(lib)]).splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if m and m.group(2) != "NOBITS":
            addr, off, size = (int(m.group(i), 16) for i in (3, 4, 5))
            if addr <= vaddr < addr + size:
                return off + vaddr - addr
    raise ValueError(f"{lib.name}: address {vaddr:#x} is in no section")


def build_data_library(out: Path, soname: str, symbol: str, data: bytes, workdir: Path) -> None:
    """A shared library ``out`` (soname ``soname``) exporting ``data`` as the 16-byte aligned object ``symbol``."""
    blob = workdir / "data.bin"
    blob.write_bytes(data)
    asm = workdir / "data.S"
    asm.write_text(
        f"\t.section .rodata\n\t.globl {symbol}\n\t.type {symbol}, @object\n\t.balign 16\n{symbol}:\n"
        f'\t.incbin "{blob}"\n\t.size {symbol}, . - {symbol}\n\t.section .note.GNU-stack,"",@progbits\n'
    )
    _run(["cc", "-shared", "-nostdlib", f"-Wl,-soname,{soname}", "-o", str(out), str(asm)])


#: Run in a fresh interpreter with the folder holding libicuuc/libicui18n/libicudata: exit 0 when ICU works
#: for what Qt asks of it, printing the results.
ICU_CHECK = r"""
import ctypes, sys
d, v = sys.argv[1], sys.argv[2]
uc = ctypes.CDLL(f"{d}/libicuuc.so.{v}")
i18n = ctypes.CDLL(f"{d}/libicui18n.so.{v}")
def fn(lib, name, res=ctypes.c_int):
    f = getattr(lib, f"{name}_{v}")
    f.restype = res
    return f
def u16(text):
    return ctypes.create_string_buffer(text.encode("utf-16-le") + b"\0\0")
out, st, buf = {}, ctypes.c_int(0), ctypes.create_string_buffer(128)
coll = fn(i18n, "ucol_open", ctypes.c_void_p)(b"sv", ctypes.byref(st))
# Swedish sorts o-umlaut after z; the root collation sorts it before.
strcoll = fn(i18n, "ucol_strcoll")
out["collation"] = (st.value, strcoll(ctypes.c_void_p(coll), u16("\u00f6"), -1, u16("z"), -1) if coll else None)
st = ctypes.c_int(0)
n = fn(uc, "u_strToUpper")(buf, 64, u16("istanbul"), -1, b"tr", ctypes.byref(st))
out["upper"] = (st.value, buf.raw[: 2 * n].decode("utf-16-le"))
for name in (b"UTF-8", b"ISO-8859-1"):
    st = ctypes.c_int(0)
    fn(uc, "ucnv_open", ctypes.c_void_p)(name, ctypes.byref(st))
    out[name.decode()] = st.value
st = ctypes.c_int(0)
n = fn(i18n, "ucal_getCanonicalTimeZoneID")(u16("Europe/Berlin"), -1, buf, 64, None, ctypes.byref(st))
out["zone"] = (st.value, buf.raw[: 2 * n].decode("utf-16-le"))
print(out)
ok = out == {"collation": (0, 1), "upper": (0, "\u0130STANBUL"), "UTF-8": 0, "ISO-8859-1": 0,
             "zone": (0, "Europe/Berlin")}
sys.exit(0 if ok else 1)
"""


def check_icu(libdir: Path, version: str) -> str | None:
    """None when the ICU libraries in ``libdir`` pass :data:`ICU_CHECK`, else what went wrong."""
    res = subprocess.run(
        [sys.executable, "-c", ICU_CHECK, str(libdir), version], capture_output=True, text=True, timeout=60
    )
    return (
        None if res.returncode == 0 else (res.stdout + res.stderr).strip()[-500:] or f"exit {res.returncode}"
    )


def trim_icu(internal: Path) -> Saving:
    """Cut 2: rebuild ``libicudata`` without the items of :func:`icu_item_dropped`."""
    saving = Saving("ICU data")
    libs = sorted(internal.glob("PySide6/Qt/lib/libicudata.so.*"))
    if not libs:
        saving.notes.append("no libicudata in the bundle")
        return saving
    lib = libs[0]
    name, vaddr, size = _symbol(lib, r"icudt\d+_dat")
    offset = _file_offset(lib, vaddr)
    blob = lib.read_bytes()[offset : offset + size]
    package = IcuPackage.parse(blob)
    kept = [it for it in package.items if not icu_item_dropped(it[0])]
    trimmed = IcuPackage(package.header, kept).to_bytes()
    if IcuPackage.parse(trimmed).items != sorted(kept, key=lambda it: it[0].encode("ascii")):
        raise RuntimeError("the trimmed ICU package does not read back")
    soname = dynamic_tags(lib)["SONAME"][0]
    version = soname.rsplit(".", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="cxr-icu-") as tmp:
        new = Path(tmp) / soname
        build_data_library(new, soname, name, trimmed, Path(tmp))
        original = Path(tmp) / "original"
        shutil.copy2(lib, original)
        saving.before = lib.stat().st_size
        shutil.copy2(new, lib)
        problem = check_icu(lib.parent, version)
        if problem:
            shutil.copy2(original, lib)
            saving.notes.append(f"trimmed data failed the ICU check, original kept: {problem}")
    saving.after = lib.stat().st_size
    saving.notes.append(f"{len(kept)} of {len(package.items)} items kept")
    return saving


# --- OpenCV's unused libraries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DynSymbol:
    name: str
    version: str  # "" when unversioned
    kind: str  # FUNC, OBJECT, ...
    size: int


def defined_symbols(lib: Path) -> dict[str, DynSymbol]:
    """The global symbols ``lib`` defines, by plain name (default version)."""
    out: dict[str, DynSymbol] = {}
    for line in _run(["readelf", "--dyn-syms", "-W", str(lib)]).splitlines():
        f = line.split()
        if len(f) < 8 or f[6] in ("UND", "ABS") or f[4] not in ("GLOBAL", "WEAK"):
            continue
        raw = f[7]
        name, _, version = raw.partition("@@") if "@@" in raw else (raw.partition("@")[0], "", "")
        if "@" in raw and "@@" not in raw:  # a non-default (old) version: never what a new link binds to
            continue
        out[name] = DynSymbol(name, version, f[3], int(f[2], 0))
    return out


def undefined_symbols(path: Path) -> set[str]:
    """Plain names of the dynamic symbols ``path`` needs from elsewhere."""
    names = set()
    for line in _run(["readelf", "--dyn-syms", "-W", str(path)]).splitlines():
        f = line.split()
        if len(f) >= 8 and f[6] == "UND" and f[7]:
            names.add(f[7].split("@")[0])
    return names


def resolve_needed(path: Path, need: str, tags: dict[str, list[str]], internal: Path) -> Path | None:
    """Where the loader finds ``need`` for ``path``: its RPATH/RUNPATH folders, then the bundle's top folder
    (several wheels ship libraries of the same name in their own ``*.libs`` folders)."""
    dirs = []
    for entry in tags["RPATH"] + tags["RUNPATH"]:
        dirs += [Path(d.replace("$ORIGIN", str(path.parent))) for d in entry.split(":") if d]
    for d in [*dirs, internal]:
        if (d / need).exists():
            return (d / need).resolve()
    return None


def build_stub_library(
    out: Path, soname: str, lib_label: str, symbols: list[DynSymbol], workdir: Path
) -> None:
    """A library exporting ``symbols`` (same versions): functions abort with a message, objects are zeroed."""
    lines = [
        "#include <stdio.h>",
        "#include <stdlib.h>",
        "static void cxr_left_out(const char *name) {",
        f'    fprintf(stderr, "cxrviewer: %s() of {lib_label} was called, but this build left {lib_label} out'
        ' (see docs/packaging.md)\\n", name);',
        "    abort();",
        "}",
    ]
    for s in symbols:
        if s.kind == "OBJECT" or s.kind == "TLS":
            lines.append(f"char {s.name}[{max(s.size, 1)}] __attribute__((aligned(16)));")
        else:
            lines.append(f'void {s.name}(void) {{ cxr_left_out("{s.name}"); }}')
    src = workdir / "stub.c"
    src.write_text("\n".join(lines) + "\n")
    cmd = ["cc", "-shared", "-fPIC", "-O1", "-fno-builtin", f"-Wl,-soname,{soname}", "-o", str(out), str(src)]
    versions: dict[str, list[str]] = {}
    for s in symbols:
        versions.setdefault(s.version, []).append(s.name)
    if any(versions):
        script = workdir / "stub.map"
        nodes = []
        for version, names in versions.items():
            body = " ".join(f"{n};" for n in names)
            nodes.append(f"{version or 'CXR_UNVERSIONED'} {{ global: {body} }};")
        nodes.append("CXR_LOCAL { local: *; };")
        script.write_text("\n".join(nodes) + "\n")
        cmd.append(f"-Wl,--version-script={script}")
    _run(cmd)


def replace_unused_opencv_libs(internal: Path) -> Saving:
    """Cut 3: stand-ins for OpenCV's FFmpeg/OpenBLAS libraries; libraries only they needed are deleted."""
    saving = Saving("OpenCV's FFmpeg and OpenBLAS")
    libdir = internal / OPENCV_LIBS_DIR
    removed = (
        sorted(p for p in libdir.glob("*") if p.name.startswith(OPENCV_UNUSED)) if libdir.is_dir() else []
    )
    if not removed:
        saving.notes.append("no such libraries in the bundle")
        return saving
    removed_names = {p.name for p in removed}
    kept_elves = [p for p in elf_files(internal) if p.name not in removed_names or p.parent != libdir]
    needed_by: dict[str, list[Path]] = {}
    for p in kept_elves:
        tags = dynamic_tags(p)
        for need in tags["NEEDED"]:
            if need in removed_names and resolve_needed(p, need, tags, internal) == (libdir / need).resolve():
                needed_by.setdefault(need, []).append(p)
    with tempfile.TemporaryDirectory(prefix="cxr-stub-") as tmp:
        for lib in removed:
            saving.before += lib.stat().st_size
            consumers = needed_by.get(lib.name)
            if not consumers:
                lib.unlink()
                continue
            wanted = set().union(*(undefined_symbols(c) for c in consumers))
            symbols = [s for n, s in sorted(defined_symbols(lib).items()) if n in wanted]
            label = lib.name.split("-")[0]
            work = Path(tmp) / lib.name
            work.mkdir()
            new = work / lib.name
            build_stub_library(new, dynamic_tags(lib)["SONAME"][0], label, symbols, work)
            shutil.copy2(new, lib)
            saving.after += lib.stat().st_size
            saving.notes.append(f"{label}: {len(symbols)} symbols")
    consumers = sorted({c for cs in needed_by.values() for c in cs})
    failed = loads(consumers, internal)
    if failed:
        raise RuntimeError(f"after replacing OpenCV's libraries these no longer load: {failed}")
    return saving


def compact_highdicom_tables(internal: Path) -> Saving:
    """Cut 4: highdicom's JSON tables without indentation (``json.load`` reads the same objects)."""
    saving = Saving("highdicom tables as compact JSON")
    for path in sorted(internal.glob("highdicom/_standard/*.json")):
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
        compact = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if json.loads(compact) != data:
            raise RuntimeError(f"{path.name}: compact JSON differs")
        saving.before += len(text.encode("utf-8"))
        path.write_text(compact, encoding="utf-8")
        saving.after += path.stat().st_size
    return saving


#: The cuts by name, in the order they are applied.
CUTS = {
    "opencv": replace_unused_opencv_libs,
    "icu": trim_icu,
    "strip": strip_unedited,
    "highdicom": compact_highdicom_tables,
}


def slim(app_dir: Path, cuts: list[str] | None = None) -> list[Saving]:
    """Apply the cuts (default: all of :data:`CUTS`) to a built one-folder app (``dist/cxrviewer``) and return
    what each saved."""
    internal = app_dir / "_internal"
    if not internal.is_dir():
        raise FileNotFoundError(f"{internal} does not exist: build the app first")
    return [CUTS[name](internal) for name in (cuts or list(CUTS))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app_dir", type=Path, help="the built app folder, e.g. dist/cxrviewer")
    parser.add_argument(
        "--only", choices=list(CUTS), action="append", help="apply only this cut (repeatable)"
    )
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("slim: Linux only; nothing done")
        return 0
    for saving in slim(args.app_dir, args.only):
        print(saving.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
