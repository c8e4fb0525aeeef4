"""Corpus sources: coverage and exactness of the built-in ground truth, determinism, the split
by source, user files with bad ones among them, and FluidSynth rendering (skipped without it)."""

from __future__ import annotations

import math
import os
import pickle
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosae import corpus
from audiosae.corpus import (
    BUILTIN_CORPORA,
    TONE_BRIGHTNESS,
    TONE_LEVELS_DB,
    Note,
    Source,
    builtin_sources,
    ground_truth_midi,
    sounding_count,
    user_sources,
    validation_split,
)
from audiosae.errors import AudioInputError, AudioSAEError, DependencyError

SR = 24_000
ALL_SEMITONES = set(range(31, 96))


def f0_midi(segment: np.ndarray, sample_rate: int, lo: int = 28, hi: int = 100) -> int:
    """The MIDI note whose first 6 harmonics (weights 0.8**k) hold the most spectral peak
    magnitude: a plain harmonic-sum pitch estimate, independent of the attributes module."""
    segment = segment - segment.mean()
    n = 1 << int(np.ceil(np.log2(len(segment) * 2)))
    mag = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), n))
    hz_per_bin = sample_rate / n

    def peak(f_lo: float, f_hi: float) -> float:
        i, j = int(f_lo / hz_per_bin), int(np.ceil(f_hi / hz_per_bin)) + 1
        return float(mag[i:j].max()) if i < len(mag) else 0.0

    scores = []
    for m in range(lo, hi + 1):
        f = 440.0 * 2 ** ((m - 69) / 12)
        # +-0.4 semitone bands: vibrato splits a partial's peak but stays inside them.
        scores.append(sum(0.8 ** (k - 1) * peak(k * f * 2 ** (-0.4 / 12), k * f * 2 ** (0.4 / 12))
                          for k in range(1, 7)))
    return lo + int(np.argmax(scores))


def note_segment(wave: np.ndarray, note: Note, sample_rate: int, trim: float = 0.1) -> np.ndarray:
    return wave[int((note.onset + trim) * sample_rate):int((note.offset - trim) * sample_rate)]


def db(x: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(np.square(x, dtype=np.float64))))


@pytest.fixture(scope="module")
def tones() -> list[Source]:
    return builtin_sources("tones")


def source_with(sources: list[Source], midi: int) -> tuple[Source, Note]:
    for s in sources:
        for n in s.notes:
            if n.midi == midi:
                return s, n
    raise AssertionError(f"no note {midi}")


# --- tones: the plan -----------------------------------------------------------------------


def test_tones_full_set_crosses_every_semitone_with_every_level_and_brightness(tones):
    notes = [n for s in tones for n in s.notes]
    assert {n.midi for n in notes} == ALL_SEMITONES
    combos = {(n.level_db, n.instrument) for n in notes}
    assert len(combos) == len(TONE_LEVELS_DB) * len(TONE_BRIGHTNESS) == 12
    per_semitone = Counter((n.midi, n.level_db, n.instrument) for n in notes)
    assert set(per_semitone.values()) == {1} and len(per_semitone) == 65 * 12
    minutes = sum(s.seconds for s in tones) / 60
    assert 8 <= minutes <= 12
    assert all(7 <= s.seconds <= 11 for s in tones)
    ids = [s.source_id for s in tones]
    assert len(set(ids)) == len(ids) and ids[0] == "tones/0000"
    assert all(s.corpus == "tones" and s.path is None and not s.polyphonic for s in tones)
    # Notes are in time order, inside the source, and never overlap (monophonic).
    for s in tones:
        for a, b in zip(s.notes, s.notes[1:]):
            assert a.onset < a.offset < b.onset
        assert s.notes[-1].offset < s.seconds


def test_tones_minutes_keep_a_prefix_that_still_covers_the_range(tones):
    subset = builtin_sources("tones", minutes=3)
    assert [s.source_id for s in subset] == [s.source_id for s in tones[:len(subset)]]
    assert [s.notes for s in subset] == [s.notes for s in tones[:len(subset)]]
    total = sum(s.seconds for s in subset)
    assert 180 <= total < 180 + max(s.seconds for s in subset)
    covered = {n.midi for s in subset for n in s.notes}
    assert len(covered) >= 60, sorted(ALL_SEMITONES - covered)
    assert {n.level_db for s in subset for n in s.notes} == set(TONE_LEVELS_DB)
    assert {n.instrument for s in subset for n in s.notes} == {f"tone:{b}" for b in TONE_BRIGHTNESS}
    assert len(builtin_sources("tones", minutes=0.01)) == 1
    assert len(builtin_sources("tones", minutes=1000)) == len(tones)


