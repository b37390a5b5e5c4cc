"""The inference runtime: one :class:`Predictor` per model directory, on the best backend available here.

``Predictor.load(model_dir, device="auto")`` verifies the manifest (SHA-256 of every file; a mismatch is a
:class:`~cxrviewer.ml.manifest.ModelIntegrityError`, never a silent fallback), chooses a backend
(:mod:`cxrviewer.ml.backends.selection`: torch on CUDA in fp16/bf16, ONNX Runtime on the CPU in fp32 or int8,
torch on the CPU as the fallback), sets laptop-friendly thread counts and runs a warm-up batch.

``predict(images)`` preprocesses with the manifest's :class:`~cxrviewer.core.preprocess.PreprocessSpec`, runs
the network in batches and returns, per image, a :class:`Prediction`: temperature-scaled probabilities, the
logits, Grad-CAM maps of every class from the same forward pass (exact for a GAP + linear head, see
:mod:`cxrviewer.ml.explain.cam`), the L2-normalised embedding (spatial mean of the same feature map) and the
preprocessing geometry. Only safetensors and ONNX files are ever read; no pickles.

Importing this module imports neither torch nor onnxruntime; the ONNX Runtime path never imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrviewer.core.preprocess import Geometry, PreprocessSpec, preprocess
from cxrviewer.ml.backends.selection import BackendChoice, ChosenBackend, explicit_backend, select_backend
from cxrviewer.ml.explain.cam import cam_from_features
from cxrviewer.ml.manifest import ModelIntegrityError, ModelManifest, load_manifest
from cxrviewer.ml.retrieval import l2_normalise


@dataclass(frozen=True)
class PredictorSettings:
    """Runtime settings of a :class:`Predictor`.

    Attributes:
        threads: CPU compute threads (default: physical cores, so the UI thread is not starved by SMT).
        batch_size: images per forward pass in :meth:`Predictor.predict`.
        warmup: run one batch at load time so the first real image is not slow.
        allow_spinning: let ONNX Runtime's threads spin between runs (lower latency, burns CPU while idle).
    """

    threads: int | None = None
    batch_size: int = 8
    warmup: bool = True
    allow_spinning: bool = False


@dataclass
class Prediction:
    """The network's output for one image.

    Attributes:
        labels: class names in logit order.
        logits: ``(K,)`` raw logits.
        probabilities: ``(K,)`` softmax of ``logits / temperature``.
        cams: ``(K, h, w)`` Grad-CAM of every class at feature-map resolution (non-negative, not normalised);
            pass one to ``Geometry.to_original`` or ``cxrviewer.ml.explain.heatmap.build_heatmap``.
        embedding: ``(D,)`` pooled feature vector of unit L2 norm (for case retrieval).
        geometry: where the model input came from in the original image.
    """

    labels: list[str]
    logits: np.ndarray
    probabilities: np.ndarray
    cams: np.ndarray
    embedding: np.ndarray
    geometry: Geometry

    @property
    def top_index(self) -> int:
        """Index of the most probable class."""
        return int(np.argmax(self.probabilities))

    def probability_dict(self) -> dict[str, float]:
        """``{label: probability}``."""
        return {lab: float(p) for lab, p in zip(self.labels, self.probabilities, strict=True)}

    def cam(self, class_index: int | None = None) -> np.ndarray:
        """The ``(h, w)`` Grad-CAM of ``class_index`` (default: the top class) at feature-map resolution."""
        return self.cams[self.top_index if class_index is None else int(class_index)]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64, returned as float32."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def model_input(
    image: np.ndarray,
    spec: PreprocessSpec,
    lung_map: np.ndarray | None = None,
    lung_plane: np.ndarray | None = None,
) -> tuple[np.ndarray, Geometry]:
    """One image as a ``(C, size, size)`` float32 model input, with its geometry.

    Channels follow ``spec.channels`` exactly as the trainer assembles them: ``cxr`` is the normalised image,
    ``zeros`` a zero plane, ``lung`` the lung channel: ``lung_plane``, the ``uint8`` U-Net probability plane
    on the model grid made by :func:`cxrviewer.ml.lung_channel.lung_plane` (what the trainer caches; use
    this), else ``lung_map`` (on the original image grid, values in [0, 1]) put through the same
    crop/pad/resize; either is normalised like the image.
    """
    x, geom = preprocess(image, spec)
    if spec.channels == ("cxr",):
        return x[None], geom
    planes = []
    for kind in spec.channels:
        if kind == "cxr":
            planes.append(x)
        elif kind == "zeros":
            planes.append(np.zeros_like(x))
        else:
            if lung_plane is not None:
                if lung_plane.shape != x.shape:
                    raise ValueError(
                        f"the lung plane has shape {lung_plane.shape}, the model input {x.shape}"
                    )
                lung = np.asarray(lung_plane, dtype=np.float32) * np.float32(1.0 / 255.0)
            elif lung_map is None:
                raise ValueError("this model takes a lung-probability channel; pass the image's lung map")
            else:
                lung = np.clip(geom.from_original(np.asarray(lung_map, dtype=np.float32)), 0.0, 1.0)
            planes.append((lung - np.float32(spec.mean)) / np.float32(spec.std))
    return np.stack(planes).astype(np.float32, copy=False), geom


def _read_head(model_dir: Path, manifest: ModelManifest) -> tuple[np.ndarray, np.ndarray]:
    """The linear head's weight and bias from the safetensors file (numpy; no torch)."""
    from safetensors import SafetensorError, safe_open

    weights = manifest.files.get("weights")
    if weights is None:
        raise ModelIntegrityError(f"model {manifest.name} lists no weights file")
    try:
        with safe_open(str(model_dir / weights.path), framework="np") as fh:
            return fh.get_tensor("head.weight").astype(np.float32), fh.get_tensor("head.bias").astype(
                np.float32
            )
    except (SafetensorError, OSError, KeyError) as exc:
        raise ModelIntegrityError(f"model {manifest.name}: the head weights cannot be read ({exc})") from exc


