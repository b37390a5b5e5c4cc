"""The analysis pipeline: one call takes an image to an :class:`~cxrviewer.services.result.AnalysisResult`.

Steps, each timed in ``timings_ms``: load → input gate → preprocess → classify (+ Grad-CAM from the same
forward pass) → lung mask → heatmap on the original grid → neighbours from the case libraries. The gate,
the lung segmenter and the case libraries are optional, pluggable objects (protocols below) built by other
parts of the program; without them those steps are skipped and the result says so in ``warnings``.

Failures never escape as tracebacks: an unreadable image, a missing or tampered model, a CUDA request on a
machine without CUDA all become ``status="error"`` with a plain-words ``reason``. The classifier is loaded
lazily on first use, so building a pipeline (and importing this module) imports neither torch nor
onnxruntime.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cxrviewer.core.errors import LoadError
from cxrviewer.core.preprocess import SharedPreprocessing
from cxrviewer.core.source import ImageSource
from cxrviewer.services.result import AnalysisResult, Neighbour, OperatingPoint

NO_MODEL_REASON = "no model installed"


@runtime_checkable
class Gate(Protocol):
    """Decides whether an image is something the classifier may score (e.g. a frontal chest X-ray)."""

    def check(self, image: np.ndarray) -> tuple[bool, str | None]:
        """``(True, None)`` to go on, or ``(False, reason)`` to abstain with a human reason."""
        ...


@runtime_checkable
class LungSegmenter(Protocol):
    """Produces a lung mask for an image."""

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Lung mask (bool, or probabilities in [0, 1]) on the image's own grid."""
        ...


class CaseLibraryLike(Protocol):
    """A case library or a set of them (``cxrviewer.services.case_library.CaseLibrary`` / ``LibrarySet``).

    ``query`` returns records with ``library``, ``case_id``, ``label``, ``distance``, ``source`` and
    ``licence`` attributes, nearest first, and raises if the library was built with another model.
    """

    def query(self, embedding: np.ndarray, k: int = 4, *, model_id: str) -> Sequence[Any]: ...


@dataclass(frozen=True)
class AnalysisSettings:
    """How the pipeline runs.

    Attributes:
        model_dir: classifier model directory; ``None``: the first classifier under ``models/``.
        device: ``auto`` | ``cpu`` | ``cuda``.
        precision: ``auto`` | ``fp32`` | ``int8``.
        operating_point: name of one of the manifest's operating points; ``None``: the manifest's default.
        batch_size: images per forward pass in :meth:`AnalysisPipeline.analyze_many`.
        neighbours: how many similar cases to retrieve.
        heatmap: compute the Grad-CAM heatmap on the original grid.
        threads: CPU threads (default: physical cores).
        warmup: run a warm-up batch when the model loads.
        share_preprocessing: the gate, the lung segmenter and the classifier share one image's preprocessing
            (its border crop once, and one output for equal specs: the shipped gate and classifier read the
            same 128-px input) through :class:`~cxrviewer.core.preprocess.SharedPreprocessing`; the model
            inputs are identical either way. ``False``: each model preprocesses on its own (the reference
            path of tests and benchmarks).
    """

    model_dir: str | Path | None = None
    device: str = "auto"
    precision: str = "auto"
    operating_point: str | None = None
    batch_size: int = 8
    neighbours: int = 4
    heatmap: bool = True
    threads: int | None = None
    warmup: bool = True
    share_preprocessing: bool = True


def default_model_dir(root: str | Path | None = None) -> Path | None:
    """The first classifier model directory (sorted by name) under ``root`` (default: shipped ``models/``)."""
    if root is None:
        from cxrviewer.resources import models_dir

        root = models_dir()
    base = Path(root)
    if not base.is_dir():
        return None
    for sub in sorted(p for p in base.iterdir() if (p / "manifest.json").is_file()):
        try:
            kind = json.loads((sub / "manifest.json").read_text(encoding="utf-8")).get("kind")
        except (OSError, ValueError, AttributeError):
            continue
        if kind == "classifier":
            return sub
    return None


