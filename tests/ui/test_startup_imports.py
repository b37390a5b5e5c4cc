"""The window paints before anything heavy is imported: building it loads neither torch nor ONNX Runtime,
nor pyqtgraph, numpy or the image loaders (they come right after the first paint or in worker threads)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT
from tests.helpers.shipped_subprocess import run_on_shipped_models

CODE = """
import sys
from cxrviewer.ui.app import create_application
from cxrviewer.ui.main_window import MainWindow
app = create_application()
w = MainWindow()
print(" ".join(m for m in ("torch", "onnxruntime", "pyqtgraph", "numpy", "cv2", "pydicom") if m in sys.modules))
w.shutdown()
"""


def test_building_the_window_imports_nothing_heavy(tmp_path):
    env = dict(
        os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path)
    )  # not the user's settings
    out = subprocess.run(
        [sys.executable, "-c", CODE], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported before the first paint: {out.stdout.strip()}"


ANALYSE = """
import sys
from cxrviewer.core import load_image
from cxrviewer.resources import models_dir
from cxrviewer.ui.analysis_backend import find_case_libraries, pipeline_factory
from cxrviewer.ui.overlay_data import prepare_result_display
from cxrviewer.ui.settings import ViewerSettings
analyze = pipeline_factory(
    ViewerSettings(device="cpu"), library_paths=find_case_libraries([models_dir()]), user_library=None
)()
image = load_image(sys.argv[1])
result = analyze(image)
prepare_result_display(image, result)
print(result.status, result.lung_mask is not None, len(result.neighbours), "torch" in sys.modules)
"""


def test_default_analysis_never_imports_torch(tmp_path, shared_data):
    """What the analysis thread runs by default (shipped classifier, gate, lung U-Net, reference library,
    overlays) works on ONNX Runtime alone: importing torch there froze the window for ~1 s (measured 880 ms
    to 1,073 ms by benchmarks/bench_gui_stall.py) because the import holds Python's GIL."""
    out = run_on_shipped_models(ANALYSE, tmp_path, shared_data)  # no user library
    status, has_mask, neighbours, torch_loaded = out.stdout.split()
    assert status == "ok" and has_mask == "True" and int(neighbours) > 0
    assert torch_loaded == "False"
