"""The input gate: is this a frontal chest radiograph the models can read? If not, abstain and say why.

Checks, in order (the first that fails decides the reason):

0. for DICOM, when the caller passes the file's Modality: a modality that is not a projection radiograph
   (CT, MR, US, NM, PT, XA, MG, ...; :data:`NON_RADIOGRAPH_MODALITIES`) is refused by name ("DICOM modality
   CT is not a radiograph"); CR, DX, OT, SC and unknown modalities go on to the pixel checks;
1. the image is big enough and not blank (rules, no model);
2. a small classifier (``models/input-gate/``, registry ``mobilenet_v3_small``) scores it as ``frontal``,
   ``lateral`` or ``other`` (not a chest radiograph: CT/MR/ultrasound slices, photographs, documents, noise,
   inverted or heavily cropped radiographs); a lateral view or a low frontal score abstains;
3. its embedding is not too far (Mahalanobis distance, Ledoit-Wolf covariance of training frontal CXRs) from
   the radiographs the models were trained on — this catches kinds of image the classifier never saw.

4. optionally (``lung_segmenter=LungSegmenter(...)``), the lung mask passes its quality check
   (:func:`cxrviewer.ml.segmentation.assess_mask`: two lungs, plausible area and balance).

Thresholds come from the manifest (chosen on validation frontal CXRs, see ``docs/segmentation.md``). A failed
gate yields ``"abstained: <reason>"`` instead of class scores. The network runs on ONNX Runtime on the CPU when
the model folder ships an ``onnx`` graph (no torch import), else on torch, imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrviewer.core.preprocess import PreprocessSpec, preprocess, to_uint8
from cxrviewer.ml.backends.selection import ChosenBackend

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "input-gate"
GATE_LABELS = ("frontal", "lateral", "other")
OOD_FILE_ROLE = "ood"


NON_RADIOGRAPH_MODALITIES: dict[str, str] = {
    "CT": "computed tomography",
    "MR": "magnetic resonance",
    "US": "ultrasound",
    "NM": "nuclear medicine",
    "PT": "PET",
    "XA": "X-ray angiography",
    "RF": "fluoroscopy",
    "MG": "mammography",
    "IO": "intra-oral radiography",
    "PX": "panoramic dental radiography",
    "ES": "endoscopy",
    "XC": "external-camera photography",
    "GM": "general microscopy",
    "SM": "slide microscopy",
    "OP": "ophthalmic photography",
    "OPT": "ophthalmic tomography",
    "OCT": "optical coherence tomography",
    "IVUS": "intravascular ultrasound",
    "IVOCT": "intravascular OCT",
    "RTDOSE": "radiotherapy dose",
    "RTIMAGE": "radiotherapy image",
    "RTSTRUCT": "radiotherapy structure set",
    "SEG": "segmentation",
    "SR": "structured report",
    "DOC": "document",
    "ECG": "electrocardiography",
}


def modality_check(modality: str | None) -> str:
    """Reason a DICOM Modality is not a projection radiograph the models can read, or ``""``.

    Only modalities that can never be a chest radiograph are refused; ``CR``, ``DX``, ``OT`` (other),
    ``SC`` (secondary capture, e.g. a digitised film), empty and unknown values return ``""`` and are left to
    the pixel checks."""
    m = str(modality or "").strip().upper()
    if m in NON_RADIOGRAPH_MODALITIES:
        return f"DICOM modality {m} ({NON_RADIOGRAPH_MODALITIES[m]}) is not a radiograph"
    return ""


@dataclass(frozen=True)
class GateRules:
    """Model-free checks: minimum image side in pixels and minimum standard deviation of 8-bit pixels."""

    min_side: int = 64
    min_std: float = 3.0


@dataclass
class GateResult:
    """The gate's verdict. Unpacks as ``ok, reason = gate.check(image)``.

    Attributes:
        ok: True when the image may be analysed.
        reason: empty when ok, otherwise a plain-language reason.
        scores: class probabilities (``frontal``, ``lateral``, ``other``) when the model ran.
        distance: Mahalanobis distance of the embedding to the training CXRs (NaN when not computed).
    """

    ok: bool
    reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    distance: float = float("nan")

    def __iter__(self):
        yield self.ok
        yield self.reason

    @property
    def message(self) -> str:
        """``"ok"`` or ``"abstained: <reason>"`` (what the viewer shows instead of class scores)."""
        return "ok" if self.ok else f"abstained: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "scores": dict(self.scores), "distance": self.distance}


def rule_check(image: np.ndarray, rules: GateRules) -> str:
    """Reason the image fails the model-free checks, or ``""``."""
    a = np.asarray(image)
    h, w = a.shape[:2]
    if min(h, w) < rules.min_side:
        return f"the image is only {w}×{h} pixels, too small to be a radiograph"
    gray = to_uint8(a)
    step = max(1, min(h, w) // 256)
    if float(gray[::step, ::step].std()) < rules.min_std:
        return "the image is blank (almost uniform)"
    return ""


def mahalanobis_distances(embeddings: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Mahalanobis distances (float64) of pooled embeddings ``(N, D)`` to ``mean`` under ``precision``."""
    d = np.asarray(embeddings, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    return np.sqrt(np.clip(((d @ np.asarray(precision, dtype=np.float64)) * d).sum(1), 0.0, None))


def _read_ood_stats(path: Path, model_name: str) -> tuple[np.ndarray, np.ndarray]:
    """``mean`` and ``precision`` from the OOD statistics file (numpy; no torch)."""
    from safetensors import SafetensorError, safe_open

    from cxrviewer.ml.manifest import ModelIntegrityError

    try:
        with safe_open(str(path), framework="np") as fh:
            return fh.get_tensor("mean").astype(np.float64), fh.get_tensor("precision").astype(np.float64)
    except (SafetensorError, OSError, KeyError) as exc:
        raise ModelIntegrityError(f"model {model_name}: the OOD statistics cannot be read ({exc})") from exc


class InputGate(ChosenBackend):
    """Loads ``models/input-gate/`` (hash-verified) and checks images; see the module docstring.

    The classifier runs on ONNX Runtime on the CPU when the manifest lists an ``onnx`` graph (outputs
    ``logits`` and the pooled ``embedding``; torch is then never imported), on torch otherwise or when
    ``device`` asks for CUDA. Softmax and the Mahalanobis distance are computed in numpy either way.

    Args:
        model_dir: the gate's model folder.
        verify: check every file's SHA-256 before loading (default).
        lung_segmenter: optional :class:`~cxrviewer.ml.segmentation.LungSegmenter` for the 4th check.
        device: ``auto`` | ``cpu`` | ``cuda``.
        threads: CPU compute threads (default: physical cores).
        backend: force ``onnxruntime-cpu-fp32``, ``torch-cpu-fp32`` or ``torch-cuda-fp32``.
    """

    accepts_modality = True  # check(image, modality=...) refuses non-radiograph DICOM modalities by name

    def __init__(
        self,
        model_dir: str | Path = DEFAULT_MODEL_DIR,
        verify: bool = True,
        lung_segmenter=None,
        device: str = "auto",
        threads: int | None = None,
        backend: str | None = None,
    ):
        from cxrviewer.ml.backends.helper_backend import build_helper_runner, choose_helper_backend
        from cxrviewer.ml.manifest import ModelIntegrityError, load_manifest
        from cxrviewer.ml.onnx_export import GATE_OUTPUT_NAMES

        self.model_dir = Path(model_dir)
        self.manifest = load_manifest(model_dir, verify=verify)
        if self.manifest.kind != "gate" or tuple(self.manifest.labels) != GATE_LABELS:
            raise ModelIntegrityError(f"{model_dir} is not an input-gate model (kind {self.manifest.kind})")
        self.spec: PreprocessSpec = self.manifest.preprocess_spec
        th = self.manifest.thresholds
        self.min_frontal = float(th["min_frontal"])
        self.max_lateral = float(th["max_lateral"])
        self.max_distance = float(th["max_distance"])
        self.rules = GateRules(**self.manifest.extra.get("rules", {}))
        ood = self.manifest.files.get(OOD_FILE_ROLE)
        if ood is None:
            raise ModelIntegrityError("input-gate model lists no OOD statistics file")
        self._mean, self._precision = _read_ood_stats(self.model_dir / ood.path, self.manifest.name)
        self._choice = choose_helper_backend(self.manifest, device=device, backend=backend)
        self.model = None  # the torch classifier, on the torch path only
        self._runner = build_helper_runner(
            self.manifest,
            self.model_dir,
            self._choice,
            GATE_OUTPUT_NAMES,
            self._torch_module,
            threads=threads,
        )
        self.lung_segmenter = lung_segmenter

    def _torch_module(self):
        """The classifier wrapped to return ``(logits, pooled embedding)`` (torch path only)."""
        from cxrviewer.ml.model_io import load_classifier
        from cxrviewer.ml.onnx_export import gate_graph_module

        self.model, _ = load_classifier(self.model_dir, verify=False)  # verified a moment ago
        return gate_graph_module(self.model)

    def scores(self, images: list[np.ndarray], batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Softmax scores (N, 3) and Mahalanobis distances (N,) for images that passed the rules."""
        from cxrviewer.ml.predictor import softmax

        probs, dists = [], []
        for i in range(0, len(images), batch):
            x = np.stack([preprocess(np.ascontiguousarray(im), self.spec)[0] for im in images[i : i + batch]])
            logits, embedding = self._runner.run(x[:, None])
            probs.append(softmax(logits))
            dists.append(mahalanobis_distances(embedding, self._mean, self._precision))
        return np.concatenate(probs), np.concatenate(dists)

    def decide(self, probs: np.ndarray, distance: float) -> GateResult:
        """Verdict from one image's scores and distance (the thresholds of the manifest)."""
        s = {k: float(v) for k, v in zip(GATE_LABELS, probs, strict=True)}
        if s["lateral"] > self.max_lateral and s["lateral"] >= s["other"]:
            return GateResult(
                False,
                "this looks like a lateral view; the models read frontal (PA/AP) chest radiographs only",
                s,
                distance,
            )
        if s["frontal"] < self.min_frontal:
            return GateResult(
                False,
                f"this does not look like a chest radiograph (frontal-CXR score {s['frontal']:.2f})",
                s,
                distance,
            )
        if distance > self.max_distance:
            return GateResult(
                False,
                "this image is unlike the chest radiographs the models were trained on "
                f"(distance {distance:.0f} > {self.max_distance:.0f})",
                s,
                distance,
            )
        return GateResult(True, "", s, distance)

    def check_many(
        self, images: list[np.ndarray], modalities: list[str | None] | None = None
    ) -> list[GateResult]:
        """Check several images (batched through the network); ``modalities``: each image's DICOM Modality
        (None for raster images), see :func:`modality_check`."""
        results: list[GateResult | None] = []
        todo: list[int] = []
        for i, im in enumerate(images):
            why = modality_check(modalities[i]) if modalities is not None else ""
            why = why or rule_check(im, self.rules)
            results.append(GateResult(False, why) if why else None)
            if not why:
                todo.append(i)
        if todo:
            probs, dist = self.scores([images[i] for i in todo])
            for j, i in enumerate(todo):
                results[i] = self.decide(probs[j], float(dist[j]))
                if results[i].ok and self.lung_segmenter is not None:
                    qa = self.lung_segmenter.segment(images[i]).qa
                    if not qa.ok:
                        results[i] = GateResult(
                            False,
                            "no plausible pair of lungs was found: " + "; ".join(qa.warnings),
                            results[i].scores,
                            results[i].distance,
                        )
        return [r for r in results if r is not None]

    def check(self, image: np.ndarray, modality: str | None = None) -> GateResult:
        """Check one display-ready image (uint8 or float in [0, 1], grayscale or RGB); ``modality``: the
        DICOM Modality when the image came from a DICOM file."""
        return self.check_many([image], None if modality is None else [modality])[0]
