"""A 30-second smoke run of the atheris loader fuzzer (slow: run with ``pytest -m slow``).

It runs with ``--without-gdcm``: with python-gdcm installed the fuzzer finds the known GDCM abort
(``tests/reliability/crashes/gdcm_jpeg_baseline_abort.dcm``, a known loader bug in the corpus test) within
seconds and stops there; without it the run looks for anything else.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

FUZZ_SECONDS = 30


@pytest.mark.slow
def test_fuzz_loader_smoke(tmp_path):
    pytest.importorskip("atheris")
    seeds = tmp_path / "corpus"
    run = subprocess.run(
        [sys.executable, "fuzz/fuzz_loader.py", "--without-gdcm", "--seeds", str(seeds), f"-max_total_time={FUZZ_SECONDS}",
         "-rss_limit_mb=2048", "-timeout=10", f"-artifact_prefix={tmp_path}/"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=FUZZ_SECONDS + 240,
    )  # fmt: skip
    log = run.stdout + run.stderr
    print(log[-3000:])
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
    assert run.returncode == 0 and not crashes, f"fuzzer finding(s) {crashes}:\n{log[-3000:]}"
    assert "Done" in log and "cov:" in log
