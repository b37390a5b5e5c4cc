"""Capture the README screenshots from the real viewer window (run under Xvfb or any X display).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/capture.py [--model MODEL_DIR]

What is on screen is produced by the real code paths: the window, the analysis pipeline with MODEL_DIR (the
shipped classifier ``models/cxr-classifier`` unless another is given), a
case library built here (in ``runs/screenshots/``, git-ignored) from shared-data images whose licence allows
redistribution (CC BY), the shipped lung U-Net (``models/lung-unet``) and the worklist. The CTR widths are
placed by this script, and the image is a CC BY JPEG (no pixel spacing, so measurements are in px).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

CC_BY = {"CC BY 3.0", "CC BY 4.0", "CC BY"}
# PA film, CC BY (ieee8023 covid-chestxray-dataset)
MAIN_IMAGE = "images/cohen/pneumocystis-pneumonia-1.jpg"


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def pick_library_images(data: Path, exclude: set[str], per_group: int = 7) -> list[dict]:
    """Frontal CC BY images, at most ``per_group`` per (source, label), interleaved across the groups."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in read_csv(data / "labels.csv"):
        if r["license"] not in CC_BY or r["path"] in exclude:
            continue
        if r["view"] not in ("PA", "AP", "frontal", "AP Supine"):
            continue
        group = groups.setdefault((r["source"], r["label"]), [])
        if len(group) < per_group:
            group.append(r)
    columns = list(groups.values())
    return [g[i] for i in range(per_group) for g in columns if i < len(g)]


def build_library(model_dir: Path, data: Path, rows: list[dict], out: Path) -> Path:
    from cxrviewer.ml.predictor import Predictor, PredictorSettings
    from cxrviewer.services.case_library import CaseLibrary

    predictor = Predictor.load(model_dir, device="cpu", settings=PredictorSettings(threads=2))
    out.unlink(missing_ok=True)
    task = predictor.manifest.task.get("label_map", {})
    with CaseLibrary.open(out, create=True, kind="reference", name="reference (CC BY)") as lib:
        for r in rows:
            img = cv2.imread(str(data / r["path"]), cv2.IMREAD_GRAYSCALE)
            emb = predictor.predict([img])[0].embedding
            label = task.get(r["label"], r["label"])
            lib.add_case(
                img,
                emb,
                label,
                model_id=predictor.model_id,
                source=r["origin"],
                licence=r["license"],
                redistributable=True,
            )
        lib.finalise()
    return out


def wait(app, predicate, timeout: float = 60.0) -> None:
    t0 = time.time()
    while not predicate():
        app.processEvents()
        time.sleep(0.01)
        if time.time() - t0 > timeout:
            raise TimeoutError("the window did not reach the expected state")


def settle(app, seconds: float = 0.4) -> None:
    t0 = time.time()
    while time.time() - t0 < seconds:
        app.processEvents()
        time.sleep(0.01)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=REPO / "models" / "cxr-classifier")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cxr")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = p.parse_args()

    work = REPO / "runs" / "screenshots"
    work.mkdir(parents=True, exist_ok=True)
    main_path = args.data / MAIN_IMAGE
    lib_rows = pick_library_images(args.data, {MAIN_IMAGE})
    library = build_library(args.model, args.data, lib_rows, work / "reference.cxrlib")

    from PySide6.QtCore import QSettings

    from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings
    from cxrviewer.ui.analysis_backend import PipelineAnalyzer, open_case_libraries, shipped_helpers
    from cxrviewer.ui.app import create_application
    from cxrviewer.ui.main_window import MainWindow
    from cxrviewer.ui.settings import ViewerSettings

    holder = {}

    def factory():
        libraries = open_case_libraries([library])
        gate, segmenter, _notes = shipped_helpers(ViewerSettings())
        pipeline = AnalysisPipeline(
            AnalysisSettings(model_dir=args.model, device="cpu"),
            gate=gate,
            segmenter=segmenter,
            libraries=libraries,
        )
        pipeline.load()
        holder["pipeline"] = pipeline
        return PipelineAnalyzer(pipeline, libraries, user_library=None)

    app = create_application()
    store = QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(analyzer_factory=factory, settings=ViewerSettings(heatmap_opacity=0.45), store=store)
    w.resize(1600, 1000)
    w.show()
    shown = []
    w.analysis_shown.connect(shown.append)
    w.open_paths([main_path])
    wait(app, lambda: len(shown) == 1)
    settle(app)
    args.out.mkdir(parents=True, exist_ok=True)
    w.grab().save(str(args.out / "viewer-heatmap.png"))

    item = w.similar.list.item(0)
    w.similar.list.itemClicked.emit(item)
    settle(app, 0.6)
    w.overlay_controls.heatmap.setChecked(False)
    # illustration of the tool: widths placed by this script, not a reading of the film
    w.view.measure("ctr", (202, 362), (358, 362))
    w.view.measure("ctr", (27, 340), (478, 340))
    settle(app)
    w.grab().save(str(args.out / "viewer-compare-ctr.png"))

    w.close_compare()
    in_library = {r["path"] for r in lib_rows} | {MAIN_IMAGE}
    batch = [args.data / r["path"] for r in pick_library_images(args.data, in_library)[:10]]
    w.open_paths(batch)
    wait(app, lambda: len(w.worklist.worklist) >= 10)
    w.analyse_worklist()
    wait(app, lambda: not w.batch_running, timeout=120)
    w.worklist.model.sort_by_score()
    w.worklist_dock.setMinimumHeight(300)
    settle(app, 0.8)
    w.grab().save(str(args.out / "viewer-worklist.png"))
    w.close()
    print("wrote", *sorted(str(p) for p in args.out.glob("viewer-*.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
