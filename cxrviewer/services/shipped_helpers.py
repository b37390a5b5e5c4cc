"""The helper models shipped beside the classifier (input gate, lung U-Net), loaded for the analysis pipeline.

One place for the viewer, ``cxrviewer analyze`` and the self-test, so all three analyse an image the same way.
"""

from __future__ import annotations

from typing import Any


class LungMaskAdapter:
    """``segment(image) -> mask`` (what the pipeline expects) over ``cxrviewer.ml.segmentation.LungSegmenter``
    (whose ``segment`` returns a ``LungMask`` with the mask on the original grid)."""

    def __init__(self, segmenter: Any) -> None:
        self.segmenter = segmenter

    def segment(self, image: Any):
        """The lung mask on the image's grid as ``bool`` (a view of the 0/1 ``uint8`` mask, no copy)."""
        return self.segmenter.segment(image).mask.view(bool)


def load_shipped_helpers(threads: int | None = None, device: str = "auto") -> tuple[Any, Any, list[str]]:
    """The input gate and lung segmenter shipped under ``models/`` (``None`` when absent), and a note per
    helper that exists but could not be loaded (the analysis then runs without it and says so).

    ``device`` (``auto`` | ``cpu`` | ``cuda``) follows the classifier's rules: on the CPU the helpers run on ONNX
    Runtime when their manifests list an ``onnx`` graph (torch is then never imported), else on torch.
    """
    notes: list[str] = []
    gate = segmenter = None
    from cxrviewer.ml import gate as gate_module
    from cxrviewer.ml import segmentation

    if (gate_module.DEFAULT_MODEL_DIR / "manifest.json").is_file():
        try:
            gate = gate_module.InputGate(device=device, threads=threads)
        except Exception as exc:  # a damaged helper must not stop the classifier
            notes.append(f"the input gate could not be loaded ({exc})")
    if (segmentation.DEFAULT_MODEL_DIR / "manifest.json").is_file():
        try:
            segmenter = LungMaskAdapter(segmentation.LungSegmenter(threads=threads, device=device))
        except Exception as exc:
            notes.append(f"the lung segmenter could not be loaded ({exc})")
    return gate, segmenter, notes
