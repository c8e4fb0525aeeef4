#!/usr/bin/env python3
"""One entry point that sets everything up, then runs the app or the tests.

    python3 packaging/bootstrap.py run     # the desktop app on the bundled demo workspace
    python3 packaging/bootstrap.py test    # the test suite (extra args go to pytest)
    python3 packaging/bootstrap.py freeze  # the desktop app with PyInstaller -> dist/audiosae-studio/
    python3 packaging/bootstrap.py frozen-smoke   # freeze if not built yet, then launch it headless and check it

On Debian/Ubuntu it installs the missing system packages (apt-get, via sudo when not
root).  On every OS it creates or reuses the virtual environment `.venv/` at the repository
root and installs the project into it (again only when pyproject.toml changed).  Only the
standard library is used here, so it runs on a bare Python >= 3.10.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
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


def run(cmd: list[str], **kw) -> None:
    say("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def debian_like() -> bool:
    return platform.system() == "Linux" and shutil.which("dpkg-query") is not None and shutil.which("apt-get") is not None


def missing_debian_packages() -> list[str]:
    missing = []
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


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> Path:
    if sys.version_info < (3, 10):
        sys.exit(f"Python >= 3.10 is needed (this is {platform.python_version()})")
    py = venv_python()
    if not py.exists():
        say(f"creating {VENV}")
        run([sys.executable, "-m", "venv", str(VENV)])
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return py
    run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([str(py), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev]"])
    STAMP.write_text(wanted)
    return py


def ensure_pyinstaller(py: Path) -> None:
    """The ``package`` extra (PyInstaller), installed only for the freezing commands."""
    if subprocess.run([str(py), "-c", "import PyInstaller"], capture_output=True).returncode == 0:
        return
    run([str(py), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev,package]"])


def freeze_command(py: Path, extra: list[str]) -> list[str]:
    return [str(py), "-m", "PyInstaller", str(ROOT / "packaging" / "audiosae_studio.spec"), "--noconfirm",
            "--distpath", str(ROOT / "dist"), "--workpath", str(ROOT / "build" / "pyinstaller"), *extra]


def test_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "freeze", "frozen-smoke"}:
        print(__doc__)
        return 2
    what, rest = argv[0], argv[1:]
    ensure_system_packages()
    py = ensure_venv()
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
        ensure_pyinstaller(py)
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
