"""``cxrviewer --self-test``: check that an installation (a source checkout or a PyInstaller bundle) works.

It verifies the SHA-256 of every shipped model (``models/*/manifest.json``), loads each one, checks that the
DICOM decoders are present, opens every bundled sample image (``resources/samples/``) and analyses it with
each classifier through :class:`~cxrviewer.services.analysis.AnalysisPipeline` — the same pipeline the
window uses — exports one result (PDF/PNG report, DICOM SR + Secondary Capture, into a temporary folder),
then prints a JSON summary and exits 0 when everything passed, 1 otherwise.

An installation without a classifier can view images but not analyse them; for a release that is a
failure. ``--allow-no-model`` (development builds) turns it into a pass in "viewing only" mode.

The helper models (lung U-Net, input gate) are loaded on the backend the window would use (ONNX Runtime on
the CPU when their manifest lists an ``onnx`` graph), run on every sample (``run:<model>`` checks: mask QA,
gate verdict) and handed to the analysis pipeline, as in the window. A helper without an ONNX graph in a run
without torch (the CPU installer, or ``--require-no-torch``) is hash-verified and reported as
``verified-only``. ``--require-no-torch`` makes the self-test fail if anything imported torch, which is how
the packaging smoke test proves the ONNX Runtime path is torch-free.

No Qt is imported here; patient data is never printed (sample files are the bundled de-identified study).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrviewer import INTENDED_USE, __version__

SAMPLE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
NO_CLASSIFIER = (
    "no classifier model is shipped under {root}: this installation can show images but cannot analyse them"
)
HELPER_KINDS = ("segmentation", "gate")


@dataclass(frozen=True)
class SelfTestSettings:
    """What the self-test checks.

    Attributes:
        models_root: folder of model directories (default: the shipped ``models/``).
        samples_dir: folder of sample images (default: ``resources/samples/``).
        allow_no_model: pass without a classifier ("viewing only", for development builds).
        require_no_torch: fail when torch was imported by the end of the run.
        device: ``auto`` | ``cpu`` | ``cuda`` for the classifiers.
    """

    models_root: Path | None = None
    samples_dir: Path | None = None
    allow_no_model: bool = False
    require_no_torch: bool = False
    device: str = "auto"


@dataclass
class Check:
    """One checked item: ``ok`` is False only for a real failure; ``status`` says what was done."""

    name: str
    ok: bool
    status: str
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class SelfTestReport:
    """The outcome: every check, the mode (``analysis`` or ``viewing only``) and where things were found."""

    version: str
    frozen: bool
    app_root: str
    models_root: str
    samples_dir: str
    mode: str = "analysis"
    checks: list[Check] = field(default_factory=list)
    torch_imported: bool = False
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[str]:
        """``name: detail`` of every failed check."""
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (what ``--self-test`` prints)."""
        out = asdict(self)
        out = {"ok": self.ok, **out, "failures": self.failures, "intended_use": INTENDED_USE}
        return out


def _torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def check_decoders() -> Check:
    """Which pydicom plugins decode the compressed transfer syntaxes the viewer supports (frozen builds lose
    them silently when a plugin's package metadata is not bundled)."""
    from pydicom import uid
    from pydicom.pixels import get_decoder

    syntaxes = [
        uid.JPEGBaseline8Bit,
        uid.JPEGLosslessSV1,
        uid.JPEGLSLossless,
        uid.JPEG2000Lossless,
        uid.JPEG2000,
        uid.RLELossless,
    ]
    found: dict[str, list[str]] = {}
    for syntax in syntaxes:
        try:
            decoder = get_decoder(syntax)
            found[syntax.name] = sorted(decoder.available_plugins) if decoder.is_available else []
        except Exception:  # noqa: BLE001 - reported as "no decoder"
            found[syntax.name] = []
    missing = [name for name, plugins in found.items() if not plugins]
    if missing:
        return Check("dicom-decoders", False, "failed", "no decoder for: " + "; ".join(missing), found)
    return Check("dicom-decoders", True, "ok", f"{len(found)} compressed transfer syntaxes decodable", found)


