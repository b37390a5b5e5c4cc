"""``cxr-trainer``: the command line that builds every model the viewer ships.

Each verb lives in its own module under :mod:`cxr_trainer.commands` and registers a sub-parser here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cxr_trainer import __version__


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per verb."""
    p = argparse.ArgumentParser(
        prog="cxr-trainer",
        description="Train, evaluate and export the chest X-ray models used by cxrviewer (research use only).",
    )
    p.add_argument("--version", action="version", version=f"cxr-trainer {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    from cxr_trainer.commands import register_all

    register_all(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cxr-trainer`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
