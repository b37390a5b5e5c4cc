"""Lung segmentation: a compact U-Net, mask post-processing, mask quality checks and lung ablation.

The network (:class:`LungUNet`, ~1 M parameters) sees the output of the shared preprocessing chain
(:func:`cxrviewer.core.preprocess.preprocess` with the spec recorded in its manifest) and returns one lung
logit per pixel. :class:`LungSegmenter` loads ``models/lung-unet/`` (hash-verified), runs the network, keeps the
two largest connected components with holes filled (:func:`postprocess_mask`), maps the mask back onto the
original image with :meth:`~cxrviewer.core.preprocess.Geometry.to_original`, and checks that the result looks
like two lungs (:func:`assess_mask`): a warning, never a silent failure, when it does not.

Post-processing, quality checks and :func:`apply_lung_ablation` are numpy/OpenCV only. The network runs on
ONNX Runtime on the CPU when the model folder ships an ``onnx`` graph (no torch import at all), else on torch,
imported lazily by the functions that build or run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cxrviewer.core.preprocess import Geometry, PreprocessSpec, preprocess
from cxrviewer.ml.backends.selection import ChosenBackend

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "lung-unet"
ABLATION_MODES = ("lungs-only", "lungs-removed")


@dataclass(frozen=True)
class MaskQASettings:
    """Plausibility limits for a lung mask (fractions of the model-input square).

    Attributes:
        min_area: below this lung fraction of the image the mask is implausibly small.
        max_area: above this fraction it is implausibly large.
        min_component_fraction: a component smaller than this fraction of the total lung area does not count
            as a lung.
        min_balance: smaller lung area / larger lung area below this is an implausible left/right balance.
    """

    min_area: float = 0.08
    max_area: float = 0.60
    min_component_fraction: float = 0.10
    min_balance: float = 0.30


@dataclass
class MaskQA:
    """What :func:`assess_mask` found: the figures and plain-language warnings (empty when plausible)."""

    area_fraction: float
    n_lungs: int
    balance: float
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.warnings

    def to_dict(self) -> dict[str, Any]:
        return {
            "area_fraction": self.area_fraction,
            "n_lungs": self.n_lungs,
            "balance": self.balance,
            "warnings": list(self.warnings),
        }


@dataclass
class LungMask:
    """A segmentation result.

    Attributes:
        probability: lung probability at model resolution (size × size, float32).
        model_mask: post-processed binary mask at model resolution (uint8 0/1).
        mask: the same mask on the original image grid (uint8 0/1).
        geometry: how model pixels map to original pixels.
        qa: quality check of the mask.
    """

    probability: np.ndarray
    model_mask: np.ndarray
    mask: np.ndarray
    geometry: Geometry
    qa: MaskQA


def build_unet(base: int = 16, in_chans: int = 1, stem_stride: int = 2):
    """The compact U-Net (``torch.nn.Module``): channels base·(1, 2, 4, 6, 8), ~1 M parameters at base 16.

    With ``stem_stride`` 2 a strided stem convolution halves the resolution first and the logits are
    up-sampled bilinearly at the end: lung borders are smooth, and this cuts the cost about fourfold.
    """
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    class LungUNet(nn.Module):
        """Four 2× down-samplings, bilinear up-sampling with skip concatenation, one output logit."""

        def __init__(self) -> None:
            super().__init__()
            ch = [base, base * 2, base * 4, base * 6, base * 8]
            self.stem_stride = stem_stride
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, ch[0], 3, stride=stem_stride, padding=1, bias=False),
                nn.BatchNorm2d(ch[0]),
                nn.ReLU(inplace=True),
            )
            self.enc = nn.ModuleList([block(ch[0], ch[0])] + [block(ch[i], ch[i + 1]) for i in range(4)])
            self.dec = nn.ModuleList([block(ch[i + 1] + ch[i], ch[i]) for i in range(4)])
            self.head = nn.Conv2d(ch[0], 1, 1)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            size = x.shape[-2:]
            x = self.stem(x)
            skips = []
            for i, enc in enumerate(self.enc):
                x = enc(x if i == 0 else self.pool(x))
                skips.append(x)
            x = skips.pop()
            for i in range(3, -1, -1):
                skip = skips.pop()
                x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                x = self.dec[i](torch.cat([x, skip], dim=1))
            x = self.head(x)
            if self.stem_stride != 1:
                x = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
            return x

    return LungUNet()


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes of a binary mask (background not connected to the image border becomes foreground)."""
    m = (np.asarray(mask) > 0).astype(np.uint8)
    padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    flood = padded.copy()
    ff_mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 1)
    holes = (flood == 0)[1:-1, 1:-1]
    return (m.astype(bool) | holes).astype(np.uint8)


