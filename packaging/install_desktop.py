#!/usr/bin/env python3
"""Install the Linux desktop entry and icons for one user (or a prefix), or remove them.

    python3 packaging/install_desktop.py                       # the frozen app in dist/audiosae-studio/
    python3 packaging/install_desktop.py --exec ~/.local/bin/audiosae-studio   # a pip-installed script
    python3 packaging/install_desktop.py --uninstall

Writes ``PREFIX/share/applications/audiosae-studio.desktop`` (``Exec``/``TryExec`` pointing at
the executable given, as an absolute path, since a frozen app is not on ``PATH``) and the icon
as ``audiosae-studio`` in the hicolor theme (SVG, plus the 256 px PNG for launchers that skip
SVG).  PREFIX defaults to ``$XDG_DATA_HOME/..`` i.e. ``~/.local``.  Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESKTOP_FILE = ROOT / "packaging" / "audiosae-studio.desktop"
ICONS = ROOT / "resources" / "icons"
APP_ID = "audiosae-studio"
DEFAULT_EXEC = ROOT / "dist" / "audiosae-studio" / "audiosae-studio"


def default_prefix() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME")
    return Path(data_home).parent if data_home else Path.home() / ".local"


def installed_paths(prefix: Path) -> dict[str, Path]:
    share = prefix / "share"
    return {
        "desktop": share / "applications" / f"{APP_ID}.desktop",
        "svg": share / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg",
        "png": share / "icons" / "hicolor" / "256x256" / "apps" / f"{APP_ID}.png",
    }


def desktop_entry(executable: Path) -> str:
    """The packaged entry with ``Exec``/``TryExec`` naming ``executable`` (quoted as the spec asks)."""
    quoted = shlex.quote(str(executable))   # the spec's quoting rules are a subset of the shell's
    lines = []
    for line in DESKTOP_FILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            line = f"Exec={quoted} %f"
        elif line.startswith("TryExec="):
            line = f"TryExec={executable}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def refresh_caches(prefix: Path) -> None:
    """Let menus and file managers see the change now (each tool is optional)."""
    share = prefix / "share"
    for cmd in (["update-desktop-database", "-q", str(share / "applications")],
                ["gtk-update-icon-cache", "-q", "-t", str(share / "icons" / "hicolor")]):
        if shutil.which(cmd[0]):
            subprocess.run(cmd, check=False, capture_output=True)


def install(prefix: Path, executable: Path) -> dict[str, Path]:
    paths = installed_paths(prefix)
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    paths["desktop"].write_text(desktop_entry(executable), encoding="utf-8")
    shutil.copyfile(ICONS / "audiosae.svg", paths["svg"])
    shutil.copyfile(ICONS / "audiosae.png", paths["png"])
    refresh_caches(prefix)
    return paths


def uninstall(prefix: Path) -> list[Path]:
    removed = []
    for path in installed_paths(prefix).values():
        if path.exists():
            path.unlink()
            removed.append(path)
    refresh_caches(prefix)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=None, help="install under PREFIX/share (default ~/.local)")
    parser.add_argument("--exec", dest="executable", type=Path, default=DEFAULT_EXEC,
                        help=f"the app's executable (default {DEFAULT_EXEC.relative_to(ROOT)})")
    parser.add_argument("--uninstall", action="store_true", help="remove what an install wrote")
    args = parser.parse_args(argv)
    prefix = (args.prefix or default_prefix()).expanduser().resolve()
    if args.uninstall:
        for path in uninstall(prefix):
            print(f"removed {path}")
        return 0
    executable = args.executable.expanduser().resolve()
    if not (executable.is_file() and os.access(executable, os.X_OK)):
        print(f"error: {executable}: no executable there; build it first (python3 packaging/bootstrap.py freeze) "
              f"or give --exec", file=sys.stderr)
        return 1
    for path in install(prefix, executable).values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
