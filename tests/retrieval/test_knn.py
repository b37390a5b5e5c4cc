"""Exact cosine k-NN against scikit-learn's brute-force search, the neighbour vote, leave-one-out accuracy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from cxrviewer.ml.retrieval import KnnIndex, l2_normalise, neighbour_vote, neighbour_vote_accuracy


@pytest.fixture()
def data():
    rng = np.random.default_rng(7)
    return rng.normal(size=(600, 48)).astype(np.float32), rng.normal(size=(25, 48)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 4, 17])
def test_search_matches_sklearn_brute_cosine(data, k):
    base, queries = data
    index = KnnIndex(base)
    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(base)
    ref_dist, ref_idx = nn.kneighbors(queries)
    for q, rd, ri in zip(queries, ref_dist, ref_idx, strict=True):
        idx, dist = index.search(q, k)
        np.testing.assert_array_equal(idx, ri)
        np.testing.assert_allclose(dist, rd, atol=1e-5)
        assert dist.dtype == np.float32 and np.all(np.diff(dist) >= 0)


def test_batch_search_equals_single_queries(data):
    base, queries = data
    index = KnnIndex(base)
    idx, dist = index.search_batch(queries, 4)
    assert idx.shape == dist.shape == (len(queries), 4)
    for q, bi, bd in zip(queries, idx, dist, strict=True):
        si, sd = index.search(q, 4)
        np.testing.assert_array_equal(bi, si)
        np.testing.assert_allclose(bd, sd, atol=1e-6)


def test_k_larger_than_index_and_empty_k():
    index = KnnIndex(np.eye(3, dtype=np.float32))
    idx, dist = index.search(np.array([1.0, 0.2, 0.0]), 10)
    assert list(idx) == [0, 1, 2]
    assert dist[0] < dist[1] < dist[2]
    idx, dist = index.search(np.array([1.0, 0.0, 0.0]), 0)
    assert idx.size == 0 and dist.size == 0


def test_ties_are_broken_by_lower_index():
    base = np.array([[0, 1], [1, 0], [1, 0], [1, 0], [0, 1]], dtype=np.float32)
    idx, dist = KnnIndex(base).search(np.array([2.0, 0.0]), 2)
    assert list(idx) == [1, 2]
    np.testing.assert_allclose(dist, [0.0, 0.0], atol=1e-7)


def test_query_of_wrong_length_is_refused():
    with pytest.raises(ValueError, match="length 3"):
        KnnIndex(np.eye(3)).search(np.ones(4), 1)


def test_l2_normalise_rows_zero_rows_and_nan():
    out = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32 and out.flags.c_contiguous
    with pytest.raises(ValueError, match="NaN"):
        l2_normalise(np.array([1.0, np.nan]))


def test_vote_fractions_and_inverse_distance_weights():
    v = neighbour_vote(["a", "a", "b", "c"], [0.1, 0.2, 0.05, 0.4], eps=0.0)
    assert v.fractions == {"a": 0.5, "b": 0.25, "c": 0.25}
    # weights 10, 5, 20, 2.5 → total 37.5
    assert v.weighted == pytest.approx({"a": 15 / 37.5, "b": 20 / 37.5, "c": 2.5 / 37.5})
    assert v.majority == "a"
    assert v.weighted_winner == "b"
    assert v.k == 4
    assert sum(v.weighted.values()) == pytest.approx(1.0)


def test_majority_tie_goes_to_the_closer_label():
    v = neighbour_vote(["a", "b", "a", "b"], [0.3, 0.1, 0.35, 0.2])
    assert v.fractions == {"a": 0.5, "b": 0.5}
    assert v.majority == "b"


def test_vote_of_nothing_and_length_mismatch():
    v = neighbour_vote([], [])
    assert v.majority is None and v.fractions == {} and v.k == 0
    with pytest.raises(ValueError):
        neighbour_vote(["a"], [0.1, 0.2])


def _sklearn_loo_accuracy(x: np.ndarray, y: np.ndarray, k: int) -> float:
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(x)
    _, idx = nn.kneighbors(x)
    correct = 0
    for i, row in enumerate(idx):
        others = [j for j in row if j != i][:k]
        labels, counts = np.unique(y[others], return_counts=True)
        correct += int(labels[np.argmax(counts)] == y[i])
    return correct / len(y)


def test_leave_one_out_accuracy_matches_sklearn():
    # Two overlapping clusters, odd k and two labels: no vote ties, so the rules must agree exactly.
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(2, 16))
    y = rng.integers(0, 2, size=400)
    x = centres[y] + rng.normal(scale=1.2, size=(400, 16))
    labels = np.array(["covid", "normal"])[y]
    ours = neighbour_vote_accuracy(x, labels, k=3, chunk=64)
    ref = _sklearn_loo_accuracy(x, labels, 3)
    assert 0.6 < ref < 0.99
    assert ours == pytest.approx(ref)


def test_exclude_self_and_groups():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 8))
    labels = rng.choice(["a", "b", "c"], size=60)
    # Without leave-one-out, k=1 finds the query itself: always right.
    assert neighbour_vote_accuracy(x, labels, k=1, exclude_self=False) == 1.0
    # Each case twice (a near-duplicate re-upload): k=1 then finds the twin unless groups exclude it.
    xx, ll = np.concatenate([x, x * 1.01]), np.concatenate([labels, labels])
    groups = np.concatenate([np.arange(60), np.arange(60)])
    assert neighbour_vote_accuracy(xx, ll, k=1) == 1.0
    grouped = neighbour_vote_accuracy(xx, ll, k=1, groups=groups)
    assert grouped == pytest.approx(neighbour_vote_accuracy(x, labels, k=1))
    assert grouped < 0.8


def test_retrieval_and_case_library_import_no_torch():
    code = (
        "import sys, cxrviewer.ml.retrieval, cxrviewer.ml.embeddings, cxrviewer.services.case_library; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"
