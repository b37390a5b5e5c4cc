"""The SQLite case library: round trip, model changes, adding/removing, caching, several libraries."""

from __future__ import annotations

import sqlite3

import cv2
import numpy as np
import pytest

from cxrviewer.ml.retrieval import KnnIndex
from cxrviewer.services import case_library as cl
from cxrviewer.services.case_library import (
    CaseLibrary,
    CaseLibraryError,
    LibraryModelMismatch,
    LibrarySet,
    NewCase,
    make_thumbnail,
    vote,
)

DIM = 24
MODEL = "cxr-classifier@1.0:aaaaaaaaaaaa"
OTHER = "cxr-classifier@1.1:bbbbbbbbbbbb"


def _image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((300, 240)) * 255).astype(np.uint8)


def _fill(lib: CaseLibrary, n: int, seed: int = 0, model: str = MODEL) -> np.ndarray:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, DIM)).astype(np.float32)
    labels = ["covid", "normal", "pneumonia"]
    for i in range(n):
        lib.add_case(
            _image(seed * 1000 + i),
            emb[i],
            labels[i % 3],
            model_id=model,
            source=f"src{i % 2}",
            licence="CC BY 4.0",
            provenance=f"test/{i}.png",
            redistributable=True,
        )
    return emb


@pytest.fixture()
def lib(tmp_path):
    with CaseLibrary.open(tmp_path / "user.cxrlib", create=True, name="mine", model_id=MODEL) as lib:
        yield lib


def test_round_trip(tmp_path, lib):
    emb = _fill(lib, 5)
    path = lib.path
    lib.close()
    with CaseLibrary.open(path, read_only=True) as again:
        info = again.info
        assert (info.name, info.kind, info.model_id, info.embedding_dim) == ("mine", "user", MODEL, DIM)
        assert info.schema_version == cl.SCHEMA_VERSION and "not for redistribution" in info.redistributable
        cases = again.cases()
        assert [c.id for c in cases] == [1, 2, 3, 4, 5]
        assert cases[0].thumbnail is None and cases[0].embedding is None
        c = again.get(2)
        assert (c.label, c.source, c.licence, c.provenance, c.redistributable, c.model_id) == (
            "normal",
            "src1",
            "CC BY 4.0",
            "test/1.png",
            True,
            MODEL,
        )
        np.testing.assert_allclose(c.embedding, emb[1] / np.linalg.norm(emb[1]), atol=1e-6)
        thumb = cv2.imdecode(np.frombuffer(c.thumbnail, np.uint8), cv2.IMREAD_UNCHANGED)
        assert thumb.shape == (128, 102) and thumb.dtype == np.uint8
        assert c.created.endswith("+00:00")
        assert again.integrity_check() == "ok"
        with pytest.raises(CaseLibraryError, match="read-only"):
            again.add_case(_image(9), emb[0], "covid", model_id=MODEL)


def test_query_equals_brute_force_and_vote(lib):
    emb = _fill(lib, 40)
    q = np.random.default_rng(1).normal(size=DIM)
    found = lib.query(q, k=4, model_id=MODEL)
    idx, dist = KnnIndex(emb).search(q, 4)
    assert [n.case_id for n in found] == [int(i) + 1 for i in idx]
    np.testing.assert_allclose([n.distance for n in found], dist, atol=1e-6)
    assert all(n.library == "mine" for n in found)
    labels = [n.label for n in found]
    v = vote(found)
    assert v.fractions == {lab: labels.count(lab) / 4 for lab in set(labels)}


