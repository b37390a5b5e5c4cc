"""``cxr-trainer build-index`` on a tiny synthetic dataset with a real (untrained) model directory."""

from __future__ import annotations

import argparse
import csv

import cv2
import numpy as np
import pytest
from cxr_trainer.commands import VERB_MODULES, build_index

from cxrviewer.ml.embeddings import embed_images
from cxrviewer.ml.model_io import load_classifier
from cxrviewer.ml.predictor import Predictor, PredictorSettings, model_input
from cxrviewer.services.case_library import CaseLibrary
from tests.helpers.tiny_model import make_tiny_classifier_dir

COLUMNS = ["path", "source", "label", "view", "patient_id", "sex", "age", "license", "origin"]


def _image(kind: str, i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    img = (rng.random((180 + 10 * i, 160)) * 40 + 60).astype(np.uint8)
    if kind == "disk":
        cv2.circle(img, (80, 90), 40 + i, 230, -1)
    else:
        img[:, ::12] = 230
    return img


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "images").mkdir()
    rows = []
    plan = [  # (label, licence)
        ("covid", "CC BY 4.0"),
        ("covid", "CC BY-SA"),
        ("normal", "CC BY 3.0"),
        ("normal", "CC BY 4.0"),
        ("pneumonia_bacterial", "CC0"),
        ("pneumonia_viral", "CC BY 4.0"),
        ("covid", "CC BY-NC-SA 4.0"),  # kept only without --redistributable-only
        ("normal", "listed as authorized for everyone"),  # kept with --licence-allow
        ("unknown", "CC BY 4.0"),  # never: unlabelled
        ("pneumonia_fungal", "CC BY 4.0"),  # never: not in the model's task
    ]
    for i, (label, licence) in enumerate(plan):
        rel = f"images/{i:03d}.png"
        cv2.imwrite(str(root / rel), _image("disk" if label == "covid" else "stripes", i))
        rows.append([rel, "synthetic", label, "PA", str(i), "F", "50", licence, f"synthetic@test:{i}"])
    (root / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    rows.append(["images/broken.jpg", "synthetic", "normal", "PA", "98", "M", "40", "CC BY 4.0", "x"])
    rows.append(["images/missing.png", "synthetic", "normal", "PA", "99", "M", "40", "CC BY 4.0", "y"])
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows(rows)
    # 001 is a re-upload of 000: only the first copy goes into a library.
    (root / "near_duplicates.csv").write_text(
        "path_a,path_b,hamming,ncc\nimages/001.png,images/000.png,0,0.999\n", encoding="utf-8"
    )
    return root / "labels.csv"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_classifier_dir(tmp_path_factory.mktemp("model") / "tiny")


def _build(model_dir, labels, out, *extra) -> int:
    """Run the verb through its own sub-parser (independent of the other verbs being registered)."""
    parser = argparse.ArgumentParser(prog="cxr-trainer")
    build_index.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "build-index",
            "--model",
            str(model_dir),
            "--labels",
            str(labels),
            "--out",
            str(out),
            "--batch-size",
            "3",
            "--threads",
            "1",
            *extra,
        ]
    )
    return args.func(args)


def test_verb_is_registered():
    assert "build_index" in VERB_MODULES