def _load_helper(kind: str, model_dir: Path, device: str):
    if kind == "segmentation":
        from cxrviewer.ml.segmentation import LungSegmenter

        return LungSegmenter(model_dir, verify=False, device=device)
    from cxrviewer.ml.gate import InputGate

    return InputGate(model_dir, verify=False, device=device)


def check_model(
    model_dir: Path,
    require_no_torch: bool,
    device: str = "auto",
    helpers: dict[str, tuple[Path, Any]] | None = None,
) -> tuple[Check, str | None]:
    """Verify one model directory's hashes and, for helper models, load it when its runtime is here.

    Returns the check and the manifest's kind (None when the manifest is unreadable). A loaded helper is
    stored in ``helpers[kind]`` as ``(model_dir, model)``. Classifiers are loaded by :func:`check_classifier`.
    """
    from cxrviewer.ml.manifest import ModelIntegrityError, load_manifest

    name = f"model:{model_dir.name}"
    t0 = time.perf_counter()
    try:
        manifest = load_manifest(model_dir, verify=True)
    except ModelIntegrityError as exc:
        return Check(name, False, "failed", str(exc)), None
    kind = manifest.kind
    data = {
        "kind": kind,
        "model_id": manifest.model_id,
        "files": len(manifest.files),
        "bytes": sum(f.bytes for f in manifest.files.values()),
        "verify_ms": round((time.perf_counter() - t0) * 1000.0, 1),
    }
    if kind == "classifier":
        return Check(name, True, "verified", "hashes match; loaded with the samples below", data), kind
    if kind not in HELPER_KINDS:
        return Check(name, True, "verified-only", f"hashes match; kind {kind!r} is not loaded", data), kind
    torch_free = "onnx" in manifest.files and importlib.util.find_spec("onnxruntime") is not None
    if not torch_free and (require_no_torch or not _torch_available()):
        why = "torch is not allowed in this run" if require_no_torch else "this build has no torch"
        detail = f"hashes match; not loaded: it ships no ONNX graph and {why}"
        return Check(name, True, "verified-only", detail, data), kind
    t1 = time.perf_counter()
    try:
        model = _load_helper(kind, model_dir, device)
    except Exception as exc:  # noqa: BLE001 - any load failure is this check's failure
        return Check(name, False, "failed", f"cannot be loaded ({type(exc).__name__}: {exc})", data), kind
    data.update(
        load_ms=round((time.perf_counter() - t1) * 1000.0, 1),
        backend=model.backend,
        backend_reason=model.backend_reason,
    )
    if helpers is not None:
        helpers[kind] = (model_dir, model)
    return Check(name, True, "ok", f"hashes match; loaded on {model.backend}", data), kind


def _run_segmenter(segmenter, image) -> tuple[str | None, dict[str, Any]]:
    mask = segmenter.segment(image)
    if not np.isfinite(mask.probability).all():
        return "non-finite lung probabilities", {}
    qa = mask.qa
    return None, {
        "lung_fraction": round(qa.area_fraction, 4),
        "lungs": qa.n_lungs,
        "qa_warnings": qa.warnings,
    }


def _run_gate(gate, image) -> tuple[str | None, dict[str, Any]]:
    result = gate.check(image)
    scores = list(result.scores.values())
    if scores and (not all(math.isfinite(v) for v in scores) or abs(sum(scores) - 1.0) > 1e-3):
        return f"invalid gate scores {result.scores}", {}
    return None, {
        "verdict": result.message,
        "scores": {k: round(v, 4) for k, v in result.scores.items()},
        "distance": round(result.distance, 2) if math.isfinite(result.distance) else None,
    }


