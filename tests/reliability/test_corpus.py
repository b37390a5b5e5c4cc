"""The loader against ≥ 300 malformed and edge-case inputs: each loads or raises LoadError, within bounds.

Bounds (see :mod:`tests.reliability.corpus_runner`): ≤ 5 s CPU and ≤ 1 GiB RSS growth per file, no hang
(20 s wall clock), no crash, under a 2 GiB address-space cap. The corpus, its files and its folders must be
unchanged afterwards (nothing written, nothing extracted by a path-traversal member name).

``KNOWN_LOADER_BUGS`` lists the failures reported to the loader's owner (issue 12); they are printed in the
summary but do not fail the suite, and the test says when one of them starts to pass so it can be removed.
Any other failure fails the test.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.reliability.build_corpus import build_corpus, counts_by_category
from tests.reliability.corpus_runner import run_corpus, summary

CORPUS_CACHE = REPO_ROOT / ".cache" / "reliability-corpus"

#: Corpus file (path suffix) → the loader bug it shows. Reported to the loader's owner; remove when fixed.
KNOWN_LOADER_BUGS: dict[str, str] = {}


#: ZIP cases whose study tree must list exactly this many images (traversal names and bombs left out).
EXPECTED_IMAGES = {
    "zip/valid.zip": 2,
    "zip/zip_traversal.zip": 1,
    "zip/zip_bomb_1100mb.zip": 1,
    "zip/zip_ratio_bomb_300mb.zip": 1,
    "zip/zip_bomb_many_members.zip": 0,
}


def _state(roots: list[Path]) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file and folder under ``roots``."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                out[p] = (st.st_size, st.st_mtime_ns)
    return out


def _known(path: str) -> str | None:
    return next((why for suffix, why in KNOWN_LOADER_BUGS.items() if path.endswith(suffix)), None)


@pytest.mark.skipif(sys.platform != "linux", reason="the bounds are measured through /proc and RLIMIT_AS")
def test_corpus_loads_or_refuses_within_bounds(capsys):
    cases = build_corpus(CORPUS_CACHE)
    assert len(cases) >= 300, counts_by_category(cases)
    package_roots = sorted({Path(c.path).parent for c in cases if CORPUS_CACHE not in Path(c.path).parents})
    watched = [CORPUS_CACHE, *package_roots]
    before = _state(watched)

    outcomes = run_corpus(cases)

    assert len(outcomes) == len(cases)
    problems = {o.path: o.problems() for o in outcomes if o.problems()}
    known = {p: v for p, v in problems.items() if _known(p)}
    unknown = {p: v for p, v in problems.items() if not _known(p)}
    fixed = [s for s in KNOWN_LOADER_BUGS if not any(p.endswith(s) for p in problems)]
    with capsys.disabled():
        print(f"\n\nloader corpus: {len(cases)} files\n{summary(outcomes)}")
        for path, issues in known.items():
            print(f"  known loader bug: {Path(path).name}: {'; '.join(issues)}")
        for suffix in fixed:
            print(f"  KNOWN_LOADER_BUGS entry now passes, remove it: {suffix}")
    listed = {s: o.images for o in outcomes for s in EXPECTED_IMAGES if o.path.endswith(s)}
    assert listed == EXPECTED_IMAGES, f"images listed by load_studies: {listed}"
    assert _state(watched) == before, "the loader modified, created or deleted files in the corpus"
    escaped = [
        p
        for d in (REPO_ROOT, Path.cwd(), Path("/"))
        for p in d.iterdir()
        if p.name.startswith(("escape", "C:"))
    ]
    assert not escaped and not Path("/abs").exists(), f"a ZIP member was extracted: {escaped}"
    assert not unknown, "\n".join(f"{Path(p).name}: {'; '.join(v)}" for p, v in unknown.items())
