"""Image loading and preprocessing: numpy, pydicom and OpenCV only (no Qt, no torch).

Public API: :func:`load_image` → :class:`CxrImage`, :func:`load_studies` → :class:`StudyTree`
(:class:`Patient` → :class:`Study` → :class:`Series` → :class:`ImageRef`), :class:`ImageSource`,
:class:`Window`, :class:`LoadError`, :data:`MAX_PIXELS`, and :mod:`cxrviewer.core.preprocess` (the shared
preprocessing spec).
"""

from cxrviewer.core.errors import LoadError
from cxrviewer.core.image import CxrImage, PixelPadding
from cxrviewer.core.limits import MAX_PIXELS
from cxrviewer.core.loader import load_image
from cxrviewer.core.source import ImageSource
from cxrviewer.core.studies import ImageRef, Patient, Series, SkippedFile, Study, StudyTree, load_studies
from cxrviewer.core.windowing import Window

__all__ = [
    "MAX_PIXELS",
    "CxrImage",
    "ImageRef",
    "ImageSource",
    "LoadError",
    "Patient",
    "PixelPadding",
    "Series",
    "SkippedFile",
    "Study",
    "StudyTree",
    "Window",
    "load_image",
    "load_studies",
]
