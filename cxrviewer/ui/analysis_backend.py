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
from cxrviewer.ui.workers import AnalysisCancelled, AnalyzerFactory, ModelUnavailable


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


class PipelineAnalyzer:
    """``analyze(image) -> AnalysisResult`` over an :class:`AnalysisPipeline`, plus ``add_to_library``.

    Lives in the analysis thread. ``image`` is a ``cxrviewer.core.CxrImage``: its default display (the
    file's own window) is what the model sees, whatever window the user has set.
    """

    def __init__(
        self, pipeline, libraries, user_library: Path | None, notes: list[str] | None = None
    ) -> None:
        self.pipeline = pipeline
        self.notes = list(notes or [])  # helpers that failed to load, added to every result's warnings
        self.libraries = libraries
        self.user_library = user_library
        self._torch_model = None  # loaded on the first occlusion request on a torch backend

    @property
    def available_tasks(self) -> tuple[str, ...]:
        """The optional tasks offered: ``add_to_library`` only when a user library location is set."""
        tasks = ("occlusion",)
        return (*tasks, "add_to_library") if self.user_library is not None else tasks

    def __call__(self, image: Any):
        result = self.pipeline.analyze(image.display(), name=image.source.name)
        result.warnings.extend(n for n in self.notes if n not in result.warnings)
        if self.libraries is not None:
            for n in result.neighbours:
                if n.thumbnail_png is None:
                    with contextlib.suppress(KeyError, ValueError):  # a case removed meanwhile
                        n.thumbnail_png = self.libraries.library(n.library).thumbnail(int(n.case_id))
        return result

    def occlusion(self, image: Any, class_name: str, lung_mask, progress=None, should_cancel=None):
        """Occlusion-sensitivity heatmap of ``class_name`` (``cxrviewer.ml.explain``), coarse map first.

        ``progress(done, total, partial, display)`` receives the partial map already on the image grid
        (normalised) and its display form (:class:`~cxrviewer.ui.overlay_data.HeatmapDisplay`);
        when ``should_cancel()`` fires, :class:`AnalysisCancelled` is raised. Returns the explain module's
        ``Heatmap`` (``map``, ``method``, ``outside_lung_fraction``, ``warning``).
        """
        from cxrviewer.ml.explain import OcclusionCancelled, normalize_map
        from cxrviewer.ml.explain.predictor_occlusion import (
            explain_occlusion_with_predictor,
            load_torch_occlusion_model,
            runs_on_onnxruntime,
        )
        from cxrviewer.ml.predictor import model_input
        from cxrviewer.ui.overlay_data import prepare_heatmap

        predictor = self.pipeline.load()
        if self._torch_model is None and not runs_on_onnxruntime(predictor):  # ONNX Runtime needs no torch
            self._torch_model = load_torch_occlusion_model(predictor)
        if class_name not in predictor.labels:
            raise ValueError(f"the model has no class {class_name!r}")
        display = image.display()
        x, geometry = model_input(display, predictor.spec, lung_mask)

        def report(done: int, total: int, partial) -> None:
            if progress is not None:  # the map on the image grid and, for the window, its display form
                full = normalize_map(geometry.to_original(normalize_map(partial)))
                progress(done, total, full, prepare_heatmap(full, lung_mask))

        try:
            return explain_occlusion_with_predictor(
                predictor,
                x,
                predictor.labels.index(class_name),
                geometry,
                lung_mask,
                progress=report,
                should_cancel=should_cancel,
                torch_model=self._torch_model,
            )
        except OcclusionCancelled as exc:
            raise AnalysisCancelled(str(exc)) from exc

    def add_to_library(self, image: Any, label: str) -> str:
        """Store ``image`` (thumbnail + embedding by the current model) with ``label`` in the user's own
        library, which is created if needed and searched from now on. No file name or identifier is stored.

        Raises:
            ValueError: empty label, or no user library location.
            cxrviewer.services.case_library.CaseLibraryError: the library cannot be written or was built with
                another model (its message says so).
        """
        from cxrviewer.services.case_library import CaseLibrary, LibrarySet

        label = label.strip()
        if not label:
            raise ValueError("give the case a label first")
        if self.user_library is None:
            raise ValueError("no location for your case library is configured")
        predictor = self.pipeline.load()
        display = image.display()
        embedding = predictor.predict([display])[0].embedding
        with CaseLibrary.open(
            self.user_library, create=True, kind="user", model_id=predictor.model_id
        ) as lib:
            case_id = lib.add_case(
                display, embedding, label, model_id=predictor.model_id, provenance="added in cxrviewer"
            )
            name = lib.name
        if self.libraries is None:
            self.libraries = LibrarySet()
            self.pipeline.libraries = self.libraries
        if not any(lib.path == self.user_library for lib in self.libraries.libraries):
            self.libraries.add(CaseLibrary.open(self.user_library, read_only=True))
        return f"Added to your case library “{name}” as case {case_id} ({label})."


def shipped_helpers(settings: ViewerSettings) -> tuple[Any, Any, list[str]]:
    """The shipped input gate and lung segmenter (see :func:`cxrviewer.services.shipped_helpers.load_shipped_helpers`),
    with the viewer's thread budget and device setting."""
    from cxrviewer.services.shipped_helpers import load_shipped_helpers

    return load_shipped_helpers(threads=analysis_threads(), device=settings.device)


def analysis_threads() -> int:
    """CPU threads for inference in the viewer: one physical core fewer than the machine has (at least one),
    so that the GUI thread always finds a free core while a model runs."""
    from cxrviewer.ml.backends.threads import physical_cores

    return max(1, physical_cores() - 1)


def pipeline_factory(
    settings: ViewerSettings,
    library_paths: list[Path] | None = None,
    user_library: Path | None | bool = True,
    helpers: bool = True,
) -> AnalyzerFactory:
    """A factory building the analysis pipeline for ``settings``; it raises :class:`ModelUnavailable` with the
    pipeline's own human reason when no model can be used (nothing installed, integrity failure, no CUDA).

    Args:
        library_paths: case libraries to search (default: :func:`find_case_libraries`).
        user_library: the user's own library file for "Add to my library" (``True``: the default location,
            ``None``: none).
        helpers: use the input gate and lung segmenter shipped under ``models/`` when present.
    """

    def build():
        from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings
        from cxrviewer.services.case_library import default_user_library_path

        user = default_user_library_path() if user_library is True else user_library
        paths = library_paths if library_paths is not None else find_case_libraries()
        if user is not None and user.is_file() and user not in paths:
            paths = [*paths, user]
        libraries = open_case_libraries(paths)
        gate, segmenter, notes = shipped_helpers(settings) if helpers else (None, None, [])
        pipeline = AnalysisPipeline(
            AnalysisSettings(
                model_dir=settings.model_dir or None,
                device=settings.device,
                operating_point=settings.operating_point or None,
                threads=analysis_threads(),
            ),
            libraries=libraries,
            gate=gate,
            segmenter=segmenter,
        )
        try:
            pipeline.load()
        except RuntimeError as exc:
            raise ModelUnavailable(_explain(str(exc))) from exc
        return PipelineAnalyzer(pipeline, libraries, user, notes)

    return build


def _explain(reason: str) -> str:
    from cxrviewer.services.analysis import NO_MODEL_REASON

    if reason == NO_MODEL_REASON:
        return "No classifier model is installed (the models/ folder has none)."
    return reason[0].upper() + reason[1:] if reason else "The model could not be loaded."
