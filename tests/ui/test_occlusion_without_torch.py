"""The viewer's occlusion (Ctrl+E) with the shipped classifier runs on ONNX Runtime and never imports torch:
the first occlusion of a session used to import it in the analysis thread, a ~0.7 s GUI freeze (the import
holds Python's GIL), and the CPU installer, which has no torch, had no occlusion at all."""

from __future__ import annotations

import json

from cxrviewer.ml.explain import OcclusionSettings, occlusion_offsets
from tests.helpers.shipped_subprocess import run_on_shipped_models

OCCLUDE = """
import json, sys
import numpy as np
from cxrviewer.core import load_image
from cxrviewer.ui.analysis_backend import pipeline_factory
from cxrviewer.ui.settings import ViewerSettings
analyzer = pipeline_factory(ViewerSettings(device="cpu"), library_paths=[], user_library=None)()
image = load_image(sys.argv[1])
result = analyzer(image)
reports = []
heatmap = analyzer.occlusion(
    image, "covid", result.lung_mask, progress=lambda done, total, full, display: reports.append((done, total))
)
print(json.dumps({
    "backend": analyzer.pipeline.load().backend,
    "shape": list(heatmap.map.shape),
    "image": list(image.display().shape),
    "finite": bool(np.isfinite(heatmap.map).all()),
    "peak": float(heatmap.map.max()),
    "reports": reports,
    "torch": "torch" in sys.modules,
}))
"""


def test_viewer_occlusion_with_the_shipped_model_never_imports_torch(tmp_path, shared_data):
    out = run_on_shipped_models(OCCLUDE, tmp_path, shared_data)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["backend"].startswith("onnxruntime")
    assert got["shape"] == got["image"] and got["finite"] and got["peak"] > 0
    # the default window 18 / stride 9 at 128 px: 14 x 14 positions (the last one touches the edge)
    n = len(occlusion_offsets(128, *OcclusionSettings().resolved(128))) ** 2
    assert got["reports"][-1] == [n, n] and len(got["reports"]) > 1  # coarse map first
    assert got["torch"] is False, "the ONNX Runtime occlusion path imported torch"
