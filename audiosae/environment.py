"""The one command that repairs a missing or broken package, as the user installed us.

A checkout set up by ``packaging/bootstrap.py`` (its stamp lies in the venv) is repaired by
``bootstrap.py sync``, which puts back exactly what ``uv.lock`` holds; any other install
(``pip install audiosae-studio``, a conda env) by reinstalling the package with pip.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

BOOTSTRAP_STAMP = ".audiosae-install-stamp"


def bootstrap_script() -> Path | None:
    """``packaging/bootstrap.py`` of the checkout whose ``.venv`` runs this process, if any."""
    prefix = Path(sys.prefix)
    script = prefix.parent / "packaging" / "bootstrap.py"
    if (prefix / BOOTSTRAP_STAMP).is_file() and script.is_file():
        return script
    return None


def repair_command(requirement: str) -> str:
    """One shell command that (re)installs ``requirement`` (e.g. ``"torchcrepe>=0.0.22"``) here."""
    script = bootstrap_script()
    if script is not None:
        return f"python3 {shlex.quote(str(script))} sync"
    return f"{shlex.quote(sys.executable)} -m pip install --force-reinstall {shlex.quote(requirement)}"
