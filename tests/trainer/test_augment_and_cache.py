"""The image cache reproduces preprocess() exactly; augmentation is CXR-safe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cxr_trainer.augment import AugmentConfig, augment_batch
from cxr_trainer.datasets import load_dataset
from cxr_trainer.image_cache import build_cache, read_gray
from cxr_trainer.inputs import assemble_channels, to_unit

from cxrviewer.core.preprocess import PreprocessSpec, preprocess


def test_cache_matches_preprocess_and_records_failures(synthetic_dataset, tmp_path):
    ds = load_dataset(synthetic_dataset)
    spec = PreprocessSpec(size=40)
    cache = build_cache(ds.records, spec, tmp_path, show_progress=False)
    broken = [i for i, r in enumerate(ds.records) if r.key.endswith("broken.png")]
    assert list(cache.failed) == broken and "not a decodable image" in cache.failed[broken[0]]
    for i in (0, 5, len(ds.records) - 1):
        if i in cache.failed:
            continue
        ref, _ = preprocess(read_gray(ds.records[i].path), spec)
        got = assemble_channels(to_unit(cache.pixels[i : i + 1]), spec)[0, 0].numpy()
        np.testing.assert_allclose(got, ref, atol=1e-5)
    again = build_cache(ds.records, spec, tmp_path, show_progress=False)  # reused, not rebuilt
    assert again.path == cache.path and np.array_equal(again.pixels, cache.pixels)


def test_lung_channel_without_a_provider_is_a_clear_error():
    spec = PreprocessSpec(size=16, channels=("cxr", "lung", "zeros"))
    with pytest.raises(ValueError, match="lung"):
        assemble_channels(torch.zeros(1, 1, 16, 16), spec)
    x = assemble_channels(torch.zeros(1, 1, 16, 16), PreprocessSpec(size=16, channels=("cxr", "zeros")))
    assert x.shape == (1, 2, 16, 16) and torch.all(x[:, 1] == 0)


def test_augmentation_keeps_range_and_never_flips_by_default():
    x = torch.zeros(64, 1, 32, 32)
    x[:, :, 8:24, 2:10] = 1.0  # a bright bar on the left
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, AugmentConfig(), g)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    left, right = out[..., :16].mean(dim=(1, 2, 3)), out[..., 16:].mean(dim=(1, 2, 3))
    assert torch.all(left > right)  # small rotation/shift only: the bar stays on the left
    assert not torch.allclose(out[0], out[1])  # each image gets its own transform
    flipped = augment_batch(x, AugmentConfig(0, 0, 0, 0, 0, 0, hflip=1.0), g)
    assert torch.allclose(flipped, torch.flip(x, dims=[3]), atol=1e-5)
    same = augment_batch(x, AugmentConfig(0, 0, 0, 0, 0, 0, 0), g)
    assert torch.allclose(same, x, atol=1e-5)
