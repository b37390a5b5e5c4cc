"""Coverage-guided fuzzing of ``cxrviewer.core.load_image`` with atheris (libFuzzer).

Each input is written to a file in a RAM-backed folder and loaded; the loader must return an image or raise
``LoadError``. Any other exception is a finding (atheris prints it and writes ``crash-<sha1>``); so is an
input that exceeds ``-rss_limit_mb`` or ``-timeout``. Run (see fuzz/README.md)::

    .venv/bin/python fuzz/fuzz_loader.py fuzz/corpus -max_total_time=600 -rss_limit_mb=2048 -timeout=10

With ``--seeds DIR`` the small files of the reliability corpus are copied into DIR first (and it is used as
the corpus folder).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: Largest seed copied from the reliability corpus (libFuzzer works best with small inputs).
MAX_SEED_BYTES = 64 * 1024


def seed_corpus(target: Path) -> int:
    """Copy the reliability corpus's small files (real DICOMs, generated edge cases) into ``target``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.reliability.build_corpus import build_corpus

    cases = build_corpus(Path(__file__).resolve().parents[1] / ".cache" / "reliability-corpus")
    target.mkdir(parents=True, exist_ok=True)
    n = 0
    for i, case in enumerate(cases):
        p = Path(case.path)
        if case.category == "fuzz-crashes" or case.entry != "load_image" or not p.is_file():
            continue
        if 0 < p.stat().st_size <= MAX_SEED_BYTES:
            shutil.copyfile(p, target / f"{i:04d}_{p.name}")
            n += 1
    return n


def drop_gdcm_decoders() -> int:
    """Remove python-gdcm from pydicom's decoders (``--without-gdcm``): it aborts the process on some
    corrupt JPEGs (``tests/reliability/crashes/``), which otherwise stops every run within seconds."""
    import pydicom.pixels.decoders as decoders

    n = 0
    for name in dir(decoders):
        decoder = getattr(decoders, name)
        if name.endswith("Decoder") and "gdcm" in getattr(decoder, "available_plugins", ()):
            decoder.remove_plugin("gdcm")
            n += 1
    return n


def main(argv: list[str]) -> None:
    """Start atheris on ``load_image`` with libFuzzer arguments ``argv`` (plus ``--seeds DIR`` and
    ``--without-gdcm``)."""
    without_gdcm = "--without-gdcm" in argv
    argv = [a for a in argv if a != "--without-gdcm"]
    if "--seeds" in argv:
        i = argv.index("--seeds")
        folder = Path(argv[i + 1])
        # in a child process, so that pydicom is first imported below, under instrumentation
        subprocess.run([sys.executable, __file__, "--only-seeds", str(folder)], check=True)
        argv = [*argv[:i], *argv[i + 2 :], str(folder)]
    import warnings

    import atheris

    with atheris.instrument_imports(include=["cxrviewer", "pydicom"]):
        import pydicom  # noqa: F401
        import pydicom.pixels  # noqa: F401

        import cxrviewer.core  # noqa: F401
    from cxrviewer.core import LoadError, load_image

    if without_gdcm:
        drop_gdcm_decoders()

    warnings.simplefilter("ignore")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = Path(tempfile.mkdtemp(prefix="cxr-fuzz-", dir=shm))
    path = work / "input"

    def one_input(data: bytes) -> None:
        path.write_bytes(data)
        try:
            image = load_image(path)
        except LoadError:
            return
        image.display()

    atexit.register(shutil.rmtree, work, True)  # libFuzzer ends the process itself
    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--only-seeds"]:
        print(f"{seed_corpus(Path(sys.argv[2]))} seed files in {sys.argv[2]}", flush=True)
    else:
        main(sys.argv[1:])
