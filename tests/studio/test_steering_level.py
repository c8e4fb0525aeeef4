"""The level rule (audiosae.steering.level) on every output path, and alpha validation.

Steered audio is loudness-matched to its source (unless loudness is the target) and limited to
-1 dBFS; ``--no-limit`` / ``limit=False`` keeps the raw level; a non-finite or negative alpha
is refused where it is entered.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosae.audio import load_audio, save_audio
from audiosae.errors import AudioSAEError
from audiosae.steering import check_alpha, steer_wave
from audiosae.steering.level import (RAW, LevelRule, apply_level_rule, limit_peaks, loudness_db, rule_for,
                                     true_peak_envelope)
from tests.support.common import REPO_ROOT, harmonic_tone

DEMO = REPO_ROOT / "resources" / "demo"
FLUTE = DEMO / "clips" / "02-flute-melody.flac"
CEILING = 10 ** (-1 / 20)
SR = 24000


def _music(seconds: float = 4.0, sr: int = SR) -> np.ndarray:
    """A phrase with dynamics: a chord swelling from -30 to -10 dBFS, a silent gap, a tone."""
    chord = sum(harmonic_tone(m, seconds / 2, sr, level_db=-16) for m in (57, 61, 64))
    chord *= np.linspace(10 ** (-20 / 20), 1.0, chord.size, dtype=np.float32)
    gap = np.zeros(int(0.5 * sr), np.float32)
    tone = harmonic_tone(69, seconds / 2 - 0.5, sr, level_db=-20)
    return np.concatenate([chord, gap, tone])[None].astype(np.float32)


def _blown_up(source: np.ndarray, gain_db: float = 70.0, seed: int = 0) -> np.ndarray:
    """What a strong control vector does to real music: the same envelope far over full scale,
    with a different spectrum (noise) on top."""
    rng = np.random.default_rng(seed)
    loud = source * 10 ** (gain_db / 20) + 0.3 * np.abs(source).max() * 10 ** (gain_db / 20) * \
        rng.standard_normal(source.shape).astype(np.float32) * (np.abs(source) > 1e-4)
    return loud.astype(np.float32)


# ---- the rule itself ---------------------------------------------------------------------------
def test_a_blown_up_steer_comes_back_to_the_source_loudness_under_the_ceiling():
    source = _music()
    steered = _blown_up(source)
    assert np.abs(steered).max() > 1000 and loudness_db(steered, SR) > loudness_db(source, SR) + 60
    out, report = apply_level_rule(steered, source, SR, rule_for("pitch"))
    assert np.abs(out).max() <= CEILING + 1e-6
    assert true_peak_envelope(out).max() <= CEILING * 1.001
    assert abs(loudness_db(out, SR) - loudness_db(source, SR)) < 1.0
    # Local dynamics follow the source: the swell still swells, the gap stays silent.
    q = int(0.4 * SR)
    swell = loudness_db(source[:, SR - q:SR], SR) - loudness_db(source[:, :q], SR)
    assert swell > 6
    assert loudness_db(out[:, SR - q:SR], SR) - loudness_db(out[:, :q], SR) == pytest.approx(swell, abs=1.5)
    gap = out[:, int(2.1 * SR):int(2.4 * SR)]
    assert np.sqrt(np.mean(gap ** 2)) < 1e-3
    d = report.to_dict()
    assert d["rule"] == "matched+limited" and d["gain_db"] < -60
    assert d["peak_before"] > 1000 and d["peak_after"] <= CEILING + 1e-6
    assert 0 <= d["limited_fraction"] <= 1 and d["limited_samples"] == round(d["limited_fraction"] * d["samples"])
    assert abs(d["loudness_shift_db"]) < 1.0
    json.dumps(d)  # side-car ready: no inf/NaN


def test_a_limiter_alone_is_not_the_rule():
    """Without the loudness match (loudness as the target) the same audio is limited to the
    ceiling, ~+6 dB over the source: the match is what keeps steered audio at its source level."""
    source = _music()
    out, report = apply_level_rule(_blown_up(source), source, SR, rule_for("loudness"))
    assert np.abs(out).max() <= CEILING + 1e-6
    assert loudness_db(out, SR) > loudness_db(source, SR) + 4
    assert report.rule == "limited" and report.gain_db == 0.0 and report.limited_fraction > 0.5


def test_raw_keeps_the_level_and_quieter_steers_are_raised_within_bounds():
    source = _music()
    steered = _blown_up(source, 30.0)
    raw, report = apply_level_rule(steered, source, SR, RAW)
    np.testing.assert_array_equal(raw, steered)
    assert report.rule == "raw" and report.peak_after == report.peak_before > 10
    quiet = source * 10 ** (-10 / 20)
    out, report = apply_level_rule(quiet, source, SR, LevelRule())
    assert abs(loudness_db(out, SR) - loudness_db(source, SR)) < 0.5 and report.gain_db == pytest.approx(10, abs=0.5)


def test_limiter_never_passes_a_peak_and_ramps_instead_of_stepping():
    t = np.arange(SR) / SR
    wave = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    wave[:, SR // 2:SR // 2 + 50] *= 6.0  # a burst 9.5 dB over full scale
    out, limited = limit_peaks(wave, SR)
    assert np.abs(out).max() <= CEILING + 1e-6 and 50 <= limited < SR // 10
    gain = np.abs(out[0]) / np.maximum(np.abs(wave[0]), 1e-9)
    ok = np.abs(wave[0]) > 0.1
    assert np.abs(np.diff(gain[ok])).max() < 0.05  # smooth, no step in the gain
    untouched, none = limit_peaks(wave * 0.1, SR)
    assert none == 0 and np.array_equal(untouched, wave * 0.1)


def test_non_finite_decodes_become_silence_unless_raw():
    source = _music(2.0)
    steered = source.copy()
    steered[0, 100:200] = np.nan
    out, report = apply_level_rule(steered, source, SR)
    assert np.isfinite(out).all() and report.non_finite_samples == 100 and report.notes


# ---- save_audio: no file over full scale unless asked -----------------------------------------
@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_save_audio_never_writes_over_full_scale_unless_asked(tmp_path, suffix):
    wave = (np.sin(np.linspace(0, 400, SR)) * 50.0).astype(np.float32)[None]
    wave[0, 10] = np.inf
    save_audio(tmp_path / f"safe{suffix}", wave, SR)
    back, _ = sf.read(tmp_path / f"safe{suffix}", always_2d=True)
    assert np.isfinite(back).all() and np.abs(back).max() <= CEILING + 1e-4
    if suffix == ".wav":  # a float WAV keeps what it is given when asked to
        save_audio(tmp_path / "raw.wav", wave, SR, limit=False)
        raw, _ = sf.read(tmp_path / "raw.wav", always_2d=True)
        assert np.abs(raw[np.isfinite(raw)]).max() > 49


# ---- alpha is refused where it is entered -------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), -1.0, "abc"])
def test_library_refuses_bad_alpha_before_any_work(bad):
    with pytest.raises(AudioSAEError, match="alpha"):
        check_alpha(bad)
    with pytest.raises(AudioSAEError, match="alpha"):  # no backend/SAE needed: refused first
        steer_wave(None, None, None, None, np.zeros((1, 100), np.float32), "pitch", 0, bad)  # type: ignore[arg-type]
    assert check_alpha("20") == 20.0 and check_alpha(0) == 0.0


@pytest.mark.parametrize("text, message", [("nan", "finite"), ("inf", "finite"), ("-1", ">= 0"), ("x", "number")])
def test_cli_refuses_bad_alpha_with_usage_exit_code(tmp_path, capsys, text, message):
    from audiosae.cli import main

    out = tmp_path / "x.wav"
    rc = main(["steer", str(DEMO), str(FLUTE), "--attribute", "pitch", "--target", "A4", f"--alpha={text}",
               "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--alpha" in err and message in err
    assert not out.exists()


def test_studio_alpha_spin_box_cannot_hold_nan_or_negative(qapp):
    from studio.widgets.audition_controls import ALPHA_MAX, AlphaSpinBox

    spin = AlphaSpinBox()
    spin.setRange(0.0, ALPHA_MAX)
    spin.setValue(12.5)
    for bad in (float("nan"), float("inf"), -float("inf")):
        spin.setValue(bad)
        assert spin.value() == 12.5  # a plain QDoubleSpinBox would show 40 (its maximum)
    spin.setValue(-3.0)
    assert spin.value() == 0.0
    from PySide6.QtGui import QValidator
    assert spin.validate("inf", 0)[0] == QValidator.State.Invalid
    assert spin.validate("-1", 0)[0] == QValidator.State.Invalid


# ---- every output path -------------------------------------------------------------------------
def test_cli_steer_writes_matched_limited_audio_and_no_limit_keeps_the_raw_level(tmp_path):
    """The demo workspace (mel backend) steering a flute toward A4 at alpha 10 decodes ~+16 dB
    over the input with peaks ~+11 dBFS: the default output is within 1 dB of the input's
    loudness and under -1 dBFS; --no-limit writes the raw decode."""
    from audiosae.cli import main

    outs = {}
    for flag in ([], ["--no-limit"]):
        out = tmp_path / f"steered{'-raw' if flag else ''}.wav"
        rc = main(["steer", str(DEMO), str(FLUTE), "--attribute", "pitch", "--target", "A4", "--alpha", "10",
                   "--out", str(out), "--quiet", *flag])
        assert rc == 0
        wave, sr = sf.read(out, always_2d=True)
        outs[bool(flag)] = (wave.T.astype(np.float32), json.loads(Path(str(out) + ".json").read_text()))
    source = load_audio(FLUTE, sr, 1)
    src_db = loudness_db(source, sr)
    safe, side = outs[False]
    assert np.abs(safe).max() <= CEILING + 1e-6
    assert abs(loudness_db(safe, sr) - src_db) < 1.0
    level = side["level"]
    assert level["rule"] == "matched+limited" and level["peak_before"] > 1.0 >= level["peak_after"]
    assert level["gain_db"] < -3 and {"limited_samples", "limited_fraction", "peak_before_dbfs",
                                      "peak_after_dbfs", "loudness_shift_db"} <= set(level)
    raw, side_raw = outs[True]
    assert side_raw["level"]["rule"] == "raw"
    assert np.abs(raw).max() > 1.0 and loudness_db(raw, sr) > src_db + 3
    assert np.abs(raw).max() == pytest.approx(side_raw["level"]["peak_after"], rel=1e-5)


def test_boost_is_matched_and_limited():
    from audiosae.codecs import get_backend
    from audiosae.feature_index import decoder_direction, render_boost
    from audiosae.sae import SparseAutoencoder

    sae = SparseAutoencoder.load(next((DEMO / "saes").iterdir()))
    backend = get_backend("mel", device="cpu")
    wave = load_audio(FLUTE, backend.sample_rate, backend.channels)[:, :4 * backend.sample_rate]
    latents = backend.encode(wave).latents
    direction = decoder_direction(sae, 0)
    amount = 40.0 / max(1e-6, float(np.abs(direction).max()))  # +40 in the log-mel at the feature's peak
    raw = render_boost(backend, latents, wave, 100, direction, amount, limit=False)
    assert np.abs(raw.boosted).max() > 1.0 and raw.level["rule"] == "raw"
    safe = render_boost(backend, latents, wave, 100, direction, amount)
    assert np.abs(safe.boosted).max() <= CEILING + 1e-6
    assert abs(loudness_db(safe.boosted, backend.sample_rate) - loudness_db(safe.original, backend.sample_rate)) < 1.0
    assert safe.level["rule"] == "matched+limited" and safe.level["peak_before"] > 1.0


def test_audition_export_is_matched_limited_and_says_so(tmp_path):
    """The audition's export job (the steer workflow, rendered as the live renderer plays)."""
    from types import SimpleNamespace

    from audiosae.attributes import AttributeSpec
    from audiosae.realtime import SteeredRenderer, SteeringParams
    from audiosae.workflows.steer import SteerRequest
    from studio.models.audition import export_job as _export_job
    from tests.core.test_realtime import _loud_toy, toy_clip

    backend, sae, probes = _loud_toy()
    wave = toy_clip(2.0)
    params = SteeringParams("pitch", 7, 30.0, method="paper")   # the toy is built to blow up along the probe row
    spec = AttributeSpec()
    toy_ws = SimpleNamespace(root=tmp_path, backend_name="toy", attribute_spec=spec)
    for limit in (True, False):
        live = SteeredRenderer(backend, sae, probes, wave, params, chunk_seconds=0.25, limit=limit)
        path = str(tmp_path / f"export-{limit}.wav")
        request = SteerRequest(workspace=tmp_path, audio=None, attribute="pitch",
                               target=spec.class_names("pitch")[7], out=Path(path), alpha=30.0, method="paper",
                               limit=limit, device="cpu")
        assert _export_job(request, live, backend.encode(wave).latents, toy_ws) == path
        audio, sr = sf.read(path, always_2d=True)
        side = json.loads(Path(path + ".json").read_text())
        if limit:
            assert np.abs(audio).max() <= CEILING + 1e-6
            assert abs(loudness_db(audio.T, sr) - loudness_db(wave, sr)) < 1.0
            assert side["level"]["rule"] == "matched+limited" and side["level"]["chunks"] == live.n_chunks
            assert side["level"]["peak_before"] > 2.0 and side["level"]["gain_db"] < -10
        else:
            assert np.abs(audio).max() > 2.0 and side["level"]["rule"] == "raw"
        assert (side["schema_version"], side["kind"], side["target_class"]) == (2, "audiosae.steered_audio", 7)
    assert math.isfinite(side["alpha"])