def test_seed_changes_the_plan_and_same_seed_repeats_it(tones):
    again = builtin_sources("tones", seed=0)
    other = builtin_sources("tones", seed=1)
    assert [s.notes for s in again] == [s.notes for s in tones]
    assert [s.notes for s in other] != [s.notes for s in tones]


def test_unknown_corpus_and_bad_minutes_are_user_errors():
    with pytest.raises(AudioSAEError, match="tones, midi"):
        builtin_sources("birdsong")
    with pytest.raises(AudioSAEError, match="positive"):
        builtin_sources("tones", minutes=0)
    assert set(BUILTIN_CORPORA) == {"tones", "midi"}
    assert all(isinstance(d, str) and "\n" not in d for d in BUILTIN_CORPORA.values())


# --- ground truth --------------------------------------------------------------------------


def test_ground_truth_is_the_note_inside_notes_and_nan_in_gaps(tones):
    source = tones[5]
    inside = np.array([(n.onset + n.offset) / 2 for n in source.notes])
    assert np.array_equal(ground_truth_midi(source.notes, inside), [n.midi for n in source.notes])
    gaps = np.array([(a.offset + b.onset) / 2 for a, b in zip(source.notes, source.notes[1:])])
    assert np.isnan(ground_truth_midi(source.notes, gaps)).all()
    edges = [source.notes[0].onset - 1e-6, source.notes[0].onset, source.notes[0].offset]
    truth = ground_truth_midi(source.notes, edges)
    assert np.isnan(truth[0]) and truth[1] == source.notes[0].midi and np.isnan(truth[2])
    assert np.isnan(ground_truth_midi(None, [0.5])).all()


def test_ground_truth_in_chords_is_the_top_note():
    chord = [Note(0.0, 1.0, 60, 0.7, "piano", True), Note(0.0, 1.0, 67, 0.7, "piano", True),
             Note(0.0, 1.0, 64, 0.7, "piano", True), Note(1.5, 2.0, 55, 0.7, "piano")]
    times = np.array([[0.5, 1.2], [1.7, 2.5]])
    truth = ground_truth_midi(chord, times)
    assert truth.shape == (2, 2) and truth[0, 0] == 67 and truth[1, 0] == 55
    assert np.isnan(truth[0, 1]) and np.isnan(truth[1, 1])
    assert sounding_count(chord, times).tolist() == [[3, 0], [1, 0]]


# --- tones: the audio ----------------------------------------------------------------------


def test_tone_fundamentals_match_their_notes_across_the_range(tones):
    checked = []
    for midi in (31, 95):
        source, _ = source_with(tones, midi)
        checked.append(source)
    checked.append(tones[0])
    for source in checked:
        wave = source.load(SR, 1)[0]
        for note in source.notes:
            assert f0_midi(note_segment(wave, note, SR), SR) == note.midi, (source.source_id, note)


def test_tone_levels_are_as_designed_and_gaps_hold_only_a_faint_floor(tones):
    source = tones[3]
    wave = source.load(SR, 1)[0]
    assert wave.dtype == np.float32 and wave.shape == (round(source.seconds * SR),)
    assert np.max(np.abs(wave)) < 1.0
    for note in source.notes:
        segment = wave[round(note.onset * SR):round(note.offset * SR)]
        assert db(segment) == pytest.approx(note.level_db, abs=0.1)
    for a, b in zip(source.notes, source.notes[1:]):
        gap = wave[round(a.offset * SR) + 1:round(b.onset * SR) - 1]
        assert -95 < db(gap) < -75
    levels = sorted({n.level_db for s in tones for n in s.notes})
    assert levels[0] <= -38 and levels[-1] >= -12 and min(np.diff(levels)) >= 8


def test_brightness_moves_the_spectral_centroid_at_fixed_pitch(tones):
    wanted = {f"tone:{b}" for b in TONE_BRIGHTNESS}
    ratios: dict[str, list[float]] = {b: [] for b in wanted}
    for source in tones[:6]:
        wave = source.load(SR, 1)[0]
        for note in source.notes:
            seg = note_segment(wave, note, SR)
            mag = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
            freqs = np.fft.rfftfreq(len(seg), 1 / SR)
            centroid = float(np.sum(mag * freqs) / np.sum(mag))
            ratios[note.instrument].append(centroid / (440 * 2 ** ((note.midi - 69) / 12)))
    dark, medium, bright = (np.median(ratios[f"tone:{b}"]) for b in ("dark", "medium", "bright"))
    assert dark < medium < bright and bright > 2 * dark


