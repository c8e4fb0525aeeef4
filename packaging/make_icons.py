"""Render ``resources/icons/audiosae.svg`` into the platform icon files the frozen app needs.

    python packaging/make_icons.py                 # writes build/icons/audiosae.{icns,ico,png}
    python packaging/make_icons.py --out DIR

macOS wants an ``.icns`` with sizes up to 1024 px (512 @2x on Retina), Windows an ``.ico``
with 16-256 px.  The committed PNG is 256 px, so the sizes are rendered from the SVG with
QtSvg (offscreen, no display needed) and packed with Pillow, which writes both formats on
every OS.  ``audiosae_studio.spec`` calls ``make_icons`` itself; the generated files are
build outputs and are not committed.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "resources" / "icons" / "audiosae.svg"
DEFAULT_OUT = ROOT / "build" / "icons"
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render_png(size: int, svg: Path = SVG) -> bytes:
    """The SVG rendered at ``size`` x ``size`` as PNG bytes (transparent background)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])   # QImage painting needs one
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data)


def make_icons(out: Path = DEFAULT_OUT, svg: Path = SVG) -> dict[str, Path]:
    """Write ``audiosae.icns``, ``audiosae.ico`` and a 1024 px ``audiosae.png`` into ``out``."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    largest = Image.open(io.BytesIO(render_png(max(ICNS_SIZES), svg))).convert("RGBA")
    paths = {"png": out / "audiosae.png", "icns": out / "audiosae.icns", "ico": out / "audiosae.ico"}
    largest.save(paths["png"])
    # Pillow builds each ICNS/ICO entry by resizing ``largest``; the SVG is simple enough
    # that Lanczos from 1024 px looks as good as rendering each size.
    largest.save(paths["icns"], format="ICNS", sizes=[(s, s) for s in ICNS_SIZES])
    largest.save(paths["ico"], format="ICO", sizes=[(s, s) for s in ICO_SIZES])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    for kind, path in make_icons(args.out).items():
        print(f"{kind}: {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
