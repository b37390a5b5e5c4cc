"""Every ``cxr-trainer`` verb has ``--help``, a ``--quiet`` switch for its progress bars, and a JSON run log,
written on success and on failure (status ``error`` with the human message)."""

from __future__ import annotations

import json

import pytest
from cxr_trainer.cli import main

from tests.helpers.tiny_model import make_tiny_classifier_dir

VERBS = [
    ["data", "inspect"],
    ["train"],
    ["evaluate"],
    ["export"],
    ["train-seg"],
    ["train-gate"],
    ["build-index"],
]
WITH_QUIET = {"data inspect", "train", "evaluate", "export", "build-index", "train-seg", "train-gate"}


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*verb, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: cxr-trainer {' '.join(verb)}")
    assert "--out" in text or "--json" in text  # says where its results go
    usage, _, rest = text.partition("\n\n")
    assert not rest.lstrip().startswith(("positional arguments", "options"))  # a description comes first
    if " ".join(verb) in WITH_QUIET:
        assert "--quiet" in text


def _error_log(path) -> dict:
    doc = json.loads(path.read_text())
    assert doc["status"] == "error" and doc["error"]
    return doc


def test_failures_leave_a_json_log_with_the_message(tmp_path, capsys):
    missing = str(tmp_path / "no-such-data")
    assert main(["data", "inspect", missing, "--json", str(tmp_path / "i.json"), "--quiet"]) == 1
    assert "neither a labels CSV nor a dataset folder" in _error_log(tmp_path / "i.json")["error"]

    assert main(["train", "--data", missing, "--out", str(tmp_path / "t"), "--quiet"]) == 1
    assert "neither a labels CSV" in _error_log(tmp_path / "t" / "train_log.json")["error"]

    model = make_tiny_classifier_dir(tmp_path / "model", size=32)
    ev = tmp_path / "ev"
    assert main(["evaluate", "--model", str(model), "--labels", missing, "--out", str(ev), "--quiet"]) == 1
    assert "neither a labels CSV" in _error_log(ev / "evaluate_log.json")["error"]

    assert main(["export", "--model", str(tmp_path / "nothing-here"), "--quiet"]) == 1
    assert _error_log(tmp_path / "nothing-here" / "export_log.json")

    lib, log = tmp_path / "x.cxrlib", tmp_path / "b.json"
    args = ["--model", str(model), "--labels", missing, "--out", str(lib), "--json", str(log), "--quiet"]
    assert main(["build-index", *args]) == 2
    assert _error_log(log)["args"]["out"] == str(lib) and not lib.exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("JSON log:") == 3  # inspect, evaluate, build-index say where


def test_build_index_log_progress_and_summary(synthetic_dataset, tmp_path, capsys):
    model = make_tiny_classifier_dir(tmp_path / "model", size=32)
    lib, log = tmp_path / "cases.cxrlib", tmp_path / "build.json"
    args = ["--model", str(model), "--labels", str(synthetic_dataset), "--out", str(lib), "--json", str(log)]
    assert main(["build-index", *args, "--threads", "1"]) == 0
    out, err = capsys.readouterr()
    assert "build-index" in err and "img" in err  # the progress bar
    assert "wrote 60 cases" in out and f"JSON log: {log}" in out
    doc = json.loads(log.read_text())
    assert doc["status"] == "ok" and doc["verb"] == "build-index"
    assert doc["result"]["cases"] == 60 and doc["result"]["skipped"]["unreadable image"] == 1
    assert doc["result"]["skipped"]["near-duplicate of a kept case"] == 1


