"""Running a benchmark variant in a fresh Python process (cold imports, its own Qt application) and reading
back the one ``RESULT {json}`` line it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def viewer_env() -> dict[str, str]:
    """The environment for a child that builds the window: the repository on ``PYTHONPATH`` and the offscreen
    Qt platform unless a display is there (or ``$QT_QPA_PLATFORM`` says otherwise)."""
    env = dict(os.environ)
    env.setdefault(
        "QT_QPA_PLATFORM", "offscreen" if not env.get("DISPLAY") else env.get("QT_QPA_PLATFORM", "")
    )
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_child(code: str, args: list[str], env: dict[str, str], label: str, timeout: int = 600) -> dict:
    """Run ``python -c code *args`` in the repository and return the JSON of its ``RESULT`` line.

    Raises:
        RuntimeError: the child printed no result (its exit status and output tail are in the message).
    """
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{label}: no result (exit {proc.returncode})\n{proc.stdout}\n{proc.stderr[-3000:]}")
