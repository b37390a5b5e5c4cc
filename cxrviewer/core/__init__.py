"""Image loading and preprocessing: numpy, pydicom and OpenCV only (no Qt, no torch).

Public API: :class:`LoadError`, :mod:`cxrviewer.core.preprocess` (the shared preprocessing spec).
"""

from cxrviewer.core.errors import LoadError

__all__ = ["LoadError"]
