"""``python3 packaging/bootstrap.py compat``: does the project still work with the newest
releases its ranges allow?

The README's commands install ``uv.lock`` exactly, so a new torch (or numpy, librosa,
PySide6...) release changes nothing for them.  This check looks ahead: it builds a
throwaway environment (``build/compat/.venv``) from ``pyproject.toml`` *without* the lock,
resolving every dependency to the newest version allowed (``--lowest``: the oldest direct
dependencies instead), prints the versions it got and runs a smoke subset:

1. every module of ``audiosae`` and ``studio`` imports, and ``torchaudio`` is never imported;
2. CREPE labels a 440 Hz tone as A4, and an EnCodec round trip on a tiny model, both in a
   process where ``import torchaudio`` raises (``tests/core/test_no_torchaudio.py``);
3. ``audiosae demo`` on a short corpus (build, SAE grid, probes, report, steered example);
4. the studio's ``--smoke-test`` on the demo workspace (offscreen).

Exit status 0 when every step passed.  Not part of the default CI run (it resolves from the
package index, so its answer changes when upstream does: that is its point).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPAT_DIR = ROOT / "build" / "compat"
SHOWN = ("torch", "torchaudio", "numpy", "scipy", "librosa", "numba", "soundfile", "soxr", "safetensors",
         "PySide6-Essentials", "pyqtgraph", "sounddevice", "huggingface-hub", "matplotlib", "torchcrepe", "encodec",
         "pytest", "pytest-qt")

IMPORT_ALL = r"""
import importlib, pkgutil, sys
import audiosae, studio
names = []
for pkg in (audiosae, studio):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
        names.append(info.name)
assert "torchaudio" not in sys.modules, "torchaudio was imported"
print(f"imported {len(names)} modules; torchaudio not imported")
"""

VERSIONS = r"""
import importlib.metadata as md, sys
for name in sys.argv[1:]:
    try:
        print(f"  {name:20s} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name:20s} (not installed)")
"""


def _say(msg: str) -> None:
    print(f"[compat] {msg}", flush=True)


def _step(name: str, cmd: list[str], env: dict[str, str], cwd: Path, results: list[tuple[str, bool, float]]) -> None:
    _say(f"--- {name}: $ {' '.join(cmd)}")
    started = time.monotonic()
    ok = subprocess.call(cmd, cwd=cwd, env=env) == 0
    results.append((name, ok, time.monotonic() - started))
    _say(f"--- {name}: {'ok' if ok else 'FAILED'} ({time.monotonic() - started:.0f} s)")


def run_compat(argv: list[str], ensure_uv, venv_python) -> int:
    """Build the throwaway environment and run the smoke subset; returns the exit status."""
    lowest = "--lowest" in argv
    keep = "--keep" in argv
    venv = COMPAT_DIR / ".venv"
    if venv.exists():
        shutil.rmtree(venv)
    COMPAT_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    uv = ensure_uv(venv)
    py = venv_python(venv)
    resolution = "lowest-direct" if lowest else "highest"
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    _say(f"resolving pyproject.toml without the lock ({resolution}) into {venv}")
    subprocess.run([str(uv), "pip", "install", "--python", str(py), "--resolution", resolution, "--upgrade",
                    "-e", f"{ROOT}[dev]"], check=True, env=env)
    _say(f"environment ready in {time.monotonic() - started:.0f} s; versions:")
    subprocess.run([str(py), "-c", VERSIONS, *SHOWN], check=True)
    bin_dir = py.parent
    test_env = {**env, "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1", "VIRTUAL_ENV": str(venv),
                "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    results: list[tuple[str, bool, float]] = []
    with tempfile.TemporaryDirectory(prefix="audiosae-compat-") as tmp:
        _step("imports", [str(py), "-c", IMPORT_ALL], test_env, ROOT, results)
        _step("CREPE + EnCodec without torchaudio",
              [str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/core/test_no_torchaudio.py"],
              test_env, ROOT, results)
        demo = Path(tmp) / "demo"
        _step("audiosae demo (0.5 min of tones)",
              [str(bin_dir / "audiosae"), "demo", "--workspace", str(demo), "--minutes", "0.5", "--quiet"],
              test_env, ROOT, results)
        _step("studio --smoke-test", [str(py), "-m", "studio.app", str(demo), "--smoke-test"], test_env, ROOT,
              results)
    if not keep:
        shutil.rmtree(venv, ignore_errors=True)
    _say("summary:")
    for name, ok, seconds in results:
        print(f"  {'ok    ' if ok else 'FAILED'} {name} ({seconds:.0f} s)")
    return 0 if all(ok for _, ok, _ in results) else 1
