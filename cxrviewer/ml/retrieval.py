"""Similar-case retrieval: exact cosine k-nearest-neighbour search over embeddings, and the neighbour vote.

Paper 003 (Goldstein et al.) retrieves the k = 4 nearest training images in the network's embedding space
and reports 87 % accuracy by neighbour vote. This module is the numpy core of that: no torch at query time.

How the search works. Embeddings are L2-normalised ``float32`` rows, so cosine similarity is a dot product:
one matrix–vector product ``E @ q`` scores every case, ``np.argpartition`` picks the k best in O(N) and only
those k are sorted. Distances are cosine distances ``1 - cos`` in [0, 2].

Why exact search is enough here. The shippable reference library holds ~1,400 cases and a user's own
library fewer: a query takes well under a millisecond. Even at 100,000 cases × 512 dimensions the matrix is
200 MB of ``float32`` and one query is a memory-bound matrix–vector product plus a linear-time partition,
~16 ms on one core of our shared 2-core development machine (``benchmarks/bench_retrieval.py``), with exact
results and no index to train or keep in sync with writes.

What to switch to past millions of cases. Memory (4·d bytes per case) and the O(N·d) scan then dominate:
10 M × 512 is 20 GB. Use an approximate index — FAISS ``IndexIVFPQ`` (coarse k-means lists, probe a few,
product-quantised codes of 32–64 bytes per vector: ~50× less memory, sub-linear query time) or an HNSW
graph (FAISS ``IndexHNSWFlat``/hnswlib: ~1 ms queries at high recall, but full vectors plus graph links in
memory). Both trade a little recall for speed, need training/rebuilding as the data drift, and their recall
must be measured against this exact search as the baseline.

The neighbour vote reports, per label, the plain fraction of the k neighbours and a distance-weighted
fraction (weights ``1 / (distance + eps)``, so a near-identical case dominates, as in scikit-learn's
``weights="distance"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DISTANCE_EPS = 1e-6
"""Added to cosine distances before inverting them into vote weights."""


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm as C-contiguous ``float32`` (a zero row stays zero).

    A 1-D input is treated as one row and returned 1-D.
    """
    a = np.asarray(x, dtype=np.float32)
    if a.ndim not in (1, 2):
        raise ValueError(f"embeddings must be 1-D or 2-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("embeddings contain NaN or infinite values")
    norms = np.linalg.norm(a, axis=-1, keepdims=True)
    out = a / np.where(norms > 0, norms, 1.0).astype(np.float32)
    return np.ascontiguousarray(out, dtype=np.float32)


class KnnIndex:
    """Exact cosine k-NN over a fixed matrix of embeddings (normalised on construction).

    Args:
        embeddings: (N, d) array; rows are L2-normalised here (pass ``normalised=True`` to skip that when
            they already are, e.g. read back from a case library).
        normalised: the rows are already unit-norm ``float32``.
    """

    def __init__(self, embeddings: np.ndarray, normalised: bool = False):
        e = np.asarray(embeddings)
        if e.ndim != 2:
            raise ValueError(f"embeddings must be an (N, d) matrix, got shape {e.shape}")
        if normalised:
            self._e = np.ascontiguousarray(e, dtype=np.float32)
        else:
            self._e = l2_normalise(e)

    @property
    def size(self) -> int:
        """Number of indexed vectors."""
        return int(self._e.shape[0])

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self._e.shape[1])

    @property
    def matrix(self) -> np.ndarray:
        """The (N, d) unit-norm ``float32`` matrix (read-only view)."""
        view = self._e.view()
        view.flags.writeable = False
        return view

    def search(self, query: np.ndarray, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows to one query vector.

        Returns:
            ``(indices, distances)``: int64 row indices and ``float32`` cosine distances, nearest first
            (ties broken by the lower index). Fewer than ``k`` when the index is smaller.
        """
        q = np.asarray(query)
        if q.ndim != 1 or q.shape[0] != self.dim:
            raise ValueError(f"query must be a vector of length {self.dim}, got shape {q.shape}")
        n = self.size
        k = min(int(k), n)
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        sims = self._e @ l2_normalise(q)
        top = _top_k(sims, k)
        return top.astype(np.int64), (1.0 - sims[top]).astype(np.float32)

    def search_batch(self, queries: np.ndarray, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` for each row of a (B, d) matrix; returns (B, k) indices and distances."""
        q = np.asarray(queries)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be a (B, {self.dim}) matrix, got shape {q.shape}")
        k = min(int(k), self.size)
        sims = l2_normalise(q) @ self._e.T
        idx = np.stack([_top_k(row, k) for row in sims]) if k > 0 else np.empty((len(q), 0), np.int64)
        dist = 1.0 - np.take_along_axis(sims, idx, axis=1)
        return idx.astype(np.int64), dist.astype(np.float32)


def _top_k(sims: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest similarities, largest first, ties by lower index (deterministic)."""
    n = sims.shape[0]
    cand = np.arange(n) if k >= n else np.argpartition(-sims, k - 1)[:k]
    if k < n:
        # Pull in every row tied with the k-th score so that tie-breaking by index is exact.
        kth = sims[cand].min()
        cand = np.flatnonzero(sims >= kth)
    order = np.lexsort((cand, -sims[cand]))
    return cand[order][:k]


@dataclass(frozen=True)
class Vote:
    """The labels of k neighbours, counted two ways.

    Attributes:
        fractions: label → share of the neighbours with that label (plain majority), summing to 1.
        weighted: label → share of the inverse-distance weight, summing to 1.
        majority: the label with the most neighbours; ties go to the higher weighted share.
        weighted_winner: the label with the largest weighted share.
        k: how many neighbours voted.
    """

    fractions: dict[str, float]
    weighted: dict[str, float]
    majority: str | None
    weighted_winner: str | None
    k: int


def neighbour_vote(labels: Sequence[str], distances: Sequence[float], eps: float = DISTANCE_EPS) -> Vote:
    """Vote over neighbour ``labels`` with their cosine ``distances`` (same order, any length ≥ 0)."""
    labels = [str(x) for x in labels]
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    if len(labels) != d.shape[0]:
        raise ValueError(f"{len(labels)} labels but {d.shape[0]} distances")
    if not labels:
        return Vote({}, {}, None, None, 0)
    w = 1.0 / (np.maximum(d, 0.0) + eps)
    counts: dict[str, int] = {}
    weights: dict[str, float] = {}
    for lab, wi in zip(labels, w, strict=True):
        counts[lab] = counts.get(lab, 0) + 1
        weights[lab] = weights.get(lab, 0.0) + float(wi)
    total_w = sum(weights.values())
    fractions = {lab: c / len(labels) for lab, c in counts.items()}
    weighted = {lab: wt / total_w for lab, wt in weights.items()}
    majority = max(counts, key=lambda lab: (counts[lab], weights[lab]))
    weighted_winner = max(weights, key=lambda lab: (weights[lab], counts[lab]))
    return Vote(fractions, weighted, majority, weighted_winner, len(labels))


def neighbour_vote_accuracy(
    embeddings: np.ndarray,
    labels: Sequence[str],
    k: int = 4,
    exclude_self: bool = True,
    weighted: bool = False,
    groups: Sequence[object] | None = None,
    chunk: int = 1024,
) -> float:
    """Leave-one-out accuracy of the k-NN neighbour vote (paper 003 reports 87 % with k = 4).

    Each case is queried against all the others; its predicted label is the vote's majority (or the
    distance-weighted winner with ``weighted=True``).

    Args:
        embeddings: (N, d) embeddings (normalised here).
        labels: N labels.
        k: neighbours per vote.
        exclude_self: leave the query case out of its own neighbours (leave-one-out). Without it a case
            finds itself at distance 0.
        groups: optional group id per case (patient, near-duplicate group): neighbours in the query's own
            group are excluded too, so a re-upload of the same radiograph cannot vote for itself.
        chunk: queries scored per matrix product (memory is ``chunk × N`` floats).
    """
    e = l2_normalise(embeddings)
    lab = np.asarray([str(x) for x in labels], dtype=object)
    n = e.shape[0]
    if e.ndim != 2 or lab.shape[0] != n:
        raise ValueError(f"need an (N, d) matrix and N labels, got {e.shape} and {lab.shape[0]} labels")
    if n == 0:
        raise ValueError("no embeddings to evaluate")
    gid = None
    if groups is not None:
        if len(groups) != n:
            raise ValueError(f"{len(groups)} groups for {n} embeddings")
        _, gid = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    correct = 0
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        sims = e[start:stop] @ e.T
        rows = np.arange(stop - start)
        if exclude_self:
            sims[rows, rows + start] = -np.inf
        if gid is not None:
            sims[gid[start:stop, None] == gid[None, :]] = -np.inf
        for r in rows:
            avail = int(np.isfinite(sims[r]).sum())
            kk = min(k, avail)
            if kk == 0:
                continue
            top = _top_k(sims[r], kk)
            vote = neighbour_vote(lab[top], 1.0 - sims[r, top])
            pred = vote.weighted_winner if weighted else vote.majority
            correct += int(pred == lab[start + r])
    return correct / n
