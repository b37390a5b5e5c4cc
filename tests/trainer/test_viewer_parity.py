"""The trainer and the viewer feed a model identical pixels for the same file (one preprocessing spec)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from cxr_trainer.image_cache import preprocess_uint8, read_gray
from cxr_trainer.inputs import assemble_channels

from cxrviewer.core import load_image
from cxrviewer.core.preprocess import PreprocessSpec
from cxrviewer.ml.predictor import model_input


@pytest.mark.parametrize("spec", [PreprocessSpec(size=128), PreprocessSpec(size=224, clahe=True)])
def test_trainer_and_viewer_inputs_are_identical_on_shared_images(shared_data, spec):
    root = shared_data / "cxr"
    with open(root / "labels.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    picked = [r for group in by_source.values() for r in group[:4]]
    assert len(picked) >= 12
    for r in picked:
        path = root / r["path"]
        # trainer: decode → preprocess → uint8 cache → normalise (as during training)
        cached = preprocess_uint8(read_gray(path), spec)
        x_train = assemble_channels(torch.from_numpy(cached).float()[None, None] / 255.0, spec)[0].numpy()
        # viewer: load_image → display image → model_input (as in the Predictor)
        x_view, _ = model_input(load_image(path).display(), spec)
        np.testing.assert_allclose(x_train, x_view, atol=1e-5, err_msg=str(path))