# ---- a second steering method: mass-mean directions ---------------------------------------------
@pytest.fixture(scope="module")
def demo_copy(tmp_path_factory):
    """The demo workspace copied (mass-mean caches its class means in WORKSPACE/steer)."""
    import shutil

    dst = tmp_path_factory.mktemp("demo") / "ws"
    shutil.copytree(DEMO, dst, ignore=shutil.ignore_patterns("steer"))
    return dst


def test_mass_mean_direction_is_the_class_contrast_at_the_paper_length(demo_copy, monkeypatch):
    import torch

    from audiosae.probes import ProbeSet
    from audiosae.sae import SparseAutoencoder
    from audiosae.steering import control_vector, steer_features
    from audiosae.steering import methods
    from audiosae.workspace import Workspace

    ws = Workspace.open(demo_copy)
    name = ws.sae_names()[0]
    sae = SparseAutoencoder.load(ws.sae_dir(name))
    probes = ProbeSet.load(ws.probe_dir(name))
    target = ws.attribute_spec.parse_target("pitch", "A4")
    means = methods.workspace_class_means(ws, name, sae, "pitch")
    assert (demo_copy / "steer" / f"class-means-{name}-pitch.npz").is_file()
    assert means.counts[target] > 0 and means.sums.shape == (len(means.counts), sae.cfg.d_sae)
    # Cached: a second call reads the file instead of streaming the corpus again.
    monkeypatch.setattr(methods, "class_means", lambda *a, **k: pytest.fail("recomputed"))
    again = methods.workspace_class_means(ws, name, sae, "pitch")
    np.testing.assert_array_equal(again.sums, means.sums)

    w = methods.steering_direction("mass-mean", probes, "pitch", target, means=means)
    paper = control_vector(probes, "pitch", target)
    assert float(w.norm()) == pytest.approx(float(paper.norm()), rel=1e-5)  # same alpha scale
    contrast = torch.from_numpy(means.sums[target] / means.counts[target]
                                - (means.sums.sum(0) - means.sums[target]) / (means.counts.sum() - means.counts[target]))
    assert float(torch.nn.functional.cosine_similarity(w, contrast.float(), dim=0)) > 0.9999
    # Steering along it moves frames toward the class mean.
    f = torch.from_numpy(np.stack([means.sums[k] / means.counts[k] for k in np.flatnonzero(means.counts)[:8]])).float()
    toward = contrast.float()[None]
    before = torch.nn.functional.cosine_similarity(f, toward, dim=1)
    after = torch.nn.functional.cosine_similarity(steer_features(sae, f, w, 20.0), toward, dim=1)
    assert bool((after > before).all())
    with pytest.raises(AudioSAEError, match="class means"):
        methods.steering_direction("mass-mean", probes, "pitch", target)
    with pytest.raises(AudioSAEError, match="unknown steering method"):
        steer_wave(None, None, None, None, np.zeros((1, 100), np.float32), "pitch", 0, 1.0,  # type: ignore[arg-type]
                   method="bogus")
    empty = methods.ClassMeans("pitch", means.sums * 0, means.counts * 0)
    with pytest.raises(AudioSAEError, match="no frame"):
        empty.direction(target)


