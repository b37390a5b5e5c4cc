"""Similar-case query latency (k = 4) at 1k, 10k and 100k cases, against naive baselines in the same run.

Synthetic 512-d embeddings and one synthetic thumbnail sized like a real one (real 128-px CXR thumbnails
average ~8.8 kB of PNG on the shared data) are written to a temporary case library. For each size it prints:

- build time (``add_cases`` in batches of 1,000, ``synchronous=NORMAL`` as build-index uses) and file size;
- the first query (loads the embedding matrix from SQLite) and warm queries through ``CaseLibrary.query``;
- raw :class:`~cxrviewer.ml.retrieval.KnnIndex` search;
- baselines: scikit-learn ``NearestNeighbors(metric="cosine", algorithm="brute")`` per query, and a naive
  per-row Python loop over the SQLite rows (decode each embedding, dot product, sort);

and the speed-up of the library query over each baseline. Results of all methods are checked to agree.
Goal: a warm library query ≤ 20 ms at 100k cases.

    .venv/bin/python benchmarks/bench_retrieval.py [--sizes 1000 10000 100000] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--queries", type=int, default=200, help="timed warm queries per size")
    p.add_argument("--loop-queries", type=int, default=3, help="queries for the slow per-row baseline")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (the machine is shared)")
    p.add_argument("--tmp", default=None, help="folder for the temporary libraries")
    return p.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:  # BLAS reads these when numpy is first imported
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import sqlite3  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from cxrviewer.ml.retrieval import KnnIndex, l2_normalise  # noqa: E402
from cxrviewer.services.case_library import CaseLibrary, NewCase, make_thumbnail  # noqa: E402

MODEL = "bench-model@1:000000000000"
LABELS = ("covid", "normal", "pneumonia")


def synthetic_thumbnail() -> bytes:
    """A 128 × 112 PNG with the size of a typical real CXR thumbnail (~8.8 kB)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:128, 0:112]
    img = 120 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0) + rng.normal(scale=3, size=x.shape)
    return make_thumbnail(np.clip(img, 0, 255).astype(np.uint8))


def timed(fn, queries: np.ndarray) -> tuple[np.ndarray, list]:
    """Wall time in ms of ``fn(q)`` for each query, and the results."""
    times, results = [], []
    for q in queries:
        t0 = time.perf_counter()
        results.append(fn(q))
        times.append((time.perf_counter() - t0) * 1e3)
    return np.asarray(times), results


def loop_query(path: Path, q: np.ndarray, k: int) -> list[int]:
    """The naive baseline: read every row, decode, dot product in Python, sort."""
    con = sqlite3.connect(path)
    scored = []
    for cid, blob in con.execute("SELECT id, embedding FROM cases"):
        v = np.frombuffer(blob, dtype=np.float32)
        scored.append((-float(np.dot(v, q)), cid))
    con.close()
    scored.sort()
    return [cid for _, cid in scored[:k]]


def bench_size(n: int, args: argparse.Namespace, tmp: Path, thumb: bytes) -> dict:
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(n)
    emb = l2_normalise(rng.normal(size=(n, args.dim)))
    queries = l2_normalise(rng.normal(size=(args.queries, args.dim)))
    path = tmp / f"bench-{n}.cxrlib"

    t0 = time.perf_counter()
    lib = CaseLibrary.open(path, create=True, name=f"bench-{n}", model_id=MODEL, durable=False)
    for start in range(0, n, 1000):
        batch = [
            NewCase(thumb, emb[i], LABELS[i % 3], "synthetic", "CC BY 4.0", f"synthetic/{i}")
            for i in range(start, min(n, start + 1000))
        ]
        lib.add_cases(batch, model_id=MODEL)
    lib.finalise()
    build_s = time.perf_counter() - t0
    size_mb = path.stat().st_size / 1e6

    cold, _ = timed(lambda q: lib.query(q, args.k, model_id=MODEL), queries[:1])
    warm, lib_res = timed(lambda q: lib.query(q, args.k, model_id=MODEL), queries)
    index = KnnIndex(emb, normalised=True)
    raw, raw_res = timed(lambda q: index.search(q, args.k), queries)

    nn = NearestNeighbors(n_neighbors=args.k, metric="cosine", algorithm="brute").fit(emb)
    n_sk = min(len(queries), 50)
    sk, sk_res = timed(lambda q: nn.kneighbors(q[None], return_distance=False), queries[:n_sk])
    loop, loop_res = timed(lambda q: loop_query(path, q, args.k), queries[: args.loop_queries])
    lib.close()

    for i in range(len(queries)):
        ids = [nb.case_id - 1 for nb in lib_res[i]]
        assert ids == list(raw_res[i][0]), f"library and KnnIndex disagree at query {i}"
        if i < n_sk:
            assert ids == list(sk_res[i][0]), f"library and scikit-learn disagree at query {i}"
        if i < args.loop_queries:
            assert ids == [c - 1 for c in loop_res[i]], f"library and the per-row loop disagree at query {i}"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {
        "n": n,
        "build_s": build_s,
        "size_mb": size_mb,
        "cold_ms": float(cold[0]),
        "lib_ms": float(np.median(warm)),
        "lib_p95": float(np.percentile(warm, 95)),
        "raw_ms": float(np.median(raw)),
        "sk_ms": float(np.median(sk)),
        "loop_ms": float(np.median(loop)),
    }


def main() -> int:
    args = ARGS or _parse()
    thumb = synthetic_thumbnail()
    print(
        f"retrieval benchmark: d={args.dim}, k={args.k}, {args.queries} warm queries per size, "
        f"BLAS threads={args.threads}, thumbnail {len(thumb) / 1e3:.1f} kB, numpy {np.__version__}"
    )
    header = (
        f"{'cases':>8} {'build s':>8} {'file MB':>8} {'cold ms':>8} {'lib ms':>8} {'lib p95':>8} "
        f"{'raw ms':>8} {'sklearn ms':>10} {'loop ms':>9} {'vs sklearn':>10} {'vs loop':>8}"
    )
    print(header)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n in args.sizes:
            r = bench_size(n, args, Path(tmp), thumb)
            rows.append(r)
            print(
                f"{r['n']:>8} {r['build_s']:>8.2f} {r['size_mb']:>8.1f} {r['cold_ms']:>8.1f} "
                f"{r['lib_ms']:>8.3f} {r['lib_p95']:>8.3f} {r['raw_ms']:>8.3f} {r['sk_ms']:>10.3f} "
                f"{r['loop_ms']:>9.1f} {r['sk_ms'] / r['lib_ms']:>9.1f}x {r['loop_ms'] / r['lib_ms']:>7.0f}x",
                flush=True,
            )
    largest = rows[-1]
    verdict = "meets" if largest["lib_ms"] <= 20.0 else "MISSES"
    print(
        f"warm library query at {largest['n']} cases: {largest['lib_ms']:.2f} ms median "
        f"({verdict} the 20 ms goal); all methods returned the same neighbours"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