def test_build_redistributable_reference_library(tmp_path, dataset, model_dir, capsys):
    out = tmp_path / "reference.cxrlib"
    assert _build(model_dir, dataset, out, "--redistributable-only") == 0
    summary = capsys.readouterr().out
    assert "wrote 5 cases" in summary and "2 unreadable image" in summary
    assert "1 near-duplicate of a kept case" in summary
    assert "redistributable thumbnails: 5 of 5" in summary
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference.cxrlib"]  # no .partial, no WAL

    model, manifest = load_classifier(model_dir)
    with CaseLibrary.open(out, read_only=True) as lib:
        info = lib.info
        assert (info.name, info.kind, info.model_id) == ("reference", "reference", manifest.model_id)
        assert info.embedding_dim == model.feature_dim
        assert info.redistributable.startswith("redistributable")
        assert "never NonCommercial" in info.licence_rule
        cases = lib.cases(full=True)
        assert [c.label for c in cases] == ["covid", "normal", "normal", "pneumonia", "pneumonia"]
        assert cases[0].provenance.startswith("synthetic@test:0;")
        assert all(c.redistributable for c in cases)
        assert cases[3].provenance == "synthetic@test:4; dataset label pneumonia_bacterial; view PA"
        # The stored embedding is the model's embedding of the preprocessed image.
        img = cv2.imread(str(dataset.parent / "images/002.png"), cv2.IMREAD_GRAYSCALE)
        expected = embed_images(model, model_input(img, manifest.preprocess_spec)[0][None])[0]
        np.testing.assert_allclose(cases[1].embedding, expected, atol=1e-5)
        top = lib.query(expected, k=1, model_id=manifest.model_id)[0]
        assert top.case_id == cases[1].id and top.distance < 1e-5
        # The viewer's predictor computes the same vector, so it finds this very case.
        predictor = Predictor.load(
            model_dir, device="cpu", settings=PredictorSettings(threads=1, warmup=False)
        )
        seen = predictor.predict([img])[0].embedding
        assert predictor.model_id == info.model_id
        np.testing.assert_allclose(seen, expected, atol=1e-4)
        assert lib.query(seen, k=1, model_id=predictor.model_id)[0].case_id == cases[1].id
        thumb = cv2.imdecode(np.frombuffer(cases[1].thumbnail, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert max(thumb.shape) == 128


def test_build_local_library_keeps_non_redistributable_cases(tmp_path, dataset, model_dir, capsys):
    out = tmp_path / "local.cxrlib"
    allow = ["--licence-allow", "listed as authorized for everyone"]
    assert _build(model_dir, dataset, out, *allow, "--near-duplicates", "none") == 0
    with CaseLibrary.open(out, read_only=True) as lib:
        cases = lib.cases()
        assert len(cases) == 8
        flags = {c.licence: c.redistributable for c in cases}
        assert flags["CC BY-NC-SA 4.0"] is False and flags["listed as authorized for everyone"] is True
        assert lib.info.redistributable.startswith("NOT redistributable: 1 of 8")
        assert "also allowed by hand: listed as authorized for everyone" in lib.info.licence_rule

    # An existing library is not replaced without --overwrite.
    before = out.read_bytes()
    assert _build(model_dir, dataset, out) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_build_reports_bad_inputs(tmp_path, dataset, model_dir, capsys):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("file,diagnosis\nx.png,covid\n", encoding="utf-8")
    assert _build(model_dir, bad_csv, tmp_path / "a.cxrlib") == 2
    assert "lacks the column(s) label, path" in capsys.readouterr().err
    assert _build(tmp_path / "no-model", dataset, tmp_path / "b.cxrlib") == 2
    assert "not a model folder" in capsys.readouterr().err
    assert (
        _build(model_dir, dataset, tmp_path / "c.cxrlib", "--near-duplicates", str(tmp_path / "x.csv")) == 2
    )
    assert "near-duplicates file not found" in capsys.readouterr().err
    assert not any(p.suffix == ".cxrlib" or p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_near_duplicate_groups_are_transitive_and_keep_the_first_eligible_copy():
    rows = [build_index._Row(k, None, "covid", "", "", "", True) for k in ["c", "a", "x", "b", "d"]]
    summary = build_index.BuildSummary()
    pairs = [("a", "b"), ("b", "c"), ("zz", "d")]  # a~b~c one radiograph; d's twin is not eligible
    kept = build_index.drop_near_duplicates(rows, pairs, summary)
    assert [r.key for r in kept] == ["c", "x", "d"]
    assert summary.skipped["near-duplicate of a kept case"] == 2
