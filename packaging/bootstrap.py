#!/usr/bin/env python3
"""One entry point that sets everything up, then runs the app or the tests.

    python3 packaging/bootstrap.py run     # the desktop app on the bundled demo workspace
    python3 packaging/bootstrap.py test    # the test suite (extra args go to pytest)
    python3 packaging/bootstrap.py freeze  # the desktop app with PyInstaller -> dist/audiosae-studio/
    python3 packaging/bootstrap.py frozen-smoke   # freeze if not built yet, then launch it headless and check it
    python3 packaging/bootstrap.py sync    # restore .venv to exactly uv.lock (after a hand-made change)
    python3 packaging/bootstrap.py compat  # newest releases the ranges allow, in a throwaway env (packaging/compat.py)

On Debian/Ubuntu it installs the missing system packages (apt-get, via sudo when not
root).  On every OS it creates or reuses the virtual environment `.venv/` at the repository
root and makes it exactly what `uv.lock` holds (versions and hashes for Linux, macOS and
Windows): pip installs the locked `uv` (hash-checked), then `uv sync --frozen` installs the
rest; again only when uv.lock or pyproject.toml changed.  Only the standard library is used
here, so it runs on a bare Python >= 3.10.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import shutil
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
LOCK = ROOT / "uv.lock"
STAMP = VENV / ".audiosae-install-stamp"

# Debian package -> why.  Installed only when missing.
DEBIAN_PACKAGES = {
    "libportaudio2": "audio playback (sounddevice)",
    "pulseaudio": "a null-sink audio device for playback tests",
    "pulseaudio-utils": "pactl/parec for playback tests",
    "libasound2-plugins": "ALSA's 'pulse' device, through which PortAudio reaches PulseAudio",
    "xvfb": "real-window screenshots in tests",
    "fluidsynth": "rendering the built-in MIDI corpus",
    "fluid-soundfont-gm": "General MIDI instruments for FluidSynth",
    "sonic-visualiser": "Sonic Visualiser, the client that opens exported lanes and sessions in tests",
    "libsndfile1": "reading audio files",
    "libgl1": "Qt",
    "libegl1": "Qt",
    "libxkbcommon0": "Qt",
    "libxkbcommon-x11-0": "Qt on X11",
    "libxcb-cursor0": "Qt on X11",
    "libxcb-icccm4": "Qt on X11",
    "libxcb-keysyms1": "Qt on X11",
    "libxcb-image0": "Qt on X11",
    "libxcb-render-util0": "Qt on X11",
    "libxcb-randr0": "Qt on X11",
    "libxcb-shape0": "Qt on X11",
    "libxcb-xinerama0": "Qt on X11",
    "libxcb-xkb1": "Qt on X11",
    "libfontconfig1": "Qt fonts",
    "libdbus-1-3": "Qt",
    "libglib2.0-0": "Qt",
    "fonts-dejavu-core": "readable text in screenshots",
}

OTHER_OS_HINT = {
    "Darwin": "macOS: install Python >= 3.10 and, for the MIDI corpus, `brew install fluid-synth` "
              "plus a General MIDI soundfont (set AUDIOSAE_SOUNDFONT=/path/to/font.sf2).",
    "Windows": "Windows: install Python >= 3.10 from python.org; for the MIDI corpus install FluidSynth "
               "and a General MIDI soundfont and set AUDIOSAE_SOUNDFONT.",
}


def say(msg: str) -> None:
    print(f"[bootstrap] {msg}", flush=True)


def run(cmd: list[str], **kw: object) -> None:
    say("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def debian_like() -> bool:
    return platform.system() == "Linux" and shutil.which("dpkg-query") is not None and shutil.which("apt-get") is not None


def missing_debian_packages() -> list[str]:
    missing = []
    if importlib.util.find_spec("ensurepip") is None:  # Debian's python3 without python3-venv
        missing.append("python3-venv")
    for pkg in DEBIAN_PACKAGES:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if "install ok installed" not in res.stdout:
            missing.append(pkg)
    return missing


def ensure_system_packages() -> None:
    if not debian_like():
        hint = OTHER_OS_HINT.get(platform.system())
        if hint:
            say(hint)
        return
    missing = missing_debian_packages()
    if not missing:
        return
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            say("missing system packages and no sudo; please run as root:\n  apt-get install -y " + " ".join(missing))
            return
        prefix = ["sudo"]
    say("installing system packages: " + ", ".join(missing))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(prefix + ["apt-get", "update", "-qq"], env=env)
    run(prefix + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


def venv_python(venv: Path = VENV) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_uv(venv: Path = VENV) -> Path:
    return venv / ("Scripts/uv.exe" if os.name == "nt" else "bin/uv")


def locked_package(name: str) -> tuple[str, list[str]]:
    """(version, wheel sha256 hashes) of ``name`` in uv.lock, read without tomllib (Python 3.10)."""
    text = LOCK.read_text(encoding="utf-8")
    for block in text.split("\n[[package]]\n"):
        if re.search(rf'^name = "{re.escape(name)}"$', block, re.M):
            version = re.search(r'^version = "([^"]+)"$', block, re.M)
            hashes = re.findall(r'hash = "sha256:([0-9a-f]{64})"', block)
            if version and hashes:
                return version.group(1), hashes
    sys.exit(f"{LOCK} has no {name!r} package; regenerate it with `uv lock`")


def ensure_uv(venv: Path = VENV) -> Path:
    """The uv version the lock holds, installed into the venv by pip with the lock's hashes."""
    version, hashes = locked_package("uv")
    uv = venv_uv(venv)
    if uv.exists():
        out = subprocess.run([str(uv), "--version"], capture_output=True, text=True).stdout.split()
        if len(out) >= 2 and out[1] == version:
            return uv
    py = venv_python(venv)
    if subprocess.run([str(py), "-m", "pip", "--version"], capture_output=True).returncode != 0:
        run([str(py), "-m", "ensurepip", "--upgrade"])
    req = venv / "uv-requirement.txt"
    req.write_text(f"uv=={version} " + " ".join(f"--hash=sha256:{h}" for h in hashes) + "\n")
    run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes", "-r", str(req)])
    return uv


