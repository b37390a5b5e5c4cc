"""Locations of bundled resources (sample study, icons) and shipped models, in a source checkout or a
PyInstaller bundle alike."""

from __future__ import annotations

import sys
from pathlib import Path


def app_root() -> Path:
    """The folder holding ``resources/`` and ``models/``: the repository root, or the PyInstaller bundle."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle)
    return Path(__file__).resolve().parents[1]


def resources_dir() -> Path:
    """``resources/``."""
    return app_root() / "resources"


def models_dir() -> Path:
    """``models/``: the shipped model directories."""
    return app_root() / "models"


def sample_study_dir() -> Path:
    """``resources/samples/``: the bundled, de-identified sample study."""
    return resources_dir() / "samples"
