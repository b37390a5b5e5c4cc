"""``cxrviewer`` / ``python -m cxrviewer``: the desktop viewer, plus headless sub-commands.

Argument parsing happens before any Qt or torch import, so ``--help`` and ``--version`` are instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cxrviewer import INTENDED_USE, __version__


def build_parser() -> argparse.ArgumentParser:
    """The viewer's command line."""
    p = argparse.ArgumentParser(
        prog="cxrviewer",
        description=f"Chest X-ray viewer with local AI. {INTENDED_USE}",
        epilog="Headless analysis: cxrviewer analyze PATH... --json|--csv (see cxrviewer analyze --help).",
    )
    p.add_argument("--version", action="version", version=f"cxrviewer {__version__}")
    p.add_argument("paths", nargs="*", help="files, folders, ZIP archives or DICOMDIRs to open")
    p.add_argument("--demo", action="store_true", help="open the bundled sample study")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cxrviewer`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["analyze"]:
        from cxrviewer.cli_analyze import main as analyze_main

        return analyze_main(argv[1:])
    args = build_parser().parse_args(argv)
    paths = list(args.paths)
    if args.demo:
        from cxrviewer.resources import sample_study_dir

        paths.insert(0, str(sample_study_dir()))
    from cxrviewer.ui.app import run  # Qt is imported only now

    return run(paths)


if __name__ == "__main__":
    sys.exit(main())