def _build_backend(
    model_dir: Path, manifest: ModelManifest, choice: BackendChoice, settings: PredictorSettings
):
    if choice.onnx_role is not None:
        from cxrviewer.ml.backends.ort_backend import OrtBackend

        path = model_dir / manifest.files[choice.onnx_role].path
        try:
            backend = OrtBackend(path, threads=settings.threads, allow_spinning=settings.allow_spinning)
        except Exception as exc:  # onnxruntime raises its own exception types for invalid graphs
            raise ModelIntegrityError(
                f"model {manifest.name}: the {choice.onnx_role} graph cannot be loaded ({exc})"
            ) from exc
        outputs = [o.name for o in backend.session.get_outputs()]
        if outputs[:2] != ["logits", "features"]:
            raise ModelIntegrityError(
                f"model {manifest.name}: the {choice.onnx_role} graph has outputs {outputs}, "
                "expected logits and features; re-export it with cxr-trainer export"
            )
        return backend
    from cxrviewer.ml.backends.threads import prefer_passive_openmp
    from cxrviewer.ml.backends.torch_backend import TorchBackend
    from cxrviewer.ml.model_io import load_classifier

    prefer_passive_openmp()  # before load_classifier imports torch

    model, _ = load_classifier(model_dir, verify=False)  # verified a moment ago by Predictor.load
    device = "cuda" if "cuda" in choice.name else "cpu"
    dtype = choice.name.rsplit("-", 1)[-1]
    return TorchBackend(model, device=device, dtype=dtype, threads=settings.threads)


