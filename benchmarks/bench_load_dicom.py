"""DICOM open-to-display benchmark: ``load_image(path).display()`` against plain pydicom, in the same run.

Writes (in a temporary folder) a 3000 × 2500 16-bit chest-like DICOM — uncompressed, and with
``--compressed`` also RLE Lossless and JPEG 2000 Lossless — then times, per file:

- baseline: ``pydicom.dcmread(path).pixel_array`` (raw stored values, nothing display-ready);
- ours: ``cxrviewer.core.load_image(path).display()`` (read, decode, Modality LUT, VOI window,
  MONOCHROME1 inversion, padding → 8-bit display image), with a window in the file;
- ours without VOI in the file (automatic window from the histogram);
- ours, re-windowing only: ``image.display(center, width)`` (what dragging the window costs);

and prints medians over ``--repeats`` runs (after one warm-up) with the ratio ours / baseline.
Goal: the uncompressed open-to-display at or under 150 ms on a 2-core CPU.

    .venv/bin/python benchmarks/bench_load_dicom.py [--repeats 9] [--compressed]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pydicom  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless  # noqa: E402
from timing import median_ms  # noqa: E402

from cxrviewer.core import load_image  # noqa: E402
from tests.core.dicom_factory import synthetic_cxr, write_dicom  # noqa: E402

ROWS, COLS = 3000, 2500
GOAL_MS = 150.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per measurement (median)")
    parser.add_argument("--compressed", action="store_true", help="also RLE and JPEG 2000 lossless files")
    args = parser.parse_args()

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"pydicom {pydicom.__version__}, numpy {np.__version__}")  # fmt: skip
    print(f"# image {ROWS} x {COLS}, 16-bit (12 bits stored), median of {args.repeats} runs")
    pixels = synthetic_cxr(ROWS, COLS, bits=12)
    syntaxes = [ExplicitVRLittleEndian] + ([RLELossless, JPEG2000Lossless] if args.compressed else [])
    header = f"{'transfer syntax':<34} {'pydicom pixel_array':>20} {'ours → 8-bit display':>22} {'ratio':>6}"
    with tempfile.TemporaryDirectory(prefix="bench_load_dicom_") as tmp:
        print(header)
        verdict = True
        for ts in syntaxes:
            path = write_dicom(Path(tmp) / f"{ts.keyword}.dcm", pixels, transfer_syntax=ts, bits_stored=12,
                               window=([2000], [3000]), pixel_spacing=(0.14, 0.14))  # fmt: skip
            baseline = median_ms(lambda p=path: pydicom.dcmread(p).pixel_array, args.repeats, warmup=1)
            ours = median_ms(lambda p=path: load_image(p).display(), args.repeats, warmup=1)
            print(f"{ts.name:<34} {baseline:>17.1f} ms {ours:>19.1f} ms {ours / baseline:>6.2f}")
            if ts == ExplicitVRLittleEndian:
                verdict = ours <= GOAL_MS
                auto_path = write_dicom(
                    Path(tmp) / "auto.dcm", pixels, bits_stored=12, photometric="MONOCHROME1"
                )
                auto = median_ms(lambda p=auto_path: load_image(p).display(), args.repeats, warmup=1)
                print(f"{'  same, no VOI (auto window, MONO1)':<34} {baseline:>17.1f} ms {auto:>19.1f} ms "
                      f"{auto / baseline:>6.2f}")  # fmt: skip
                image = load_image(path)
                rewindow = median_ms(lambda im=image: im.display(1500.0, 2500.0), args.repeats, warmup=1)
                print(f"{'  re-window a loaded image':<34} {'':>20} {rewindow:>19.1f} ms")
        print(f"goal: uncompressed open-to-display <= {GOAL_MS:.0f} ms: {'met' if verdict else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
