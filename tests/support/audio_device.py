"""A PulseAudio null sink for tests that play real audio (``@pytest.mark.audio_device``).

Use it from a test module with ``from tests.support.audio_device import pulse_null_sink  # noqa: F401``
and take ``pulse_null_sink`` as an argument.

The fixture (module scope) makes sure a PulseAudio server runs: it reuses a running one, or
starts its own in the foreground (``pulseaudio -n --daemonize=no``, so it owns the process)
with a private runtime directory.  It loads ``module-null-sink`` as ``audiosae_test``, makes
it the default sink, and tells PortAudio to list devices again (it enumerates them only once,
when sounddevice is imported).  At teardown it undoes exactly what it did: unloads the sink,
restores the previous default sink, stops the server it started, restores the environment.

System packages: ``pulseaudio pulseaudio-utils`` (pactl, parec), ``libportaudio2`` and, for
PortAudio's ALSA "pulse"/"default" devices, ``libasound2-plugins``.  Missing ones skip the test
with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

SINK_NAME = "audiosae_test"
_ALSA_PULSE_PLUGIN_GLOBS = ("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so",
                            "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so")


@dataclass
class NullSink:
    """The running null sink: its name, its monitor source and a recorder."""

    sink: str
    monitor: str
    env: dict[str, str]

    def record(self, path: Path, *, rate: int, channels: int = 1, latency_msec: int = 20) -> subprocess.Popen:
        """Start ``parec`` on the monitor writing raw float32 frames to ``path``; stop it with
        ``stop_recording``."""
        out = open(path, "wb")
        proc = subprocess.Popen(
            ["parec", f"--device={self.monitor}", "--format=float32le", f"--rate={rate}",
             f"--channels={channels}", f"--latency-msec={latency_msec}", "--raw"],
            stdout=out, stderr=subprocess.PIPE, env=self.env)
        proc._audiosae_file = out  # type: ignore[attr-defined]  # closed by stop_recording
        return proc

    @staticmethod
    def wait_for_data(path: Path, timeout: float = 10.0) -> bool:
        """Wait until ``parec`` writes something: the monitor only delivers once the sink runs,
        which takes from ~0.1 s to over a second after a stream opens on a busy machine."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size > 0:
                return True
            time.sleep(0.02)
        return False

    @staticmethod
    def stop_recording(proc: subprocess.Popen, path: Path, channels: int = 1) -> np.ndarray:
        """Stop ``parec`` and return what it recorded, ``[channels, n]`` float32."""
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc._audiosae_file.close()  # type: ignore[attr-defined]
        data = np.fromfile(path, dtype="<f4")
        return data[: len(data) // channels * channels].reshape(-1, channels).T.copy()


def _missing_tools() -> list[str]:
    missing = [tool for tool in ("pulseaudio", "pactl", "parec") if shutil.which(tool) is None]
    import glob

    if not any(glob.glob(pattern) for pattern in _ALSA_PULSE_PLUGIN_GLOBS):
        missing.append("libasound2-plugins (ALSA 'pulse' device)")
    try:
        import sounddevice  # noqa: F401
    except OSError:
        missing.append("libportaudio2")
    return missing


def _pactl(env: dict[str, str], *args: str, check: bool = True) -> str:
    result = subprocess.run(["pactl", *args], env=env, capture_output=True, text=True, timeout=10)
    if check and result.returncode != 0:
        raise RuntimeError(f"pactl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _server_answers(env: dict[str, str]) -> bool:
    try:
        return subprocess.run(["pactl", "info"], env=env, capture_output=True, timeout=5).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _rescan_portaudio() -> None:
    try:
        import sounddevice
    except OSError:
        return
    sounddevice._terminate()
    sounddevice._initialize()


@pytest.fixture(scope="module")
def pulse_null_sink() -> Iterator[NullSink]:
    """A PulseAudio null sink named ``audiosae_test``, set as the default sink."""
    missing = _missing_tools()
    if missing:
        pytest.skip(f"audio device test needs {', '.join(missing)} "
                    f"(apt-get install pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins)")
    saved_env = {key: os.environ.get(key) for key in ("XDG_RUNTIME_DIR", "PULSE_SERVER")}
    env = dict(os.environ)
    server: subprocess.Popen | None = None
    runtime_dir: str | None = None
    module_index: str | None = None
    previous_default: str | None = None
    try:
        if not _server_answers(env):
            runtime_dir = tempfile.mkdtemp(prefix="audiosae-pulse-")
            os.chmod(runtime_dir, 0o700)
            env["XDG_RUNTIME_DIR"] = runtime_dir
            env["PULSE_SERVER"] = f"unix:{runtime_dir}/pulse/native"
            # -n: no default.pa (no hardware probing); the native protocol is all clients need.
            server = subprocess.Popen(
                ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
                 "--load=module-native-protocol-unix", "--log-target=stderr", "--log-level=error"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 10
            while not _server_answers(env):
                if server.poll() is not None or time.monotonic() > deadline:
                    err = server.stderr.read().decode(errors="replace") if server.poll() is not None else ""
                    pytest.skip(f"could not start pulseaudio: {err.strip()[-500:] or 'timed out'}")
                time.sleep(0.1)
            os.environ["XDG_RUNTIME_DIR"] = env["XDG_RUNTIME_DIR"]
            os.environ["PULSE_SERVER"] = env["PULSE_SERVER"]
        sinks = _pactl(env, "list", "short", "sinks")
        if SINK_NAME not in sinks.split():
            module_index = _pactl(env, "load-module", "module-null-sink", f"sink_name={SINK_NAME}",
                                  "rate=48000", "channels=2")
        info = _pactl(env, "info")
        previous_default = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                                 if line.startswith("Default Sink:")), None)
        _pactl(env, "set-default-sink", SINK_NAME)
        _rescan_portaudio()  # PortAudio listed devices before the server existed
        yield NullSink(sink=SINK_NAME, monitor=f"{SINK_NAME}.monitor", env=env)
    finally:
        if server is None or server.poll() is None:
            if previous_default and previous_default != SINK_NAME:
                _pactl(env, "set-default-sink", previous_default, check=False)
            if module_index:
                _pactl(env, "unload-module", module_index, check=False)
        if server is not None:
            server.terminate()
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if runtime_dir is not None:
            shutil.rmtree(runtime_dir, ignore_errors=True)
        _rescan_portaudio()
