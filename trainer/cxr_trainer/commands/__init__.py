"""One module per ``cxr-trainer`` verb; each exposes ``register(subparsers)`` setting ``func``."""

from __future__ import annotations

import argparse
import importlib

# Verb modules, in the order they appear in --help. Each defines register(subparsers).
VERB_MODULES: list[str] = [
    "data",
    "train",
    "evaluate",
    "export",
    "build_index",
    "train_seg",
    "train_gate",
    "reproduce",
]


def register_all(sub: argparse._SubParsersAction) -> None:
    """Register every verb module's sub-parser."""
    for name in VERB_MODULES:
        importlib.import_module(f"cxr_trainer.commands.{name}").register(sub)
