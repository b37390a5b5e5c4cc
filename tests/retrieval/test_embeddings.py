"""Embedding extraction: the classifier's pooled penultimate layer, L2-normalised, from preprocessed images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrviewer.core.preprocess import preprocess
from cxrviewer.ml.embeddings import embed_arrays, embed_images
from cxrviewer.ml.model_io import load_classifier
from tests.helpers.tiny_model import make_tiny_classifier_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_classifier(make_tiny_classifier_dir(tmp_path_factory.mktemp("m") / "tiny"))


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((90 + 7 * i, 80)) * 255).astype(np.uint8) for i in range(n)]


def test_embed_images_is_the_normalised_penultimate_layer(tiny):
    model, manifest = tiny
    spec = manifest.preprocess_spec
    batch = np.stack([preprocess(img, spec)[0] for img in _images(3)])
    emb = embed_images(model, batch)
    with torch.no_grad():
        raw = model.embed(torch.from_numpy(batch).unsqueeze(1)).numpy()
    assert emb.shape == (3, model.feature_dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)
    # A 4-D batch and a torch tensor give the same result.
    np.testing.assert_allclose(embed_images(model, torch.from_numpy(batch[:, None])), emb, atol=1e-6)


def test_embed_arrays_batches_consistently(tiny):
    model, manifest = tiny
    imgs = _images(5, seed=1)
    a = embed_arrays(model, imgs, manifest.preprocess_spec, batch_size=2)
    b = embed_arrays(model, imgs, manifest.preprocess_spec, batch_size=5)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(a[0], a[1])
