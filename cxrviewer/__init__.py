"""cxrviewer: a desktop chest X-ray viewer with local AI (research use only, not for diagnosis).

Importing this package is cheap: it loads neither Qt nor torch nor ONNX Runtime.
Layers: ``core`` (loading, preprocessing), ``ml`` (networks, predictor, explainability, retrieval),
``services`` (study model, analysis pipeline, case library, export) and ``ui`` (Qt, the only Qt user).
"""

__version__ = "0.1.0"

INTENDED_USE = "Research use only. Not for diagnosis."

__all__ = ["__version__", "INTENDED_USE"]
