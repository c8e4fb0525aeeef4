"""The science core stays headless: importing audiosae (all of it) loads no Qt module."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import audiosae

QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "superqt", "qtpy")


def test_audiosae_imports_no_qt():
    modules = [m.name for m in pkgutil.walk_packages(audiosae.__path__, "audiosae.")
               if not m.name.endswith("__main__")]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n"
            "    importlib.import_module(m)\n"
            f"bad = sorted(k for k in sys.modules if k.split('.')[0] in {QT_MODULES!r})\n"
            "print(len(sys.modules)); assert not bad, bad\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(modules) > 10  # the walk really found the package


def test_no_qt_import_statements_in_core():
    root = audiosae.__path__[0]
    offenders = []
    import pathlib
    import re

    pattern = re.compile(r"^\s*(from|import)\s+(PySide6|PyQt5|PyQt6|pyqtgraph|superqt|qtpy)\b", re.M)
    for path in pathlib.Path(root).rglob("*.py"):
        if pattern.search(path.read_text(encoding="utf-8")):
            offenders.append(str(path))
    assert not offenders


def test_encodec_and_torchcrepe_are_imported_in_one_place():
    import pathlib
    import re

    pattern = re.compile(r"^\s*(from|import)\s+(encodec|torchcrepe)\b", re.M)
    users = sorted(str(p.relative_to(pathlib.Path(audiosae.__path__[0]).parent))
                   for p in pathlib.Path(audiosae.__path__[0]).rglob("*.py")
                   if pattern.search(p.read_text(encoding="utf-8")))
    assert users == [], f"import encodec/torchcrepe via audiosae.thirdparty, not in {users}"