def test_model_change_makes_embeddings_unusable_until_reembedded(lib):
    _fill(lib, 6)
    q = np.ones(DIM)
    with pytest.raises(LibraryModelMismatch) as err:
        lib.query(q, model_id=OTHER)
    msg = str(err.value)
    assert f"built with model {MODEL}" in msg and f"rebuild it for model {OTHER}" in msg
    with pytest.raises(LibraryModelMismatch):
        lib.add_case(_image(1), np.ones(DIM), "covid", model_id=OTHER)
    assert lib.needs_reembedding(OTHER) and not lib.needs_reembedding(MODEL)

    # A re-embedding that fails half-way leaves the old model in place.
    calls = []

    def broken(cases):
        calls.append(len(cases))
        if len(calls) == 2:
            raise RuntimeError("model crashed")
        return np.ones((len(cases), 8))

    with pytest.raises(RuntimeError):
        lib.reembed(OTHER, broken, batch_size=4)
    assert lib.info.model_id == MODEL and {c.model_id for c in lib.cases()} == {MODEL}
    assert len(lib.query(q, model_id=MODEL)) == 4

    # A complete one switches the whole library (the new model may have another dimension).
    rng = np.random.default_rng(2)
    new = rng.normal(size=(6, 8)).astype(np.float32)
    assert lib.reembed(OTHER, lambda cases: new[[c.id - 1 for c in cases]], batch_size=4) == 6
    assert lib.info.model_id == OTHER and lib.info.embedding_dim == 8
    assert {c.model_id for c in lib.cases()} == {OTHER}
    assert not lib.needs_reembedding(OTHER) and lib.needs_reembedding(MODEL)
    found = lib.query(new[3], k=1, model_id=OTHER)
    assert found[0].case_id == 4 and found[0].distance == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(LibraryModelMismatch):
        lib.query(np.ones(DIM), model_id=MODEL)


def test_add_and_remove_update_queries(lib):
    emb = _fill(lib, 10)
    q = emb[7]
    assert lib.query(q, k=1, model_id=MODEL)[0].case_id == 8
    lib.remove_case(8)
    assert len(lib) == 9 and 8 not in [c.id for c in lib.cases()]
    assert all(n.case_id != 8 for n in lib.query(q, k=9, model_id=MODEL))
    with pytest.raises(KeyError):
        lib.remove_case(8)
    with pytest.raises(KeyError):
        lib.get(8)
    new_id = lib.add_case(_image(3), q * 2, "normal", model_id=MODEL)
    assert new_id == 11  # ids are never reused
    top = lib.query(q, k=1, model_id=MODEL)[0]
    assert (top.case_id, top.label) == (11, "normal")


def test_cache_sees_writes_from_another_connection(lib):
    emb = _fill(lib, 5)
    assert lib.preload(MODEL) == 5
    with pytest.raises(LibraryModelMismatch):
        lib.preload(OTHER)
    assert len(lib.query(emb[0], k=10, model_id=MODEL)) == 5
    with CaseLibrary.open(lib.path) as other:
        other.add_case(_image(4), -emb[0], "covid", model_id=MODEL)
        other.remove_case(1)
    found = lib.query(emb[0], k=10, model_id=MODEL)
    assert len(found) == 5 and found[-1].case_id == 6 and 1 not in [n.case_id for n in found]


def test_validation(lib, tmp_path):
    _fill(lib, 1)
    with pytest.raises(ValueError, match="24"):
        lib.add_case(_image(1), np.ones(DIM + 1), "covid", model_id=MODEL)
    with pytest.raises(ValueError, match="PNG"):
        lib.add_case(b"not a png", np.ones(DIM), "covid", model_id=MODEL)
    with pytest.raises(ValueError, match="label"):
        lib.add_case(_image(1), np.ones(DIM), " ", model_id=MODEL)
    with pytest.raises(ValueError, match="NaN"):
        lib.add_case(_image(1), np.full(DIM, np.nan), "covid", model_id=MODEL)
    assert len(lib) == 1
    # add_cases is all or nothing: one bad case keeps the others out.
    good = NewCase(_image(2), np.ones(DIM), "covid")
    with pytest.raises(ValueError):
        lib.add_cases([good, NewCase(_image(2), np.ones(3), "covid")], model_id=MODEL)
    assert len(lib) == 1


def test_first_case_sets_the_model_of_an_unbound_library(tmp_path):
    with CaseLibrary.open(tmp_path / "new.cxrlib", create=True) as lib:
        assert lib.info.model_id == "" and lib.query(np.ones(4), model_id=MODEL) == []
        assert not lib.needs_reembedding(MODEL)
        lib.add_case(_image(0), np.ones(4), "covid", model_id=OTHER)
        assert (lib.info.model_id, lib.info.embedding_dim) == (OTHER, 4)


