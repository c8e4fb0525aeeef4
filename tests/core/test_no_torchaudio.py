"""The project works where ``import torchaudio`` fails.

torchaudio fails to load when it does not match torch (e.g. torchaudio 2.11.1 beside torch
2.11.0), and torchcrepe and encodec import it at import time; the project imports none of
them.  Each test runs a snippet in a fresh Python where torchaudio cannot be imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs before the snippet: any import of torchaudio (or a submodule) raises ImportError, and
# the process exits with BLOCKED_EXIT if anything tried one, or if torchcrepe got imported,
# even when the caller swallowed the error.
_PRELUDE = '''
import atexit, importlib.abc, os, sys

class _NoTorchaudio(importlib.abc.MetaPathFinder):
    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torchaudio":
            self.attempts.append(name)
            raise ImportError(f"{name} is blocked: the project must never import torchaudio")
        return None

sys.modules.pop("torchaudio", None)
sys.meta_path.insert(0, _NoTorchaudio())

def _check_nothing_imported():
    imported = sorted(m for m in sys.modules if m.split(".")[0] in ("torchaudio", "torchcrepe"))
    if _NoTorchaudio.attempts or imported:
        sys.stdout.flush()
        sys.stderr.write(f"torchaudio import attempts: {_NoTorchaudio.attempts}; imported: {imported}\\n")
        sys.stderr.flush()
        os._exit(BLOCKED_EXIT)

atexit.register(_check_nothing_imported)
'''
BLOCKED_EXIT = 97


def run_without_torchaudio(snippet: str, *, timeout: float = 300.0, env: dict[str, str] | None = None) -> str:
    """Run ``snippet`` (Python source) in a subprocess where ``import torchaudio`` raises
    ImportError; return its stdout.

    Fails the calling test if the snippet fails, or if anything attempted to import torchaudio
    or left torchcrepe imported (exit code ``BLOCKED_EXIT``, reported with the names).  Runs
    from the repository root with one CPU thread; ``env`` adds environment variables.
    """
    code = _PRELUDE.replace("BLOCKED_EXIT", str(BLOCKED_EXIT)) + "\n" + textwrap.dedent(snippet)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "QT_QPA_PLATFORM": "offscreen",
           **(env or {})}
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    if res.returncode == BLOCKED_EXIT:
        raise AssertionError(f"torchaudio/torchcrepe was imported: {res.stderr[-2000:]}")
    assert res.returncode == 0, f"snippet failed (exit {res.returncode}):\n{res.stderr[-4000:]}"
    return res.stdout


def test_the_helper_sees_torchaudio_imports():
    # The guard itself: a swallowed torchaudio import still fails the run.
    try:
        run_without_torchaudio("""
            try:
                import torchaudio  # noqa: F401
            except ImportError:
                print("swallowed")
        """)
    except AssertionError as exc:
        assert "torchaudio/torchcrepe was imported" in str(exc) and "'torchaudio'" in str(exc)
    else:
        raise AssertionError("an attempt to import torchaudio went unnoticed")
    assert run_without_torchaudio("print('fine')").strip() == "fine"


def test_crepe_pitch_labels_without_torchaudio():
    out = run_without_torchaudio("""
        import json
        import numpy as np
        from audiosae.attributes import AttributeSpec, load_crepe

        for capacity in ("tiny", "full"):
            load_crepe(capacity, "cpu")
        sr, hop = 24000, 320
        t = np.arange(sr // 2) / sr
        wave = sum(np.sin(2 * np.pi * k * 220.0 * t) / k for k in range(1, 6))
        wave = (0.3 * wave / np.abs(wave).max()).astype(np.float32)
        times = (np.arange(int(np.ceil(len(wave) / hop))) + 0.5) * hop / sr
        spec = AttributeSpec()  # what corpus building (Workspace build) calls: spec.measure
        fa = spec.measure(wave, sr, times, hop_length=hop, device="cpu")
        pitch = spec.classify(fa)["pitch"]
        print(json.dumps({"median_midi": float(np.nanmedian(fa.midi)),
                          "a3_fraction": float(np.mean(pitch == 57 - 30))}))
    """)
    result = json.loads(out.strip().splitlines()[-1])
    assert abs(result["median_midi"] - 57.0) < 0.3, result  # 220 Hz = A3 = MIDI 57
    assert result["a3_fraction"] >= 0.95, result


def test_studio_smoke_test_without_torchaudio(tmp_path):
    """The studio's --smoke-test (window, demo workspace, first clip analysed with CREPE labels,
    every module imported) where torchaudio cannot be imported."""
    report = tmp_path / "smoke.txt"
    out = run_without_torchaudio(f"""
        import sys
        from studio.app import main
        code = main(["--demo", "--smoke-test", "--smoke-report", {str(report)!r}])
        # librosa is no longer on this list: the demo labels the registered attributes (onset, chroma
        # ...), which librosa measures, in the job after the clip is shown (ExplorerSession)
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"torchaudio", "torchcrepe"}})
        print("HEAVY", heavy)
        sys.exit(code)
    """, env={"AUDIOSAE_SETTINGS_FILE": str(tmp_path / "settings.ini"), "AUDIOSAE_LOG_DIR": str(tmp_path / "logs")})
    marker, _, payload = report.read_text().strip().partition(" ")
    assert marker == "AUDIOSAE_SMOKE", out
    result = json.loads(payload)
    assert result["ok"] and result["errors"] == [], result
    assert result["clip"] and (result["frames"] or 0) > 0 and set(result["panes"].values()) == {"ok"}, result
    assert "HEAVY []" in out, out


def test_encodec_tiny_round_trip_without_torchaudio(tmp_path):
    """The EnCodec backend, wave -> codes -> latents -> wave, on the tiny fixture model: the
    result equals what the pip encodec package computed (tests/fixtures/make_encodec_fixture.py),
    and the package itself is never imported."""
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    out = run_without_torchaudio(f"""
        import json, sys
        import numpy as np
        import torch
        from safetensors import safe_open
        from safetensors.torch import load_file
        from audiosae.codecs import get_backend

        state_path = {str(fixtures / "encodec_tiny_state.safetensors")!r}
        reference = load_file({str(fixtures / "encodec_tiny_reference.safetensors")!r})
        arch = json.loads(safe_open(state_path, "pt").metadata()["config"])
        weights = {str(tmp_path / "tiny.th")!r}
        torch.save(load_file(state_path), weights)
        backend = get_backend("encodec-24k", device="cpu", arch=arch, weights=weights, bandwidth=0.8)
        codes = backend.encode(reference["wave"][0].numpy()).codes
        wave = backend.decode(backend.latents_from_codes(codes))
        expected = reference["decoded_8"][0, :, :wave.shape[1]].numpy()
        print(json.dumps({{"codes_equal": bool(np.array_equal(codes, reference["codes_8"][:, 0].T.numpy())),
                          "shape": list(wave.shape), "max_abs_err": float(np.abs(wave - expected).max()),
                          "encodec_imported": any(m.split(".")[0] == "encodec" for m in sys.modules)}}))
    """)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["codes_equal"] and result["shape"] == [1, 808], result
    assert result["max_abs_err"] < 1e-5, result
    assert not result["encodec_imported"], result
