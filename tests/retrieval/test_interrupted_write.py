"""A writer killed with SIGKILL at any moment leaves a readable library with no partial case.

Child processes add and remove cases (or re-embed the library) in a loop and report each commit on stdout;
the test kills them at random moments, then checks the file: SQLite integrity, every case complete (PNG
thumbnail that decodes, unit-norm embedding of the library's dimension, one model id), and the set of cases
equal to the acknowledged commits give or take the one operation in flight.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrviewer.services.case_library import CaseLibrary
from tests.conftest import REPO_ROOT

DIM = 64
CHILD = r"""
import sys
import cv2
import numpy as np
from cxrviewer.services.case_library import CaseLibrary

path, seed, durable, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
rng = np.random.default_rng(seed)
lib = CaseLibrary.open(path, create=True, name="soak", model_id="m1", durable=durable)
print("ready", flush=True)
if mode == "write":
    n = 0
    while True:
        # 256 px noise: ~65 kB of PNG, so one insert spans many pages and takes a while to write.
        png = cv2.imencode(".png", (rng.random((256, 256)) * 255).astype(np.uint8))[1].tobytes()
        cid = lib.add_case(png, rng.normal(size=@DIM@), "covid", model_id="m1", licence="CC BY 4.0")
        print(f"+{cid}", flush=True)
        n += 1
        if n % 3 == 0:
            oldest = lib.cases()[0].id
            lib.remove_case(oldest)
            print(f"-{oldest}", flush=True)
else:
    import time

    def fn(cases):
        print("batch", flush=True)
        time.sleep(0.01)  # a slow model: the kill lands inside the re-embedding transaction
        return rng.normal(size=(len(cases), 32))

    lib.reembed(mode.split(":")[1], fn, batch_size=2)
    print("done", flush=True)
""".replace("@DIM@", str(DIM))


def _start(path: Path, seed: int, durable: bool, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(seed), "1" if durable else "0", mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    first = proc.stdout.readline().strip()
    if first != "ready":
        proc.kill()
        raise AssertionError(f"writer did not start: {first!r} {proc.stderr.read()}")
    return proc


def _kill_after(proc: subprocess.Popen, lines: int, delay_s: float) -> list[str]:
    """Read ``lines`` acknowledgements, wait ``delay_s``, SIGKILL, then collect what was acknowledged."""
    seen = [proc.stdout.readline().strip() for _ in range(lines)]
    time.sleep(delay_s)
    os.kill(proc.pid, signal.SIGKILL)
    seen += [line.strip() for line in proc.stdout]
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return [s for s in seen if s]


def _check_complete(path: Path, model: str, dim: int) -> set[int]:
    """Open as the app would and check every case is whole; returns the ids present."""
    with CaseLibrary.open(path) as lib:
        assert lib.integrity_check() == "ok"
        info = lib.info
        assert (info.model_id, info.embedding_dim) == (model, dim)
        cases = lib.cases(full=True)
        for c in cases:
            assert c.model_id == model
            assert c.embedding.shape == (dim,)
            assert abs(float(np.linalg.norm(c.embedding)) - 1.0) < 1e-5
            thumb = cv2.imdecode(np.frombuffer(c.thumbnail, np.uint8), cv2.IMREAD_UNCHANGED)
            assert thumb is not None and thumb.shape == (256, 256)
        assert len(lib) == len(cases)
        if cases:
            assert len(lib.query(np.ones(dim), k=4, model_id=model)) == min(4, len(cases))
    con = sqlite3.connect(path)
    incomplete = con.execute(
        "SELECT count(*) FROM cases WHERE thumbnail IS NULL OR embedding IS NULL OR length(embedding) != ?",
        (4 * dim,),
    ).fetchone()[0]
    con.close()
    assert incomplete == 0
    return {c.id for c in cases}


def _soak_writes(path: Path, rounds: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    present: set[int] = set()
    max_id = 0
    for r in range(rounds):
        proc = _start(path, seed * 1000 + r, durable=bool(r % 2 == 0), mode="write")
        acks = _kill_after(proc, int(rng.integers(1, 6)), float(rng.uniform(0.0, 0.03)))
        for ack in acks:
            cid = int(ack[1:])
            if ack[0] == "+":
                present.add(cid)
                max_id = max(max_id, cid)
            else:
                present.discard(cid)
        actual = _check_complete(path, "m1", DIM)
        # At most the one operation in flight at the kill may have committed without being acknowledged.
        in_flight_add = present | {max_id + 1}
        in_flight_remove = present - {min(present)} if present else present
        assert actual in (present, in_flight_add, in_flight_remove), (r, sorted(present), sorted(actual))
        present = actual
        max_id = max([max_id, *actual])
    return len(present)


def _soak_reembed(path: Path, rounds: int, seed: int) -> int:
    """Kill re-embeddings (m1 → m2) part-way; returns how many rounds left the old model in place."""
    rng = np.random.default_rng(seed)
    n = len(_check_complete(path, "m1", DIM))
    untouched = 0
    for r in range(rounds):
        proc = _start(path, seed + r, durable=True, mode="reembed:m2")
        acks = _kill_after(proc, int(rng.integers(1, 4)), float(rng.uniform(0.0, 0.02)))
        with CaseLibrary.open(path) as lib:
            model = lib.info.model_id
        # All old or all new, never a mix: a killed re-embedding rolls back entirely.
        assert model in ("m1", "m2") and ("done" not in acks or model == "m2")
        assert len(_check_complete(path, model, DIM if model == "m1" else 32)) == n
        if model == "m2":
            return untouched  # it got to finish (a very slow parent); later rounds would test nothing
        untouched += 1
    return untouched


def _add_cases(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    png = cv2.imencode(".png", (rng.random((256, 256)) * 255).astype(np.uint8))[1].tobytes()
    with CaseLibrary.open(path) as lib:
        for _ in range(n):
            lib.add_case(png, rng.normal(size=DIM), "normal", model_id="m1")


def test_sigkill_mid_write_leaves_whole_cases(tmp_path):
    path = tmp_path / "soak.cxrlib"
    _soak_writes(path, rounds=10, seed=1)
    _add_cases(path, 20)  # enough batches that a kill lands inside the re-embedding
    n = len(_check_complete(path, "m1", DIM))
    assert _soak_reembed(path, rounds=3, seed=2) >= 1
    # A re-embedding that is allowed to finish switches every case at once.
    proc = _start(path, 99, durable=True, mode="reembed:m3")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.strip().endswith("done"), err
    assert len(_check_complete(path, "m3", 32)) == n


@pytest.mark.slow
def test_sigkill_soak_many_rounds(tmp_path):
    path = tmp_path / "soak.cxrlib"
    _soak_writes(path, rounds=120, seed=11)
    _add_cases(path, 40)
    assert _soak_reembed(path, rounds=30, seed=12) >= 25
