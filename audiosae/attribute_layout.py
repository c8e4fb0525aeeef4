"""The paper's attributes' layout, shared by the spec and the measuring: ``ATTRIBUTES``, the
class layout (66 pitch classes: ``unvoiced`` then MIDI 31..95; 20 loudness bins over -60..0 dBFS;
20 timbre bins over a range fit on the corpus), note naming (``midi_to_name`` ...), CREPE's pitch
grid and the band a spec may ask for, the raw values a frame is measured as
(``FrameAttributes``) and the analysis-window rule.

The bottom of the attribute modules: it imports none of them.  ``audiosae.attribute_spec``
(``AttributeSpec``) and ``audiosae.attribute_measure`` (CREPE, level, centroid) import it, and
``audiosae.attributes`` re-exports every name: import them from there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import AudioSAEError

ATTRIBUTES = ("pitch", "loudness", "timbre")
UNVOICED = "unvoiced"
MIDI_MIN, MIDI_MAX = 31, 95  # G1 .. B6
N_PITCH_CLASSES = 1 + (MIDI_MAX - MIDI_MIN + 1)  # unvoiced + 65 notes = 66

# CREPE's pitch grid (torchcrepe.core / convert): 360 bins 20 cents apart, bin b at
# CREPE_CENTS_BIN0 + 20 b cents above 10 Hz; the pitch band of a spec is clamped into it.
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
DEFAULT_MIN_WINDOW_S = 0.040
DEFAULT_LOUDNESS_RANGE_DB = (-60.0, 0.0)
DEFAULT_TIMBRE_RANGE_HZ = (250.0, 5000.0)  # placeholder until fit on a corpus
N_LOUDNESS_BINS = 20
N_TIMBRE_BINS = 20
MIN_TIMBRE_SPAN_HZ = 100.0

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


# ---- measured values -------------------------------------------------------------------
_CORE_COLUMNS = ("midi", "periodicity", "loudness_db", "centroid_hz")


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
    # raw columns of registered attributes (``audiosae.attribute_registry``): [T] or [T, width]
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _CORE_COLUMNS:
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            setattr(self, name, arr)
        self.extra = {str(k): np.asarray(v, dtype=np.float64) for k, v in (self.extra or {}).items()}
        for k, v in self.extra.items():
            if v.ndim not in (1, 2) or v.shape[0] != len(self.midi):
                raise AudioSAEError(f"FrameAttributes column {k!r} has shape {list(v.shape)}, "
                                    f"expected {len(self.midi)} rows")
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
        """``{column: array}`` for storage (registered attributes' columns as ``x.<column>``)."""
        return {**{name: getattr(self, name) for name in _CORE_COLUMNS},
                **{f"x.{k}": v for k, v in self.extra.items()}}

    def raw(self) -> dict[str, np.ndarray]:
        """Every raw column by its plain name (core and registered), what extractors classify."""
        return {**{name: getattr(self, name) for name in _CORE_COLUMNS}, **self.extra}

    @classmethod
    def concatenate(cls, parts: Sequence["FrameAttributes"]) -> "FrameAttributes":
        if not parts:
            return cls(*(np.zeros(0) for _ in range(4)))
        shared = set.intersection(*(set(p.extra) for p in parts))
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in _CORE_COLUMNS),
                   extra={k: np.concatenate([p.extra[k] for p in parts]) for k in sorted(shared)})


def analysis_window_length(sample_rate: int, hop_length: int, min_window_s: float = DEFAULT_MIN_WINDOW_S) -> int:
    """Loudness/centroid window in samples: next power of two >= max(2 * hop, min_window_s)."""
    need = max(2 * int(hop_length), int(math.ceil(min_window_s * sample_rate)), 2)
    return 1 << (need - 1).bit_length()


# ---- the pitch band ---------------------------------------------------------------------
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
