"""The input gate: is this a frontal chest radiograph the models can read? If not, abstain and say why.

Checks, in order (the first that fails decides the reason):

1. the image is big enough and not blank (rules, no model);
2. a small classifier (``models/input-gate/``, registry ``mobilenet_v3_small``) scores it as ``frontal``,
   ``lateral`` or ``other`` (not a chest radiograph: CT/MR/ultrasound slices, photographs, documents, noise,
   inverted or heavily cropped radiographs); a lateral view or a low frontal score abstains;
3. its embedding is not too far (Mahalanobis distance, Ledoit-Wolf covariance of training frontal CXRs) from
   the radiographs the models were trained on — this catches kinds of image the classifier never saw.

4. optionally (``lung_segmenter=LungSegmenter(...)``), the lung mask passes its quality check
   (:func:`cxrviewer.ml.segmentation.assess_mask`: two lungs, plausible area and balance).

Thresholds come from the manifest (chosen on validation frontal CXRs, see ``docs/segmentation.md``). A failed
gate yields ``"abstained: <reason>"`` instead of class scores. torch is imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrviewer.core.preprocess import PreprocessSpec, preprocess, to_uint8

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "input-gate"
GATE_LABELS = ("frontal", "lateral", "other")
OOD_FILE_ROLE = "ood"


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


class InputGate:
    """Loads ``models/input-gate/`` (hash-verified) and checks images; see the module docstring."""

    def __init__(self, model_dir: str | Path = DEFAULT_MODEL_DIR, verify: bool = True, lung_segmenter=None):
        import torch
        from safetensors.torch import load_file

        from cxrviewer.ml.manifest import ModelIntegrityError
        from cxrviewer.ml.model_io import load_classifier

        self.model, self.manifest = load_classifier(model_dir, verify=verify)
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
        stats = load_file(str(Path(model_dir) / ood.path))
        self._mean = stats["mean"].double()
        self._precision = stats["precision"].double()
        self._torch = torch
        self.lung_segmenter = lung_segmenter

    def scores(self, images: list[np.ndarray], batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Softmax scores (N, 3) and Mahalanobis distances (N,) for images that passed the rules."""
        torch = self._torch
        probs, dists = [], []
        for i in range(0, len(images), batch):
            x = np.stack([preprocess(np.ascontiguousarray(im), self.spec)[0] for im in images[i : i + batch]])
            with torch.inference_mode():
                fmap = self.model.forward_features(torch.from_numpy(x[:, None]))
                probs.append(torch.softmax(self.model.forward_head(fmap), dim=1).numpy())
                d = torch.flatten(self.model.pool(fmap), 1).double() - self._mean
                dists.append(torch.sqrt(torch.clamp(((d @ self._precision) * d).sum(1), min=0)).numpy())
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

    def check_many(self, images: list[np.ndarray]) -> list[GateResult]:
        """Check several images (batched through the network)."""
        results: list[GateResult | None] = []
        todo: list[int] = []
        for i, im in enumerate(images):
            why = rule_check(im, self.rules)
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

    def check(self, image: np.ndarray) -> GateResult:
        """Check one display-ready image (uint8 or float in [0, 1], grayscale or RGB)."""
        return self.check_many([image])[0]