def test_opening_bad_files(tmp_path):
    with pytest.raises(CaseLibraryError, match="no case library"):
        CaseLibrary.open(tmp_path / "missing.cxrlib")
    junk = tmp_path / "junk.cxrlib"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CaseLibraryError, match="not a readable case library"):
        CaseLibrary.open(junk)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(CaseLibraryError, match="not a case library"):
        CaseLibrary.open(other)
    newer = tmp_path / "newer.cxrlib"
    CaseLibrary.open(newer, create=True).close()
    con = sqlite3.connect(newer)
    con.execute("UPDATE library SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(CaseLibraryError, match="newer cxrviewer"):
        CaseLibrary.open(newer)


def test_finalised_library_opens_read_only_without_side_files(lib):
    _fill(lib, 3)
    lib.finalise()
    lib.close()
    for suffix in ("-wal", "-shm"):
        assert not lib.path.with_name(lib.path.name + suffix).exists()
    with CaseLibrary.open(lib.path, read_only=True) as ro:
        assert len(ro.query(np.ones(DIM), model_id=MODEL)) == 3
    assert sorted(p.name for p in lib.path.parent.iterdir()) == ["user.cxrlib"]


def test_library_set_merges_by_distance(tmp_path):
    with (
        CaseLibrary.open(tmp_path / "ref.cxrlib", create=True, name="reference", kind="reference") as ref,
        CaseLibrary.open(tmp_path / "user.cxrlib", create=True, name="mine") as mine,
    ):
        a, b = _fill(ref, 20, seed=1), _fill(mine, 15, seed=2)
        both = LibrarySet([ref, mine])
        q = np.random.default_rng(9).normal(size=DIM)
        found = both.query(q, k=6, model_id=MODEL)
        union = np.concatenate([a, b])
        idx, dist = KnnIndex(union).search(q, 6)
        expected = [("reference", i + 1) if i < 20 else ("mine", i - 19) for i in idx]
        assert [(n.library, n.case_id) for n in found] == expected
        np.testing.assert_allclose([n.distance for n in found], dist, atol=1e-6)

        converted = both.result_neighbours(found[:2])
        assert converted[0].case_id == str(found[0].case_id) and converted[0].library == found[0].library
        assert converted[0].thumbnail_png == both.library(found[0].library).get(found[0].case_id).thumbnail
        assert converted[0].thumbnail_png.startswith(cl.PNG_SIGNATURE)
        with pytest.raises(ValueError, match="already"):
            both.add(mine)

        mine.reembed(OTHER, lambda cases: np.ones((len(cases), 4)))
        assert both.stale(MODEL) == [mine]
        assert both.preload(MODEL) == 20
        with pytest.raises(LibraryModelMismatch, match="'mine'"):
            both.query(q, model_id=MODEL)
        assert {n.library for n in both.query(q, k=6, model_id=MODEL, skip_stale=True)} == {"reference"}


def test_make_thumbnail_and_default_location():
    png = make_thumbnail(np.random.default_rng(0).random((50, 400)))
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape == (16, 128)
    small = cv2.imdecode(np.frombuffer(make_thumbnail(_image(0)[:40, :30]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert small.shape == (40, 30)  # never enlarged
    import platformdirs

    assert cl.default_user_library_path().is_relative_to(platformdirs.user_data_dir("cxrviewer"))
    assert cl.default_user_library_path().suffix == cl.LIBRARY_SUFFIX


def test_queries_from_threads_while_adding(lib):
    import threading

    emb = _fill(lib, 5)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                found = lib.query(emb[0], k=3, model_id=MODEL)
                assert len(found) == 3 and found[0].case_id == 1
                assert [n.distance for n in found] == sorted(n.distance for n in found)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    rng = np.random.default_rng(4)
    thumb = make_thumbnail(_image(0))
    for _ in range(40):
        lib.add_case(thumb, rng.normal(size=DIM), "normal", model_id=MODEL)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert len(lib) == 45 and len(lib.query(emb[0], k=100, model_id=MODEL)) == 45
