"""Where a workspace's audio comes from: built-in corpora with exact ground truth, or user files.

A ``Source`` is one stretch of audio (a file, or a synthesised/rendered passage of ~8-10 s)
that can be loaded at any sample rate and channel count on demand, so a corpus of many
minutes never sits in memory.  The built-in corpora carry their notes as ground truth:

* ``tones``: synthetic harmonic notes over every semitone MIDI 31..95 (the probe's pitch
  range) crossed with 4 loudness levels and 3 brightness levels, so pitch, loudness and
  spectral centroid vary independently.  Pure numpy, always available.
* ``midi``: melodies and chord passages on eight General MIDI instruments, rendered by the
  ``fluidsynth`` program with a GM soundfont (a system dependency, checked up front).

Everything is deterministic given the seed; a ``minutes`` limit keeps a prefix of the full
corpus, ordered so that a short prefix already covers the pitch range.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .audio import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    convert_channels,
    load_audio,
    probe_audio,
    resample,
    scan_audio,
)
from .errors import AudioInputError, AudioSAEError, DependencyError

MIDI_LOW = 31   # G1: lowest pitch class of the probe (66 classes = unvoiced + MIDI 31..95)
MIDI_HIGH = 95  # B6

BUILTIN_CORPORA: dict[str, str] = {
    "tones": "Synthetic harmonic notes on all 65 semitones MIDI 31-95 x 4 loudness levels "
             "x 3 brightness levels, with exact pitch/level ground truth (~10 min, no "
             "dependencies).",
    "midi": "Melodies and chord passages on 8 General MIDI instruments (piano, violin, flute, "
            "trumpet, clarinet, cello, nylon guitar, reed organ) rendered by FluidSynth, with note "
            "ground truth (~10 min; needs fluidsynth and a GM soundfont).",
}


# ---------------------------------------------------------------------------------------------
# Ground truth


@dataclass(frozen=True)
class Note:
    """One note of ground truth; it sounds on ``[onset, offset)`` seconds from the source start.

    ``velocity`` is 0..1 (MIDI velocity / 127; for tones the loudness step (i+1)/levels).
    ``polyphonic`` marks notes of chord passages, whose melody is the top note.
    ``level_db`` is the designed RMS level of the note in dBFS where known (tones).
    """

    onset: float
    offset: float
    midi: int
    velocity: float
    instrument: str
    polyphonic: bool = False
    level_db: float | None = None


def ground_truth_midi(notes: Sequence[Note] | None, times: np.ndarray | Sequence[float]
                      ) -> np.ndarray:
    """MIDI number of the sounding note at each time (the top note in chords), NaN in silence.

    ``times`` are seconds from the source start; the result has the same shape, float64.
    """
    t = np.asarray(times, dtype=np.float64)
    out = np.full(t.shape, np.nan)
    for note in notes or ():
        sounding = (t >= note.onset) & (t < note.offset)
        # fmax ignores NaN, so the highest sounding note wins.
        out[sounding] = np.fmax(out[sounding], note.midi)
    return out


def sounding_count(notes: Sequence[Note] | None, times: np.ndarray | Sequence[float]
                   ) -> np.ndarray:
    """How many notes sound at each time (0 silence, 1 monophonic, >1 polyphonic), int array."""
    t = np.asarray(times, dtype=np.float64)
    count = np.zeros(t.shape, dtype=np.int64)
    for note in notes or ():
        count += (t >= note.onset) & (t < note.offset)
    return count


# ---------------------------------------------------------------------------------------------
# Sources


Renderer = Callable[[int, int], np.ndarray]


@dataclass
class Source:
    """One loadable stretch of audio.

    ``source_id`` is stable and unique ("tones/0007", "midi/0012", or the absolute path of a
    user file); ``slug`` is a filesystem-safe form of it for file names.  ``notes`` is the
    ground truth (None for user files).  ``load`` returns float32 ``[channels, N]``.
    """

    source_id: str
    label: str
    path: str | None
    seconds: float
    notes: list[Note] | None
    corpus: str = "user"
    renderer: Renderer | None = field(default=None, repr=False, compare=False)

    def load(self, sample_rate: int, channels: int = 1, *,
             on_warning: Callable[[str], None] | None = None) -> np.ndarray:
        """The audio as float32 ``[channels, N]`` at ``sample_rate``.

        Built-ins are synthesised or rendered now (deterministically); user files are decoded
        with ``audiosae.audio.load_audio`` and raise ``AudioInputError`` when unusable; its
        warnings (clipping, a truncated WAV) go to ``on_warning``.
        """
        _check_format(sample_rate, channels)
        if self.renderer is not None:
            wave = self.renderer(int(sample_rate), int(channels))
        elif self.path is not None:
            wave = load_audio(self.path, int(sample_rate), int(channels), on_warning=on_warning)
        else:
            raise AudioInputError(self.source_id, "source has neither a file nor a renderer")
        return np.ascontiguousarray(wave, dtype=np.float32)

    @property
    def polyphonic(self) -> bool:
        """True when any ground-truth note belongs to a chord passage."""
        return any(n.polyphonic for n in self.notes or ())

    @property
    def slug(self) -> str:
        """A short filesystem-safe name, unique per ``source_id``."""
        if self.corpus in BUILTIN_CORPORA:
            return _safe_name(self.source_id)
        digest = hashlib.sha1(_utf8(self.source_id)).hexdigest()[:10]
        stem = _safe_name(Path(self.source_id).stem)[:40] or "audio"
        return f"{stem}_{digest}"


def _utf8(text: str) -> bytes:
    # surrogateescape: a file name that is not valid UTF-8 hashes to its own bytes (and valid
    # names to exactly what a strict encode gives, so splits and slugs do not move).
    return text.encode("utf-8", "surrogateescape")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")


def _check_format(sample_rate: int, channels: int) -> None:
    if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate {sample_rate} outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE}")
    if int(channels) < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")


def builtin_sources(name: str, minutes: float | None = None, seed: int = 0) -> list[Source]:
    """The sources of a built-in corpus (see ``BUILTIN_CORPORA``), nothing rendered yet.

    ``minutes`` keeps the shortest prefix of the full corpus that lasts at least that long
    (at least one source); the order is arranged so that a short prefix spreads over the
    pitch range.  The ``midi`` corpus raises ``DependencyError`` if FluidSynth or a soundfont
    is missing.
    """
    if name not in BUILTIN_CORPORA:
        raise AudioSAEError(f"unknown built-in corpus {name!r}; choose one of: "
                            f"{', '.join(BUILTIN_CORPORA)}")
    if minutes is not None and not (minutes > 0 and math.isfinite(minutes)):
        raise AudioSAEError(f"corpus length must be a positive number of minutes, got {minutes}")
    sources = _tone_sources(seed) if name == "tones" else _midi_sources(seed)
    if minutes is None:
        return sources
    kept, total = [], 0.0
    for source in sources:
        if total >= minutes * 60.0:
            break
        kept.append(source)
        total += source.seconds
    return kept


def user_sources(paths: Iterable[str | Path]) -> tuple[list[Source], list[AudioInputError]]:
    """Sources for the user's files and folders (searched recursively), plus the problems.

    Unusable files are listed as ``AudioInputError`` and skipped; they never abort the rest.
    """
    scan = scan_audio(paths)
    problems = list(scan.problems)
    sources: list[Source] = []
    for file in scan.files:
        try:
            info = probe_audio(file)
        except AudioInputError as exc:  # changed or vanished since the scan
            problems.append(exc)
            continue
        absolute = os.path.abspath(file)
        sources.append(Source(source_id=Path(absolute).as_posix(), label=Path(file).name,
                              path=absolute, seconds=info.seconds, notes=None, corpus="user"))
    # Same file name in two folders: show the folder too, so the labels tell them apart.
    names: dict[str, int] = {}
    for s in sources:
        names[s.label] = names.get(s.label, 0) + 1
    for s in sources:
        if names[s.label] > 1:
            s.label = f"{Path(s.source_id).parent.name}/{s.label}"
    return sources, problems


def split_key(source_id: str, path: str | None = None) -> str:
    """What decides a source's side of a split: independent of where the corpus lies.

    Built-in sources (no ``path``) use their id ("tones/0007"); user files use the file name
    only, never the folder, so a corpus copied or moved elsewhere splits the same way.  (Two
    files with the same name in different folders share a key and fall on the same side.)
    """
    if path is None:
        return source_id
    return PurePosixPath(str(source_id).replace("\\", "/")).name or str(source_id)


def _source_key(source: Any) -> str:
    return split_key(source.source_id, getattr(source, "path", None))


def validation_split(sources: Sequence[Source], fraction: float = 0.1, seed: int = 0
                     ) -> dict[str, str]:
    """``{source_id: "train" | "val"}``, split by whole source so no passage leaks across.

    Each source's side depends only on a hash of (seed, ``split_key``): the id of a built-in
    source, the file name of a user file (not its folder, so the same files in another folder
    split the same way), and adding sources never moves the others.  With two or more
    sources there is always at least one of each side.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be between 0 and 1, got {fraction}")
    ids = [s.source_id for s in sources]
    if len(set(ids)) != len(ids):
        raise ValueError("source ids are not unique")
    keys = {s.source_id: _source_key(s) for s in sources}
    # ties (same file name in two folders) are broken by the id, whose order among files of
    # one copied tree does not depend on where the tree lies
    score = {sid: (_unit_hash(f"{seed}:{keys[sid]}"), keys[sid], sid) for sid in ids}
    split = {sid: ("val" if score[sid][0] < fraction else "train") for sid in ids}
    if len(ids) >= 2:
        if "val" not in split.values():
            split[min(ids, key=score.__getitem__)] = "val"
        if "train" not in split.values():
            split[max(ids, key=score.__getitem__)] = "train"
    return split


