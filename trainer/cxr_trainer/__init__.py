"""cxr-trainer: builds every model the viewer ships (datasets, splits, training, evaluation, export).

Imports ``cxrviewer.core`` and ``cxrviewer.ml``; never ``cxrviewer.ui``.
"""

from cxrviewer import __version__

__all__ = ["__version__"]
