"""Feed corpus cases to the loader in a guarded worker process and judge the outcomes.

The parent (:func:`run_corpus`) starts ``python -m tests.reliability.corpus_runner`` on a list of cases; the
worker runs them one after another **in its own process** and writes one JSON line per case. The bounds:

- **Memory**: the worker's address space is capped (``RLIMIT_AS`` = its size after imports + 2 GiB), so no
  input can take the shared machine down; the per-file figure is the resident-set growth, measured exactly
  by resetting the kernel's peak-RSS mark before each file (``/proc/self/clear_refs`` ← 5, then ``VmHWM``).
  A file passes when it grows the RSS by at most :data:`MAX_RSS_GROWTH` (1 GiB) and did not hit the cap
  (a ``MemoryError`` turned into ``LoadError("not enough memory…")`` counts as a failure, not a refusal).
- **Time**: at most :data:`MAX_CPU_S` (5 s) of CPU time per file (CPU, not wall clock, so that the figure
  does not depend on how busy the shared 2-core machine is); a file still running after :data:`HANG_S` of
  wall-clock time is a hang: the worker is killed and restarted after that file.
- **Crashes**: a worker that dies (segfault in a C decoder, abort) is recorded against the file it was on
  and restarted after it.

A ``load_image`` case passes when it returns a :class:`~cxrviewer.core.CxrImage` whose pixels are a 2-D
float32 array of the header's size and whose default display renders, or raises ``LoadError`` with a
message. A ``load_studies`` case passes when it returns a tree (every listed image is then loaded the same
way) or raises ``LoadError``. Anything else is an *unexpected exception*.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.reliability.build_corpus import Case

MAX_CPU_S = 5.0
MAX_RSS_GROWTH = 1 << 30
ADDRESS_SPACE_HEADROOM = 2 << 30
HANG_S = 20.0
OUT_OF_MEMORY = "not enough memory"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    """What one case did: ``status`` is ``loaded``, ``refused``, ``unexpected``, ``hang`` or ``crash``."""

    index: int
    path: str
    category: str
    entry: str
    expect: str
    status: str
    detail: str = ""
    cpu_s: float = 0.0
    wall_s: float = 0.0
    rss_growth: int = 0
    images: int = 0

    def problems(self) -> list[str]:
        """Why this outcome breaks the contract or a bound (empty when it passes)."""
        out = []
        if self.status in ("unexpected", "hang", "crash"):
            out.append(f"{self.status}: {self.detail}")
        elif self.status == "refused" and OUT_OF_MEMORY in self.detail:
            out.append(f"hit the address-space cap: {self.detail}")
        elif self.expect == "load" and self.status != "loaded":
            out.append(f"expected to load, refused: {self.detail}")
        elif self.expect == "refuse" and self.status != "refused":
            out.append("expected LoadError, but it loaded")
        if self.cpu_s > MAX_CPU_S:
            out.append(f"took {self.cpu_s:.1f} s of CPU (limit {MAX_CPU_S:.0f} s)")
        if self.rss_growth > MAX_RSS_GROWTH:
            out.append(
                f"grew the RSS by {self.rss_growth / 2**20:.0f} MiB (limit {MAX_RSS_GROWTH >> 20} MiB)"
            )
        return out


# -- worker side ------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _check_image(image) -> None:
    import numpy as np

    pixels = image.pixels
    if not (isinstance(pixels, np.ndarray) and pixels.ndim == 2 and pixels.dtype == np.float32):
        raise AssertionError(f"pixels are {type(pixels).__name__} {getattr(pixels, 'shape', '')}")
    rows, cols = image.metadata.get("rows"), image.metadata.get("columns")
    if rows is not None and cols is not None and pixels.shape != (rows, cols):
        raise AssertionError(f"pixels {pixels.shape} but the header says {rows} × {cols}")
    shown = image.display()
    if shown.shape != pixels.shape or shown.dtype != np.uint8:
        raise AssertionError(f"display() gave {shown.dtype} {shown.shape}")


def _run_one(case: Case) -> tuple[str, str, int]:
    from cxrviewer.core import LoadError, load_image, load_studies

    try:
        if case.entry == "load_studies":
            tree = load_studies(case.path)
            refs = tree.images()
            loaded = 0
            for ref in refs:
                try:
                    _check_image(load_image(ref.source))
                    loaded += 1
                except LoadError:
                    pass
            return "loaded", f"{len(refs)} image(s), {loaded} loaded, {len(tree.skipped)} skipped", len(refs)
        _check_image(load_image(case.path))
        return "loaded", "", 1
    except LoadError as exc:
        if not str(exc).strip():
            return "unexpected", "LoadError without a message", 0
        return "refused", str(exc), 0
    except BaseException as exc:  # noqa: BLE001 - everything else is what this corpus looks for
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        return "unexpected", f"{type(exc).__name__}: {exc} | {''.join(tb[-3:]).strip()}", 0


def worker(cases_file: str, start: int, out_file: str) -> None:
    """Run ``cases[start:]``, appending a ``start`` line before and a result line after each case."""
    import gc
    import warnings

    import cxrviewer.core  # noqa: F401 - imports settle before the address-space cap is measured

    warnings.simplefilter("ignore")
    size = _status_kib("VmSize") * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + ADDRESS_SPACE_HEADROOM, resource.RLIM_INFINITY))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing decoder must not write a core dump
    cases = [Case(**c) for c in json.loads(Path(cases_file).read_text())]
    with open(out_file, "a", buffering=1) as out:
        for i in range(start, len(cases)):
            case = cases[i]
            out.write(json.dumps({"start": i}) + "\n")
            gc.collect()
            exact = _reset_peak_rss()
            rss0 = _status_kib("VmRSS")
            cpu0, wall0 = time.process_time(), time.perf_counter()
            status, detail, images = _run_one(case)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            peak = _status_kib("VmHWM") if exact else _status_kib("VmRSS")
            outcome = Outcome(i, case.path, case.category, case.entry, case.expect, status, detail[:600],
                              round(cpu, 3), round(wall, 3), max(0, peak - rss0) * 1024, images)  # fmt: skip
            out.write(json.dumps({"done": asdict(outcome)}) + "\n")


# -- parent side ------------------------------------------------------------------------------------------


def run_corpus(cases: list[Case], hang_s: float = HANG_S) -> list[Outcome]:
    """Run every case in guarded worker processes (restarted after a hang or a crash); one outcome each."""
    outcomes: dict[int, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="cxr-corpus-") as tmp:
        cases_file, out_file, err_file = (Path(tmp) / n for n in ("cases.json", "out.jsonl", "err.txt"))
        cases_file.write_text(json.dumps([asdict(c) for c in cases]))
        start = 0
        while start < len(cases):
            start = _one_worker(cases, start, cases_file, out_file, err_file, outcomes, hang_s)
    return [outcomes[i] for i in sorted(outcomes)]


def _one_worker(cases, start, cases_file, out_file, err_file, outcomes, hang_s) -> int:
    """Run a worker from ``start``; return where the next worker must start."""
    out_file.write_text("")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENCV_FOR_THREADS_NUM": "1"}
    with open(err_file, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.corpus_runner", str(cases_file), str(start), str(out_file)],
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=err, env=env,
        )  # fmt: skip
    current, since, seen = None, time.monotonic(), 0
    while True:
        finished = proc.poll() is not None
        lines = out_file.read_text().splitlines()
        for line in lines[seen:]:
            if not line.endswith("}"):
                break  # a line still being written
            msg = json.loads(line)
            seen += 1
            if "start" in msg:
                current, since = msg["start"], time.monotonic()
            else:
                outcome = Outcome(**msg["done"])
                outcomes[outcome.index] = outcome
                current = None
        if finished:
            break
        if current is not None and time.monotonic() - since > hang_s:
            proc.kill()
            proc.wait()
            outcomes[current] = _failed(cases, current, "hang", f"still running after {hang_s:.0f} s")
            return current + 1
        time.sleep(0.02)
    if current is not None:  # died inside a case
        tail = " | ".join(err_file.read_text().strip().splitlines()[-3:])[-300:]
        outcomes[current] = _failed(cases, current, "crash", f"worker exit status {proc.returncode}: {tail}")
        return current + 1
    if proc.returncode != 0 and len(outcomes) < len(cases):
        raise RuntimeError(f"corpus worker failed to start: {err_file.read_text()[-2000:]}")
    return len(cases)


def _failed(cases: list[Case], i: int, status: str, detail: str) -> Outcome:
    c = cases[i]
    return Outcome(i, c.path, c.category, c.entry, c.expect, status, detail)


def summary(outcomes: list[Outcome]) -> str:
    """A plain-text table: cases, loaded, refused and failures per category, and the worst time/memory."""
    cats: dict[str, list[Outcome]] = {}
    for o in outcomes:
        cats.setdefault(o.category, []).append(o)
    rows = [f"{'category':<20} {'files':>6} {'loaded':>7} {'refused':>8} {'failed':>7} {'max CPU s':>10} "
            f"{'max RSS+ MiB':>13}"]  # fmt: skip
    for name, group in [*sorted(cats.items()), ("TOTAL", outcomes)]:
        rows.append(
            f"{name:<20} {len(group):>6} {sum(o.status == 'loaded' for o in group):>7} "
            f"{sum(o.status == 'refused' for o in group):>8} {sum(bool(o.problems()) for o in group):>7} "
            f"{max((o.cpu_s for o in group), default=0):>10.2f} "
            f"{max((o.rss_growth for o in group), default=0) / 2**20:>13.0f}"
        )
    rows.append(
        f"CPU {sum(o.cpu_s for o in outcomes):.1f} s and wall clock {sum(o.wall_s for o in outcomes):.1f} s in "
        f"the loader over all files (worker start-ups and hang waits not included)"
    )
    return "\n".join(rows)


if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]), sys.argv[3])