def read_display_image(location: str | Path | ImageSource) -> np.ndarray:
    """The display-ready 8-bit grayscale image of a file or ZIP member (the one place pixels are read).

    DICOM goes through its modality LUT and stored VOI window (else an automatic window), MONOCHROME1 is
    inverted; PNG/JPEG/TIFF as stored (see :func:`cxrviewer.core.load_image`). Multi-frame: frame 0.

    Raises:
        LoadError: the file is missing or not a readable image.
    """
    return read_display_image_and_modality(location)[0]


def read_display_image_and_modality(location: str | Path | ImageSource) -> tuple[np.ndarray, str | None]:
    """Like :func:`read_display_image`, with the DICOM Modality (None for raster images or when absent), which
    the input gate uses to refuse e.g. CT or ultrasound by name."""
    from cxrviewer.core.loader import load_image  # pydicom and OpenCV load on first use, not at import

    loaded = load_image(location)
    modality = loaded.metadata.get("modality") if loaded.format == "DICOM" else None
    return loaded.display(), (str(modality) if modality else None)


def source_label(item: str | Path | ImageSource | np.ndarray) -> str:
    """How a result names its input: the path, ``archive.zip:member`` (with the archive's path), or
    ``<array>``."""
    if isinstance(item, np.ndarray):
        return "<array>"
    if isinstance(item, ImageSource):
        return str(item.path) if item.member is None else f"{item.path}:{item.member}"
    return str(item)


@dataclass
class _Job:
    """One image on its way through the pipeline."""

    path: str
    started: float
    result: AnalysisResult | None = None  # set when the job ended early (error or abstention)
    image: np.ndarray | None = None
    lung: np.ndarray | None = None
    lung_plane: np.ndarray | None = None  # the lung channel on the model grid (lung-channel models)
    shared: SharedPreprocessing | None = None  # the image's preprocessing, shared by the models
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def preprocessing(self) -> contextlib.AbstractContextManager:
        """Context in which the models share this image's preprocessing (a no-op when not shared)."""
        return self.shared.active() if self.shared is not None else contextlib.nullcontext()


def _lung_mask_array(mask: np.ndarray) -> np.ndarray:
    """A segmenter's mask as the pipeline keeps it: ``bool`` for a binary mask (0/1 integers or bool: the
    shipped U-Net's), else float32 probabilities. A detector-size mask then costs 1 byte a pixel and no float
    passes; ``bool`` and the float form give the same lung mask and heatmap figures."""
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.integer) and mask.size and int(mask.max()) <= 1 and int(mask.min()) >= 0:
        return mask > 0
    return mask.astype(np.float32, copy=False)


class _Timer:
    def __init__(self, timings: dict[str, float], key: str):
        self.timings, self.key = timings, key

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.timings[self.key] = self.timings.get(self.key, 0.0) + (time.perf_counter() - self.t0) * 1000.0