def source_folds(keys: Mapping[str, str], n_folds: int, seed: int = 0) -> dict[str, int]:
    """``{source_id: fold}`` for cross-validation by whole source, ``keys`` = ``{source_id: split_key}``.

    Sources are ordered by a hash of (seed, key) and dealt round-robin into ``min(n_folds,
    len(keys))`` folds, so folds differ in size by at most one source and, like
    ``validation_split``, do not depend on where the files lie.
    """
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {n_folds}")
    order = sorted(keys, key=lambda sid: (_unit_hash(f"{seed}:fold:{keys[sid]}"), keys[sid], sid))
    k = min(n_folds, len(order))
    return {sid: i % k for i, sid in enumerate(order)}


def _unit_hash(text: str) -> float:
    digest = hashlib.sha256(_utf8(text)).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


# ---------------------------------------------------------------------------------------------
# "tones": synthetic harmonic notes

TONE_LEVELS_DB = (-40.0, -30.0, -20.0, -10.0)  # RMS over the note; top level leaves headroom
# name -> (spectral tilt: partial k has amplitude k**-tilt, most partials)
TONE_BRIGHTNESS = {"dark": (2.0, 6), "medium": (1.0, 20), "bright": (0.5, 40)}
TONE_PARTIAL_CEILING_HZ = 11_000.0  # same partials at every rate >= 24 kHz
TONE_NOISE_DBFS = -85.0
TONE_SOURCE_SECONDS = 9.0
_TONE_LEAD_IN = 0.1