def test_tone_audio_is_deterministic_and_channel_layouts_agree(tones):
    source = tones[7]
    first = source.load(SR, 1)
    assert np.array_equal(first, builtin_sources("tones")[7].load(SR, 1))
    stereo = source.load(SR, 2)
    assert stereo.shape == (2, first.shape[1]) and np.array_equal(stereo[0], stereo[1])
    assert np.allclose(stereo[0], first[0])
    other_rate = source.load(16_000, 1)
    assert other_rate.shape == (1, round(source.seconds * 16_000))
    restored = pickle.loads(pickle.dumps(source))  # workers in other processes can load it
    assert np.array_equal(restored.load(SR, 1), first)


def test_load_rejects_bad_formats(tones):
    with pytest.raises(ValueError):
        tones[0].load(0, 1)
    with pytest.raises(ValueError):
        tones[0].load(SR, 0)


# --- split by source -----------------------------------------------------------------------


def test_validation_split_is_by_source_deterministic_and_stable(tones):
    split = validation_split(tones, fraction=0.1, seed=0)
    assert set(split) == {s.source_id for s in tones}
    assert validation_split(tones, fraction=0.1, seed=0) == split
    n_val = sum(v == "val" for v in split.values())
    assert 1 <= n_val <= len(tones) // 4
    differs = validation_split(tones, fraction=0.1, seed=3)
    assert differs != split


def test_validation_split_assignment_depends_only_on_the_source_id(tones):
    # Adding or removing sources never moves the others.
    big = validation_split(tones, fraction=0.3, seed=0)
    small = validation_split(tones[:40], fraction=0.3, seed=0)
    assert all(small[k] == big[k] for k in small)


def test_validation_split_always_has_both_sides_from_two_sources(tones):
    for n in (2, 3, 5):
        split = validation_split(tones[:n], fraction=0.1)
        assert set(split.values()) == {"train", "val"}, n
    assert set(validation_split(tones[:3], fraction=0.95).values()) == {"train", "val"}
    assert validation_split(tones[:1]) == {"tones/0000": "train"}
    with pytest.raises(ValueError):
        validation_split(tones, fraction=0.0)
    with pytest.raises(ValueError):
        validation_split([tones[0], tones[0]])


# --- user files ----------------------------------------------------------------------------


def test_user_sources_keep_good_files_and_list_bad_ones(tmp_path):
    good_dir = tmp_path / "takes"
    good_dir.mkdir()
    t = np.arange(8000) / 8000
    sf.write(good_dir / "a b.wav", np.stack([np.sin(2 * np.pi * 220 * t)] * 2, 1) * 0.5, 8000)
    sf.write(good_dir / "c.flac", 0.25 * np.sin(2 * np.pi * 330 * t[:4000]), 8000)
    (good_dir / "notes.wav").write_text("this is not audio")
    missing = tmp_path / "missing.wav"

    sources, problems = user_sources([good_dir, missing])
    assert [s.label for s in sources] == ["a b.wav", "c.flac"]
    assert all(s.notes is None and s.corpus == "user" and s.path for s in sources)
    assert sources[0].seconds == pytest.approx(1.0) and sources[1].seconds == pytest.approx(0.5)
    assert sources[0].source_id == Path(os.path.abspath(good_dir / "a b.wav")).as_posix()
    bad_paths = {p.path for p in problems}
    assert str(good_dir / "notes.wav") in bad_paths and str(missing) in bad_paths
    assert all(isinstance(p, AudioInputError) for p in problems)

    wave = sources[0].load(16_000, 1)
    assert wave.shape == (1, 16_000) and wave.dtype == np.float32
    assert abs(np.sqrt(np.mean(wave ** 2)) - 0.5 / np.sqrt(2)) < 0.01
    slugs = [s.slug for s in sources]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", s) for s in slugs) and len(set(slugs)) == 2


def test_same_file_name_in_two_folders_gets_distinct_labels(tmp_path):
    for folder in ("day1", "day2"):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "take.wav", np.zeros(800) + 0.1, 8000)
    sources, problems = user_sources([tmp_path])
    assert not problems
    assert sorted(s.label for s in sources) == ["day1/take.wav", "day2/take.wav"]


# --- midi: dependencies --------------------------------------------------------------------


def test_missing_fluidsynth_says_what_to_install(monkeypatch):
    monkeypatch.setattr(corpus, "find_fluidsynth", lambda: None)
    with pytest.raises(DependencyError) as info:
        builtin_sources("midi")
    message = str(info.value)
    assert "fluidsynth program" in message and "\n" not in message
    assert "apt install fluidsynth fluid-soundfont-gm" in message
    assert "brew install fluid-synth" in message and "AUDIOSAE_SOUNDFONT" in message
    assert corpus.midi_unavailable_reason() == message


