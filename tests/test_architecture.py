"""Import boundaries (import-linter contracts in pyproject.toml) and lazy heavy imports."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_import_linter_contracts_hold():
    """core imports no Qt/torch; only ui imports Qt; the trainer never imports ui."""
    lint = REPO_ROOT / ".venv" / "bin" / "lint-imports"
    cmd = [str(lint)] if lint.exists() else [sys.executable, "-m", "importlinter.cli"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: " in proc.stdout and " broken" in proc.stdout


def _modules_after_import(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(out.stdout.split())


def test_importing_cxrviewer_loads_no_heavy_libraries():
    mods = _modules_after_import("import cxrviewer, cxrviewer.core, cxrviewer.ml, cxrviewer.ml.manifest")
    for heavy in ("torch", "onnxruntime", "PySide6", "pyqtgraph"):
        assert heavy not in mods, f"importing cxrviewer pulled in {heavy}"
