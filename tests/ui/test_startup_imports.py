"""The window paints before anything heavy is imported: building it loads neither torch nor ONNX Runtime,
nor pyqtgraph, numpy or the image loaders (they come right after the first paint or in worker threads)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

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