@dataclass(frozen=True)
class _ToneNote:
    onset: float
    offset: float
    midi: int
    level_db: float
    brightness: str
    vibrato_hz: float
    vibrato_cents: float
    vibrato_phase: float
    attack: float
    release: float


@dataclass(frozen=True)
class _TonePlan:
    seconds: float
    notes: tuple[_ToneNote, ...]
    noise_seed: tuple[int, ...]


def _tone_sources(seed: int) -> list[Source]:
    rng = np.random.default_rng([seed, 0x70E5])
    semitones = np.arange(MIDI_LOW, MIDI_HIGH + 1)
    brightness_names = list(TONE_BRIGHTNESS)
    combos = [(lv, br) for br in range(len(brightness_names)) for lv in range(len(TONE_LEVELS_DB))]
    n_rounds = len(combos)
    # Latin-square style: each round plays every semitone once, and over all rounds each
    # semitone meets each (level, brightness) combination once.  A random per-semitone offset
    # keeps the combination from following the pitch class within a round.
    offsets = rng.permutation(np.resize(np.arange(n_rounds), len(semitones)))
    round_shift = rng.permutation(n_rounds)
    order: list[tuple[int, int, int]] = []
    for r in range(n_rounds):
        for i in rng.permutation(len(semitones)):
            lv, br = combos[(offsets[i] + round_shift[r]) % n_rounds]
            order.append((int(semitones[i]), lv, br))

    durations = rng.uniform(0.45, 0.8, len(order))
    gaps = rng.uniform(0.08, 0.2, len(order))
    total = _TONE_LEAD_IN + float(np.sum(durations + gaps))
    n_sources = max(1, int(round(total / TONE_SOURCE_SECONDS)))
    sources = []
    for index, chunk in enumerate(np.array_split(np.arange(len(order)), n_sources)):
        cursor = _TONE_LEAD_IN
        plan_notes, truth = [], []
        for j in chunk:
            midi, lv, br = order[j]
            onset, offset = cursor, cursor + float(durations[j])
            tone = _ToneNote(
                onset=onset, offset=offset, midi=midi, level_db=TONE_LEVELS_DB[lv],
                brightness=brightness_names[br], vibrato_hz=float(rng.uniform(4.5, 6.5)),
                vibrato_cents=float(rng.uniform(8.0, 15.0)),
                vibrato_phase=float(rng.uniform(0, 2 * np.pi)),
                attack=float(rng.uniform(0.01, 0.04)), release=float(rng.uniform(0.04, 0.09)))
            plan_notes.append(tone)
            truth.append(Note(onset, offset, midi, (lv + 1) / len(TONE_LEVELS_DB),
                              f"tone:{tone.brightness}", False, tone.level_db))
            cursor = offset + float(gaps[j])
        plan = _TonePlan(seconds=cursor, notes=tuple(plan_notes),
                         noise_seed=(int(seed), 0x70E5, index))
        lo, hi = min(n.midi for n in truth), max(n.midi for n in truth)
        sources.append(Source(
            source_id=f"tones/{index:04d}",
            label=f"tones {index:04d}: {len(truth)} notes, MIDI {lo}-{hi}",
            path=None, seconds=cursor, notes=truth, corpus="tones",
            renderer=functools.partial(_render_tones, plan)))
    return sources


