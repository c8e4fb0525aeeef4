"""Reading audio for the pipeline: any of wav/flac/ogg/mp3, to float32 at a backend's rate.

Bad input raises ``AudioInputError`` (one line: the file and the problem).  ``scan_audio``
walks files and folders, keeps the usable files and collects the problems, so one bad file
never aborts a corpus.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioInputError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".opus")
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 64
DEFAULT_MAX_SECONDS = 4 * 3600.0


@dataclass
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def probe_audio(path: str | Path, max_seconds: float = DEFAULT_MAX_SECONDS) -> AudioInfo:
    """Header-level checks, without decoding the samples."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioInputError(path, "file not found") from None
    except OSError as exc:
        raise AudioInputError(path, f"cannot access file ({exc.strerror or exc})") from None
    if path.is_dir():
        raise AudioInputError(path, "is a folder, not an audio file")
    if size == 0:
        raise AudioInputError(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioInputError(path, "permission denied (file is not readable)")
    try:
        info = sf.info(str(path))
    except sf.LibsndfileError as exc:
        raise AudioInputError(path, f"not a readable audio file ({_sf_reason(exc)})") from None
    except (RuntimeError, OSError, ValueError) as exc:
        raise AudioInputError(path, f"not a readable audio file ({exc})") from None
    rate, channels, frames = int(info.samplerate), int(info.channels), int(info.frames)
    if channels <= 0:
        raise AudioInputError(path, "has zero channels")
    if channels > MAX_CHANNELS:
        raise AudioInputError(path, f"has {channels} channels (at most {MAX_CHANNELS} supported)")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioInputError(path, f"absurd sample rate {rate} Hz (supported: "
                                    f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)")
    if frames <= 0:
        raise AudioInputError(path, "contains no samples")
    if frames / rate > max_seconds:
        raise AudioInputError(path, f"is {frames / rate / 3600:.1f} h long, over the "
                                    f"{max_seconds / 3600:.1f} h limit per file; split it first")
    return AudioInfo(str(path), rate, channels, frames)


def _sf_reason(exc: Exception) -> str:
    text = str(exc)
    # libsndfile messages start with the path; keep only the reason.
    return text.split(": ", 1)[-1].strip() if ": " in text else text


def convert_channels(wave: np.ndarray, channels: int) -> np.ndarray:
    """``wave`` [C, N] -> [channels, N]: mono mixes down by averaging, stereo duplicates mono."""
    c = wave.shape[0]
    if c == channels:
        return wave
    if channels == 1:
        return wave.mean(axis=0, keepdims=True)
    if c == 1:
        return np.repeat(wave, channels, axis=0)
    # Other layouts: fold down to mono, then spread (no guessing of speaker maps).
    return np.repeat(wave.mean(axis=0, keepdims=True), channels, axis=0)


def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """[C, N] resampled with soxr (high quality)."""
    if from_rate == to_rate:
        return wave
    out = soxr.resample(np.ascontiguousarray(wave.T), from_rate, to_rate, quality="HQ")
    return np.ascontiguousarray(np.atleast_2d(out.T), dtype=np.float32) if out.ndim == 2 else \
        np.ascontiguousarray(out[None, :], dtype=np.float32)


def load_audio(path: str | Path, sample_rate: int | None = None, channels: int | None = None, *,
               max_seconds: float = DEFAULT_MAX_SECONDS, start: float = 0.0,
               duration: float | None = None) -> np.ndarray:
    """Decode ``path`` to float32 ``[channels, N]`` at ``sample_rate`` (None = keep the file's).

    ``start``/``duration`` (seconds) read a part without decoding the rest.
    """
    info = probe_audio(path, max_seconds=max_seconds)
    first = int(round(start * info.sample_rate))
    count = -1 if duration is None else max(0, int(round(duration * info.sample_rate)))
    try:
        data, rate = sf.read(str(path), start=first, frames=count, dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise AudioInputError(path, f"cannot decode audio ({_sf_reason(exc)})") from None
    except (RuntimeError, OSError, ValueError, MemoryError) as exc:
        raise AudioInputError(path, f"cannot decode audio ({exc})") from None
    if data.size == 0:
        raise AudioInputError(path, "decoded to zero samples (truncated file?)")
    wave = np.ascontiguousarray(data.T)
    if not np.all(np.isfinite(wave)):
        bad = int(np.count_nonzero(~np.isfinite(wave)))
        raise AudioInputError(path, f"contains {bad} NaN/inf samples")
    if channels is not None:
        wave = convert_channels(wave, channels)
    if sample_rate is not None and sample_rate != rate:
        wave = resample(wave, rate, sample_rate)
    return wave


@dataclass
class ScanResult:
    files: list[Path] = field(default_factory=list)
    problems: list[AudioInputError] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{len(self.files)} audio file(s) usable, {len(self.problems)} skipped"]
        lines += [f"  skipped {p}" for p in self.problems]
        return "\n".join(lines)


def scan_audio(paths: Iterable[str | Path], *, check: bool = True,
               max_seconds: float = DEFAULT_MAX_SECONDS) -> ScanResult:
    """Expand files and folders (recursively) into usable audio files, sorted and de-duplicated.

    Folder symlink loops, unreadable folders and bad files become entries in ``problems``.
    With ``check`` each file's header is probed here, so bad files are known up front.
    """
    result = ScanResult()
    seen: set[str] = set()

    def add_file(p: Path) -> None:
        key = os.path.realpath(p)
        if key in seen:
            return
        seen.add(key)
        if check:
            try:
                probe_audio(p, max_seconds=max_seconds)
            except AudioInputError as exc:
                result.problems.append(exc)
                return
        result.files.append(p)

    for raw in paths:
        root = Path(raw)
        if not root.exists():
            result.problems.append(AudioInputError(root, "not found"))
            continue
        if root.is_file():
            add_file(root)
            continue
        visited_dirs: set[str] = set()
        found: list[Path] = []

        def walk_error(err: OSError) -> None:
            result.problems.append(AudioInputError(err.filename or root,
                                                   f"cannot read folder ({err.strerror or err})"))

        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=walk_error):
            real = os.path.realpath(dirpath)
            if real in visited_dirs:  # symlink loop or a folder reached twice
                result.problems.append(AudioInputError(dirpath, "folder symlink loop (skipped)"))
                dirnames[:] = []
                continue
            visited_dirs.add(real)
            dirnames.sort()
            for name in sorted(filenames):
                if name.lower().endswith(AUDIO_EXTENSIONS):
                    found.append(Path(dirpath) / name)
        for p in found:
            add_file(p)
    return result


def rms_dbfs(wave: np.ndarray) -> float:
    """Whole-signal RMS level in dBFS (-inf for digital silence)."""
    ms = float(np.mean(np.square(wave, dtype=np.float64))) if wave.size else 0.0
    return 10.0 * math.log10(ms) if ms > 0 else float("-inf")


def soft_limit(wave: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """Memoryless soft clipper: identity below ``threshold``, then a tanh knee that never
    exceeds 1.  Steered latents can decode to peaks far above full scale; this protects
    ears and speakers on playback (files keep the float values)."""
    mag = np.abs(wave)
    over = mag > threshold
    if not over.any():
        return wave
    out = np.array(wave, dtype=np.float32, copy=True)
    head = 1.0 - threshold
    out[over] = np.sign(wave[over]) * (threshold + head * np.tanh((mag[over] - threshold) / head))
    return out


def save_audio(path: str | Path, wave: np.ndarray, sample_rate: int) -> None:
    """Write ``[C, N]`` float audio (WAV/FLAC by extension) atomically."""
    import io

    from .storage import atomic_write_bytes

    path = Path(path)
    fmt = {".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower(), "WAV")
    subtype = {"FLAC": "PCM_24", "OGG": "VORBIS"}.get(fmt, "FLOAT")
    buf = io.BytesIO()
    sf.write(buf, np.asarray(wave, dtype=np.float32).T, sample_rate, format=fmt, subtype=subtype)
    atomic_write_bytes(path, buf.getvalue())
