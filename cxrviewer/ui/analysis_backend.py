"""The default analyzer: ``cxrviewer.services.analysis.AnalysisPipeline`` built with the user's settings.

:func:`pipeline_factory` returns a factory that the analysis thread calls on first use, so torch / ONNX
Runtime are imported there, never on the GUI thread and never before the window has painted.
"""

from __future__ import annotations

from cxrviewer.ui.settings import ViewerSettings
from cxrviewer.ui.workers import AnalyzerFactory, ModelUnavailable


def pipeline_factory(settings: ViewerSettings) -> AnalyzerFactory:
    """A factory building the analysis pipeline for ``settings``; it raises :class:`ModelUnavailable` with a
    human message when no model can be used (nothing installed, integrity check failed, ...)."""

    def build():
        try:
            from cxrviewer.services import analysis
        except ImportError as exc:
            raise ModelUnavailable(f"The analysis pipeline could not be loaded ({exc}).") from exc
        try:
            pipeline = analysis.AnalysisPipeline(_pipeline_settings(analysis, settings))
        except Exception as exc:  # no model installed, bad manifest, missing backend...
            raise ModelUnavailable(str(exc) or type(exc).__name__) from exc
        return pipeline.analyze

    return build


def _pipeline_settings(analysis_module, settings: ViewerSettings):
    """Translate the viewer's settings into the pipeline's settings object (fields it does not have are
    left at their defaults)."""
    cls = getattr(analysis_module, "AnalysisSettings", None) or getattr(
        analysis_module, "PipelineSettings", None
    )
    if cls is None:
        return None
    wanted = {
        "device": settings.device,
        "model_dir": settings.model_dir or None,
        "operating_point": settings.operating_point or None,
    }
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set(wanted)
    return cls(**{k: v for k, v in wanted.items() if k in names and v is not None})