def check_helper_runs(helpers: dict[str, tuple[Path, Any]], samples: Sequence[Path]) -> list[Check]:
    """Run every loaded helper model on every sample that opens: ``run:<model>`` with the lung-mask QA or
    the gate verdict per sample (a crash or non-finite output is a failure; a verdict is data)."""
    from cxrviewer.core.errors import LoadError
    from cxrviewer.services.analysis import read_display_image

    images = []
    for path in samples:
        try:
            images.append((path, read_display_image(path)))
        except LoadError:
            continue  # reported by check_sample_loads
    checks = []
    for kind, (model_dir, model) in sorted(helpers.items()):
        run = _run_segmenter if kind == "segmentation" else _run_gate
        data: dict[str, Any] = {"backend": model.backend}
        problems = []
        t0 = time.perf_counter()
        for path, image in images:
            try:
                problem, data[path.name] = run(model, image)
            except Exception as exc:  # noqa: BLE001 - a crash on a sample is this check's failure
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                problems.append(f"{path.name}: {problem}")
        data["ms_per_image"] = round((time.perf_counter() - t0) * 1000.0 / max(1, len(images)), 1)
        detail = "; ".join(problems) or f"ran on {len(images)} samples"
        checks.append(
            Check(f"run:{model_dir.name}", not problems, "failed" if problems else "ok", detail, data)
        )
    return checks


def sample_files(samples_dir: Path) -> list[Path]:
    """The sample images (by extension) in ``samples_dir``, sorted."""
    if not samples_dir.is_dir():
        return []
    return sorted(p for p in samples_dir.iterdir() if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES)


def check_sample_loads(samples: Sequence[Path]) -> list[Check]:
    """Open every sample image as the viewer does (display-ready 8-bit)."""
    from cxrviewer.core.errors import LoadError
    from cxrviewer.services.analysis import read_display_image

    if not samples:
        return [Check("samples", False, "failed", "no sample images found")]
    checks = []
    for path in samples:
        t0 = time.perf_counter()
        try:
            image = read_display_image(path)
        except LoadError as exc:
            checks.append(Check(f"open:{path.name}", False, "failed", str(exc)))
            continue
        ms = round((time.perf_counter() - t0) * 1000.0, 1)
        checks.append(Check(f"open:{path.name}", True, "ok", "", {"shape": list(image.shape), "ms": ms}))
    return checks


def _result_problem(result, heatmap: bool) -> str | None:
    """Why an analysis result is not a usable one, or None."""
    if result.status != "ok":
        return f"status {result.status}: {result.reason}"
    probs = list(result.probabilities.values())
    if not probs or not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in probs):
        return f"invalid probabilities {result.probabilities}"
    if abs(sum(probs) - 1.0) > 1e-3:
        return f"probabilities sum to {sum(probs):.4f}, not 1"
    if heatmap and result.heatmap is None:
        return "no heatmap was produced"
    return None


def check_classifier(
    model_dir: Path,
    samples: Sequence[Path],
    device: str,
    libraries,
    results: dict[Path, Any] | None = None,
    helpers: dict[str, tuple[Path, Any]] | None = None,
) -> list[Check]:
    """Load one classifier through the analysis pipeline (with the loaded helper models, as in the window)
    and analyse every sample with it (the results are stored in ``results`` by path when given)."""
    from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings
    from cxrviewer.services.shipped_helpers import LungMaskAdapter

    name = f"classifier:{model_dir.name}"
    loaded = helpers or {}
    gate = loaded["gate"][1] if "gate" in loaded else None
    segmenter = LungMaskAdapter(loaded["segmentation"][1]) if "segmentation" in loaded else None
    pipeline = AnalysisPipeline(
        AnalysisSettings(model_dir=model_dir, device=device),
        gate=gate,
        segmenter=segmenter,
        libraries=libraries,
    )
    t0 = time.perf_counter()
    try:
        predictor = pipeline.load()
    except RuntimeError as exc:
        return [Check(name, False, "failed", f"cannot be loaded: {exc}")]
    load_data = {
        "model_id": predictor.model_id,
        "backend": predictor.backend,
        "backend_reason": predictor.backend_reason,
        "load_ms": round((time.perf_counter() - t0) * 1000.0, 1),
    }
    checks = [Check(name, True, "ok", "loaded", load_data)]
    for path in samples:
        result = pipeline.analyze(path)
        if results is not None:
            results[path] = result
        problem = _result_problem(result, pipeline.settings.heatmap)
        data = {
            "status": result.status,
            "top_label": result.top_label,
            "probabilities": {k: round(v, 4) for k, v in result.probabilities.items()},
            "neighbours": len(result.neighbours),
            "latency_ms": round(result.latency_ms or 0.0, 1),
            "warnings": list(result.warnings),
        }
        checks.append(
            Check(
                f"analyse:{path.name}",
                problem is None,
                "ok" if problem is None else "failed",
                problem or "",
                data,
            )
        )
    return checks