def postprocess_mask(probability: np.ndarray, threshold: float = 0.5, keep: int = 2) -> np.ndarray:
    """Binary mask from a probability map: threshold, keep the ``keep`` largest components, fill holes."""
    binary = (np.asarray(probability) >= threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return binary
    areas = stats[1:, cv2.CC_STAT_AREA]
    kept = 1 + np.argsort(areas)[::-1][:keep]
    return fill_holes(np.isin(labels, kept))


def mask_to_original(probability: np.ndarray, model_mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The post-processed mask on the original grid with sub-pixel borders (uint8 0/1).

    Inside the kept components (slightly dilated) the probability is up-sampled bilinearly and thresholded
    at 0.5, so borders are not staircased by the model resolution; filled holes stay lung.
    """
    keep = cv2.dilate(model_mask.astype(np.uint8), np.ones((3, 3), np.uint8))
    soft = np.where(keep > 0, np.asarray(probability, np.float32), 0.0)
    soft = np.maximum(soft, model_mask.astype(np.float32))
    soft = np.where(cv2.erode(model_mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0, 1.0, soft)
    return (geometry.to_original(soft.astype(np.float32)) >= 0.5).astype(np.uint8)


def assess_mask(mask: np.ndarray, settings: MaskQASettings | None = None) -> MaskQA:
    """Plausibility of a binary lung mask: area fraction, two lungs found, left/right balance."""
    s = settings or MaskQASettings()
    m = (np.asarray(mask) > 0).astype(np.uint8)
    total = int(m.sum())
    area = total / float(m.size)
    warnings: list[str] = []
    if total == 0:
        return MaskQA(0.0, 0, 0.0, ["no lung found: is this a frontal chest radiograph?"])
    n, _, stats, cents = cv2.connectedComponentsWithStats(m, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    big = np.flatnonzero(areas >= s.min_component_fraction * total)
    n_lungs = int(big.size)
    w = m.shape[1]
    cols = np.flatnonzero(m.any(axis=0))
    mid = (cols[0] + cols[-1]) / 2.0 if cols.size else w / 2.0
    left = int(m[:, : int(round(mid))].sum())
    right = total - left
    balance = min(left, right) / max(left, right) if max(left, right) else 0.0
    if area < s.min_area:
        warnings.append(f"lung area is only {area:.0%} of the image (expected at least {s.min_area:.0%})")
    if area > s.max_area:
        warnings.append(f"lung area is {area:.0%} of the image (expected at most {s.max_area:.0%})")
    if n_lungs < 2:
        warnings.append("only one lung was found")
    elif n_lungs == 2:
        xs = sorted(float(cents[1 + i][0]) for i in big)
        if not (xs[0] < mid < xs[1]):
            warnings.append("the two lung regions are not on either side of the midline")
    if balance < s.min_balance:
        warnings.append(f"left/right lung areas are unbalanced (smaller/larger = {balance:.2f})")
    return MaskQA(float(area), n_lungs, float(balance), warnings)


def apply_lung_ablation(
    image: np.ndarray, mask: np.ndarray, mode: str, fill: float | None = None
) -> np.ndarray:
    """Keep only the lungs (``"lungs-only"``) or blank them out (``"lungs-removed"``) — the shortcut test.

    ``image`` and ``mask`` share a grid (any dtype; ``mask`` > 0 is lung). Removed pixels are set to ``fill``
    (default 0, black as in paper 004). Returns a new array of the image's dtype.
    """
    if mode not in ABLATION_MODES:
        raise ValueError(f"unknown ablation mode {mode!r}; use one of {', '.join(ABLATION_MODES)}")
    img = np.asarray(image)
    m = np.asarray(mask) > 0
    if m.shape != img.shape[:2]:
        raise ValueError(f"mask shape {m.shape} does not match image shape {img.shape[:2]}")
    keep = m if mode == "lungs-only" else ~m
    if img.ndim == 3:
        keep = keep[..., None]
    out = np.where(keep, img, np.asarray(0 if fill is None else fill, dtype=img.dtype))
    return out.astype(img.dtype, copy=False)


def dice_iou(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two binary masks (1.0 for two empty masks)."""
    p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
    inter = float(np.logical_and(p, t).sum())
    ps, ts = float(p.sum()), float(t.sum())
    if ps + ts == 0:
        return 1.0, 1.0
    return 2 * inter / (ps + ts), inter / (ps + ts - inter)


def load_unet(model_dir: str | Path, manifest):
    """The torch U-Net of a verified segmentation model folder, weights loaded, in eval mode.

    Raises:
        ModelIntegrityError: the weights cannot be read or do not fit the architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from cxrviewer.ml.manifest import ModelIntegrityError

    arch = manifest.architecture
    model = build_unet(base=int(arch.get("base", 16)), in_chans=int(arch.get("in_chans", 1)))
    weights = Path(model_dir) / manifest.files["weights"].path
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise ModelIntegrityError(f"lung model weights cannot be read ({exc})") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelIntegrityError(f"lung model weights do not fit the U-Net ({exc})") from exc
    return model.eval()


class LungSegmenter(ChosenBackend):
    """Loads a lung U-Net model folder and segments images; see the module docstring.

    The network runs on ONNX Runtime on the CPU when the manifest lists an ``onnx`` graph (torch is then
    never imported), on torch otherwise or when ``device`` asks for CUDA — the classifier's selection rules
    in fp32 (:mod:`cxrviewer.ml.backends.helper_backend`).

    Args:
        model_dir: a folder with ``manifest.json`` (kind ``segmentation``) and ``model.safetensors``.
        verify: check every file's SHA-256 before loading (default).
        threads: CPU compute threads (default: physical cores).
        device: ``auto`` | ``cpu`` | ``cuda``.
        backend: force ``onnxruntime-cpu-fp32``, ``torch-cpu-fp32`` or ``torch-cuda-fp32`` (tests,
            benchmarks); ``device`` is then ignored.

    Raises:
        ModelIntegrityError: missing/modified files, unreadable weights or graph, wrong kind of model.
        BackendUnavailableError: CUDA requested without a usable device.
    """

    def __init__(
        self,
        model_dir: str | Path = DEFAULT_MODEL_DIR,
        verify: bool = True,
        threads: int | None = None,
        device: str = "auto",
        backend: str | None = None,
    ):
        from cxrviewer.ml.backends.helper_backend import build_helper_runner, choose_helper_backend
        from cxrviewer.ml.manifest import ModelIntegrityError, load_manifest
        from cxrviewer.ml.onnx_export import SEG_OUTPUT_NAMES

        self.model_dir = Path(model_dir)
        self.manifest = load_manifest(model_dir, verify=verify)
        if self.manifest.kind != "segmentation":
            raise ModelIntegrityError(f"{model_dir} holds a {self.manifest.kind} model, not a lung segmenter")
        self._choice = choose_helper_backend(self.manifest, device=device, backend=backend)
        self.model = None  # the torch module, on the torch path only
        self._runner = build_helper_runner(
            self.manifest,
            self.model_dir,
            self._choice,
            SEG_OUTPUT_NAMES,
            self._torch_model,
            threads=threads,
            channels_last=True,
        )
        if self.model is not None:
            self.model = self._runner.module
        self.spec: PreprocessSpec = self.manifest.preprocess_spec
        extra = self.manifest.extra
        self.threshold = float(extra.get("threshold", 0.5))
        self.qa_settings = MaskQASettings(**extra.get("qa", {}))

    def _torch_model(self):
        """The U-Net with the manifest's weights (torch path only)."""
        self.model = load_unet(self.model_dir, self.manifest)
        return self.model

    def probability(self, batch: np.ndarray) -> np.ndarray:
        """Lung probabilities for preprocessed inputs of shape (B, size, size) → (B, size, size) float32."""
        from cxrviewer.ml.backends.helper_backend import sigmoid

        x = np.ascontiguousarray(batch, dtype=np.float32)[:, None]
        (logits,) = self._runner.run(x)
        return sigmoid(logits[:, 0])

    def segment(self, image: np.ndarray) -> LungMask:
        """Segment one grayscale image (uint8, or float in [0, 1]) of any size."""
        x, geom = preprocess(image, self.spec)
        prob = self.probability(x[None])[0]
        model_mask = postprocess_mask(prob, self.threshold)
        mask = mask_to_original(prob, model_mask, geom)
        return LungMask(prob, model_mask, mask, geom, assess_mask(model_mask, self.qa_settings))