def uv_environment(venv: Path = VENV) -> dict[str, str]:
    env = dict(os.environ)
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    env.pop("VIRTUAL_ENV", None)  # an activated other venv would only draw a warning
    return env


def ensure_venv(extras: tuple[str, ...] = ("dev",)) -> Path:
    """Create or reuse .venv and make it exactly what uv.lock holds (plus the project, editable)."""
    if sys.version_info < (3, 10):
        sys.exit(f"Python >= 3.10 is needed (this is {platform.python_version()})")
    py = venv_python()
    if not py.exists():
        say(f"creating {VENV}")
        run([sys.executable, "-m", "venv", str(VENV)])
    wanted = hashlib.sha256(LOCK.read_bytes() + (ROOT / "pyproject.toml").read_bytes()
                            + " ".join(extras).encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return py
    started = time.monotonic()
    uv = ensure_uv()
    extra_args = [arg for extra in extras for arg in ("--extra", extra)]
    # --frozen: install the lock as it is (never re-resolve); a stale lock is an error below.
    run([str(uv), "sync", "--frozen", *extra_args], cwd=ROOT, env=uv_environment())
    STAMP.write_text(wanted)
    say(f"environment ready in {time.monotonic() - started:.0f} s ({VENV})")
    return py


def freeze_command(py: Path, extra: list[str]) -> list[str]:
    return [str(py), "-m", "PyInstaller", str(ROOT / "packaging" / "audiosae_studio.spec"), "--noconfirm",
            "--distpath", str(ROOT / "dist"), "--workpath", str(ROOT / "build" / "pyinstaller"), *extra]


def test_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "freeze", "frozen-smoke", "compat", "sync"}:
        print(__doc__)
        return 2
    what, rest = argv[0], argv[1:]
    ensure_system_packages()
    if what == "compat":
        sys.path.insert(0, str(ROOT / "packaging"))
        from compat import run_compat

        return run_compat(rest, ensure_uv, venv_python)
    if what == "sync":  # restore .venv to exactly the lock (a package removed or changed by hand)
        STAMP.unlink(missing_ok=True)
        ensure_venv()
        return 0
    py = ensure_venv(("dev", "package") if what in {"freeze", "frozen-smoke"} else ("dev",))
    if what == "run":
        cmd = [str(py), "-m", "studio.app", *(rest or ["--demo"])]
        env = dict(os.environ)
        if platform.system() == "Linux" and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
            say("no display found (DISPLAY/WAYLAND_DISPLAY unset); the app needs a desktop session. "
                "Headless: `xvfb-run python3 packaging/bootstrap.py run`, or the offline CLI demo: "
                ".venv/bin/audiosae demo")
    elif what == "test":
        cmd = [str(py), "-m", "pytest", *rest]
        env = test_environment()
    else:
        env = dict(os.environ)
        if what == "freeze":
            cmd = freeze_command(py, rest)
        else:
            cmd = [str(py), str(ROOT / "packaging" / "smoke_frozen.py"), *rest]
            if "--build" not in rest and not (ROOT / "dist" / "audiosae-studio").is_dir():
                cmd.append("--build")
    say("$ " + " ".join(cmd))
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
