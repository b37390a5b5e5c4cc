"""The packaging smoke test (build the CPU app, run it from dist/ in a clean environment): slow, by hand."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_packaging_smoke_test_passes():
    """``bash packaging/smoke_test.sh``: build, size, self-test(s) without venv or network, window."""
    proc = subprocess.run(
        ["bash", str(REPO / "packaging" / "smoke_test.sh")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "packaging smoke test PASSED" in proc.stdout