class AnalysisPipeline:
    """Analyses images with one classifier and optional gate, lung segmenter and case libraries.

    Thread-safe: analyses are serialised on the model (one forward pass at a time).
    """

    def __init__(
        self,
        settings: AnalysisSettings | None = None,
        *,
        gate: Gate | None = None,
        segmenter: LungSegmenter | None = None,
        libraries: CaseLibraryLike | None = None,
        predictor=None,
    ):
        """``predictor``: an already loaded :class:`~cxrviewer.ml.predictor.Predictor` (else loaded lazily)."""
        self.settings = settings or AnalysisSettings()
        self.gate = gate
        self.segmenter = segmenter
        self.libraries = libraries
        self._predictor = predictor
        self._load_error: str | None = None
        self._lock = threading.RLock()

    # -- the model ---------------------------------------------------------------------------------------
    def load(self):
        """Load (once) and return the classifier :class:`~cxrviewer.ml.predictor.Predictor`.

        Raises:
            RuntimeError: with the human reason (no model installed, integrity failure, CUDA unavailable,
                unknown operating point); the same reason is returned again on later calls.
        """
        with self._lock:
            if self._predictor is not None:
                return self._predictor
            if self._load_error is not None:
                raise RuntimeError(self._load_error)
            try:
                self._predictor = self._load_predictor()
            except Exception as exc:  # noqa: BLE001 - every load failure becomes a reason, never a traceback
                self._load_error = str(exc) or type(exc).__name__
                raise RuntimeError(self._load_error) from exc
            return self._predictor

    def _load_predictor(self):
        s = self.settings
        model_dir = Path(s.model_dir) if s.model_dir is not None else default_model_dir()
        if model_dir is None:
            raise RuntimeError(NO_MODEL_REASON)
        from cxrviewer.ml.predictor import Predictor, PredictorSettings

        predictor = Predictor.load(
            model_dir,
            device=s.device,
            precision=s.precision,
            settings=PredictorSettings(threads=s.threads, batch_size=s.batch_size, warmup=s.warmup),
        )
        self._operating_point_spec(predictor.manifest)  # unknown names fail at load, not per image
        return predictor

    def _operating_point_spec(self, manifest) -> tuple[str, str, dict[str, Any]] | None:
        """``(name, positive_class, spec)`` of the chosen operating point, None if the model has none."""
        table = manifest.thresholds or {}
        points = table.get("operating_points") or {}
        if not points:
            return None
        name = self.settings.operating_point or table.get("default") or next(iter(points))
        if name not in points:
            raise ValueError(f"unknown operating point {name!r}; this model has: {', '.join(points)}")
        positive = table.get("positive_class") or manifest.labels[-1]
        if positive not in manifest.labels:
            raise ValueError(f"the operating points refer to class {positive!r}, which the model lacks")
        return name, positive, points[name]

    # -- public API --------------------------------------------------------------------------------------
    def analyze(self, item: str | Path | ImageSource | np.ndarray, name: str | None = None) -> AnalysisResult:
        """Analyse one image: a file path, an :class:`ImageSource` (e.g. a ZIP member) or a display-ready
        grayscale array (``name`` labels the result)."""
        return self.analyze_many([item], names=[name] if name is not None else None)[0]

    def analyze_many(
        self,
        items: Sequence[str | Path | ImageSource | np.ndarray],
        batch_size: int | None = None,
        names: Sequence[str] | None = None,
    ) -> list[AnalysisResult]:
        """Analyse several images, batching the classifier; results in input order."""
        return list(self.iter_analyze(items, batch_size=batch_size, names=names))

    def iter_analyze(
        self,
        items: Iterable[str | Path | ImageSource | np.ndarray],
        batch_size: int | None = None,
        names: Sequence[str] | None = None,
    ) -> Iterator[AnalysisResult]:
        """Like :meth:`analyze_many` but yields each batch's results as soon as they are ready."""
        step = max(1, int(batch_size or self.settings.batch_size))
        batch: list[_Job] = []
        for i, item in enumerate(items):
            label = names[i] if names is not None else source_label(item)
            batch.append(self._start(item, label))
            if len(batch) >= step:
                yield from self._run_batch(batch)
                batch = []
        if batch:
            yield from self._run_batch(batch)

    # -- stages ------------------------------------------------------------------------------------------
    def _start(self, item, label: str) -> _Job:
        """Model, load, gate (and the lung mask when the model takes it as an input channel)."""
        try:
            predictor = self.load()  # once; not part of any image's latency
        except RuntimeError as exc:
            job = _Job(path=label, started=time.perf_counter())
            self._end(job, "error", str(exc))
            return job
        job = _Job(path=label, started=time.perf_counter())
        try:
            with _Timer(job.timings, "load"):
                modality = None
                if isinstance(item, np.ndarray):
                    job.image = item
                else:
                    job.image, modality = read_display_image_and_modality(item)
            if self.settings.share_preprocessing:
                job.shared = SharedPreprocessing(job.image)
            if self.gate is None:
                job.warnings.append(
                    "no input gate installed: the image was not checked for being a chest X-ray"
                )
            else:
                with _Timer(job.timings, "gate"), job.preprocessing():
                    # a gate that knows DICOM modalities (cxrviewer.ml.gate.InputGate) also gets it
                    takes_modality = modality is not None and getattr(self.gate, "accepts_modality", False)
                    ok, why = (
                        self.gate.check(job.image, modality=modality)
                        if takes_modality
                        else self.gate.check(job.image)
                    )
                if not ok:
                    self._end(job, "abstained", why or "the input gate refused this image", predictor)
                    return job
            if "lung" in predictor.spec.channels:
                if self.segmenter is None:
                    raise ValueError("this model needs a lung segmentation model, which is not installed")
                self._segment_for_model(job, predictor.spec)
        except (LoadError, ValueError) as exc:  # our own messages are written for people
            self._end(job, "error", str(exc), predictor)
        except Exception as exc:  # noqa: BLE001 - reported as a reason, never a traceback
            self._end(job, "error", f"analysis failed ({type(exc).__name__}: {exc})", predictor)
        return job

    def _segment(self, job: _Job) -> None:
        with _Timer(job.timings, "segment"), job.preprocessing():
            mask = np.asarray(self.segmenter.segment(job.image))
            if mask.shape != job.image.shape:
                raise ValueError(f"the lung mask has shape {mask.shape}, the image {job.image.shape}")
            job.lung = _lung_mask_array(mask)

    def _segment_for_model(self, job: _Job, spec) -> None:
        """The lung mask and the U-Net's probability plane (the model's lung channel) from one run."""
        from cxrviewer.ml.lung_channel import lung_input

        with _Timer(job.timings, "segment"), job.preprocessing():
            mask, job.lung_plane = lung_input(self.segmenter, job.image, spec)
        job.lung = mask.astype(np.float32)

    def _run_batch(self, jobs: list[_Job]) -> list[AnalysisResult]:
        live = [j for j in jobs if j.result is None]
        if live:
            with self._lock:
                self._classify(live)
        return [j.result for j in jobs]

    def _classify(self, jobs: list[_Job]) -> None:
        from cxrviewer.ml.predictor import model_input

        predictor = self.load()
        ready: list[tuple[_Job, np.ndarray, Any]] = []
        for job in jobs:
            try:
                with _Timer(job.timings, "preprocess"), job.preprocessing():
                    x, geom = model_input(job.image, predictor.spec, job.lung, lung_plane=job.lung_plane)
                ready.append((job, x, geom))
            except Exception as exc:  # noqa: BLE001
                self._end(job, "error", f"preprocessing failed ({type(exc).__name__}: {exc})", predictor)
        if not ready:
            return
        t0 = time.perf_counter()
        try:
            preds = predictor.predict_inputs(np.stack([x for _, x, _ in ready]), [g for _, _, g in ready])
        except Exception as exc:  # noqa: BLE001
            for job, _, _ in ready:
                self._end(job, "error", f"the model failed to run ({type(exc).__name__}: {exc})", predictor)
            return
        share = (time.perf_counter() - t0) * 1000.0 / len(ready)
        for (job, _, _), pred in zip(ready, preds, strict=True):
            job.timings["classify"] = share
            try:
                self._finish(job, pred, predictor)
            except Exception as exc:  # noqa: BLE001
                self._end(job, "error", f"analysis failed ({type(exc).__name__}: {exc})", predictor)

    def _finish(self, job: _Job, pred, predictor) -> None:
        """Scores, operating point, lung mask, heatmap, neighbours."""
        probs = pred.probability_dict()
        size = predictor.spec.size
        if min(job.image.shape) < size:
            job.warnings.append(
                f"the image ({job.image.shape[1]}×{job.image.shape[0]} px) is smaller than the model input "
                f"({size} px) and was upscaled"
            )
        op = self._operating_point(predictor.manifest, probs, job)
        result = self._end(job, "ok", None, predictor, probabilities=probs, operating_point=op, close=False)
        if self.segmenter is not None and job.lung is None:
            self._segment(job)
        if job.lung is not None:
            result.lung_mask = job.lung if job.lung.dtype == bool else job.lung > 0.5
        if self.settings.heatmap:
            with _Timer(job.timings, "heatmap"):
                self._heatmap(result, pred, job)
        if self.libraries is not None:
            with _Timer(job.timings, "retrieve"):
                self._neighbours(result, pred.embedding, predictor.model_id, job)
        self._close(job, result)

    def _operating_point(self, manifest, probs: dict[str, float], job: _Job) -> OperatingPoint | None:
        spec = self._operating_point_spec(manifest)
        if spec is None:
            job.warnings.append("the model defines no operating point: scores only")
            return None
        name, positive, point = spec
        threshold = float(point["threshold"])

        def ci(key: str) -> tuple[float, float] | None:
            v = point.get(key)
            return (float(v[0]), float(v[1])) if v else None

        return OperatingPoint(
            name=name,
            positive_class=positive,
            threshold=threshold,
            sensitivity=point.get("sensitivity"),
            specificity=point.get("specificity"),
            sensitivity_ci=ci("sensitivity_ci"),
            specificity_ci=ci("specificity_ci"),
            positive=bool(probs[positive] >= threshold),
        )

    def _heatmap(self, result: AnalysisResult, pred, job: _Job) -> None:
        """Grad-CAM of the top class on the original grid, and its share outside the lungs."""
        from cxrviewer.ml.explain.heatmap import build_heatmap

        idx = pred.top_index
        heat = build_heatmap(pred.cam(idx), "gradcam", idx, geometry=pred.geometry, lung_mask=job.lung)
        result.heatmap, result.heatmap_method, result.heatmap_class = heat.map, heat.method, pred.labels[idx]
        result.saliency_outside_lungs = heat.outside_lung_fraction
        if heat.warning:
            result.warnings.append(heat.warning)

    def _neighbours(self, result: AnalysisResult, embedding: np.ndarray, model_id: str, job: _Job) -> None:
        from cxrviewer.ml.retrieval import neighbour_vote

        stale = getattr(self.libraries, "stale", None)
        try:
            if stale is not None:  # a library set: search the up-to-date libraries, name the stale ones
                for lib in stale(model_id):
                    result.warnings.append(
                        f"case library {lib.info.name!r} was built with another model and is not searched; "
                        "rebuild it for this model"
                    )
                found = list(
                    self.libraries.query(
                        embedding, self.settings.neighbours, model_id=model_id, skip_stale=True
                    )
                )
            else:
                found = list(self.libraries.query(embedding, self.settings.neighbours, model_id=model_id))
        except Exception as exc:  # noqa: BLE001 - e.g. a library built with another model
            result.warnings.append(f"similar cases are not shown: {exc}")
            return
        result.neighbours = [
            Neighbour(
                case_id=str(n.case_id),
                library=str(n.library),
                label=str(n.label),
                distance=float(n.distance),
                source=getattr(n, "source", None),
                licence=getattr(n, "licence", None),
            )
            for n in found
        ]
        result.neighbour_vote = neighbour_vote([n.label for n in found], [n.distance for n in found]).weighted

    # -- results -----------------------------------------------------------------------------------------
    def _end(
        self,
        job: _Job,
        status: str,
        reason: str | None,
        predictor=None,
        probabilities: dict[str, float] | None = None,
        operating_point: OperatingPoint | None = None,
        close: bool = True,
    ) -> AnalysisResult:
        result = AnalysisResult(
            path=job.path,
            status=status,  # type: ignore[arg-type]
            probabilities=probabilities or {},
            reason=reason,
            operating_point=operating_point,
            warnings=job.warnings,
        )
        if predictor is not None:
            result.model_id = predictor.model_id
            result.backend = predictor.backend
            result.backend_reason = predictor.backend_reason
        job.result = result
        if close:
            self._close(job, result)
        return result

    @staticmethod
    def _close(job: _Job, result: AnalysisResult) -> None:
        """Stamp the total latency and the step timings."""
        total = (time.perf_counter() - job.started) * 1000.0
        result.timings_ms = {**job.timings, "total": total}
        result.latency_ms = total
