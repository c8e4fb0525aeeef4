"""Helpers shared by the tests and the benchmarks: paths, the parity fixtures, synthetic signals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"


def fixture_path(name: str) -> Path:
    """A parity fixture from ../shared/fixtures, or skip the test saying why."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"parity fixture {path} is absent (../shared/fixtures ships with the project's shared folder)")
    return path


def harmonic_tone(midi: float, seconds: float, sample_rate: int, *, level_db: float = -12.0,
                  partials: int = 6, tilt: float = 1.0) -> np.ndarray:
    """A steady harmonic tone [N] at ``level_db`` dBFS RMS."""
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = np.zeros_like(t)
    for k in range(1, partials + 1):
        if k * f0 < sample_rate / 2:
            wave += np.sin(2 * np.pi * k * f0 * t) / k ** tilt
    wave *= 10 ** (level_db / 20) / np.sqrt(np.mean(wave ** 2))
    return wave.astype(np.float32)


def copy_folder(src: Path, dst: Path) -> Path:
    """A flat copy of ``src`` (a saved SAE / probe folder) to damage in a test."""
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst
