"""inspect → train → evaluate → export → ONNX agrees with torch → the viewer's Predictor loads the model.

Torch runs with one thread (``--threads 1``): on the shared 2-core machine two OpenMP threads competing with
other processes made the same test 2.3x slower (74 s against 33 s, same load, same run). The stage times are
printed (``pytest -s``)."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest
import torch
from cxr_trainer.cli import main

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


def test_inspect_train_evaluate_export_predict(synthetic_dataset, workdir, monkeypatch):
    monkeypatch.setenv("CXR_TRAINER_CACHE", str(workdir / "cache"))
    csv_path = str(synthetic_dataset)
    stage_s: dict[str, float] = {}
    t0 = time.perf_counter()

    # 1. inspect: counts, the damaged file, the duplicate pair, a leak-free proposed split
    assert main(["data", "inspect", csv_path, "--json", str(workdir / "inspect.json"), "--quiet"]) == 0
    rep = json.loads((workdir / "inspect.json").read_text())["result"]
    assert rep["images"] == 63 and rep["counts"]["label"]["other"] == 1
    assert list(rep["unreadable"]) == ["images/beta/broken.png"]
    assert rep["near_duplicates"]["listed_pairs"] == 1 and rep["near_duplicates"]["found_pairs"] >= 1
    assert rep["split"]["leakage"]["ok"]
    stage_s["inspect"] = time.perf_counter() - t0

    # 2. train two epochs
    model_dir = workdir / "model"
    args = [
        "train",
        "--data",
        csv_path,
        "--out",
        str(model_dir),
        "--arch",
        "mobilenet_v3_small",
        "--size",
        "48",
        "--epochs",
        "2",
        "--lr",
        "1e-3",
        "--batch-size",
        "16",
        "--threads",
        "1",
        "--quiet",
        "--name",
        "e2e-test",
    ]
    t0 = time.perf_counter()
    assert main(args) == 0
    stage_s["train"] = time.perf_counter() - t0
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["labels"] == ["normal", "pneumonia", "covid"]
    assert manifest["task"]["name"] == "normal-pneumonia-covid"
    assert set(manifest["files"]) == {"weights", "split"}
    assert manifest["thresholds"]["chosen_on"] == "validation"
    assert set(manifest["thresholds"]["operating_points"]) == {
        "high-sensitivity",
        "balanced",
        "high-specificity",
    }
    assert manifest["calibration"]["temperature"] > 0
    assert manifest["training"]["excluded_labels"] == {"other": 1}
    assert manifest["training"]["failed_images"] == 1
    assert len(manifest["training"]["history"]) == 2
    log = json.loads((model_dir / "train_log.json").read_text())
    assert log["status"] == "ok" and [e["epoch"] for e in log["events"] if e["event"] == "epoch"] == [1, 2]

    # 3. evaluate on the test split of the same CSV
    ev = workdir / "eval"
    t0 = time.perf_counter()
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model_dir),
                "--labels",
                csv_path,
                "--out",
                str(ev),
                "--split",
                str(model_dir / "split.csv"),
                "--subset",
                "test",
                "--bootstrap",
                "50",
                "--threads",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    stage_s["evaluate"] = time.perf_counter() - t0
    assert json.loads((ev / "evaluate_log.json").read_text())["status"] == "ok"
    metrics = json.loads((ev / "metrics.json").read_text())
    split_rows = (model_dir / "split.csv").read_text().splitlines()[1:]
    n_test = sum(1 for r in split_rows if r.split(",")[1] == "test" and "broken" not in r)
    assert metrics["n"] == n_test
    assert len(metrics["threshold_table"]) == 19 and set(metrics["per_source"]) <= {"alpha", "beta"}
    for key in (
        "roc_auc",
        "pr_auc",
        "per_class",
        "confusion_argmax",
        "calibration",
        "operating_points",
        "inference",
    ):
        assert key in metrics
    html = (ev / "report.html").read_text()
    for png in (
        "roc.png",
        "thresholds.png",
        "score_histograms.png",
        "confusion.png",
        "reliability.png",
        "tsne.png",
    ):
        assert (ev / png).stat().st_size > 1000 and png in html

    # 4. export: ONNX verified against torch, int8 measured
    t0 = time.perf_counter()
    assert main(["export", "--model", str(model_dir), "--int8", "dynamic", "--quiet"]) == 0
    manifest = json.loads((model_dir / "manifest.json").read_text())
    stage_s["export"] = time.perf_counter() - t0
    assert {"onnx", "onnx_int8"} <= set(manifest["files"])
    assert manifest["extra"]["onnx"]["max_abs_diff_vs_torch"] <= 1e-4
    assert manifest["extra"]["int8"]["accuracy_delta"] is not None
    assert json.loads((model_dir / "export_log.json").read_text())["status"] == "ok"

    # 5. ONNX and torch agree here too, and the viewer's Predictor loads the exported folder
    t0 = time.perf_counter()
    import onnxruntime as ort

    from cxrviewer.core.preprocess import preprocess
    from cxrviewer.ml.model_io import load_classifier
    from cxrviewer.ml.predictor import Predictor

    model, m = load_classifier(model_dir)
    img = cv2.imread(str(synthetic_dataset.parent / "images/alpha/covid_002.png"), cv2.IMREAD_GRAYSCALE)
    x, _ = preprocess(img, m.preprocess_spec)
    with torch.no_grad():
        ref = model(torch.from_numpy(x[None, None])).numpy()
    sess = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": x[None, None].astype(np.float32)})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)
    pred = Predictor.load(model_dir, device="cpu", precision="fp32").predict([img])[0]
    probs = np.array([pred.probability_dict()[k] for k in m.labels])
    t = m.calibration["temperature"]
    expected = np.exp(ref[0] / t) / np.exp(ref[0] / t).sum()
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    stage_s["onnx+predictor"] = time.perf_counter() - t0
    print("end-to-end stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in stage_s.items()))
