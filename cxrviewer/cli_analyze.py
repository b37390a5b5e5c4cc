"""``cxrviewer analyze PATH... --json|--csv``: headless analysis of files, folders, ZIP archives and DICOMDIRs.

Prints one JSON object per image (:meth:`AnalysisResult.to_json`, a stable schema) as a JSON list, or one CSV
row per image. Exit status: 0 when every image was analysed (``ok`` or ``abstained``), 1 when any result is
an ``error`` (unreadable file, no model, tampered model...), 2 for a usage error. Arguments are parsed before
any heavy import; torch/onnxruntime load only when the model does.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cxrviewer import INTENDED_USE

if TYPE_CHECKING:
    from cxrviewer.core import ImageSource


def build_parser() -> argparse.ArgumentParser:
    """The ``cxrviewer analyze`` command line."""
    p = argparse.ArgumentParser(
        prog="cxrviewer analyze",
        description=f"Analyse chest X-rays without opening the window. {INTENDED_USE}",
    )
    p.add_argument(
        "paths",
        nargs="+",
        help="DICOM/PNG/JPEG/TIFF files, folders (searched recursively), ZIP archives, DICOMDIRs",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json", help="JSON list (default)")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv", help="one CSV row per image")
    p.set_defaults(format="json")
    p.add_argument("--out", type=Path, help="write to this file instead of standard output")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run the model")
    p.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto", help="CPU precision")
    p.add_argument("--model", type=Path, help="classifier model folder (default: the first one in models/)")
    p.add_argument("--operating-point", help="operating point name (default: the model's default)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--threads", type=int, help="CPU threads (default: physical cores)")
    return p


def collect_inputs(paths: Iterable[str | Path]) -> tuple[list[Path | ImageSource], list[str]]:
    """The images to analyse, and notes on files that were passed over.

    Folders (recursive), ZIP archives (read in memory, never extracted) and DICOMDIRs are expanded with
    :func:`cxrviewer.core.load_studies`; their non-image files are reported in the notes, not analysed. A
    path given directly that is missing or not an image is kept, so that it comes back as an ``error``
    result saying why.
    """
    from cxrviewer.core import LoadError, load_studies

    items: list[Path | ImageSource] = []
    notes: list[str] = []
    for raw in paths:
        p = Path(raw)
        try:
            tree = load_studies(p)
        except LoadError:
            items.append(p)
            continue
        found = [ref.source for ref in tree.images()]
        if not found and p.is_file():
            items.append(p)  # a single unreadable file: its own error result
            continue
        items.extend(found)
        notes.extend(f"skipped {s.source.name}: {s.reason}" for s in tree.skipped)
    return items, notes


def to_csv(rows: Sequence[dict]) -> str:
    """CSV text with one row per result JSON object (probabilities as ``p_<label>`` columns)."""
    labels: list[str] = []
    for r in rows:
        labels.extend(k for k in r["probabilities"] if k not in labels)
    header = ["path", "status", "top_label", *[f"p_{lab}" for lab in labels], "operating_point"]
    header += ["threshold", "positive", "reason", "warnings", "model_id", "backend", "latency_ms"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        op = r["operating_point"] or {}
        w.writerow(
            [r["path"], r["status"], r["top_label"] or ""]
            + [r["probabilities"].get(lab, "") for lab in labels]
            + [op.get("name", ""), op.get("threshold", ""), op.get("positive", "")]
            + [r["reason"] or "", " | ".join(r["warnings"]), r["model_id"] or "", r["backend"] or ""]
            + [r["latency_ms"]]
        )
    return buf.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cxrviewer analyze``."""
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        print("cxrviewer analyze: --batch-size must be at least 1", file=sys.stderr)
        return 2
    inputs, notes = collect_inputs(args.paths)
    for note in notes:
        print(f"cxrviewer analyze: {note}", file=sys.stderr)
    if not inputs:
        print("cxrviewer analyze: no images found in the given paths", file=sys.stderr)
        return 2

    from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings
    from cxrviewer.services.shipped_helpers import load_shipped_helpers

    gate, segmenter, helper_notes = load_shipped_helpers(threads=args.threads, device=args.device)
    for note in helper_notes:
        print(f"cxrviewer analyze: {note}", file=sys.stderr)
    pipeline = AnalysisPipeline(
        AnalysisSettings(
            model_dir=args.model,
            device=args.device,
            precision=args.precision,
            operating_point=args.operating_point,
            batch_size=args.batch_size,
            threads=args.threads,
            heatmap=False,  # nothing to draw it on; the CAM costs little but is not printed
        ),
        gate=gate,
        segmenter=segmenter,
    )
    rows = [r.to_json() for r in pipeline.iter_analyze(inputs)]
    text = json.dumps(rows, indent=2) + "\n" if args.format == "json" else to_csv(rows)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    print(INTENDED_USE, file=sys.stderr)
    return 1 if any(r["status"] == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
