"""The registered attributes of issue 14 on signals whose answer is known (audiosae.attribute_library)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiosae.attribute_library import (GM_FAMILIES, chord_names, gm_family, instrument_params, kmeans,
                                        load_label_sidecar)
from audiosae.attribute_registry import registered_names
from audiosae.attribute_spec import AttributeSpec, FrameAttributes
from audiosae.corpus import Note, Source
from audiosae.errors import AudioSAEError

SR, HOP = 24000, 320            # EnCodec-like geometry: 75 Hz frames


def _times(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * SR / HOP)) * HOP / SR + 0.5 * HOP / SR


def _classes(wave: np.ndarray, names: list[str], *, source=None, spec: AttributeSpec | None = None
             ) -> tuple[AttributeSpec, dict[str, np.ndarray], np.ndarray]:
    spec = spec or AttributeSpec().with_attributes(names)
    t = _times(len(wave) / SR)
    fa = spec.measure(wave[None].astype(np.float32), SR, t, hop_length=HOP, pitch=False, source=source)
    return spec, spec.classify(fa), t


def _clicks(times_s, seconds: float) -> np.ndarray:
    w = np.zeros(int(seconds * SR))
    for c in times_s:
        i = int(round(c * SR))
        w[i:i + 96] += 0.8 * np.hanning(96)
    return w


def _tone(midis, seconds: float, level: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    w = np.zeros_like(t)
    for m in midis:
        f0 = 440.0 * 2 ** ((m - 69) / 12)
        for k in range(1, 6):           # a few partials, falling 1/k
            if k * f0 < SR / 2:
                w += np.sin(2 * np.pi * k * f0 * t) / k
    return level * w / np.abs(w).max()


def test_every_new_attribute_is_registered_with_classes_and_a_steering_meaning():
    spec = AttributeSpec().with_attributes(registered_names())
    assert {"onset", "onset_strength", "beat_phase", "chroma", "chord", "flatness", "mfcc_timbre",
            "instrument"} <= set(spec.attributes)
    assert spec.attributes[:3] == ("pitch", "loudness", "timbre")
    for a in spec.attributes:
        assert spec.n_classes(a) == len(spec.class_names(a)) >= 2
        assert spec.steering_meaning(a)
    assert spec.n_classes("chroma") == 13 and spec.n_classes("chord") == 25
    assert [spec.is_ordinal(a) for a in ("onset", "onset_strength", "flatness", "chord")] == [False, True, True, False]
    assert spec.parse_target("chord", "am") == chord_names().index("Am")
    with pytest.raises(AudioSAEError, match="not understood"):
        spec.parse_target("chord", "H7")


def test_onsets_are_found_at_the_clicks_and_nowhere_else():
    clicks = 0.25 + 0.5 * np.arange(12)
    spec, cls, t = _classes(_clicks(clicks, 6.0), ["onset", "onset_strength"])
    hits = t[cls["onset"] == 1]
    assert len(hits) == len(clicks)
    # each flagged frame is the one whose hop holds the click (frame centres are 13.3 ms apart)
    assert np.max(np.min(np.abs(hits[:, None] - clicks[None, :]), axis=1)) <= HOP / SR
    near = np.min(np.abs(t[:, None] - clicks[None, :]), axis=1) < 0.02
    far = np.min(np.abs(t[:, None] - clicks[None, :]), axis=1) > 0.15
    assert np.median(cls["onset_strength"][near]) >= 4 and np.all(cls["onset_strength"][far] == 0)


def test_beat_phase_follows_a_click_track():
    period = 0.5
    clicks = 0.5 + period * np.arange(16)
    spec, cls, t = _classes(_clicks(clicks, 9.0), ["beat_phase"])
    names = spec.class_names("beat_phase")
    inside = (t > clicks[1]) & (t < clicks[-2])
    phase = ((t - clicks[0]) % period) / period
    on_beat = inside & (phase > 0.02) & (phase < 0.2)
    mid = inside & (phase > 0.55) & (phase < 0.7)
    assert np.mean(cls["beat_phase"][on_beat] == names.index("beat 0-25%")) >= 0.8
    assert np.mean(cls["beat_phase"][mid] == names.index("beat 50-75%")) >= 0.8
    _, silent, _ = _classes(np.zeros(3 * SR), ["beat_phase"])
    assert np.all(silent["beat_phase"] == 0)            # no beat: 'none'


def test_chroma_and_chord_of_a_c_major_and_an_a_minor_triad():
    spec, cls, t = _classes(np.concatenate([_tone([60, 64, 67], 2.0), _tone([57, 60, 64], 2.0),
                                            _tone([69], 2.0), np.zeros(SR)]), ["chroma", "chord"])
    chroma, chord = spec.class_names("chroma"), spec.class_names("chord")
    seg = [(t > a + 0.1) & (t < a + 1.9) for a in (0.0, 2.0, 4.0)]
    assert np.mean(cls["chord"][seg[0]] == chord.index("C")) >= 0.95
    assert np.mean(cls["chord"][seg[1]] == chord.index("Am")) >= 0.95
    assert set(np.asarray(chroma)[cls["chroma"][seg[0]]]) <= {"C", "E", "G"}
    assert np.mean(cls["chroma"][seg[2]] == chroma.index("A")) >= 0.95      # one note: its pitch class,
    assert np.mean(cls["chord"][seg[2]] == 0) >= 0.95                       # and no triad
    silent = t > 6.1
    assert np.all(cls["chroma"][silent] == 0) and np.all(cls["chord"][silent] == 0)


def test_flatness_tells_white_noise_from_a_sine_and_leaves_silence_unlabelled():
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    wave = np.concatenate([0.1 * rng.standard_normal(2 * SR), 0.3 * np.sin(2 * np.pi * 440 * t), np.zeros(SR)])
    spec, cls, times = _classes(wave, ["flatness"])
    noise, sine, silent = times < 1.9, (times > 2.1) & (times < 3.9), times > 4.1
    assert np.all(cls["flatness"][noise] >= 8)          # log10 flatness > -1: noise
    assert np.all(cls["flatness"][sine] <= 3)           # < -3.5: a pure tone
    assert np.all(cls["flatness"][silent] == -1)
    assert spec.class_value("flatness", 9) == pytest.approx(-0.25)


def test_mfcc_timbre_classes_fit_on_the_training_frames_separate_two_timbres():
    rng = np.random.default_rng(1)
    dark, bright = _tone([48], 3.0, 0.3), np.diff(0.1 * rng.standard_normal(3 * SR + 1))
    spec = AttributeSpec().with_attributes(["mfcc_timbre"])
    spec.extra["mfcc_timbre"]["k"] = 2
    t = _times(6.0)
    fa = spec.measure(np.concatenate([dark, bright])[None].astype(np.float32), SR, t, hop_length=HOP, pitch=False)
    assert np.all(spec.classify(fa)["mfcc_timbre"] == -1)               # not fit yet: no label
    fitted = spec.fit_extra(fa.raw())
    assert len(fitted.extra["mfcc_timbre"]["centroids"]) == 2
    cls = fitted.classify(fa)["mfcc_timbre"]
    a, b = cls[(t > 0.1) & (t < 2.9)], cls[(t > 3.1) & (t < 5.9)]
    assert len(set(a)) == 1 and len(set(b)) == 1 and a[0] != b[0]
    # the centroids survive the workspace's JSON
    assert AttributeSpec.from_dict(json.loads(json.dumps(fitted.to_dict()))).extra == fitted.extra
    assert kmeans(np.array([[0.0], [0.1], [10.0], [10.1]]), 2).round().tolist() in ([[0.0], [10.0]], [[10.0], [0.0]])


def test_instrument_from_gm_programs_of_the_midi_corpus_and_from_a_users_sidecar(tmp_path):
    assert gm_family(0) == "piano" and gm_family(56) == "brass" and gm_family(40) == "strings"
    notes = [Note(0.5, 1.5, 67, 0.6, "trumpet"), Note(2.0, 2.5, 60, 0.6, "trumpet")]
    source = Source("midi/0003", "trumpet", None, 3.0, notes, corpus="midi")
    spec, cls, t = _classes(np.zeros(3 * SR), ["instrument"], source=source)
    names = spec.class_names("instrument")
    assert names[:1 + len(GM_FAMILIES)] == ["none", *GM_FAMILIES]
    sounding = ((t >= 0.5) & (t < 1.5)) | ((t >= 2.0) & (t < 2.5))
    assert np.all(np.asarray(names)[cls["instrument"][sounding]] == "brass")
    assert np.all(cls["instrument"][~sounding] == 0)                     # silence: 'none'
    violin = Source("midi/0001", "violin", None, 3.0, [Note(0.0, 3.0, 70, 0.5, "violin")], corpus="midi")
    assert set(np.asarray(names)[_classes(np.zeros(3 * SR), ["instrument"], source=violin)[1]["instrument"]]) \
        == {"strings"}
    tones = Source("tones/0000", "tones", None, 3.0, [Note(0.0, 3.0, 60, 0.5, "tone:dark")], corpus="tones")
    assert np.all(_classes(np.zeros(3 * SR), ["instrument"], source=tones)[1]["instrument"] == -1)  # no truth

    # the user's own labels: CSV and JSON side-cars give the same named classes
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,start,end,label\nsong.wav,0.5,1.0,drums\nsong.wav,1.0,2.0,brass\n"
                        "other.wav,0,1,voice\n")
    json_path = tmp_path / "labels.json"
    json_path.write_text(json.dumps({"labels": [{"file": "song.wav", "start": 0.5, "end": 1.0, "label": "drums"},
                                                {"file": "song.wav", "start": 1.0, "end": 2.0, "label": "brass"},
                                                {"file": "other.wav", "start": 0, "end": 1, "label": "voice"}]}))
    rows = load_label_sidecar(csv_path)
    assert rows == load_label_sidecar(json_path)
    params = instrument_params(rows)
    assert params["user_classes"] == ["drums", "voice"]                  # 'brass' is already a GM family
    spec = AttributeSpec().with_attributes(["instrument"], {"instrument": params})
    user = Source(str(tmp_path / "song.wav"), "song.wav", str(tmp_path / "song.wav"), 3.0, None)
    _, cls, t = _classes(np.zeros(3 * SR), ["instrument"], source=user, spec=spec)
    names = spec.class_names("instrument")
    got = np.asarray(names + ["?"])[cls["instrument"]]
    assert np.all(got[(t >= 0.5) & (t < 1.0)] == "drums") and np.all(got[(t >= 1.0) & (t < 2.0)] == "brass")
    assert np.all(cls["instrument"][(t < 0.5) | (t >= 2.0)] == -1)      # outside the user's intervals: no label
    bad = tmp_path / "bad.csv"
    bad.write_text("file,start,end,label\nsong.wav,2,1,drums\n")
    with pytest.raises(AudioSAEError, match="entry 1"):
        load_label_sidecar(bad)


def test_frames_never_measured_get_no_label_whatever_the_attribute():
    spec = AttributeSpec().with_attributes(["onset", "chroma", "chord", "beat_phase", "instrument"])
    n = 5
    core = {c: np.zeros(n) for c in ("midi", "periodicity", "loudness_db", "centroid_hz")}
    fa = FrameAttributes(**core, extra={"onset": np.full(n, np.nan), "onset_strength": np.full(n, np.nan),
                                        "chroma": np.full((n, 12), np.nan), "beat_phase": np.full(n, np.nan),
                                        "instrument": np.full(n, np.nan)})
    cls = spec.classify(fa)
    assert all(np.all(cls[a] == -1) for a in spec.extra)
    assert np.all(spec.classify(FrameAttributes(**core))["chord"] == -1)   # column absent: no label
