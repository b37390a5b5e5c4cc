"""Frozen app start-to-result benchmark: the PyInstaller build in ``dist/cxrviewer`` against the development
venv running the same command, measured in the same run.

Every run is a fresh process in a clean environment (``env -i``, system PATH only, a throw-away HOME, the
current directory outside the repository), timed by the parent from just before the spawn to the process
exit, so the figure includes start-up, imports, model loading and the result. Variants:

- ``analyze``: ``cxrviewer analyze resources/samples/sample_pa.dcm --json`` (classifier + input gate + lung
  U-Net on one DICOM) — frozen, and the venv's ``python -m cxrviewer`` as the baseline;
- ``self-test``: ``cxrviewer --self-test --require-no-torch`` (every shipped model verified, loaded and run on
  the three samples, exports written) — frozen, and the venv as the baseline.

The first run of each variant gets a fresh HOME (a first start after installation: matplotlib builds its font
cache); the ``--repeats`` runs after it reuse that HOME. Medians and minima are printed with the ratio
frozen / venv. Build the app first (``bash packaging/build.sh``).

    .venv/bin/python benchmarks/bench_frozen_app.py [--repeats 5] [--app dist/cxrviewer/cxrviewer]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "resources" / "samples" / "sample_pa.dcm"


def timed_run(cmd: list[str], home: Path, extra_env: dict[str, str] | None = None) -> tuple[float, str]:
    """Seconds from spawn to exit of ``cmd`` in a clean environment, and its standard output."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **(extra_env or {})}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True, timeout=600)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return secs, proc.stdout


def measure(name: str, cmd: list[str], repeats: int, check) -> dict:
    """First run with a fresh HOME, then ``repeats`` runs with the same HOME; ``check(stdout)`` validates.
    The row keeps the last run's output (``out``)."""
    with tempfile.TemporaryDirectory(prefix="cxr-bench-home-") as tmp:
        home = Path(tmp)
        first, out = timed_run(cmd, home)
        check(out)
        warm = []
        for _ in range(repeats):
            secs, out = timed_run(cmd, home)
            check(out)
            warm.append(secs)
    row = {
        "variant": name,
        "first_s": first,
        "median_s": statistics.median(warm),
        "min_s": min(warm),
        "out": out,
    }
    print(f"{name:<28} first {first:6.2f} s   median {row['median_s']:6.2f} s   min {row['min_s']:6.2f} s")
    return row


def _check_analyze(out: str) -> None:
    rows = json.loads(out)
    if not rows or rows[0].get("status") != "ok":
        raise RuntimeError(f"analyze did not produce a result: {out[:500]}")


def _check_self_test(out: str) -> None:
    report = json.loads(out)
    if not report.get("ok") or report.get("torch_imported"):
        raise RuntimeError(f"self-test failed or imported torch: {report.get('failures')}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="warm runs per variant (default 5)")
    p.add_argument("--app", type=Path, default=REPO / "dist" / "cxrviewer" / "cxrviewer")
    p.add_argument("--python", type=Path, default=REPO / ".venv" / "bin" / "python")
    args = p.parse_args(argv)
    if not args.app.is_file():
        print(f"no frozen app at {args.app}: run bash packaging/build.sh first", file=sys.stderr)
        return 2
    venv = [str(args.python), "-m", "cxrviewer"]
    print(f"frozen app: {args.app}; baseline: {args.python} -m cxrviewer; {args.repeats} warm runs each")
    rows = []
    for label, cmd_tail, check in (
        ("analyze", ["analyze", str(SAMPLE), "--json"], _check_analyze),
        ("self-test", ["--self-test", "--require-no-torch"], _check_self_test),
    ):
        frozen = measure(f"{label} (frozen)", [str(args.app), *cmd_tail], args.repeats, check)
        base = measure(f"{label} (venv)", [*venv, *cmd_tail], args.repeats, check)
        ratio = frozen["median_s"] / base["median_s"]
        print(f"{label:<28} frozen / venv (median): {ratio:.2f}x")
        if label == "analyze":  # the frozen app must give the venv's answer
            pf, pv = (json.loads(r["out"])[0]["probabilities"] for r in (frozen, base))
            diff = max(abs(pf[k] - pv[k]) for k in pv) if pf.keys() == pv.keys() else float("inf")
            print(f"{'analyze':<28} probabilities frozen vs venv: max |difference| {diff:.2e} {pf}")
        rows += [frozen, base]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
