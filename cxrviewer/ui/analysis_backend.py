"""The default analyzer: :class:`cxrviewer.services.analysis.AnalysisPipeline` with the user's settings and
the case libraries found on this computer.

:func:`pipeline_factory` returns a factory that the analysis thread calls on first use, so torch / ONNX
Runtime are imported there, never on the GUI thread and never before the window has painted. The model is
loaded eagerly by the factory so that "no model installed" is known at once and shown as a notice.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from cxrviewer.ui.settings import ViewerSettings
from cxrviewer.ui.workers import AnalyzerFactory, ModelUnavailable


def find_case_libraries(folders: list[Path] | None = None) -> list[Path]:
    """Case library files (``*.cxrlib``) in the user's library folder and under the shipped ``models/``."""
    from cxrviewer.resources import models_dir
    from cxrviewer.services.case_library import LIBRARY_SUFFIX, default_library_dir

    found: list[Path] = []
    for folder in folders if folders is not None else [default_library_dir(), models_dir()]:
        if folder.is_dir():
            found.extend(sorted(folder.rglob(f"*{LIBRARY_SUFFIX}")))
    return found


def open_case_libraries(paths: list[Path]):
    """A ``LibrarySet`` of the readable libraries among ``paths`` (read-only), or None when there are none."""
    from cxrviewer.services.case_library import CaseLibrary, CaseLibraryError, LibrarySet

    libs = LibrarySet()
    for p in paths:
        try:
            libs.add(CaseLibrary.open(p, read_only=True))
        except (CaseLibraryError, ValueError):
            continue  # unreadable or a duplicate name: searched without it
    return libs if libs.libraries else None


def pipeline_factory(settings: ViewerSettings, library_paths: list[Path] | None = None) -> AnalyzerFactory:
    """A factory building the analysis pipeline for ``settings``; it raises :class:`ModelUnavailable` with the
    pipeline's own human reason when no model can be used (nothing installed, integrity failure, no CUDA)."""

    def build():
        from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings

        libraries = open_case_libraries(library_paths if library_paths is not None else find_case_libraries())
        pipeline = AnalysisPipeline(
            AnalysisSettings(
                model_dir=settings.model_dir or None,
                device=settings.device,
                operating_point=settings.operating_point or None,
            ),
            libraries=libraries,
        )
        try:
            pipeline.load()
        except RuntimeError as exc:
            raise ModelUnavailable(_explain(str(exc))) from exc

        def analyze(image: Any):
            result = pipeline.analyze(image.display(), name=image.source.name)
            if libraries is not None:
                for n in result.neighbours:
                    if n.thumbnail_png is None:
                        with contextlib.suppress(KeyError, ValueError):  # a case removed meanwhile
                            n.thumbnail_png = libraries.library(n.library).thumbnail(int(n.case_id))
            return result

        return analyze

    return build


def _explain(reason: str) -> str:
    from cxrviewer.services.analysis import NO_MODEL_REASON

    if reason == NO_MODEL_REASON:
        return "No classifier model is installed (the models/ folder has none)."
    return reason[0].upper() + reason[1:] if reason else "The model could not be loaded."