def _render_tones(plan: _TonePlan, sample_rate: int, channels: int) -> np.ndarray:
    n_total = int(round(plan.seconds * sample_rate))
    noise = np.random.default_rng(list(plan.noise_seed)).standard_normal(n_total)
    wave = noise * 10.0 ** (TONE_NOISE_DBFS / 20.0)
    for note in plan.notes:
        start = int(round(note.onset * sample_rate))
        stop = min(n_total, int(round(note.offset * sample_rate)))
        wave[start:stop] += _synth_tone(note, stop - start, sample_rate)
    return convert_channels(wave[None, :].astype(np.float32), channels)


def _synth_tone(note: _ToneNote, n: int, sample_rate: int) -> np.ndarray:
    t = np.arange(n) / sample_rate
    f0 = 440.0 * 2.0 ** ((note.midi - 69) / 12.0)
    # Vibrato fades in over 150 ms, as a player's would; it stays far inside the semitone.
    depth = note.vibrato_cents / 1200.0 * np.clip(t / 0.15, 0.0, 1.0)
    freq = f0 * 2.0 ** (depth * np.sin(2 * np.pi * note.vibrato_hz * t + note.vibrato_phase))
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    tilt, most = TONE_BRIGHTNESS[note.brightness]
    highest_f0 = f0 * 2.0 ** (note.vibrato_cents / 1200.0)
    count = min(most, int(min(TONE_PARTIAL_CEILING_HZ, 0.45 * sample_rate) / highest_f0))
    if count < 1:  # above Nyquist at this rate: silence rather than an aliased tone
        return np.zeros(n)
    k = np.arange(1, count + 1, dtype=np.float64)
    amp = k ** -tilt
    # Schroeder phases for this amplitude spectrum keep the crest factor near 2, so the
    # loudest level does not clip.
    power = amp ** 2 / np.sum(amp ** 2)
    c1 = np.concatenate([[0.0], np.cumsum(power)[:-1]])
    c2 = np.concatenate([[0.0], np.cumsum(k * power)[:-1]])
    schroeder = -2 * np.pi * (k * c1 - c2)
    tone = np.zeros(n)
    for kk, a, ph in zip(k, amp, schroeder):
        tone += a * np.cos(kk * phase + ph)
    tone *= _adsr(n, sample_rate, note.attack, note.release)
    rms = math.sqrt(float(np.mean(tone ** 2))) if n else 0.0
    return tone * (10.0 ** (note.level_db / 20.0) / rms) if rms > 0 else tone