def check_exports(results: dict[Path, Any]) -> list[Check]:
    """Export the first analysed DICOM sample as the window does: PDF and PNG report (matplotlib), DICOM SR
    and Secondary Capture (highdicom), written to a temporary folder; and import the PACS client. A build
    without the export stack (``CXR_WITH_EXPORTS=0``) reports ``absent``."""
    if importlib.util.find_spec("matplotlib") is None or importlib.util.find_spec("highdicom") is None:
        return [Check("exports", True, "absent", "report/DICOM export and PACS are not in this build")]
    dicom = [
        (p, r) for p, r in results.items() if p.suffix.lower() in (".dcm", ".dicom") and r.status == "ok"
    ]
    if not dicom:
        # (a sample that failed to analyse is already a failure of its own)
        return [Check("exports", True, "skipped", "no analysed DICOM sample to export")]
    import tempfile

    import pydicom

    from cxrviewer.services.analysis import read_display_image
    from cxrviewer.services.export.dicom_export import export_dicom
    from cxrviewer.services.export.report import render_report

    path, result = dicom[0]
    t0 = time.perf_counter()
    try:
        image = read_display_image(path)
        with tempfile.TemporaryDirectory(prefix="cxrviewer-self-test-") as tmp:
            sizes = {}
            for name in ("report.pdf", "report.png"):
                sizes[name] = render_report(result, image, Path(tmp) / name).stat().st_size
            export = export_dicom(pydicom.dcmread(path), result, display_image=image)
            for name, ds in (("sr.dcm", export.structured_report), ("sc.dcm", export.secondary_capture)):
                if ds is not None:
                    ds.save_as(Path(tmp) / name, enforce_file_format=True)
                    sizes[name] = (Path(tmp) / name).stat().st_size
        import cxrviewer.services.pacs  # noqa: F401 - the PACS client must import (no connection is made)
    except Exception as exc:  # noqa: BLE001 - any export failure is this check's failure
        return [Check("exports", False, "failed", f"{path.name}: {type(exc).__name__}: {exc}")]
    ms = round((time.perf_counter() - t0) * 1000.0, 1)
    return [
        Check("exports", True, "ok", f"{path.name}: report, SR and SC written", {"bytes": sizes, "ms": ms})
    ]


def open_libraries(models_root: Path) -> tuple[list[Check], Any]:
    """Open the shipped case libraries (``*.cxrlib`` under ``models/``) read-only; a LibrarySet or None."""
    from cxrviewer.services.case_library import LIBRARY_SUFFIX, CaseLibrary, LibrarySet

    paths = sorted(models_root.rglob(f"*{LIBRARY_SUFFIX}")) if models_root.is_dir() else []
    checks, libs = [], LibrarySet()
    for path in paths:
        try:
            lib = CaseLibrary.open(path, read_only=True)
            libs.add(lib)
        except Exception as exc:  # noqa: BLE001 - an unreadable library is this check's failure
            checks.append(Check(f"library:{path.name}", False, "failed", str(exc)))
            continue
        checks.append(Check(f"library:{path.name}", True, "ok", "", {"cases": len(lib)}))
    return checks, (libs if libs.libraries else None)