class Predictor(ChosenBackend):
    """A loaded classifier on one backend. Create with :meth:`load`; thread-compatible, not thread-safe."""

    def __init__(
        self,
        manifest: ModelManifest,
        model_dir: Path,
        backend,
        choice: BackendChoice,
        head: tuple[np.ndarray, np.ndarray],
        settings: PredictorSettings,
    ):
        self.manifest = manifest
        self.model_dir = model_dir
        self.spec = manifest.preprocess_spec
        self.labels = list(manifest.labels)
        self.temperature = float(manifest.calibration.get("temperature", 1.0) or 1.0)
        self.settings = settings
        self._backend = backend
        self._choice = choice
        self.head_weight, self.head_bias = head
        self.load_ms = 0.0
        self.warmup_ms = 0.0

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "auto",
        precision: str = "auto",
        settings: PredictorSettings | None = None,
        backend: str | None = None,
    ) -> Predictor:
        """Verify and load a classifier model directory.

        Args:
            model_dir: folder with ``manifest.json``, safetensors weights and (optionally) ONNX graphs.
            device: ``auto`` | ``cpu`` | ``cuda``.
            precision: ``auto`` | ``fp32`` | ``int8`` (int8: the CPU graph whatever the manifest says).
            settings: threads, batch size, warm-up.
            backend: force one backend by name (benchmarks, tests); ``device``/``precision`` are then ignored.

        Raises:
            ModelIntegrityError: missing/modified files, unreadable weights, wrong kind of model.
            BackendUnavailableError: ``cuda`` requested without CUDA (no silent fallback), int8 unavailable.
        """
        t0 = time.perf_counter()
        settings = settings or PredictorSettings()
        root = Path(model_dir)
        manifest = load_manifest(root, verify=True)
        if manifest.kind != "classifier":
            raise ModelIntegrityError(f"model {manifest.name} is a {manifest.kind} model, not a classifier")
        if backend is not None:
            choice = explicit_backend(manifest, backend)
        else:
            choice = select_backend(manifest, device=device, precision=precision)
        head = _read_head(root, manifest)
        predictor = cls(
            manifest, root, _build_backend(root, manifest, choice, settings), choice, head, settings
        )
        if head[0].shape[0] != len(predictor.labels):
            raise ModelIntegrityError(
                f"model {manifest.name}: {head[0].shape[0]} outputs but {len(predictor.labels)} labels"
            )
        predictor.load_ms = (time.perf_counter() - t0) * 1000.0
        if settings.warmup:
            predictor.warmup()
        return predictor

    @property
    def model_id(self) -> str:
        """The manifest's model id (name, version, weights hash prefix)."""
        return self.manifest.model_id

    @property
    def threads(self) -> int:
        """CPU compute threads in use."""
        return int(self._backend.threads)

    def warmup(self) -> float:
        """Run one zero batch (first-run allocations, kernel selection); returns its milliseconds."""
        t0 = time.perf_counter()
        size = self.spec.size
        self._backend.run(np.zeros((1, self.spec.in_chans, size, size), dtype=np.float32))
        self.warmup_ms = (time.perf_counter() - t0) * 1000.0
        return self.warmup_ms

    def run_batch(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw network outputs ``(logits (B, K), features (B, D, h, w))`` for preprocessed inputs."""
        return self._backend.run(batch)

    def predict(
        self,
        images: Sequence[np.ndarray],
        lung_maps: Sequence[np.ndarray | None] | None = None,
        batch_size: int | None = None,
    ) -> list[Prediction]:
        """Predict a list of grayscale images (``uint8``, or float in [0, 1]), in batches.

        Args:
            images: 2-D display-ready images on their original grid.
            lung_maps: per-image lung probability maps on the same grids (needed only by models whose
                preprocessing has a ``lung`` channel).
            batch_size: images per forward pass (default: ``settings.batch_size``).
        """
        if lung_maps is not None and len(lung_maps) != len(images):
            raise ValueError(f"{len(images)} images but {len(lung_maps)} lung maps")
        step = max(1, int(batch_size or self.settings.batch_size))
        out: list[Prediction] = []
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            lungs = lung_maps[start : start + step] if lung_maps is not None else [None] * len(chunk)
            inputs = [model_input(img, self.spec, lung) for img, lung in zip(chunk, lungs, strict=True)]
            out.extend(self.predict_inputs(np.stack([x for x, _ in inputs]), [g for _, g in inputs]))
        return out

    def predict_inputs(self, batch: np.ndarray, geometries: Sequence[Geometry]) -> list[Prediction]:
        """Predictions for an already preprocessed batch ``(B, C, size, size)`` and its geometries."""
        logits, features = self._backend.run(batch)
        probs = softmax(logits, self.temperature)
        cams = cam_from_features(features, self.head_weight)  # (B, K, h, w), every class
        embeddings = l2_normalise(features.mean(axis=(2, 3)))
        return [
            Prediction(
                labels=self.labels,
                logits=logits[i],
                probabilities=probs[i],
                cams=cams[i],
                embedding=embeddings[i],
                geometry=geometries[i],
            )
            for i in range(len(geometries))
        ]
