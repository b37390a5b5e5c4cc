"""cxrviewer: a desktop chest X-ray viewer with local AI (research use only, not for diagnosis).

Importing this package is cheap: it loads neither Qt nor torch nor ONNX Runtime.
Layers: ``core`` (loading, preprocessing), ``ml`` (networks, predictor, explainability, retrieval),
``services`` (study model, analysis pipeline, case library, export) and ``ui`` (Qt, the only Qt user).
"""

import os as _os

__version__ = "0.1.0"

# ONNX Runtime's official Linux/macOS wheels (1.2x and later) ship Microsoft's 1DS telemetry switched on: on first
# use they write a device id and an event queue under ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ and
# upload process information. The viewer never sends data anywhere, so it is switched off here, before any
# module of this package (viewer, ``cxrviewer analyze``, trainer) can import onnxruntime. Forced, not a default.
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"

INTENDED_USE = "Research use only. Not for diagnosis."

__all__ = ["__version__", "INTENDED_USE"]