def run_self_test(settings: SelfTestSettings | None = None) -> SelfTestReport:
    """Run every check and return the report (never raises for a failing check)."""
    from cxrviewer.resources import app_root, models_dir, sample_study_dir

    s = settings or SelfTestSettings()
    t0 = time.perf_counter()
    models_root = Path(s.models_root) if s.models_root is not None else models_dir()
    samples_dir = Path(s.samples_dir) if s.samples_dir is not None else sample_study_dir()
    report = SelfTestReport(
        version=__version__,
        frozen=bool(getattr(sys, "frozen", False)),
        app_root=str(app_root()),
        models_root=str(models_root),
        samples_dir=str(samples_dir),
    )
    report.checks.append(check_decoders())
    classifiers: list[Path] = []
    model_dirs = sorted(p.parent for p in models_root.glob("*/manifest.json")) if models_root.is_dir() else []
    helpers: dict[str, tuple[Path, Any]] = {}
    for model_dir in model_dirs:
        check, kind = check_model(model_dir, s.require_no_torch, s.device, helpers)
        report.checks.append(check)
        if kind == "classifier" and check.ok:
            classifiers.append(model_dir)
    lib_checks, libraries = open_libraries(models_root)
    report.checks += lib_checks
    samples = sample_files(samples_dir)
    report.checks += check_sample_loads(samples)
    report.checks += check_helper_runs(helpers, samples)
    if classifiers:
        results: dict[Path, Any] = {}
        for i, model_dir in enumerate(classifiers):
            report.checks += check_classifier(
                model_dir, samples, s.device, libraries, results if i == 0 else None, helpers
            )
        report.checks += check_exports(results)
    else:
        report.mode = "viewing only"
    if not classifiers and not any(c.name.startswith("model:") and not c.ok for c in report.checks):
        # (a model that failed its own check may be the classifier: that failure already says why)
        message = NO_CLASSIFIER.format(root=models_root)
        if s.allow_no_model:
            report.checks.append(Check("classifier", True, "absent-allowed", message + " (--allow-no-model)"))
        else:
            report.checks.append(Check("classifier", False, "failed", message))
    report.torch_imported = "torch" in sys.modules
    if s.require_no_torch:
        report.checks.append(
            Check(
                "no-torch",
                not report.torch_imported,
                "failed" if report.torch_imported else "ok",
                "torch was imported" if report.torch_imported else "torch was never imported",
            )
        )
    report.elapsed_s = round(time.perf_counter() - t0, 3)
    return report


def build_parser() -> argparse.ArgumentParser:
    """The ``cxrviewer --self-test`` command line."""
    p = argparse.ArgumentParser(
        prog="cxrviewer --self-test",
        description="Check this installation: model hashes, model loading, DICOM decoders, analysis of the "
        "bundled sample. Prints JSON; exit status 0 = passed, 1 = failed.",
    )
    p.add_argument(
        "--allow-no-model",
        action="store_true",
        help="pass without a classifier (viewing only; for development builds, never for a release)",
    )
    p.add_argument("--require-no-torch", action="store_true", help="fail if anything imported torch")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--models", type=Path, default=None, help="model folder to check instead of models/")
    p.add_argument("--samples", type=Path, default=None, help="sample folder instead of resources/samples/")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON summary to this file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cxrviewer --self-test``; returns the exit status."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    report = run_self_test(
        SelfTestSettings(
            models_root=args.models,
            samples_dir=args.samples,
            allow_no_model=args.allow_no_model,
            require_no_torch=args.require_no_torch,
            device=args.device,
        )
    )
    text = json.dumps(report.to_json(), indent=2)
    print(text, flush=True)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    verdict = "passed" if report.ok else "FAILED"
    print(f"cxrviewer self-test {verdict} ({report.mode}, {report.elapsed_s:.1f} s)", file=sys.stderr)
    for failure in report.failures:
        print(f"  - {failure}", file=sys.stderr)
    return 0 if report.ok else 1
