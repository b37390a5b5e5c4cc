"""Data safety: a full session never modifies, adds or removes anything in the user's sources.

Every file of a folder (DICOM, PNG, a truncated DICOM), a ZIP and a DICOMDIR disc is hashed (SHA-256, size,
modification time) before and after: load_studies → load_image of every image → analysis of every image →
worklist JSON/CSV and de-identified DICOM SC + SR exported to a different folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import cv2
from pydicom import dcmread

from tests.privacy.helpers import write_canary_dicom
from tests.reliability.build_corpus import pydicom_test_files
from tests.runtime.models import make_runtime_model_dir, synthetic_cxr


def _fingerprint(root: Path) -> dict[str, tuple[str, int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.join(dirpath, name)] = ("dir", 0, 0)
        for name in filenames:
            p = Path(dirpath, name)
            st = p.stat()
            out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns)
    return out


def test_full_session_leaves_sources_untouched(tmp_path):
    from cxrviewer.core import LoadError, load_image, load_studies
    from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings
    from cxrviewer.services.export.dicom_export import export_dicom
    from cxrviewer.services.worklist import Worklist

    sources = tmp_path / "sources"
    folder = sources / "folder"
    (folder / "sub").mkdir(parents=True)
    for i in range(2):
        write_canary_dicom(folder / f"img{i}.dcm", seed=i)
    cv2.imwrite(str(folder / "sub" / "chest.png"), synthetic_cxr(120, 100, seed=5))
    (folder / "cut.dcm").write_bytes((folder / "img0.dcm").read_bytes()[:-3000])
    archive = Path(shutil.make_archive(str(sources / "study"), "zip", folder))
    disc = sources / "disc"
    shutil.copytree(pydicom_test_files() / "dicomdirtests", disc)
    model_dir = make_runtime_model_dir(tmp_path / "model")
    out = tmp_path / "exports"
    out.mkdir()
    before = _fingerprint(sources)

    trees = [load_studies(folder), load_studies(archive), load_studies(disc / "DICOMDIR")]
    refs = [ref for tree in trees for ref in tree.images()]
    assert len(refs) >= 8
    pipeline = AnalysisPipeline(AnalysisSettings(model_dir=model_dir, device="cpu", threads=1))
    worklist = Worklist.from_sources([ref.source for ref in refs])
    loaded = 0
    for item in worklist:
        try:
            image = load_image(item.source)
        except LoadError as exc:
            worklist.set_failed(item.key, str(exc))
            continue
        loaded += 1
        worklist.set_result(item.key, pipeline.analyze(image.display(), name=item.name))
    assert loaded >= 6
    worklist.export_json(out / "worklist.json")
    worklist.export_csv(out / "worklist.csv")
    first = next(item for item in worklist if item.result is not None and item.source.path.suffix == ".dcm")
    exported = export_dicom(dcmread(first.source.path), first.result)
    exported.secondary_capture.save_as(out / "sc.dcm", enforce_file_format=True)
    exported.structured_report.save_as(out / "sr.dcm", enforce_file_format=True)

    assert _fingerprint(sources) == before, "a source file was modified, added or removed"
    assert {p.name for p in out.iterdir()} == {"worklist.json", "worklist.csv", "sc.dcm", "sr.dcm"}
