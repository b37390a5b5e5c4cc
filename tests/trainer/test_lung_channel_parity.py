"""The trainer's cached lung channel and the viewer's lung channel are identical for the same file."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from cxr_trainer.image_cache import preprocess_uint8, read_gray
from cxr_trainer.inputs import assemble_channels, to_unit
from cxr_trainer.lung_cache import input_planes

from cxrviewer.core import load_image
from cxrviewer.core.preprocess import PreprocessSpec, preprocess
from cxrviewer.ml.lung_channel import lung_input, lung_mask_from_plane, lung_plane
from cxrviewer.ml.predictor import model_input
from cxrviewer.ml.segmentation import LungSegmenter
from cxrviewer.services.shipped_helpers import LungMaskAdapter

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def segmenter() -> LungSegmenter:
    return LungSegmenter(threads=1)


@pytest.mark.parametrize(
    "spec",
    [
        PreprocessSpec(size=128, channels=("cxr", "lung", "zeros")),
        PreprocessSpec(size=96, clahe=True, max_crop_fraction=0.1, channels=("cxr", "lung")),
    ],
    ids=["shipped-recipe", "other-crop"],
)
def test_trainer_and_viewer_lung_channels_are_identical_on_shared_images(shared_data, segmenter, spec):
    root = shared_data / "cxr"
    with open(root / "labels.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        if r["view"].upper() in ("PA", "AP"):
            by_source.setdefault(r["source"], []).append(r)
    picked = [r for group in by_source.values() for r in group[:2]]
    assert len(picked) >= 6
    areas, other_grid = [], 0
    for r in picked:
        path = root / r["path"]
        # trainer: decode → lung plane (what cxr_trainer.lung_cache caches) beside the uint8 image cache
        gray = read_gray(path)
        planes = input_planes(preprocess_uint8(gray, spec)[None], lung_plane(gray, spec, segmenter)[None])
        x_train = assemble_channels(to_unit(planes), spec)[0].numpy()
        # viewer: load_image → display image → one U-Net run (mask + plane) → model_input, as the pipeline does
        display = load_image(path).display()
        mask, plane = lung_input(LungMaskAdapter(segmenter), display, spec)
        x_view, _ = model_input(display, spec, lung_plane=plane)
        np.testing.assert_allclose(x_train, x_view, atol=1e-5, err_msg=str(path))
        assert mask.shape == display.shape
        areas.append(lung_mask_from_plane(plane).mean())
        other_grid += preprocess(display, spec)[1].crop != preprocess(display, segmenter.spec)[1].crop
    # the channel holds lungs, not noise: a plausible lung fraction of the model input on most images
    assert np.median(areas) > 0.15 and np.median(areas) < 0.55
    # the shipped recipe crops like the U-Net (plain resize); the other spec also takes the original-grid path
    assert (other_grid == 0) if spec.max_crop_fraction == segmenter.spec.max_crop_fraction else other_grid > 0
