"""``cxrviewer`` / ``python -m cxrviewer``: the desktop viewer, plus headless sub-commands.

Argument parsing happens before any Qt or torch import, so ``--help`` and ``--version`` are instant.
"""

from __future__ import annotations

import argparse
import sys
import time
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
    p.add_argument(
        "--self-test",
        action="store_true",
        help="check the installation (models, decoders, sample analysis), print JSON, exit non-zero on "
        "failure; options: cxrviewer --self-test --help",
    )
    p.add_argument(
        "--smoke-window",
        type=float,
        metavar="SECONDS",
        help="packaging smoke test: open the window (and the given paths), quit SECONDS after the first "
        "image is shown (after the first paint without paths); exit status 3 if no image appears in 60 s",
    )
    return p


SMOKE_DEADLINE_S = 60.0


def _smoke_window(seconds: float, wait_for_image: bool):
    """``on_first_paint`` callback of ``--smoke-window``: report the first paint (and the first image shown,
    when paths were given), then close the window ``seconds`` later; exit status 3 if no image is shown
    within :data:`SMOKE_DEADLINE_S`."""
    start = time.perf_counter()

    def on_first_paint(window) -> None:
        from PySide6.QtCore import QTimer  # Qt is already imported by the window
        from PySide6.QtWidgets import QApplication

        print(f"cxrviewer: first paint {time.perf_counter() - start:.2f} s after start-up", flush=True)

        def close_later(*_args) -> None:
            if wait_for_image:
                window.image_shown.disconnect(close_later)
                print(
                    f"cxrviewer: image shown {time.perf_counter() - start:.2f} s after start-up", flush=True
                )
            QTimer.singleShot(int(seconds * 1000), window.close)

        if not wait_for_image:
            close_later()
            return
        window.image_shown.connect(close_later)

        def give_up() -> None:
            print(f"cxrviewer: no image shown within {SMOKE_DEADLINE_S:g} s", file=sys.stderr, flush=True)
            QApplication.exit(3)

        QTimer.singleShot(int(SMOKE_DEADLINE_S * 1000), give_up)

    return on_first_paint


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cxrviewer`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--self-test" in argv:
        from cxrviewer.self_test import main as self_test_main

        return self_test_main([a for a in argv if a != "--self-test"])
    if argv[:1] == ["analyze"]:
        from cxrviewer.cli_analyze import main as analyze_main

        return analyze_main(argv[1:])
    args = build_parser().parse_args(argv)
    paths = list(args.paths)
    if args.demo:
        from cxrviewer.resources import sample_study_dir

        paths.insert(0, str(sample_study_dir()))
    from cxrviewer.ui.app import run  # Qt is imported only now

    if args.smoke_window is not None:
        return run(paths, on_first_paint=_smoke_window(args.smoke_window, wait_for_image=bool(paths)))
    return run(paths)


if __name__ == "__main__":
    sys.exit(main())
