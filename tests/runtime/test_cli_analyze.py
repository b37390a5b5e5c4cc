"""``cxrviewer analyze``: JSON schema and CSV on a temp folder of synthetic PNGs, exit codes, wiring."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import zipfile

import cv2
import pytest

from cxrviewer.cli_analyze import main
from cxrviewer.services.result import JSON_SCHEMA_VERSION
from tests.conftest import REPO_ROOT
from tests.runtime.models import synthetic_cxr

KEYS = {
    "path", "status", "probabilities", "reason", "latency_ms", "top_label", "operating_point", "warnings",
    "model_id", "backend", "backend_reason", "neighbours", "neighbour_vote", "saliency_outside_lungs",
    "timings_ms", "schema_version",
}  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(pristine_model_dir):
    return pristine_model_dir


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "study"
    (root / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "b.PNG", "sub/c.png"]):
        cv2.imwrite(str(root / name), synthetic_cxr(90 + 10 * i, 80, seed=i))
    (root / "notes.txt").write_text("not an image")
    return root


def test_json_schema_on_a_folder(model_dir, folder, tmp_path):
    out = tmp_path / "out.json"
    rc = main([str(folder), "--json", "--out", str(out), "--model", str(model_dir), "--threads", "1"])
    assert rc == 0
    rows = json.loads(out.read_text())
    assert sorted(r["path"].rsplit("study", 1)[1] for r in rows) == ["/a.png", "/b.PNG", "/sub/c.png"]
    for r in rows:
        assert set(r) == KEYS
        assert r["status"] == "ok" and r["schema_version"] == JSON_SCHEMA_VERSION
        assert set(r["probabilities"]) == {"normal", "pneumonia", "covid"}
        assert r["operating_point"]["name"] == "balanced" and isinstance(
            r["operating_point"]["positive"], bool
        )
        assert r["backend"] and r["backend_reason"] and r["latency_ms"] > 0


def test_csv_and_error_exit_status(model_dir, folder, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    (folder / "also-broken.png").write_bytes(b"garbage")
    args = [str(folder), str(broken), "--csv", "--model", str(model_dir), "--device", "cpu", "--threads", "1"]
    rc = main(args)
    captured = capsys.readouterr()
    assert rc == 1  # the file named on the command line is an error result
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert len(rows) == 4
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in rows}
    assert by_name["broken.png"]["status"] == "error" and "broken.png" in by_name["broken.png"]["reason"]
    assert by_name["a.png"]["status"] == "ok" and 0 <= float(by_name["a.png"]["p_covid"]) <= 1
    assert by_name["a.png"]["backend"] == "onnxruntime-cpu-fp32"
    assert "skipped also-broken.png" in captured.err  # inside a folder: passed over with a note


def test_zip_members_are_analysed_in_memory(model_dir, folder, tmp_path, capsys):
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(folder / "a.png", "x/a.png")
        zf.writestr("x/readme.txt", "not an image")
    rc = main([str(archive), "--model", str(model_dir), "--threads", "1"])
    captured = capsys.readouterr()
    assert rc == 0
    (row,) = json.loads(captured.out)
    assert row["status"] == "ok" and row["path"] == f"{archive}:x/a.png"
    assert "skipped" in captured.err and "readme.txt" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study", "study.zip"]  # nothing extracted


def test_missing_path_is_an_error_result(model_dir, tmp_path, capsys):
    rc = main([str(tmp_path / "nope.dcm"), "--model", str(model_dir), "--threads", "1"])
    (row,) = json.loads(capsys.readouterr().out)
    assert rc == 1 and row["status"] == "error" and "nope.dcm" in row["reason"]


def test_empty_input_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no images found" in capsys.readouterr().err


def test_wired_as_a_subcommand_of_cxrviewer(model_dir, folder):
    proc = subprocess.run(
        [sys.executable, "-m", "cxrviewer", "analyze", str(folder / "a.png"), "--model", str(model_dir)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["status"] == "ok" and "Research use only" in proc.stderr
