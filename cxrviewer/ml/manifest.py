"""Model manifests: what a model directory holds, how to feed it, how good it is, and file hashes.

A model directory (``models/<name>/``) contains ``manifest.json`` and the files it lists (safetensors
weights, ONNX graphs). The viewer calls :func:`load_manifest` with ``verify=True`` before loading anything:
every listed file's SHA-256 must match, otherwise :class:`ModelIntegrityError` refuses the model. No pickles
are ever loaded from a model directory.

This module needs only the standard library and the core preprocessing spec (no torch), so the viewer can
list and verify models before any heavy import.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cxrviewer import INTENDED_USE
from cxrviewer.core.preprocess import PreprocessSpec

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
_CHUNK = 1 << 20


class ModelIntegrityError(Exception):
    """A model directory is missing, malformed or does not match its recorded hashes."""


@dataclass
class ModelFile:
    """One file of a model directory with its SHA-256 and size."""

    path: str
    sha256: str
    bytes: int


@dataclass
class ModelManifest:
    """The contents of ``manifest.json``.

    Attributes:
        name: model id, e.g. ``"cxr-classifier"``.
        version: model version string.
        kind: ``classifier`` | ``segmentation`` | ``view`` | ``ood`` | ``embedding``.
        architecture: ``{"name": ..., "num_classes": ..., "in_chans": ...}`` for :func:`create_model`.
        labels: output class names in logit order.
        task: task definition, e.g. ``{"name": "normal-pneumonia-covid", "label_map": {...}}`` mapping
            dataset labels to output classes (dataset labels absent from the map are excluded).
        preprocessing: the :class:`PreprocessSpec` as data.
        files: role → :class:`ModelFile` (roles: ``weights``, ``onnx``, ``onnx_int8`` ...).
        thresholds: operating points and the threshold table (``positive_class``, ``operating_points``,
            ``default``, ``table``).
        calibration: e.g. ``{"temperature": 1.3, "ece_before": ..., "ece_after": ...}``.
        metrics: evaluation figures (test split, per source).
        training: provenance: data, split file, seed, command, duration, hardware.
        extra: kind-specific settings (e.g. mask post-processing, gate thresholds).
        intended_use: always the research-use notice.
    """

    name: str
    version: str
    kind: str
    architecture: dict[str, Any]
    labels: list[str]
    preprocessing: dict[str, Any]
    task: dict[str, Any] = field(default_factory=dict)
    files: dict[str, ModelFile] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    intended_use: str = INTENDED_USE
    schema_version: int = SCHEMA_VERSION

    @property
    def preprocess_spec(self) -> PreprocessSpec:
        """The preprocessing spec as an object."""
        return PreprocessSpec.from_dict(self.preprocessing)

    @property
    def model_id(self) -> str:
        """A short, stable identity for this exact model (name, version and weights hash prefix)."""
        weights = self.files.get("weights")
        digest = weights.sha256[:12] if weights else "nohash"
        return f"{self.name}@{self.version}:{digest}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["files"] = {role: asdict(f) for role, f in self.files.items()}
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelManifest:
        data = dict(data)
        if data.get("schema_version", SCHEMA_VERSION) > SCHEMA_VERSION:
            raise ModelIntegrityError(
                "this model was written by a newer cxrviewer; please update the program"
            )
        files = {role: ModelFile(**f) for role, f in data.pop("files", {}).items()}
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ModelIntegrityError(f"manifest has unknown fields: {sorted(unknown)}")
        return cls(files=files, **data)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def record_file(model_dir: str | Path, manifest: ModelManifest, role: str, relpath: str) -> ModelFile:
    """Hash ``model_dir/relpath`` and record it in ``manifest.files[role]``."""
    p = Path(model_dir) / relpath
    entry = ModelFile(path=relpath, sha256=sha256_file(p), bytes=p.stat().st_size)
    manifest.files[role] = entry
    return entry


def write_manifest(model_dir: str | Path, manifest: ModelManifest) -> Path:
    """Write ``manifest.json`` (files must already be recorded with :func:`record_file`)."""
    path = Path(model_dir) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def verify_files(model_dir: str | Path, manifest: ModelManifest) -> None:
    """Check every listed file exists, has the recorded size and SHA-256; raise ModelIntegrityError if not."""
    root = Path(model_dir).resolve()
    for role, f in manifest.files.items():
        p = (root / f.path).resolve()
        if root not in p.parents:
            raise ModelIntegrityError(
                f"model {manifest.name}: file {f.path!r} points outside the model folder"
            )
        if not p.is_file():
            raise ModelIntegrityError(f"model {manifest.name}: the {role} file {f.path} is missing")
        size = p.stat().st_size
        if size != f.bytes:
            raise ModelIntegrityError(
                f"model {manifest.name}: the {role} file {f.path} has {size} bytes, expected {f.bytes} "
                "(truncated or replaced); reinstall the model"
            )
        if sha256_file(p) != f.sha256:
            raise ModelIntegrityError(
                f"model {manifest.name}: the {role} file {f.path} does not match its recorded SHA-256 "
                "(modified or corrupted); it will not be loaded"
            )


def load_manifest(model_dir: str | Path, verify: bool = True) -> ModelManifest:
    """Read ``model_dir/manifest.json``; with ``verify`` also check every file's hash."""
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ModelIntegrityError(f"{model_dir} is not a model folder (no {MANIFEST_NAME})")
    try:
        manifest = ModelManifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
        raise ModelIntegrityError(f"{path} is not a valid model manifest: {exc}") from exc
    if verify:
        verify_files(model_dir, manifest)
    return manifest
