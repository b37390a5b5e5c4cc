"""The real chest X-ray DICOMs in shared/data/dicom load with a plausible size and pixel spacing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrviewer.core import load_image


def test_every_real_cxr_loads(shared_data: Path) -> None:
    files = sorted((shared_data / "dicom").rglob("*.dcm"))
    assert files, "no DICOM files in shared/data/dicom"
    for path in files:
        image = load_image(path)
        assert min(image.shape) >= 512, f"{path.name}: implausibly small {image.shape}"
        assert image.pixel_spacing is not None, f"{path.name}: no pixel spacing"
        assert all(0.05 <= s <= 1.0 for s in image.pixel_spacing), image.pixel_spacing
        assert image.metadata.get("body_part") == "CHEST"
        shown = image.display()
        assert shown.std() > 20, "a chest X-ray shows contrast"
        if image.photometric_interpretation == "MONOCHROME1":
            # the same pixels re-tagged MONOCHROME1: shown inverted relative to the MONOCHROME2 original
            twin = next(p for p in files if p != path)
            normal = load_image(twin).display(as_float=True)
            np.testing.assert_allclose(image.display(as_float=True), 1.0 - normal, atol=1e-6)