def test_soundfont_env_pointing_nowhere_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOSAE_SOUNDFONT", str(tmp_path / "nope.sf2"))
    with pytest.raises(DependencyError, match="nope.sf2"):
        corpus.find_soundfont()
    font = tmp_path / "mine.sf2"
    font.write_bytes(b"RIFF")
    monkeypatch.setenv("AUDIOSAE_SOUNDFONT", str(font))
    assert corpus.find_soundfont() == font


def test_midi_file_holds_the_notes_at_exact_times(tmp_path):
    mido = pytest.importorskip("mido")
    notes = [Note(0.2, 0.5, 60, 0.5, "x"), Note(0.5, 0.9, 60, 1.0, "x"),
             Note(1.0, 1.5, 64, 0.7, "x", True), Note(1.0, 1.5, 67, 0.7, "x", True)]
    path = tmp_path / "n.mid"
    corpus.write_midi_file(path, notes, program=40)
    now, starts, ends, programs = 0.0, {}, [], []
    for message in mido.MidiFile(str(path)):
        now += message.time
        if message.type == "program_change":
            programs.append(message.program)
        elif message.type == "note_on" and message.velocity > 0:
            starts.setdefault(message.note, []).append((round(now, 6), message.velocity))
        elif message.type in ("note_off", "note_on"):
            ends.append((round(now, 6), message.note))
    assert programs == [40]
    assert starts[60] == [(0.2, 64), (0.5, 127)] and starts[67] == [(1.0, 89)]
    assert sorted(ends) == [(0.5, 60), (0.9, 60), (1.5, 64), (1.5, 67)]


# --- midi: rendering (needs fluidsynth and a soundfont) ------------------------------------

needs_fluidsynth = pytest.mark.skipif(corpus.midi_unavailable_reason() is not None,
                                      reason=f"midi corpus unavailable: "
                                             f"{corpus.midi_unavailable_reason()}")


@pytest.fixture(scope="module")
def midi_sources() -> list[Source]:
    return builtin_sources("midi")


@needs_fluidsynth
def test_midi_plan_covers_instruments_range_and_chords(midi_sources):
    notes = [n for s in midi_sources for n in s.notes]
    assert min(n.midi for n in notes) <= 38 and max(n.midi for n in notes) >= 88
    assert {n.instrument for n in notes} == {i.name for i in corpus.GM_INSTRUMENTS}
    chords = [s for s in midi_sources if s.polyphonic]
    assert 3 <= len(chords) < len(midi_sources) // 3
    for s in chords:
        times = np.array([n.onset + 0.01 for n in s.notes])
        top = ground_truth_midi(s.notes, times)
        assert np.all(sounding_count(s.notes, times) >= 3)
        for t, truth in zip(times, top):
            assert truth == max(n.midi for n in s.notes if n.onset <= t < n.offset)
    for inst in corpus.GM_INSTRUMENTS:
        played = [n.midi for n in notes if n.instrument == inst.name and not n.polyphonic]
        assert played and inst.low <= min(played) and max(played) <= inst.high
    first = midi_sources[:len(corpus.GM_INSTRUMENTS)]
    assert len({s.notes[0].instrument for s in first}) == len(first)  # round robin
    minutes = sum(s.seconds for s in midi_sources) / 60
    assert 7 <= minutes <= 13
    short = builtin_sources("midi", minutes=1)
    assert [s.notes for s in short] == [s.notes for s in midi_sources[:len(short)]]


@needs_fluidsynth
def test_midi_render_is_audible_timed_and_deterministic(midi_sources):
    source = next(s for s in midi_sources if s.notes[0].instrument == "violin" and not s.polyphonic)
    wave = source.load(SR, 1)
    assert wave.dtype == np.float32 and wave.shape == (1, round(source.seconds * SR))
    assert db(wave) > -45 and np.max(np.abs(wave)) < 1.0
    lead_in = wave[0, :int(source.notes[0].onset * SR)]
    assert np.max(np.abs(lead_in)) < 1e-4
    first_note = note_segment(wave[0], source.notes[0], SR, trim=0.05)
    assert db(first_note) > db(wave) - 15
    assert np.max(np.abs(wave[0, -100:])) < 1e-3  # faded tail
    assert np.array_equal(source.load(SR, 1), wave)
    stereo = source.load(44_100, 2)
    assert stereo.shape == (2, round(source.seconds * 44_100))


@needs_fluidsynth
def test_midi_melody_fundamentals_match_ground_truth(midi_sources):
    source = next(s for s in midi_sources if s.notes[0].instrument == "flute")
    wave = source.load(SR, 1)[0]
    long_notes = [n for n in source.notes if n.offset - n.onset >= 0.3]
    matches = [f0_midi(note_segment(wave, n, SR, trim=0.06), SR) == n.midi for n in long_notes]
    assert len(long_notes) >= 4 and all(matches), list(zip([n.midi for n in long_notes], matches))
