"""Reading audio for the pipeline: any of wav/flac/ogg/mp3, to float32 at a backend's rate.

Bad input raises ``AudioInputError`` (one line: the file and the problem).  ``scan_audio``
walks files and folders, keeps the usable files and collects the problems, so one bad file
never aborts a corpus.

What counts as bad, and when it is found:

- ``probe_audio`` (header only, cheap; every folder scan runs it): missing, empty, a folder,
  a FIFO/device/socket (never opened: reading one could block forever), a broken or looping
  symbolic link, unreadable, not audio, no samples, shorter than ``MIN_SECONDS``, an absurd
  sample rate or channel count, longer than the per-file limit.
- ``load_audio`` (decoding): NaN/inf samples, truncated or damaged data, and files with no
  audio content at all (silence, or a constant DC level): they carry no pitch or timbre, and
  a corpus of them would teach the SAE nothing.  Silence is found by streaming the file in
  blocks (``check_content``), which stops at the first block with signal, so three hours of
  silence never sit in memory at once.
- Warnings (the file is used, but the user should know): clipping (many samples at full
  scale) and a WAV whose header promises more audio than the file holds.  ``load_audio``
  hands them to ``on_warning`` (one line each); the CLI prints them, the studio shows them.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioInputError, printable

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".opus")
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 64
MIN_SECONDS = 0.01            # shorter than one analysis hop: nothing to encode
DEFAULT_MAX_SECONDS = 4 * 3600.0
SILENCE_LEVEL = 1e-4          # -80 dBFS: a file whose samples all vary by less holds no audio
CLIP_LEVEL = 0.999            # |x| at or above this is "at full scale" (16-bit max is 0.99997)
CLIP_WARN_FRACTION = 0.01     # warn when at least 1 % of the samples sit at full scale
CONTENT_BLOCK_FRAMES = 1 << 16

log = logging.getLogger("audiosae.audio")
WarningSink = Callable[[str], None]


@dataclass
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int
    warnings: list[str] = field(default_factory=list)   # one line each, the file named

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_warning(path: str | Path, problem: str) -> str:
    """A warning line in the same form as ``AudioInputError``: ``path: problem``."""
    return printable(f"{os.fsdecode(path)}: {problem}")


def _native(path: str | Path) -> str | bytes:
    """The path for libsndfile: bytes on POSIX, so names that are not valid UTF-8 still open
    (soundfile encodes str paths strictly and would fail on them)."""
    return str(path) if os.name == "nt" else os.fsencode(path)


def _not_regular(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def probe_audio(path: str | Path, max_seconds: float = DEFAULT_MAX_SECONDS) -> AudioInfo:
    """Header-level checks, without decoding the samples."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise AudioInputError(path, f"is a broken symbolic link (its target "
                                        f"{os.readlink(path)} does not exist)") from None
        raise AudioInputError(path, "file not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AudioInputError(path, "is a symbolic link loop (the links point at each other)") from None
        raise AudioInputError(path, f"cannot access file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioInputError(path, "is a folder, not an audio file")
    if not stat.S_ISREG(st.st_mode):  # checked before any open(): a FIFO would block forever
        raise AudioInputError(path, f"is {_not_regular(st.st_mode)}, not a regular file")
    if st.st_size == 0:
        raise AudioInputError(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioInputError(path, "permission denied (file is not readable)")
    riff = _riff_header(path)
    try:
        info = sf.info(_native(path))
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        if isinstance(exc, PermissionError) or "ermission denied" in str(exc):
            raise AudioInputError(path, "permission denied (file is not readable)") from None
        detail = _riff_problem(riff) or _sf_reason(exc)
        raise AudioInputError(path, f"not a readable audio file ({detail})") from None
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
    if frames / rate < MIN_SECONDS:
        raise AudioInputError(path, f"is too short ({frames} sample{'s' if frames != 1 else ''}, "
                                    f"{1000 * frames / rate:.2f} ms; at least {1000 * MIN_SECONDS:.0f} ms needed)")
    if frames / rate > max_seconds:
        raise AudioInputError(path, f"is {frames / rate / 3600:.1f} h long, over the "
                                    f"{max_seconds / 3600:.1f} h limit per file; split it first")
    warnings = []
    promised = _riff_promised_frames(riff)
    if promised is not None and promised > frames:
        warnings.append(audio_warning(path, f"is truncated: its header promises {promised / rate:.2f} s, "
                                            f"the file holds {frames / rate:.2f} s (using what is there)"))
    return AudioInfo(str(path), rate, channels, frames, warnings)


# ---- a look at RIFF/WAVE headers, for clearer messages than libsndfile's ---------------------------
@dataclass
class _RiffHeader:
    channels: int | None = None
    sample_rate: int | None = None
    block_align: int | None = None
    data_bytes: int | None = None      # what the 'data' chunk header claims


def _riff_header(path: Path) -> _RiffHeader | None:
    """The fmt fields and claimed data size of a WAV file (None if not a little-endian RIFF/WAVE)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    out = _RiffHeader()
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk == b"fmt " and pos + 8 + 14 <= len(head):
            _, channels, rate, _, align = struct.unpack_from("<HHIIH", head, pos + 8)
            out.channels, out.sample_rate, out.block_align = channels, rate, align
        elif chunk == b"data":
            out.data_bytes = size
            break
        pos += 8 + size + (size & 1)
    return out


def _riff_problem(riff: _RiffHeader | None) -> str | None:
    if riff is None:
        return None
    if riff.sample_rate == 0:
        return "its header gives a sample rate of 0 Hz"
    if riff.channels == 0:
        return "its header gives zero channels"
    return None


def _riff_promised_frames(riff: _RiffHeader | None) -> int | None:
    # 0 and 0xFFFFFFFF mean "length unknown" (a recorder still writing, or a stream): no promise.
    if riff is None or not riff.block_align or riff.data_bytes in (None, 0, 0xFFFFFFFF):
        return None
    return riff.data_bytes // riff.block_align


def _sf_reason(exc: Exception) -> str:
    text = getattr(exc, "error_string", None) or str(exc)
    if "does not exist or is not a regular file" in text:
        # libsndfile's MPEG reader says this about any file it cannot parse: misleading here,
        # where the file was just checked to exist and to be regular.
        return "format not recognised, or a damaged MP3"
    # libsndfile messages may start with the path; keep only the reason.
    return text.split(": ", 1)[-1].strip() if text.startswith("Error opening") else text.strip()


def check_content(path: str | Path, *, block_frames: int = CONTENT_BLOCK_FRAMES) -> None:
    """Raise ``AudioInputError`` when ``path`` holds no audio: only silence, a constant (DC)
    level, or NaN/inf samples before its first real signal.

    Streams the file in blocks and stops at the first block whose samples vary by
    ``SILENCE_LEVEL`` or more, so it costs one block for ordinary audio and bounded memory
    for hours of silence.
    """
    low = high = None
    position = 0
    rate = 1
    try:
        with sf.SoundFile(_native(path)) as fh:
            rate = fh.samplerate or 1
            while True:
                # read(), not blocks(): blocks() trusts the header's frame count and hands out
                # the uninitialised tail of its buffer when a damaged file (a cut MP3) ends early.
                block = fh.read(block_frames, dtype="float32", always_2d=True)
                if not len(block):
                    break
                finite = np.isfinite(block)
                if not finite.all():
                    first = position + int(np.argmin(finite.all(axis=1)))
                    raise AudioInputError(path, f"contains NaN/inf samples (the first at {first / rate:.3f} s)")
                b_low, b_high = block.min(axis=0), block.max(axis=0)
                low = b_low if low is None else np.minimum(low, b_low)
                high = b_high if high is None else np.maximum(high, b_high)
                if np.any(high - low >= SILENCE_LEVEL):
                    return
                position += block.shape[0]
    except AudioInputError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise AudioInputError(path, f"is truncated or damaged: decoding failed at {position / rate:.2f} s "
                                    f"({_sf_reason(exc)})") from None
    if low is None:
        raise AudioInputError(path, "decoded to zero samples (truncated file?)")
    level = float(np.max(np.maximum(np.abs(low), np.abs(high))))
    if level < SILENCE_LEVEL:
        raise AudioInputError(path, "contains only silence (no sample above -80 dBFS), no audio content")
    raise AudioInputError(path, f"is a constant (DC) signal at {float(np.mean((low + high) / 2)):+.4f}, "
                                f"no audio content")


def clipping_warning(path: str | Path, wave: np.ndarray) -> str | None:
    """A warning line when at least ``CLIP_WARN_FRACTION`` of the samples sit at full scale."""
    if wave.size == 0:
        return None
    at_full_scale = int(np.count_nonzero(np.abs(wave) >= CLIP_LEVEL))
    fraction = at_full_scale / wave.size
    if fraction < CLIP_WARN_FRACTION:
        return None
    return audio_warning(path, f"{100 * fraction:.1f} % of samples at or above full scale (clipped); "
                               f"pitch and timbre labels may be off")


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
               duration: float | None = None, on_warning: WarningSink | None = None) -> np.ndarray:
    """Decode ``path`` to float32 ``[channels, N]`` at ``sample_rate`` (None = keep the file's).

    ``start``/``duration`` (seconds) read a part without decoding the rest; only a whole-file
    read checks for silence/DC and clipping (a quiet or loud part says nothing about the file).
    Warnings go to ``on_warning`` (default: the ``audiosae.audio`` log).
    """
    warn = on_warning or log.warning
    info = probe_audio(path, max_seconds=max_seconds)
    whole = start <= 0 and duration is None
    if whole:
        check_content(path)
    first = int(round(start * info.sample_rate))
    count = -1 if duration is None else max(0, int(round(duration * info.sample_rate)))
    try:
        data, rate = sf.read(_native(path), start=first, frames=count, dtype="float32", always_2d=True)
    except MemoryError:
        raise AudioInputError(path, f"is too large to decode in memory ({info.seconds / 60:.0f} min, "
                                    f"{info.channels} channels); split it first") from None
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise AudioInputError(path, f"is truncated or damaged: cannot decode audio ({_sf_reason(exc)})") from None
    if data.size == 0:
        raise AudioInputError(path, "decoded to zero samples (truncated file?)")
    wave = np.ascontiguousarray(data.T)
    if not np.all(np.isfinite(wave)):
        bad = int(np.count_nonzero(~np.isfinite(wave)))
        raise AudioInputError(path, f"contains {bad} NaN/inf samples")
    if whole:
        for line in info.warnings:
            warn(line)
        clipped = clipping_warning(path, wave)
        if clipped:
            warn(clipped)
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
        if not root.is_dir():
            if root.exists() or root.is_symlink():
                add_file(root)  # probe_audio says what it is (also a FIFO, a device, a broken link)
            else:
                result.problems.append(AudioInputError(root, "not found"))
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
    exceeds 1.  The last guard on playback of any source; steered audio already went
    through the level rule (``steering.level``) and stays under -1 dBFS."""
    mag = np.abs(wave)
    over = mag > threshold
    if not over.any():
        return wave
    out = np.array(wave, dtype=np.float32, copy=True)
    head = 1.0 - threshold
    out[over] = np.sign(wave[over]) * (threshold + head * np.tanh((mag[over] - threshold) / head))
    return out


def save_audio(path: str | Path, wave: np.ndarray, sample_rate: int, *, limit: bool = True) -> None:
    """Write ``[C, N]`` float audio (WAV/FLAC by extension) atomically.

    Nothing is written over full scale unless asked: with ``limit`` (the default) audio whose
    peak exceeds 1.0 goes through the level rule's limiter (``steering.level.limit_peaks``,
    to -1 dBFS) and NaN/inf samples become 0, whatever the format (a float WAV would keep
    them).  ``limit=False`` writes the values as they are (``audiosae steer --no-limit``)."""
    import io

    from .storage import atomic_write_bytes

    path = Path(path)
    if limit:
        wave = np.asarray(wave, dtype=np.float32)
        if not np.isfinite(wave).all():
            wave = np.where(np.isfinite(wave), wave, 0.0).astype(np.float32)
        if wave.size and float(np.max(np.abs(wave))) > 1.0:
            from .steering.level import limit_peaks

            wave, _ = limit_peaks(wave if wave.ndim == 2 else wave[None, :], sample_rate)
    fmt = {".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower(), "WAV")
    subtype = {"FLAC": "PCM_24", "OGG": "VORBIS"}.get(fmt, "FLOAT")
    buf = io.BytesIO()
    sf.write(buf, np.asarray(wave, dtype=np.float32).T, sample_rate, format=fmt, subtype=subtype)
    atomic_write_bytes(path, buf.getvalue())