def test_cli_steer_with_mass_mean(demo_copy, tmp_path):
    from audiosae.cli import main

    clip = tmp_path / "clip.wav"
    wave = load_audio(FLUTE, SR, 1)[:, :3 * SR]
    save_audio(clip, wave, SR)
    out = tmp_path / "mm.wav"
    assert main(["steer", str(demo_copy), str(clip), "--attribute", "pitch", "--target", "A4", "--alpha", "20",
                 "--method", "mass-mean", "--out", str(out), "--quiet"]) == 0
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["method"] == "mass-mean" and side["level"]["rule"] == "matched+limited"
    steered, sr = sf.read(out, always_2d=True)
    assert np.abs(steered).max() <= CEILING + 1e-6
    assert side["shift"]["target"]["rate_after"] > side["shift"]["target"]["rate_before"]
    assert main(["steer", str(demo_copy), str(clip), "--attribute", "pitch", "--target", "A4",
                 "--method", "bogus", "--out", str(out)]) == 2


# ---- a selection is levelled alone ------------------------------------------------------------------
def test_a_levelled_selection_leaves_the_unsteered_audio_outside_it_sample_for_sample():
    source = _music()
    n = source.shape[1]
    unsteered = (0.9 * source).astype(np.float32)          # the reconstruction, already through the rule
    steered = unsteered.copy()
    a, b = int(1.0 * SR), int(2.0 * SR)
    steered[:, a - 600:b + 600] = _blown_up(source)[:, a - 600:b + 600]   # the decoder smears past the edges
    rule = LevelRule()
    fade = int(round(rule.crossfade_seconds * SR))
    out, report = apply_level_rule(steered, source, SR, rule, region=(a, b), unsteered=unsteered)
    outside = np.ones(n, bool)
    outside[a - fade:b + fade] = False
    np.testing.assert_array_equal(out[:, outside], unsteered[:, outside])   # no trim, no limiter out there
    assert np.abs(out).max() <= CEILING + 1e-6
    # The selection itself is matched to the source's loudness (within the rule's dB) and limited.
    sel = loudness_db(out[:, a:b], SR) - loudness_db(source[:, a:b], SR)
    assert abs(sel) < 2.0 and report.peak_before > 100
    assert report.levelled == "selection" and report.region == [1.0, 2.0]
    assert report.crossfade_seconds == pytest.approx(fade / SR) and report.to_dict()["region"] == [1.0, 2.0]
    # The cross-fades are a smooth raised cosine from the selection's edge outward.
    w = (out[0, a - fade:a] - unsteered[0, a - fade:a])
    assert np.abs(w[:fade // 4]).max() < np.abs(w[-fade // 4:]).max()
    # Without a region (or with the whole clip) the rule levels the clip as before.
    whole, rep = apply_level_rule(steered, source, SR, rule, region=(0, n), unsteered=unsteered)
    np.testing.assert_array_equal(whole, apply_level_rule(steered, source, SR, rule)[0])
    assert rep.levelled == "clip" and rep.region is None
    with pytest.raises(AudioSAEError, match="unsteered"):
        apply_level_rule(steered, source, SR, rule, region=(a, b))


@pytest.mark.parametrize("keep_residual", [False, True])
def test_steering_a_selection_changes_nothing_outside_it_with_the_default_rule(demo_copy, keep_residual):
    """Measured before the fix on the demo flute at alpha 10: -29 dBFS of change more than 0.1 s
    outside the selection (the whole-clip loudness trim and the limiter), 0 with --no-limit."""
    from audiosae.analysis import LoadedModels
    from audiosae.steering import eval_metrics as EM
    from audiosae.steering.methods import METHODS, prepare_method

    models = LoadedModels.load(demo_copy, None, device="cpu")
    backend = models.backend
    sr = backend.sample_rate
    wave = load_audio(FLUTE, sr, 1)[:, :3 * sr]
    target = models.spec.parse_target("pitch", "A4")
    methods = METHODS if not keep_residual else ("paper", "clamp+match")
    for method in methods:
        ctx = prepare_method(models.workspace, models.sae.cfg.name, models.sae, models.probes, "pitch", method)
        res = steer_wave(backend, models.sae, models.probes, models.spec, wave, "pitch", target, 10.0, start=1.0,
                         end=2.0, keep_residual=keep_residual, measure_shift=False, context=ctx)
        level = res.report["level"]
        fade = level["crossfade_seconds"]
        assert level["levelled"] == "selection" and level["region"] == pytest.approx([1.0, 2.0], abs=1.0 / 75)
        assert 0 < fade <= 0.1
        change = EM.outside_change(res.wave, res.reconstruction, sr, (int(sr * level["region"][0]),
                                                                      int(sr * level["region"][1])), fade + 1.0 / sr)
        assert change["max_abs_delta_beyond_guard"] < 1e-5, (method, change)
        inside = res.wave[:, sr:2 * sr]
        assert np.abs(inside).max() <= CEILING + 1e-6 and np.abs(res.wave).max() <= CEILING + 1e-6
        assert np.abs(inside - res.reconstruction[:, sr:2 * sr]).max() > 1e-2    # it was steered


def test_cli_steer_of_a_selection_says_only_the_selection_was_levelled(demo_copy, tmp_path, capsys):
    from audiosae.cli import main

    clip = tmp_path / "clip.wav"
    wave = load_audio(FLUTE, SR, 1)[:, :3 * SR]
    save_audio(clip, wave, SR)
    out = tmp_path / "sel.wav"
    assert main(["steer", str(demo_copy), str(clip), "--attribute", "pitch", "--target", "A4", "--alpha", "10",
                 "--start", "1", "--end", "2", "--out", str(out)]) == 0
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["level"]["levelled"] == "selection" and side["level"]["crossfade_seconds"] == pytest.approx(0.05)
    assert "selection 1.00-2.00 s only" in capsys.readouterr().out
    steered, _ = sf.read(out, always_2d=True)
    assert np.abs(steered).max() <= CEILING + 1e-6
