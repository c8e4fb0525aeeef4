"""A clip the explorer analyses gets its ground-truth labels (issue 14): the MIDI corpus's GM
programs for a corpus source, the user's side-car labels for their own file, so the instrument
lane and the CSV / Sonic Visualiser exports show them beside the probe's decode."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from audiosae.attribute_library import instrument_params
from audiosae.attribute_spec import AttributeSpec
from audiosae.corpus import Note, Source
from audiosae.explore import clips
from audiosae.explore.analysis import measure_clip
from audiosae.jobs import CancelToken

SR = 24000
HOP = 320


def _times(seconds: float) -> np.ndarray:
    return (np.arange(int(seconds * SR / HOP)) + 0.5) * HOP / SR


def test_measure_clip_labels_a_corpus_source_from_its_notes():
    spec = AttributeSpec().with_attributes(["instrument"])
    t = _times(3.0)
    source = Source("midi/0003", "trumpet", None, 3.0, [Note(0.5, 1.5, 67, 0.6, "trumpet")], corpus="midi")
    wave = np.zeros((1, 3 * SR), np.float32)
    fa, _ = measure_clip(spec, wave, SR, t, hop_length=HOP, device="cpu", corpus_source=source)
    names = np.asarray(spec.class_names("instrument"))
    got = spec.classify(fa)["instrument"]
    assert np.all(names[got[(t >= 0.5) & (t < 1.5)]] == "brass") and np.all(names[got[t >= 1.5]] == "none")
    fa, _ = measure_clip(spec, wave, SR, t, hop_length=HOP, device="cpu")        # without it: no label
    assert np.all(spec.classify(fa)["instrument"] == -1)


class _Models:
    """What ``analyse_clip_job`` asks of ``LoadedModels``; ``analyze`` runs the real measurement."""

    sample_rate, channels, backend = SR, 1, None

    def __init__(self, spec: AttributeSpec):
        self.spec = spec

    def stored_frames(self, clip):
        return None

    def analyze(self, wave, *, stored, source, progress, cancel, corpus_source, extra=True):
        t = _times(wave.shape[1] / SR)
        fa, _ = measure_clip(self.spec, wave, SR, t, hop_length=HOP, device="cpu", corpus_source=corpus_source,
                             extra=extra)
        return type("A", (), {"measured_classes": self.spec.classify(fa), "times": t, "warnings": []})()


def test_a_users_file_gets_its_sidecar_labels_in_the_explorer(tmp_path):
    song = tmp_path / "song.wav"
    sf.write(str(song), (0.1 * np.sin(2 * np.pi * 220 * np.arange(2 * SR) / SR)).astype(np.float32), SR)
    spec = AttributeSpec().with_attributes(
        ["instrument"], {"instrument": instrument_params([["song.wav", 0.5, 1.0, "drums"]])})
    analysis, name, clip = clips.analyse_clip_job(_Models(spec), str(song), progress=lambda p: None,
                                                  cancel=CancelToken())
    names = np.asarray(spec.class_names("instrument") + ["?"])
    got, t = names[analysis.measured_classes["instrument"]], analysis.times
    assert np.all(got[(t >= 0.5) & (t < 1.0)] == "drums") and name == str(song)
    assert np.all(analysis.measured_classes["instrument"][t >= 1.0] == -1)


def test_an_analysis_without_registered_attributes_is_completed_by_measure_clip_extra():
    """``extra=False`` (what the studio shows first) leaves the registered attributes pending and
    unlabelled; ``measure_clip_extra`` gives what one ``extra=True`` analysis gives."""
    from audiosae.codecs import backend_spec
    from audiosae.explore.analysis import analyze_measured, measure_clip_extra

    geometry = backend_spec("mel")
    spec = AttributeSpec().with_attributes(["instrument"])
    source = Source("midi/0003", "trumpet", None, 2.0, [Note(0.5, 1.5, 67, 0.6, "trumpet")], corpus="midi")
    wave = np.zeros((1, 2 * geometry.sample_rate), np.float32)
    first = analyze_measured(spec, geometry, wave, corpus_source=source, extra=False)
    assert first.pending == ("instrument",) and np.all(first.measured_classes["instrument"] == -1)
    whole = analyze_measured(spec, geometry, wave, corpus_source=source)
    assert whole.pending == () and (whole.measured_classes["instrument"] > 0).any()
    measured, classes = measure_clip_extra(spec, first, hop_length=geometry.hop_length, corpus_source=source)
    assert np.array_equal(classes["instrument"], whole.measured_classes["instrument"])
    assert np.array_equal(classes["pitch"], whole.measured_classes["pitch"])
    assert np.all(first.measured_classes["instrument"] == -1)              # the analysis itself is not changed


def test_warm_up_runs_each_registered_extractor_once_and_nothing_without_them():
    """What the studio runs beside the model loading: every registered extractor of the spec once
    (librosa's import and compiling happen there, not while a clip plays)."""
    from audiosae.attribute_registry import Attribute, register, unregister
    from audiosae.explore.clips import warm_up_job

    calls = []

    def extract(ctx, params):
        calls.append(ctx.n_frames)
        return {"warm_col": np.zeros(ctx.n_frames)}

    register(Attribute(name="warm_toy", description="test", steering="", ordinal=False, columns={"warm_col": 1},
                       extract=extract, classify=lambda p, raw, spec: np.zeros(len(raw["warm_col"]), np.int64),
                       class_names=lambda p: ["a", "b"]), replace=True)
    try:
        warm_up_job(AttributeSpec(), progress=lambda p: None, cancel=CancelToken())
        assert calls == []                                                     # the paper's three: nothing to do
        warm_up_job(AttributeSpec().with_attributes(["warm_toy"]), progress=lambda p: None, cancel=CancelToken())
        assert calls == [100]                                                  # one second at 100 frames/s
    finally:
        unregister("warm_toy")
