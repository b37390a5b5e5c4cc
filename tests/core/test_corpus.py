"""Every file of the DICOM corpora either loads or raises LoadError — never another exception."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrviewer.core import CxrImage, LoadError, load_image
from tests.core.conftest import CORPUS_RESULTS, corpus_files

FILES = corpus_files()


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("corpus", "path"), FILES, ids=[f"{c}:{p.name}" for c, p in FILES])
def test_file_loads_or_raises_load_error(corpus: str, path: Path) -> None:
    try:
        image = load_image(path)
    except LoadError as exc:
        CORPUS_RESULTS[(corpus, "refused")] += 1
        assert path.name in str(exc), "the message names the file"
        assert exc.reason and "Traceback" not in exc.reason
        return
    CORPUS_RESULTS[(corpus, "loaded")] += 1
    assert isinstance(image, CxrImage)
    assert image.pixels.dtype == np.float32 and image.pixels.ndim == 2
    shown = image.display()
    assert shown.dtype == np.uint8 and shown.shape == image.shape
    shown_f = image.display(as_float=True)
    assert shown_f.dtype == np.float32 and float(shown_f.min()) >= 0.0 and float(shown_f.max()) <= 1.0
    assert image.sop_instance_uid and image.study_instance_uid and image.patient_id


def test_corpora_are_present() -> None:
    """The test-data packages are installed, so the corpus test above is not vacuous."""
    corpora = {c for c, _ in FILES}
    assert {"pydicom", "pydicom-data", "deid-data"} <= corpora
    assert len(FILES) > 150
