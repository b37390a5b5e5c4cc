"""Saving and loading classifier model directories (safetensors weights + verified manifest).

Only safetensors are read from a model directory; pickled checkpoints are never loaded here.
"""

from __future__ import annotations

from pathlib import Path

from cxrviewer.ml.manifest import (
    ModelIntegrityError,
    ModelManifest,
    load_manifest,
    record_file,
    write_manifest,
)

WEIGHTS_NAME = "model.safetensors"


def save_classifier(model, manifest: ModelManifest, out_dir: str | Path) -> Path:
    """Write ``out_dir/model.safetensors`` and ``out_dir/manifest.json`` (with SHA-256 of the weights).

    ``manifest.architecture`` must describe the model (``name``, ``num_classes``, ``in_chans``).
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_NAME), metadata={"name": manifest.name, "version": manifest.version})
    record_file(out, manifest, "weights", WEIGHTS_NAME)
    write_manifest(out, manifest)
    return out


def build_from_manifest(manifest: ModelManifest):
    """An untrained :class:`~cxrviewer.ml.registry.Classifier` with the manifest's architecture."""
    from cxrviewer.ml.registry import create_model

    arch = manifest.architecture
    return create_model(
        arch["name"], num_classes=int(arch["num_classes"]), in_chans=int(arch.get("in_chans", 1))
    )


def load_classifier(model_dir: str | Path, verify: bool = True):
    """Load a classifier model directory; returns ``(model, manifest)`` with the model in eval mode.

    With ``verify`` (the default) every file's SHA-256 is checked first; a mismatch raises
    :class:`~cxrviewer.ml.manifest.ModelIntegrityError` and nothing is loaded.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    manifest = load_manifest(model_dir, verify=verify)
    weights = manifest.files.get("weights")
    if weights is None:
        raise ModelIntegrityError(f"model {manifest.name} lists no weights file")
    model = build_from_manifest(manifest)
    try:
        state = load_file(str(Path(model_dir) / weights.path))
    except (SafetensorError, OSError) as exc:
        raise ModelIntegrityError(f"model {manifest.name}: the weights file cannot be read ({exc})") from exc
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelIntegrityError(
            f"model {manifest.name}: weights do not fit architecture {manifest.architecture.get('name')} "
            f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)"
        )
    model.eval()
    return model, manifest
