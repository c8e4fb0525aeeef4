"""The steering evaluation (audiosae.steering.evaluate) on cases whose answer is known: the
distances, hit rates, shifts and level numbers by hand; alpha 0 (steered = unsteered) gives zero
change everywhere; a selection steered with the raw level leaves the audio beyond the guard
untouched; JSON + PNG files; the CLI end to end and its usage errors."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from audiosae.attributes import AttributeSpec, FrameAttributes
from audiosae.audio import load_audio, save_audio
from audiosae.errors import AudioSAEError, JobCancelled
from audiosae.jobs import CancelToken
from audiosae.steering import eval_metrics as EM
from audiosae.steering.embedding import LogMelMfccEmbedding, frechet_distance, mmd
from audiosae.steering.evaluate import (GOALS, EvaluationRequest, SteeringEvaluation, evaluate_steering,
                                        resolve_methods)
from tests.support.common import REPO_ROOT, harmonic_tone

DEMO = REPO_ROOT / "resources" / "demo"
FLUTE = DEMO / "clips" / "02-flute-melody.flac"
SR = 24000


# ---- distances -----------------------------------------------------------------------------------
def test_frechet_is_zero_for_identical_sets_and_the_squared_shift_for_a_shifted_copy():
    import scipy.linalg

    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6))
    assert frechet_distance(a, a) == 0.0
    previous = 0.0
    for size in (0.1, 0.5, 1.0, 2.0):
        delta = np.full(6, size)
        fd = frechet_distance(a, a + delta)
        assert fd == pytest.approx(float(delta @ delta), rel=1e-6)  # same covariance: |delta|^2 exactly
        assert fd > previous
        previous = fd
    # Against the textbook formula with scipy's sqrtm on a full-rank pair.
    b = rng.standard_normal((300, 6)) * 1.7 + 0.3
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    mu = a.mean(0) - b.mean(0)
    expected = float(mu @ mu + np.trace(sa + sb - 2 * scipy.linalg.sqrtm(sa @ sb).real))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    # Rank-deficient covariances (fewer vectors than dimensions) stay finite and >= 0.
    few = rng.standard_normal((5, 20))
    assert frechet_distance(few, few) == 0.0 and math.isfinite(frechet_distance(few, few + 1.0))


def test_mmd_is_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 8))
    assert mmd(a, a) == 0.0
    values = [mmd(a, a + s) for s in (0.1, 0.3, 1.0, 3.0)]
    assert all(v > 0 for v in values) and values == sorted(values)
    # Two samples of one distribution are much closer than a shifted one.
    assert mmd(a, rng.standard_normal((300, 8))) < 0.2 * mmd(a, a + 1.0)


def test_offline_embedding_separates_a_changed_timbre_from_the_same_sound():
    emb = LogMelMfccEmbedding()
    tone = harmonic_tone(69, 3.0, SR, level_db=-20)[None]
    vectors = emb.embed(tone, SR)
    assert vectors.shape == (vectors.shape[0], emb.dim) and vectors.shape[0] > 100  # ~50 per second
    brighter = harmonic_tone(69, 3.0, SR, level_db=-20, partials=12, tilt=0.3)[None]
    same = frechet_distance(vectors, emb.embed(tone.copy(), SR))
    assert same == 0.0
    assert frechet_distance(vectors, emb.embed(brighter, SR)) > 1.0
    assert frechet_distance(vectors, emb.embed(tone * 10 ** (-6 / 20), SR)) > 0.05  # quieter: 6 dB = 0.3 units


# ---- per-cell numbers ------------------------------------------------------------------------------
def _frames(midi, loudness_db=-20.0, centroid=1000.0):
    midi = np.asarray(midi, dtype=np.float64)
    n = len(midi)
    return FrameAttributes(midi=midi, periodicity=np.where(np.isfinite(midi), 0.9, 0.0),
                           loudness_db=np.full(n, loudness_db) if np.isscalar(loudness_db) else loudness_db,
                           centroid_hz=np.full(n, centroid) if np.isscalar(centroid) else centroid)


def test_hit_rate_and_distance_by_hand():
    spec = AttributeSpec()
    a4 = spec.parse_target("pitch", "A4")
    # 4 frames at A4 (69.2 rounds to 69), 2 at B4 (71), 1 at A5 (81: right pitch class, wrong octave), 3 unvoiced.
    fa = _frames([69.2, 68.8, 69.0, 69.4, 71.0, 71.1, 81.0, np.nan, np.nan, np.nan])
    hit = EM.target_hit(spec, fa, "pitch", a4, np.ones(10, bool))
    assert hit["hit_rate"] == pytest.approx(4 / 7)
    assert hit["hit_rate_all_frames"] == pytest.approx(4 / 10)
    assert hit["eligible_fraction"] == pytest.approx(7 / 10)
    assert hit["distance"] == pytest.approx((0 * 4 + 2 * 2 + 12) / 7)
    mask = np.array([1, 1, 0, 0, 1, 0, 0, 1, 0, 0], bool)  # 2 hits, 1 miss (B4), 1 unvoiced
    assert EM.target_hit(spec, fa, "pitch", a4, mask)["hit_rate"] == pytest.approx(2 / 3)
    # Loudness: every frame counts; the class of -20 dB in 3 dB bins over -60..0.
    k = spec.parse_target("loudness", "-20 dB")
    loud = _frames([np.nan] * 4, loudness_db=np.array([-20.0, -19.0, -35.0, -50.0]))
    assert EM.target_hit(spec, loud, "loudness", k, np.ones(4, bool))["hit_rate"] == pytest.approx(2 / 4)


def test_shifts_by_hand_gate_quiet_frames_out():
    spec = AttributeSpec()
    ref = _frames([60.0, 60.0, 62.0, np.nan], loudness_db=np.array([-20.0, -30.0, -40.0, -70.0]),
                  centroid=np.array([1000.0, 2000.0, 500.0, 300.0]))
    new = _frames([61.0, 60.0, np.nan, np.nan], loudness_db=np.array([-23.0, -30.0, -30.0, -10.0]),
                  centroid=np.array([1100.0, 1000.0, 500.0, 9000.0]))
    s = EM.attribute_shifts(spec, ref, new, np.ones(4, bool))
    assert s["loudness"]["frames"] == 3  # the -70 dB frame is under the -50 dB gate
    assert s["loudness"]["mean_abs_db"] == pytest.approx((3 + 0 + 10) / 3)
    assert s["loudness"]["mean_db"] == pytest.approx((-3 + 0 + 10) / 3)
    assert s["timbre"]["median_abs_pct"] == pytest.approx(10.0)  # |+10 %|, |-50 %|, 0 %
    assert s["pitch"]["voiced_in_both"] == 2 and s["pitch"]["mean_abs_semitones"] == pytest.approx(0.5)
    assert s["pitch"]["voicing_change_rate"] == pytest.approx(1 / 4)
    assert s["pitch"]["class_change_rate"] == pytest.approx(2 / 4)


def test_a_copy_at_minus_6_db_measures_a_6_db_loudness_shift_and_nothing_else():
    """Measured with the label extractors (CREPE tiny, windowed level, centroid), as a cell is."""
    from audiosae.codecs import get_backend
    from audiosae.steering.control import measure

    backend = get_backend("mel", device="cpu")
    spec = AttributeSpec()
    wave = np.concatenate([harmonic_tone(57, 1.0, SR, level_db=-14), harmonic_tone(64, 1.0, SR, level_db=-26),
                           np.zeros(SR // 2, np.float32)])[None]
    quieter = (wave * np.float32(10 ** (-6 / 20))).astype(np.float32)
    times = backend.frame_centers(int(wave.shape[1] // backend.hop_length))
    ref, new = measure(spec, wave, backend, times), measure(spec, quieter, backend, times)
    s = EM.attribute_shifts(spec, ref, new, np.ones(len(times), bool))
    assert s["loudness"]["mean_abs_db"] == pytest.approx(6.0, abs=0.01)
    assert s["loudness"]["mean_db"] == pytest.approx(-6.0, abs=0.01)
    assert s["loudness"]["frames"] < len(times) - 30  # the silent half second is gated out
    assert s["timbre"]["median_abs_pct"] < 0.01
    assert s["pitch"]["mean_abs_semitones"] < 0.05 and s["pitch"]["voiced_in_both"] > 100


def test_level_metrics_count_samples_at_or_over_full_scale():
    wave = np.zeros((2, 1000), np.float32)
    wave[0, :3] = [1.0, -1.5, 0.999]
    wave[1, 10] = 2.0
    m = EM.level_metrics(wave, {"rule": "raw", "peak_before_dbfs": 6.02})
    assert m["clipped_fraction"] == pytest.approx(3 / 2000)
    assert m["peak_dbfs"] == pytest.approx(20 * math.log10(2.0))
    assert m["rule"] == "raw" and m["raw_peak_dbfs"] == 6.02


def test_outside_change_is_measured_outside_the_span_only():
    ref = np.random.default_rng(0).standard_normal((1, 24000)).astype(np.float32) * 0.1
    steered = ref.copy()
    steered[:, 10000:14000] += 0.5          # inside the span
    steered[:, 9000] += 0.01                # 1000 samples before it: inside a 0.1 s guard
    out = EM.outside_change(steered, ref, SR, (10000, 14000), guard_seconds=0.1)
    assert out["max_abs_delta"] == pytest.approx(0.01, rel=1e-4)
    assert out["max_abs_delta_beyond_guard"] == 0.0
    assert out["samples"] == 24000 - 4000


def test_best_method_follows_the_documented_rule():
    def cell(method, alpha, hit, loud, cent, fd=1.0):
        return {"clip": "c", "attribute": "pitch", "target": "A4", "method": method, "alpha": alpha,
                "summary": {"hit_rate": hit, "loudness_shift_db": loud, "centroid_change_pct": cent,
                            "pitch_shift_semitones": math.nan, "clipped_fraction": 0.0, "frechet": fd}}

    cells = [cell("paper", 1.0, 0.1, 0.5, 2.0), cell("paper", 10.0, 0.6, 9.0, 40.0),
             cell("quiet", 1.0, 0.2, 0.1, 1.0), cell("quiet", 10.0, 0.4, 1.0, 5.0),     # never reaches 0.5
             cell("clean", 1.0, 0.1, 0.1, 1.0), cell("clean", 10.0, 0.7, 1.5, 7.5)]
    ev = SteeringEvaluation(meta={"methods": ["paper", "quiet", "clean"], "alphas": [1.0, 10.0], "clips": [{}],
                                  "targets": [{"attribute": "pitch", "target": "A4", "class": 47}]}, cells=cells)
    best = ev.best_method()
    assert best["method"] == "clean" and best["alpha"] == 10.0
    top = best["ranking"][0]
    assert top["cost"] == pytest.approx(1.5 / GOALS["loudness_db"] + 7.5 / GOALS["centroid_pct"])
    assert top["meets_goals"] and not best["ranking"][1]["meets_goals"]
    assert [r["method"] for r in best["ranking"]] == ["clean", "paper", "quiet"]
    assert ev.matrix("hit_rate").get("paper", 10.0) == 0.6
    assert resolve_methods(["mass-mean"])[0] == "paper"  # the paper's row is in every matrix


# ---- on the demo workspace (mel backend) -----------------------------------------------------------
@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory):
    """The demo workspace copied (corpus methods cache their class means in WORKSPACE/steer)."""
    dst = tmp_path_factory.mktemp("demo") / "ws"
    shutil.copytree(DEMO, dst, ignore=shutil.ignore_patterns("steer"))
    return dst


@pytest.fixture(scope="module")
def paper_only_ws(tmp_path_factory):
    """The demo copied with its attribute spec cut to the paper's three, as a workspace built
    before the registry (or with ``--attributes none``) has it."""
    dst = tmp_path_factory.mktemp("paper-only") / "ws"
    shutil.copytree(DEMO, dst, ignore=shutil.ignore_patterns("steer"))
    data = json.loads((dst / "workspace.json").read_text())
    data["attribute_spec"].pop("extra_attributes", None)
    (dst / "workspace.json").write_text(json.dumps(data, indent=2))
    return dst


@pytest.fixture(scope="module")
def flute():
    return load_audio(FLUTE, SR, 1)[:, :3 * SR]


@pytest.fixture(scope="module")
def evaluation(demo_ws, flute):
    events = []
    ev = evaluate_steering(EvaluationRequest(demo_ws, [("flute", flute)], alphas=[0, 10], methods=["mass-mean"],
                                             device="cpu"), progress=events.append)
    return ev, events


def test_alpha_zero_changes_nothing_and_alpha_ten_hits_the_target(evaluation):
    ev, events = evaluation
    assert ev.methods == ["paper", "mass-mean"] and len(ev.cells) == 4
    assert events[-1].done == events[-1].total == 4
    for cell in ev.select(alpha=0.0):
        s = cell["summary"]
        assert s["frechet"] == 0.0 and s["mmd"] == 0.0
        assert s["loudness_shift_db"] == 0.0 and s["centroid_change_pct"] == 0.0
        assert s["hit_rate"] == cell["target_metrics"]["hit_rate_reconstruction"]
        assert math.isnan(s["pitch_shift_semitones"])  # pitch is the target: not a non-target shift
    for method in ev.methods:
        steered = ev.select(method=method, alpha=10.0)[0]
        assert steered["summary"]["hit_rate"] >= 0.5 > steered["target_metrics"]["hit_rate_reconstruction"]
        assert steered["summary"]["frechet"] > 1.0 and steered["summary"]["mmd"] > 0.01
        assert steered["vs_original"]["frechet"] > 0 and steered["outside"] is None
        assert steered["level"]["peak_dbfs"] <= -1.0 + 1e-3 and steered["summary"]["clipped_fraction"] == 0.0
    assert ev.best_method()["method"] in ev.methods


def test_a_cell_is_reproduced_by_its_steer_kwargs(evaluation, demo_ws, flute):
    """What the studio does to audition a cell: the same steer_wave call, the same audio."""
    from audiosae.analysis import LoadedModels
    from audiosae.steering import steer_wave
    from audiosae.steering.methods import prepare_method

    ev, _ = evaluation
    cell = ev.select(method="mass-mean", alpha=10.0)[0]
    kwargs = ev.steer_kwargs(cell)
    models = LoadedModels.load(demo_ws, ev.meta["sae"], device="cpu")
    ctx = prepare_method(models.workspace, ev.meta["sae"], models.sae, models.probes, kwargs["attribute"],
                         kwargs["method"])
    args = {k: v for k, v in kwargs.items() if k not in ("attribute", "target", "alpha", "method")}
    res = steer_wave(models.backend, models.sae, models.probes, models.spec, flute, kwargs["attribute"],
                     kwargs["target"], kwargs["alpha"], context=ctx, measure_shift=False, **args)
    assert EM.level_metrics(res.wave, res.report["level"])["peak_dbfs"] == pytest.approx(cell["level"]["peak_dbfs"])


def test_json_and_png_are_written_and_read_back(evaluation, tmp_path):
    import matplotlib.image

    ev, _ = evaluation
    files = ev.save(tmp_path / "out")
    data = json.loads((tmp_path / "out" / "steer-eval.json").read_text())
    assert data["schema_version"] == 1 and data["kind"] == "audiosae.steering_evaluation"
    assert len(data["cells"]) == 4 and data["best"][0]["rule"] and data["embedding"]["name"]
    again = SteeringEvaluation.load(tmp_path / "out")
    np.testing.assert_allclose(again.matrix("hit_rate").values, ev.matrix("hit_rate").values)
    np.testing.assert_allclose(again.matrix("frechet").values, ev.matrix("frechet").values)
    image = matplotlib.image.imread(files["png"][0])
    assert files["png"][0].endswith("steer-eval-pitch-A4.png") and image.shape[0] > 150 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05  # not a blank canvas
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_a_selection_steered_at_the_raw_level_leaves_the_outside_untouched(demo_ws, flute):
    ev = evaluate_steering(EvaluationRequest(demo_ws, [("flute", flute)], alphas=[10], methods=["paper"],
                                             start=1.0, end=2.0, limit=False, device="cpu"))
    cell = ev.cells[0]
    out = cell["outside"]
    assert out["samples"]["samples"] == 2 * SR
    assert out["samples"]["max_abs_delta"] > 1e-3          # the decoder smears the change over the edges...
    assert out["samples"]["max_abs_delta_beyond_guard"] < 1e-5  # ...but not beyond 0.1 s of them
    assert cell["target_metrics"]["frames"] == 75           # 1 s of 75 Hz frames inside
    assert cell["summary"]["hit_rate"] > cell["target_metrics"]["hit_rate_reconstruction"]
    assert cell["summary"]["outside_max_abs_delta_beyond_guard"] < 1e-5


def test_a_selection_steered_with_the_default_level_rule_leaves_the_outside_untouched(demo_ws, flute):
    """The level rule acts only on the selection (+ 0.05 s cross-fades): outside it the output is
    the reconstruction (before: -29 dBFS of change beyond the 0.1 s guard at alpha 10)."""
    ev = evaluate_steering(EvaluationRequest(demo_ws, [("flute", flute)], alphas=[10], methods=["paper"],
                                             start=1.0, end=2.0, device="cpu"))
    cell = ev.cells[0]
    assert cell["summary"]["outside_max_abs_delta_beyond_guard"] < 1e-5
    assert cell["level"]["peak_dbfs"] <= -1.0 + 1e-3 and cell["summary"]["clipped_fraction"] == 0.0
    assert cell["summary"]["hit_rate"] > cell["target_metrics"]["hit_rate_reconstruction"]


def test_cancel_stops_between_cells(demo_ws, flute):
    token = CancelToken()
    seen = []

    def progress(event):
        seen.append(event)
        if len(seen) == 2:
            token.cancel()

    with pytest.raises(JobCancelled):
        evaluate_steering(EvaluationRequest(demo_ws, [("flute", flute[:, :SR])], alphas=[0, 1, 10],
                                            methods=["paper"], device="cpu"), progress=progress, cancel=token)
    assert len(seen) == 2


# ---- the CLI -----------------------------------------------------------------------------------------
def test_cli_steer_eval_end_to_end(demo_ws, flute, tmp_path, capsys):
    from audiosae.cli import main

    clip = tmp_path / "clip.wav"
    save_audio(clip, flute[:, :2 * SR], SR)
    out = tmp_path / "eval"
    rc = main(["steer-eval", str(demo_ws), "--audio", str(clip), "--method", "mass-mean", "--alpha", "0,10",
               "--attribute", "pitch", "--target", "A4", "--out", str(out), "--quiet", "--device", "cpu"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "target hit rate" in text and "paper" in text and "mass-mean" in text and "best:" in text
    assert (out / "steer-eval.json").is_file() and (out / "steer-eval-pitch-A4.png").is_file()
    rc = main(["steer-eval", str(demo_ws), "--audio", str(clip), "--method", "paper", "--alpha", "0",
               "--out", str(out), "--quiet", "--json", "--device", "cpu"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["methods"] == ["paper"] and data["matrices"]["pitch A4"]["frechet"] == [[0.0]]


@pytest.mark.parametrize("extra", [["--alpha", "nan"], ["--alpha", "1,-2"], ["--method", "bogus"],
                                   ["--attribute", "loudness"], ["--start", "2", "--end", "1"],
                                   ["--attribute", "color", "--target", "red"]])
def test_cli_steer_eval_usage_errors_exit_2(extra, tmp_path, capsys):
    from audiosae.cli import main

    assert main(["steer-eval", str(tmp_path), "--audio", str(tmp_path / "x.wav"), *extra]) == 2
    assert main(["steer-eval", str(tmp_path)]) == 2  # --audio is required


def test_registered_attributes_are_evaluated_only_where_labelled_and_measurable_from_sound(demo_ws, paper_only_ws,
                                                                                           flute, monkeypatch):
    """steer-eval takes any attribute the workspace labels (no fixed three); one it does not label,
    and one labelled from ground truth (instrument: MIDI programs or side-cars, no extractor for
    decoded audio) are refused before any cell runs, naming why."""
    from audiosae.attribute_registry import measurable_from_audio

    assert measurable_from_audio("pitch") and measurable_from_audio("chroma") and measurable_from_audio("chord")
    assert not measurable_from_audio("instrument")
    with pytest.raises(AudioSAEError, match="does not label 'chord'.*pitch, loudness, timbre"):
        evaluate_steering(EvaluationRequest(paper_only_ws, [("flute", flute[:, :SR])], targets=[("chord", "C")],
                                            alphas=[1], methods=["paper"], device="cpu"))
    from audiosae.workspace import Workspace

    ws = Workspace.open(demo_ws)
    spec = ws.attribute_spec.with_attributes(["instrument"])
    from audiosae.steering import evaluate as E

    real = E._load_models

    def with_instrument(request):
        models = real(request)
        models.spec = spec
        return models

    monkeypatch.setattr(E, "_load_models", with_instrument)
    with pytest.raises(AudioSAEError, match="'instrument' comes from ground truth"):
        evaluate_steering(EvaluationRequest(demo_ws, [("flute", flute[:, :SR])], targets=[("instrument", "brass")],
                                            alphas=[1], methods=["paper"], device="cpu"))


def test_cli_steer_eval_accepts_a_registered_attribute_name(demo_ws, paper_only_ws, flute, tmp_path, capsys):
    from audiosae.cli import main

    clip = tmp_path / "flute.wav"
    import soundfile as sf

    sf.write(clip, flute[0, :SR], SR)
    args = ["--audio", str(clip), "--attribute", "chroma", "--target", "A", "--alpha", "1", "--method", "paper",
            "--device", "cpu"]
    rc = main(["steer-eval", str(paper_only_ws), *args])
    assert rc != 0
    assert "does not label 'chroma'" in capsys.readouterr().err
    rc = main(["steer-eval", str(demo_ws), *args])                      # the demo labels and probes chroma
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((demo_ws / "steer" / "eval" / "steer-eval.json").read_text())
    assert "chroma" in json.dumps(doc)
