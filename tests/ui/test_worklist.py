"""The worklist service (no Qt): statuses, score sorting and CSV/JSON export."""

from __future__ import annotations

import csv
import json

import pytest

from cxrviewer.services.result import AnalysisResult, OperatingPoint
from cxrviewer.services.worklist import ItemStatus, Worklist


def _result(path: str, covid: float, status: str = "ok") -> AnalysisResult:
    if status != "ok":
        return AnalysisResult(path=path, status=status, reason="not a frontal chest radiograph")
    return AnalysisResult(
        path=path,
        status="ok",
        probabilities={"covid": covid, "normal": 1 - covid},
        operating_point=OperatingPoint("balanced", "covid", 0.4, 0.9, 0.8),
        model_id="m",
        backend="cpu",
        latency_ms=5.0,
    )


def test_statuses_scores_and_sorting(tmp_path):
    paths = [tmp_path / f"{n}.png" for n in "abcd"]
    wl = Worklist.from_sources(paths + [paths[0]])  # a repeat is listed once
    assert len(wl) == 4 and [i.name for i in wl] == ["a.png", "b.png", "c.png", "d.png"]
    keys = [i.key for i in wl]
    wl.mark_running(keys[0])
    assert wl[0].status == ItemStatus.RUNNING
    wl.set_result(keys[0], _result("a", 0.2))
    wl.set_result(keys[1], _result("b", 0.9))
    wl.set_result(keys[2], _result("c", 0.0, status="abstained"))
    assert [i.status for i in wl] == [
        ItemStatus.DONE,
        ItemStatus.DONE,
        ItemStatus.ABSTAINED,
        ItemStatus.PENDING,
    ]
    assert wl[0].score == pytest.approx(0.2) and wl[0].flagged is False
    assert wl[1].flagged is True and wl[2].score is None
    assert wl[2].message == "not a frontal chest radiograph"
    assert wl.next_pending().key == keys[3]
    wl.sort_by_score()
    assert [i.name for i in wl][:2] == ["b.png", "a.png"]
    assert {i.name for i in list(wl)[2:]} == {"c.png", "d.png"}  # unscored last
    assert wl.index_of(keys[1]) == 0
    cancelled = wl.cancel_running()
    assert [i.name for i in cancelled] == ["d.png"] and wl.counts()["cancelled"] == 1


def test_export_csv_and_json(tmp_path):
    wl = Worklist.from_sources([tmp_path / "x.png", tmp_path / "y.png", tmp_path / "z.png"])
    k = [i.key for i in wl]
    wl.set_result(k[0], _result("x", 0.7))
    wl.set_result(k[1], _result("y", 0.1, status="abstained"))
    wl.set_failed(k[2], "z.png: the file is not an image")

    rows = list(csv.DictReader(wl.export_csv(tmp_path / "w.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["name"] for r in rows] == ["x.png", "y.png", "z.png"]
    assert rows[0]["status"] == "done" and float(rows[0]["p_covid"]) == pytest.approx(0.7)
    assert rows[0]["flagged"] == "true" and rows[0]["top_label"] == "covid"
    assert rows[1]["status"] == "abstained" and rows[1]["score"] == ""
    assert rows[2]["status"] == "error" and "not an image" in rows[2]["reason"]

    data = json.loads(wl.export_json(tmp_path / "w.json").read_text(encoding="utf-8"))
    assert data["counts"]["done"] == 1 and data["counts"]["error"] == 1
    first = data["items"][0]
    assert first["result"] == _result("x", 0.7).to_json()  # the stable AnalysisResult JSON, unchanged
    assert data["items"][2]["result"] is None and data["items"][2]["message"].endswith("not an image")
