"""The bundled sample study: small, documented, loadable, one patient with two DICOM views and a PNG."""

from __future__ import annotations

from pathlib import Path

from cxrviewer.core import load_studies
from cxrviewer.resources import sample_study_dir


def test_sample_study() -> None:
    folder = sample_study_dir()
    files = sorted(p for p in folder.iterdir() if p.name != "README.md")
    assert 2 <= len(files) <= 4
    assert sum(p.stat().st_size for p in files) < 2_000_000
    readme = (folder / "README.md").read_text()
    assert "CC BY 3.0" in readme
    for path in files:
        assert path.name in readme, f"{path.name} is not documented"
    tree = load_studies(folder)
    assert [s.source.name for s in tree.skipped] == ["README.md"]  # reported, as every non-image is
    dicom_patient = next(p for p in tree.patients if p.patient_id == "SAMPLE-0001")
    assert dicom_patient.patient_name == "ANONYMOUS^SAMPLE"
    views = []
    for ref in tree.images():
        image = ref.load()
        assert min(image.shape) >= 400
        if image.format == "DICOM":
            assert image.pixel_spacing is not None and image.windows
            views.append(image.view_position)
    assert sorted(views) == ["AP", "PA"]


def test_generator_is_committed(repo_root: Path) -> None:
    assert (repo_root / "tests" / "fixtures" / "make_samples.py").is_file()