def _dataset_with_masks(root):
    """The synthetic dataset plus masks.csv: each readable image's dark lungs as its ``manual`` mask."""
    import csv

    import cv2

    from tests.trainer.conftest import make_synthetic_dataset

    labels = make_synthetic_dataset(root, per_class=6)
    with open(labels, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if "broken" not in r["path"]]
    with open(labels, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(root / "masks.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_path", "mask_kind", "mask_path"])
        for r in rows:
            img = cv2.imread(str(root / r["path"]), cv2.IMREAD_GRAYSCALE)
            mask_rel = r["path"].replace("images/", "masks/")
            (root / mask_rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / mask_rel), (cv2.GaussianBlur(img, (5, 5), 0) < 100).astype("uint8") * 255)
            w.writerow([r["path"], "manual", mask_rel])
    return root


def test_train_seg_progress_summary_and_log(tmp_path, capsys):
    data = _dataset_with_masks(tmp_path / "data")
    out, log = tmp_path / "lung", tmp_path / "seg.json"
    args = ["--data", str(data), "--out", str(out), "--size", "32", "--base", "4", "--minutes", "0.02"]
    args += ["--batch", "4", "--qa-sample", "4", "--threads", "1", "--cache", str(tmp_path / "c")]
    assert main(["train-seg", *args, "--json", str(log)]) == 0
    stdout, err = capsys.readouterr()
    assert "train cache" in err and "batch" in err  # progress bars
    assert "{" not in stdout  # a readable summary, not raw JSON
    assert (
        f"model written to {out}" in stdout
        and "test manual" in stdout
        and stdout.endswith(f"JSON log: {log}\n")
    )
    doc = json.loads(log.read_text())
    assert doc["status"] == "ok" and doc["verb"] == "train-seg"
    assert [e["event"] for e in doc["events"]][:2] == ["split", "epoch"]
    assert doc["result"]["metrics"]["test"]["manual"]["n"] > 0
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "model.onnx",
        "model.safetensors",
        "split.csv",
    ]


def test_train_seg_and_train_gate_failures_leave_a_json_log(tmp_path, capsys):
    missing = tmp_path / "no-such-data"
    for verb in ("train-seg", "train-gate"):
        out, log = tmp_path / verb, tmp_path / f"{verb}.json"
        args = ["--data", str(missing), "--out", str(out), "--json", str(log), "--quiet"]
        assert main([verb, *args]) == 1
        doc = _error_log(log)
        assert doc["verb"] == verb and "labels.csv" in doc["error"] and doc["args"]["out"] == str(out)
        assert not out.exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("JSON log:") == 2


def test_gate_training_shows_progress_and_reports_history(capsys):
    """train_gate_model with a tiny network: the step counter on stderr, a history entry every 50 steps."""
    import numpy as np
    import torch
    from cxr_trainer.seg.gate_training import train_gate_model

    from cxrviewer.core.preprocess import PreprocessSpec

    torch.set_num_threads(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, stride=4),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.LazyLinear(3),
    )
    rng = np.random.default_rng(0)
    pools = {k: rng.integers(0, 256, (6, 16, 16), dtype=np.uint8) for k in ("frontal", "lateral", "other")}
    seen = []
    result = train_gate_model(
        model, pools, PreprocessSpec(size=16), 0.03, (4, 2, 4), on_history=seen.append, show_progress=True
    )
    assert result.steps >= 50 and seen == result.history and seen[0]["step"] == 50
    assert "gate training" in capsys.readouterr().err


def test_train_gate_summary_reads_the_shipped_manifest(capsys):
    """The end-of-run summary formats the real figures of the shipped gate (no raw JSON)."""
    from cxr_trainer.commands.train_gate import _print_summary

    from cxrviewer.ml.manifest import load_manifest
    from tests.conftest import REPO_ROOT

    manifest = load_manifest(REPO_ROOT / "models" / "input-gate", verify=False)
    _print_summary(manifest.metrics)
    out = capsys.readouterr().out
    r = manifest.metrics["frontal_cxr_pass"]
    assert f"frontal CXRs passed: {100 * r['rate']:.1f} % ({r['k']}/{r['n']})" in out
    assert "non-CXR refused:" in out and "DICOM CXRs passed:" in out and "{" not in out