def _adsr(n: int, sample_rate: int, attack: float, release: float,
          decay: float = 0.08, sustain: float = 0.85) -> np.ndarray:
    """Linear attack to 1, decay to ``sustain``, hold, linear release to 0 at the note end."""
    t = np.arange(n) / sample_rate
    length = n / sample_rate
    env = np.interp(t, [0.0, attack, attack + decay, max(attack + decay, length - release),
                        length], [0.0, 1.0, sustain, sustain, 0.0])
    return env


# ---------------------------------------------------------------------------------------------
# "midi": General MIDI melodies and chords rendered with FluidSynth


@dataclass(frozen=True)
class GMInstrument:
    """A General MIDI program (0-based) and the range its melodies keep to."""

    name: str
    program: int
    low: int
    high: int
    chords: bool = False


GM_INSTRUMENTS: tuple[GMInstrument, ...] = (
    GMInstrument("piano", 0, 36, 88, chords=True),
    GMInstrument("violin", 40, 55, 90),
    GMInstrument("flute", 73, 60, 91),
    GMInstrument("trumpet", 56, 54, 82),
    GMInstrument("clarinet", 71, 50, 86),
    GMInstrument("cello", 42, 36, 69),
    GMInstrument("nylon guitar", 24, 40, 76, chords=True),
    GMInstrument("reed organ", 20, 36, 84, chords=True),
)
MIDI_ROUNDS = 8             # sources per instrument in the full corpus
MIDI_CHORD_ROUNDS = (2, 6)  # rounds in which chord-capable instruments play chord passages
MIDI_RENDER_RATE = 44_100
MIDI_TAIL_SECONDS = 0.5     # kept after the last note-off: the release, then a fade
MIDI_GAIN = 0.5
_TICKS_PER_SECOND = 960     # 480 ticks per beat at 120 bpm: note times are exact in ticks
_MIDI_LEAD_IN = 0.2
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)

