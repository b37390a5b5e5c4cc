"""Render ``resources/icons/cxrviewer.svg`` into the icon files installers need (build-time tool, uses Qt).

Writes into OUT_DIR: ``cxrviewer-<n>.png`` (16…512 px, Linux hicolor theme), ``cxrviewer.ico`` (Windows,
through Qt's ICO image plugin) and, on macOS where ``iconutil`` exists, ``cxrviewer.icns``.

Usage: ``QT_QPA_PLATFORM=offscreen python packaging/make_icons.py OUT_DIR``
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SIZES = (16, 32, 48, 64, 128, 256, 512)
SVG = Path(__file__).resolve().parents[1] / "resources" / "icons" / "cxrviewer.svg"


def render_pngs(out_dir: Path) -> dict[int, Path]:
    """One PNG per size in :data:`SIZES`; returns ``{size: path}``."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"cannot read {SVG}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        path = out_dir / f"cxrviewer-{size}.png"
        if not image.save(str(path)):
            raise SystemExit(f"cannot write {path}")
        written[size] = path
    return written


def write_ico(pngs: dict[int, Path], out: Path) -> bool:
    """A Windows ``.ico`` from the 256-px rendering (Qt's ICO writer); False when the plugin is missing."""
    from PySide6.QtGui import QImage

    return QImage(str(pngs[256])).save(str(out), "ICO")


def write_icns(pngs: dict[int, Path], out: Path) -> bool:
    """A macOS ``.icns`` with ``iconutil`` (macOS only); False elsewhere."""
    if shutil.which("iconutil") is None:
        return False
    iconset = out.with_suffix(".iconset")
    iconset.mkdir(exist_ok=True)
    for size in (16, 32, 128, 256, 512):
        shutil.copy(pngs[size], iconset / f"icon_{size}x{size}.png")
        if size * 2 in pngs:
            shutil.copy(pngs[size * 2], iconset / f"icon_{size}x{size}@2x.png")
    subprocess.run(["iconutil", "-c", "icns", str(iconset), "-o", str(out)], check=True)
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = Path(argv[0])
    pngs = render_pngs(out_dir)
    made = [p.name for p in pngs.values()]
    if write_ico(pngs, out_dir / "cxrviewer.ico"):
        made.append("cxrviewer.ico")
    if write_icns(pngs, out_dir / "cxrviewer.icns"):
        made.append("cxrviewer.icns")
    print(f"icons in {out_dir}: {', '.join(made)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
