"""Embedding extraction for similar-case retrieval: a classifier's pooled penultimate features, L2-normalised.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxrviewer.core.preprocess import PreprocessSpec
from cxrviewer.ml.predictor import model_input
from cxrviewer.ml.retrieval import l2_normalise


def embed_images(model, batch) -> np.ndarray:
    """Embeddings of a preprocessed batch via ``model.embed`` (see :class:`~cxrviewer.ml.registry.Classifier`).

    Args:
        model: a ``Classifier`` (anything with ``embed(x) -> (B, d)``); it is put in eval mode.
        batch: ``(B, C, H, W)`` or ``(B, H, W)`` (one channel) numpy array or torch tensor of preprocessed
            pixels (the output of :func:`cxrviewer.core.preprocess.preprocess`, stacked).

    Returns:
        ``(B, d)`` ``float32`` rows of unit L2 norm.
    """
    import torch

    x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(batch))
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) or (B, H, W) batch, got shape {tuple(x.shape)}")
    param = next(model.parameters(), None)
    x = x.to(dtype=torch.float32, device=param.device if param is not None else "cpu")
    model.eval()
    with torch.inference_mode():
        feats = model.embed(x)
    return l2_normalise(feats.detach().cpu().numpy())


def embed_arrays(
    model, images: Sequence[np.ndarray], spec: PreprocessSpec, batch_size: int = 32
) -> np.ndarray:
    """Preprocess grayscale ``images`` with ``spec`` and embed them in batches; returns (N, d) unit rows.

    Inputs are assembled by :func:`cxrviewer.ml.predictor.model_input`, exactly as the viewer does (a model
    with a ``lung`` channel needs lung maps and is refused here).
    """
    out: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        chunk = np.stack([model_input(img, spec)[0] for img in images[start : start + batch_size]])
        out.append(embed_images(model, chunk))
    if not out:
        raise ValueError("no images to embed")
    return np.concatenate(out)