SOUNDFONT_ENV = "AUDIOSAE_SOUNDFONT"
_SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",           # Debian/Ubuntu fluid-soundfont-gm
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",           # Fedora, Arch
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/sounds/sf2/*.sf2",
    "/usr/share/soundfonts/*.sf2",
    "/usr/local/share/soundfonts/*.sf2",
    "/opt/homebrew/share/soundfonts/*.sf2",           # Homebrew (Apple silicon)
    "/opt/homebrew/share/fluid-synth/sf2/*.sf2",
    "/usr/local/share/fluid-synth/sf2/*.sf2",         # Homebrew (Intel)
    "~/Library/Audio/Sounds/Banks/*.sf2",
    "~/.local/share/soundfonts/*.sf2",
    "~/.fluidsynth/*.sf2",
)
_INSTALL_HINT = ("to install: Debian/Ubuntu 'sudo apt install fluidsynth fluid-soundfont-gm'; "
                 "Fedora 'sudo dnf install fluidsynth fluid-soundfont-gm'; "
                 "Arch 'sudo pacman -S fluidsynth soundfont-fluid'; "
                 "macOS 'brew install fluid-synth' plus a GM soundfont such as FluidR3_GM.sf2 "
                 f"or GeneralUser GS, then set {SOUNDFONT_ENV}=/path/to/font.sf2")


def find_fluidsynth() -> str | None:
    """Path of the ``fluidsynth`` program, or None."""
    return shutil.which("fluidsynth")


def find_soundfont() -> Path | None:
    """The GM soundfont to use: ``$AUDIOSAE_SOUNDFONT``, else the first one found in the
    usual Linux/Homebrew places; None when there is none.  A set but missing
    ``$AUDIOSAE_SOUNDFONT`` raises ``DependencyError`` rather than silently using another."""
    chosen = os.environ.get(SOUNDFONT_ENV, "").strip()
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise DependencyError(f"{SOUNDFONT_ENV}={chosen} is not a file; point it at a "
                                  f"General MIDI .sf2 soundfont or unset it")
        return path
    for pattern in _SOUNDFONT_CANDIDATES:
        pattern = os.path.expanduser(pattern)
        matches = sorted(Path(pattern).parent.glob(Path(pattern).name)) if "*" in pattern \
            else [Path(pattern)]
        for match in matches:
            if match.is_file() and os.access(match, os.R_OK):
                return match
    return None


def midi_dependencies() -> tuple[str, Path]:
    """``(fluidsynth program, soundfont)``, or ``DependencyError`` saying what to install."""
    program = find_fluidsynth()
    soundfont = find_soundfont()
    missing = [what for what, found in (("the fluidsynth program", program),
                                        ("a General MIDI soundfont (.sf2)", soundfont))
               if found is None]
    if missing:
        raise DependencyError(f"the 'midi' corpus needs {' and '.join(missing)}; "
                              f"{_INSTALL_HINT}")
    return program, soundfont  # type: ignore[return-value]


def midi_unavailable_reason() -> str | None:
    """None when the ``midi`` corpus can render, else the reason (for UIs and test skips)."""
    try:
        midi_dependencies()
    except DependencyError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class _MidiPlan:
    source_id: str
    program: int
    notes: tuple[Note, ...]
    seconds: float
    peak_dbfs: float
    fluidsynth: str
    soundfont: str


def _midi_sources(seed: int) -> list[Source]:
    fluidsynth, soundfont = midi_dependencies()
    sources = []
    index = 0
    # Round-robin over instruments, so any prefix mixes timbres and registers.
    for r in range(MIDI_ROUNDS):
        for inst in GM_INSTRUMENTS:
            rng = np.random.default_rng([seed, 0x3D1, index])
            chords = inst.chords and r in MIDI_CHORD_ROUNDS
            register = r % 3  # low, middle, high window of the instrument's range
            notes = (_chord_passage if chords else _melody)(inst, register, rng)
            seconds = max(n.offset for n in notes) + MIDI_TAIL_SECONDS
            source_id = f"midi/{index:04d}"
            plan = _MidiPlan(source_id, inst.program, tuple(notes), seconds,
                             peak_dbfs=float(rng.uniform(-18.0, -3.0)),
                             fluidsynth=fluidsynth, soundfont=str(soundfont))
            lo, hi = min(n.midi for n in notes), max(n.midi for n in notes)
            kind = "chords" if chords else "melody"
            sources.append(Source(
                source_id=source_id, label=f"midi {index:04d}: {inst.name} {kind}, MIDI {lo}-{hi}",
                path=None, seconds=seconds, notes=list(notes), corpus="midi",
                renderer=functools.partial(_render_midi, plan)))
            index += 1
    return sources


def _window(inst: GMInstrument, register: int, rng: np.random.Generator, width: int = 17
            ) -> tuple[int, int]:
    span = inst.high - inst.low
    width = min(width, span)
    start = inst.low + int(round((span - width) * register / 2))
    start += int(rng.integers(-2, 3))
    start = min(max(start, inst.low), inst.high - width)
    return start, start + width


def _scale_pitches(lo: int, hi: int, rng: np.random.Generator) -> list[int]:
    tonic = int(rng.integers(0, 12))
    mode = _MAJOR if rng.random() < 0.6 else _MINOR
    return [p for p in range(lo, hi + 1) if (p - tonic) % 12 in mode]


def _tick(seconds: float) -> float:
    return round(seconds * _TICKS_PER_SECOND) / _TICKS_PER_SECOND


def _melody(inst: GMInstrument, register: int, rng: np.random.Generator) -> list[Note]:
    lo, hi = _window(inst, register, rng)
    pitches = _scale_pitches(lo, hi, rng)
    beat = 60.0 / float(rng.uniform(84, 132))
    target = float(rng.uniform(8.5, 10.5)) - MIDI_TAIL_SECONDS
    pos = int(rng.integers(len(pitches) // 3, 2 * len(pitches) // 3 + 1))
    base_velocity = int(rng.integers(60, 105))
    notes: list[Note] = []
    cursor = _MIDI_LEAD_IN
    while True:
        length = beat * float(rng.choice([0.5, 1.0, 1.0, 1.0, 1.5, 2.0]))
        if cursor + length > target and notes:
            break
        onset, offset = _tick(cursor), _tick(cursor + length * float(rng.uniform(0.8, 0.95)))
        velocity = int(np.clip(base_velocity + rng.integers(-12, 13), 30, 127))
        notes.append(Note(onset, offset, pitches[pos], velocity / 127.0, inst.name))
        cursor += length
        if rng.random() < 0.12:  # a rest: silence inside the phrase
            cursor += beat * float(rng.choice([0.5, 1.0]))
        step = int(rng.choice([-3, -2, -1, -1, 0, 1, 1, 2, 3]))
        pos += step
        if pos < 0 or pos >= len(pitches):  # reflect at the window's edges
            pos = -pos if pos < 0 else 2 * (len(pitches) - 1) - pos
            pos = min(max(pos, 0), len(pitches) - 1)
    return notes


def _chord_passage(inst: GMInstrument, register: int, rng: np.random.Generator) -> list[Note]:
    lo, hi = _window(inst, register, rng, width=24)
    tonic = int(rng.integers(0, 12))
    mode = _MAJOR if rng.random() < 0.6 else _MINOR
    beat = 60.0 / float(rng.uniform(72, 110))
    target = float(rng.uniform(8.5, 10.5)) - MIDI_TAIL_SECONDS
    base_velocity = int(rng.integers(55, 100))
    degree = 0
    previous_top = (lo + 2 * hi) // 3
    notes: list[Note] = []
    cursor = _MIDI_LEAD_IN
    while True:
        length = beat * float(rng.choice([1.0, 2.0, 2.0]))
        if cursor + length > target and notes:
            break
        # Triad on this scale degree; its pitch classes, then a close voicing whose top note
        # (the melody) moves as little as possible from the previous one.
        classes = {(tonic + mode[(degree + 2 * i) % 7]) % 12 for i in range(3)}
        candidates = [p for p in range(lo + 12, hi + 1) if p % 12 in classes]
        top = min(candidates, key=lambda p: (abs(p - previous_top), p))
        voicing = [top] + [p for p in range(top - 11, top) if p % 12 in classes]
        onset, offset = _tick(cursor), _tick(cursor + length * 0.92)
        velocity = int(np.clip(base_velocity + rng.integers(-10, 11), 30, 127)) / 127.0
        for p in sorted(voicing):
            notes.append(Note(onset, offset, p, velocity, inst.name, polyphonic=True))
        previous_top = top
        cursor += length
        degree = int(rng.choice([0, 1, 3, 4, 5]))  # I ii IV V vi
    return notes


def write_midi_file(path: str | Path, notes: Sequence[Note], program: int) -> None:
    """A one-track .mid of ``notes`` on ``program`` at 120 bpm (note times exact in ticks)."""
    import mido

    events: list[tuple[int, int, mido.Message]] = []
    for n in notes:
        velocity = int(np.clip(round(n.velocity * 127), 1, 127))
        on, off = round(n.onset * _TICKS_PER_SECOND), round(n.offset * _TICKS_PER_SECOND)
        events.append((on, 1, mido.Message("note_on", note=n.midi, velocity=velocity)))
        # Note-offs sort first at equal ticks, so a repeated pitch re-strikes cleanly.
        events.append((off, 0, mido.Message("note_off", note=n.midi, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1], e[2].note))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))
    track.append(mido.Message("program_change", program=program, time=0))
    # Reverb and chorus sends off: a dry render keeps the ground truth's offsets honest.
    track.append(mido.Message("control_change", control=91, value=0, time=0))
    track.append(mido.Message("control_change", control=93, value=0, time=0))
    now = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi_file = mido.MidiFile(ticks_per_beat=480)
    midi_file.tracks.append(track)
    midi_file.save(str(path))


def _run_fluidsynth(plan: _MidiPlan, midi_path: Path, wav_path: Path) -> None:
    base = [plan.fluidsynth, "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", str(MIDI_GAIN),
            "-r", str(MIDI_RENDER_RATE), "-T", "wav", "-O", "float"]
    # Dynamic sample loading reads only the samples the piece plays (3x faster start);
    # older versions lack the setting and exit non-zero, so retry without it.
    tail = ["-F", str(wav_path), plan.soundfont, str(midi_path)]
    for extra in (["-o", "synth.dynamic-sample-loading=1"], []):
        try:
            done = subprocess.run(base + extra + tail, capture_output=True, text=True,
                                  timeout=300, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AudioInputError(plan.source_id, f"fluidsynth failed to run ({exc})") from None
        if done.returncode == 0 and wav_path.is_file():
            return
    message = (done.stderr or done.stdout).strip().splitlines()
    raise AudioInputError(plan.source_id, f"fluidsynth exited with status {done.returncode}"
                                          f" ({message[-1] if message else 'no message'})")


def _render_midi(plan: _MidiPlan, sample_rate: int, channels: int) -> np.ndarray:
    import soundfile as sf

    if not Path(plan.soundfont).is_file():  # fluidsynth renders silence without one
        raise DependencyError(f"soundfont {plan.soundfont} is gone; {_INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="audiosae-midi-") as tmp:
        midi_path, wav_path = Path(tmp) / "passage.mid", Path(tmp) / "passage.wav"
        write_midi_file(midi_path, plan.notes, plan.program)
        _run_fluidsynth(plan, midi_path, wav_path)
        data, rate = sf.read(str(wav_path), dtype="float32", always_2d=True)
    wave = np.ascontiguousarray(data.T)
    # FluidSynth renders until every voice has died out; keep a fixed short tail instead,
    # faded out, so the length is known in advance.
    n_keep = int(round(plan.seconds * rate))
    if wave.shape[1] < n_keep:
        wave = np.pad(wave, ((0, 0), (0, n_keep - wave.shape[1])))
    wave = wave[:, :n_keep]
    fade = min(n_keep, int(0.15 * rate))
    wave[:, n_keep - fade:] *= np.cos(np.linspace(0.0, np.pi / 2, fade, dtype=np.float32)) ** 2
    peak = float(np.max(np.abs(wave)))
    if not peak > 1e-6:
        raise AudioInputError(plan.source_id, f"fluidsynth rendered silence (is {plan.soundfont}"
                                              f" a General MIDI soundfont?)")
    wave *= 10.0 ** (plan.peak_dbfs / 20.0) / peak
    wave = resample(convert_channels(wave, channels), rate, sample_rate)
    n_out = int(round(plan.seconds * sample_rate))  # resampling may be a sample off
    if wave.shape[1] < n_out:
        wave = np.pad(wave, ((0, 0), (0, n_out - wave.shape[1])))
    return wave[:, :n_out]

