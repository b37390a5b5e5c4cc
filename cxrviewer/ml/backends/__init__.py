"""Inference backends behind :class:`cxrviewer.ml.predictor.Predictor`.

Each backend runs a preprocessed batch ``(B, C, H, W) float32`` and returns ``(logits, feature_map)`` as
``float32`` numpy arrays: torch on CUDA (fp16/bf16 autocast), ONNX Runtime on CPU (fp32 or int8) and torch
on CPU (fp32, the fallback). :mod:`~cxrviewer.ml.backends.selection` chooses one and says why. Nothing here
imports torch or onnxruntime at module import time.
"""
