"""Machine learning shared by the viewer and the trainer: networks, manifests, predictor, explainability,
lung segmentation, embeddings and retrieval. torch and onnxruntime are imported lazily inside functions or
submodules, never by importing this package."""
