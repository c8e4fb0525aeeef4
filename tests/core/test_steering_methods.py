"""Steering methods (audiosae.steering.methods / isolation) on tiny SAEs and probes built here.

Every method: the step at alpha is alpha * ALPHA_UNIT * typical ||f|| long; ``orthogonal`` holds
the other probes' logits to first order; ``solve`` reaches the target class with the shortest
step within its budget while holding the other probes; ``clamp`` keeps the code in its training range; ``top-features``
touches only the features that carry the class; SAEs without RMSNorm get a finite step scaled to
their training frames' ||f||; ``+match`` matches the loudness per frame; an unknown method is
refused by the library and the CLI.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audiosae import defaults as D
from audiosae.attributes import AttributeSpec
from audiosae.errors import AudioSAEError
from audiosae.frames import ArrayFrames
from audiosae.probes import ProbeSet
from audiosae.sae import SAEConfig, SparseAutoencoder
from audiosae.steering import ALPHA_UNIT, METHODS, steer_wave
from audiosae.steering import isolation, methods
from audiosae.steering.methods import BASE_METHODS, class_means, prepare_method

D_IN, F = 16, 192
K = {"pitch": 6, "loudness": 5, "timbre": 4}
N_TRAIN = 1500


def _sae(*, rmsnorm: bool = True, architecture: str = "relu", k: int | None = None, gain: float = 1.0,
         seed: int = 0, d_in: int = D_IN) -> SparseAutoencoder:
    lam = 0.0 if architecture in ("topk", "batchtopk") else 1e-3
    sae = SparseAutoencoder(SAEConfig(d_in, F, lam, architecture=architecture, rmsnorm=rmsnorm, k=k))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, F, generator=gen) * gain / math.sqrt(d_in))
        sae.W_dec.copy_(torch.randn(F, d_in, generator=gen) / math.sqrt(F))
        sae.b_enc.fill_(0.05 * gain)
    return sae.eval()


def _latents(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, D_IN, generator=torch.Generator().manual_seed(seed)) * 2.0


def _probes(seed: int = 1) -> ProbeSet:
    gen = torch.Generator().manual_seed(seed)
    weights = {a: torch.randn(k, F, generator=gen) / math.sqrt(F) * 4 for a, k in K.items()}
    return ProbeSet(weights=weights, bias={a: torch.zeros(k) for a, k in K.items()}, class_names={},
                    feature_kind="sae")


def _setup(sae: SparseAutoencoder, probes: ProbeSet, attribute: str = "pitch"):
    """Class means over a corpus labelled by the probes themselves (the classes are where the probe says)."""
    x = _latents(N_TRAIN, 7)
    with torch.no_grad():
        f = sae.encode(x)[1]
        labels = {a: probes.predict(f, a).long() for a in K}
    store = ArrayFrames({"train": {"latents": x, **labels}, "val": {"latents": x[:10], **{a: v[:10] for a, v in
                                                                                          labels.items()}}})
    return class_means(store, sae, attribute, K[attribute]), f


@pytest.fixture(scope="module")
def toy():
    sae, probes = _sae(), _probes()
    means, f_train = _setup(sae, probes)
    with torch.no_grad():
        f = sae.encode(_latents(64, 3))[1]
    # A target most frames are not at, and that the corpus has frames of.
    pred = probes.predict(f, "pitch")
    target = int(min((k for k in range(K["pitch"]) if means.counts[k] > 20), key=lambda k: int((pred == k).sum())))
    return sae, probes, means, f, target


def _ctx(toy, method: str):
    sae, probes, means, _, _ = toy
    return prepare_method(None, "toy", sae, probes, "pitch", method, means=means)


# ---- alpha keeps one meaning --------------------------------------------------------------------
@pytest.mark.parametrize("method", BASE_METHODS)
def test_every_method_steps_alpha_unit_per_alpha(toy, method):
    sae, probes, means, f, target = toy
    ctx = _ctx(toy, method)
    unit = ALPHA_UNIT * math.sqrt(F)
    assert float(ctx.direction(target).norm()) == pytest.approx(unit, rel=1e-5)
    alpha = 7.0
    if method == "orthogonal":   # per-frame directions, each one unit long
        d = isolation.project_out(ctx.raw_direction(target), ctx._basis(), f, ctx.unit())
        np.testing.assert_allclose(d.norm(dim=1).numpy(), unit, rtol=1e-5)
    elif method == "solve":      # alpha * unit is a budget: no frame steps further
        budget = 1.0 * unit
        d = isolation.project_out(ctx.raw_direction(target), ctx._basis(), f, 1.0)
        margin = lambda x: isolation.class_margin(probes.logits(x, "pitch"), target)  # noqa: E731
        _, step = isolation.line_search(f, d, margin, budget, sae.normalize)
        assert float(step.max()) <= budget * (1 + 1e-6)
        assert int((step == budget).sum()) > 0 and float(step.min()) < 0.5 * budget   # some need it all
    else:                        # the step before RMSNorm is alpha * unit
        w = ctx.direction(target)
        expected = sae.normalize(f + alpha * w)
        if method == "clamp":
            expected = expected.clamp_min(0).minimum(torch.from_numpy(means.fmax))
        torch.testing.assert_close(ctx.steer_features(f, target, alpha), expected)
    # Alpha 0 is the unsteered path for every method.
    torch.testing.assert_close(ctx.steer_features(f, target, 0.0), sae.normalize(f))


def test_paper_is_todays_control_vector_and_mass_mean_the_class_contrast(toy):
    from audiosae.steering import control_vector, steer_features

    sae, probes, means, f, target = toy
    paper = _ctx(toy, "paper")
    assert torch.equal(paper.direction(target), control_vector(probes, "pitch", target))
    assert torch.equal(paper.steer_features(f, target, 10.0), steer_features(sae, f, control_vector(probes, "pitch",
                                                                                                    target), 10.0))
    mm = _ctx(toy, "mass-mean").direction(target)
    contrast = torch.from_numpy(means.direction(target))
    assert float(torch.nn.functional.cosine_similarity(mm, contrast, dim=0)) > 0.9999


# ---- orthogonal ----------------------------------------------------------------------------------
def _jvp(fn, f, d):
    return torch.autograd.functional.jvp(lambda a: fn(f + a * d), (torch.zeros((), dtype=f.dtype),),
                                         (torch.ones((), dtype=f.dtype),))[1]


def test_orthogonal_holds_the_other_probes_to_first_order_and_moves_the_target(toy):
    sae, probes, means, f, target = toy
    f64 = sae.normalize(f).double()
    ctx = _ctx(toy, "orthogonal")
    d_orth = isolation.project_out(ctx.raw_direction(target).double(), ctx._basis(), f64, ctx.unit())
    d_paper = _ctx(toy, "mass-mean").direction(target).double()[None].expand_as(f64)
    w = {a: probes.weights[a].double() for a in K}

    def logits(a):
        return lambda x: sae.normalize(x) @ w[a].T   # derivative of the logits through RMSNorm, per frame

    for a in ("loudness", "timbre"):
        moved_orth = _jvp(logits(a), f64, d_orth).abs().max()
        moved_mm = _jvp(logits(a), f64, d_paper).abs().max()
        assert float(moved_mm) > 0.1                 # the plain direction moves them...
        assert float(moved_orth) < 1e-5 * float(moved_mm) + 1e-9   # ...the orthogonal one does not
    dz = _jvp(logits("pitch"), f64, d_orth)
    margin = dz[:, target] - dz.mean(dim=1)
    assert float(margin.mean()) > 0.1 and float((margin > 0).float().mean()) > 0.9
    # With zero biases the other probes' predictions do not change at any alpha (RMSNorm only rescales).
    steered = ctx.steer_features(f, target, 20.0)
    for a in ("loudness", "timbre"):
        assert torch.equal(probes.predict(steered, a), probes.predict(sae.normalize(f), a))
    assert float((probes.predict(steered, "pitch") == target).float().mean()) > \
        float((probes.predict(f, "pitch") == target).float().mean())


# ---- solve ---------------------------------------------------------------------------------------
def _lossless_toy():
    """An SAE whose decoder loses nothing (d_in = F, identity weights): the decoded frame read
    back through the SAE is RMSNorm(relu(f')), so solve's criterion is reachable."""
    sae = SparseAutoencoder(SAEConfig(F, F, 1e-3))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(F))
        sae.W_dec.copy_(torch.eye(F))
    probes = _probes()
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(N_TRAIN, F, generator=gen) * torch.rand(1, F, generator=gen) * 3
    with torch.no_grad():
        labels = {a: probes.predict(sae.encode(x)[1], a).long() for a in K}
    store = ArrayFrames({"train": {"latents": x, **labels}, "val": {"latents": x[:5], **{a: v[:5] for a, v in
                                                                                         labels.items()}}})
    means = class_means(store, sae, "pitch", K["pitch"])
    with torch.no_grad():
        f = sae.encode(torch.rand(64, F, generator=gen) * torch.rand(1, F, generator=gen) * 3)[1]
    pred = probes.predict(f, "pitch")
    target = int(min((k for k in range(K["pitch"]) if means.counts[k] > 20), key=lambda k: int((pred == k).sum())))
    return sae, probes, means, f, target


def test_solve_reaches_the_target_class_within_budget_and_holds_the_other_probes():
    sae, probes, means, f, target = _lossless_toy()
    ctx = prepare_method(None, "toy", sae, probes, "pitch", "solve", means=means)
    before = sae.normalize(f)

    def readback(x):   # what the decoded frame says, read back through the SAE: solve's criterion
        with torch.no_grad():
            return sae.encode(sae.decode(x))[1]

    margin = lambda x: isolation.class_margin(probes.logits(readback(x), "pitch"), target)  # noqa: E731
    with torch.no_grad():
        steered = ctx.steer_features(f, target, 30.0)
    assert float((probes.predict(readback(before), "pitch") == target).float().mean()) < 0.5
    assert bool((probes.predict(readback(steered), "pitch") == target).all())
    assert float(margin(steered).min()) >= isolation.SOLVE_MARGIN - 1e-4
    for a in ("loudness", "timbre"):   # along the orthogonal direction: zero biases -> same predictions
        assert torch.equal(probes.predict(steered, a), probes.predict(before, a))
    # The shortest step: a hundredth shorter misses the margin; frames at the target are not touched.
    d = isolation.project_out(ctx.raw_direction(target), ctx._basis(), f, 1.0)
    _, step = isolation.line_search(f, d, margin, 30.0 * ctx.unit(), sae.normalize)
    moved = step > 0
    assert bool(moved.any()) and float(step.max()) < 30.0 * ctx.unit()
    short = sae.normalize(f + 0.99 * step[:, None] * d)
    assert bool((margin(short)[moved] < isolation.SOLVE_MARGIN).all())
    with torch.no_grad():
        again = ctx.steer_features(steered, target, 30.0)
    torch.testing.assert_close(again, sae.normalize(steered))
    # Steps shorter than alpha * unit: the paper's method moves every frame the full length.
    assert float(step.mean()) < 0.5 * 30.0 * ctx.unit()
    # A small budget is a cap: not every frame gets there, and those that do not use all of it.
    _, small = isolation.line_search(f, d, margin, 0.3 * ctx.unit(), sae.normalize)
    assert float((small == 0.3 * ctx.unit()).float().mean()) > 0.2
    # Without class means it steps along the probe row, projected the same way.
    bare = prepare_method(None, "toy", sae, probes, "pitch", "solve")
    with torch.no_grad():
        out = bare.steer_features(f, target, 30.0)
    assert float((probes.predict(readback(out), "pitch") == target).float().mean()) > 0.9


# ---- clamp / top-features -------------------------------------------------------------------------
def test_clamp_keeps_features_inside_the_training_range(toy):
    sae, probes, means, f, target = toy
    upper = torch.from_numpy(means.fmax)
    assert float(upper.min()) >= 0 and means.n_frames == N_TRAIN
    plain = _ctx(toy, "mass-mean").steer_features(f, target, 30.0)
    assert float(plain.min()) < -0.1                     # steered codes go negative: no ReLU code does
    clamped = _ctx(toy, "clamp").steer_features(f, target, 30.0)
    assert float(clamped.min()) >= 0.0 and bool((clamped <= upper + 1e-6).all())
    # A tighter training range (half the max) binds too.
    tight = methods.ClassMeans("pitch", means.sums, means.counts, means.fmax * 0.5, means.norm_sum, means.n_frames)
    assert float((plain - upper * 0.5).max()) > 0.1
    ctx = prepare_method(None, "toy", sae, probes, "pitch", "clamp", means=tight)
    before = sae.normalize(f)
    bound = torch.maximum(upper[None] * 0.5, before)
    tight_steered = ctx.steer_features(f, target, 30.0)
    assert bool((tight_steered <= bound + 1e-6).all())
    # It bites on what the step pushed out of a range the feature was in...
    pushed = (plain > upper * 0.5 + 1e-3) & (before <= upper * 0.5)
    assert bool(pushed.any())
    torch.testing.assert_close(tight_steered[pushed], (upper[None] * 0.5).expand_as(plain)[pushed])
    # ...and never pulls in a feature that was already out of it (it stays where the step put it or where it was).
    over = before > upper * 0.5 + 1e-3
    assert bool(over.any())
    assert bool((tight_steered[over] >= torch.minimum(plain[over], before[over]) - 1e-6).all())
    assert float((probes.predict(clamped, "pitch") == target).float().mean()) > \
        float((probes.predict(f, "pitch") == target).float().mean())


def test_top_features_touch_only_the_features_that_carry_the_class(toy):
    sae, probes, means, f, target = toy
    ctx = _ctx(toy, "top-features")
    d = ctx.direction(target)
    evidence = probes.weights["pitch"][target].double() * torch.from_numpy(means.class_mean(target))
    kept = d != 0
    assert 0 < int(kept.sum()) < F // 2
    assert bool((d[kept] > 0).all()) and bool((evidence[kept] > 0).all())
    # the kept features are the strongest evidence: none left out outweighs the weakest kept
    assert float(evidence[~kept].max()) <= float(evidence[kept].min()) or \
        float(evidence[kept].sum()) >= 0.5 * float(evidence.clamp_min(0).sum())
    steered = ctx.steer_features(f, target, 10.0)
    unchanged = sae.normalize(f)
    # Off the kept features only RMSNorm's common rescaling acts: ratios are one number per frame.
    ratio = steered[:, ~kept] / unchanged[:, ~kept].where(unchanged[:, ~kept].abs() > 1e-6, torch.ones(1))
    on = unchanged[:, ~kept].abs() > 1e-6
    per_frame = torch.where(on, ratio, torch.nan)
    spread = torch.nan_to_num(per_frame - per_frame.nanmean(dim=1, keepdim=True), nan=0.0)
    assert float(spread.abs().max()) < 1e-4


# ---- SAEs without RMSNorm and TopK-family SAEs -------------------------------------------------------
def test_no_rmsnorm_sae_steps_a_tenth_of_its_typical_feature_norm_per_alpha():
    sae, probes = _sae(rmsnorm=False, gain=6.0), _probes()
    means, f_train = _setup(sae, probes)
    typical = float(f_train.double().norm(dim=1).mean())
    assert means.mean_norm == pytest.approx(typical, rel=1e-6)
    assert abs(typical - math.sqrt(F)) > 0.3 * math.sqrt(F)   # not the RMSNorm scale
    with torch.no_grad():
        f = sae.encode(_latents(40, 3))[1]
    for method in ("paper", "mass-mean", "top-features"):
        ctx = prepare_method(None, "toy", sae, probes, "pitch", method, means=means)
        steered = ctx.steer_features(f, 1, 10.0)
        step = (steered - f).norm(dim=1)     # no renormalisation: the step is exactly alpha * unit
        assert bool(torch.isfinite(steered).all())
        np.testing.assert_allclose(step.numpy(), 10.0 * ALPHA_UNIT * typical, rtol=1e-4)
        assert "training frames" in ctx.describe()["alpha_unit"]
    # Without training statistics: the steered frames' own mean ||f||.
    bare = prepare_method(None, "toy", sae, probes, "pitch", "paper")
    mask = torch.arange(40) < 10
    steered = bare.steer_features(f, 1, 10.0, mask)
    expected = 10.0 * ALPHA_UNIT * float(f[mask].double().norm(dim=1).mean())
    np.testing.assert_allclose((steered - f)[mask].norm(dim=1).numpy(), expected, rtol=1e-4)
    assert torch.equal(steered[~mask], f[~mask])
    with pytest.raises(AudioSAEError, match="RMSNorm"):
        bare.unit(None)


@pytest.mark.parametrize("architecture, k", [("topk", 12), ("jumprelu", None)])
def test_topk_and_jumprelu_codes_are_steered_after_the_activation(architecture, k):
    """The activation is not re-applied: the steered code is f + alpha * w (then RMSNorm), dense
    along w; ``clamp`` brings it back inside [0, training max]."""
    sae, probes = _sae(architecture=architecture, k=k), _probes()
    if architecture == "jumprelu":
        with torch.no_grad():
            sae.threshold.fill_(0.2)
    means, _ = _setup(sae, probes)
    with torch.no_grad():
        f = sae.encode(_latents(20, 3))[1]
    if architecture == "topk":
        assert int((f[0] != 0).sum()) <= k
    ctx = prepare_method(None, "toy", sae, probes, "pitch", "paper", means=means)
    w = ctx.direction(1)
    torch.testing.assert_close(ctx.steer_features(f, 1, 5.0), sae.normalize(f + 5.0 * w))
    clamp = prepare_method(None, "toy", sae, probes, "pitch", "clamp", means=means).steer_features(f, 1, 30.0)
    assert float(clamp.min()) >= 0 and bool((clamp <= torch.from_numpy(means.fmax) + 1e-6).all())


# ---- names, refusals ---------------------------------------------------------------------------------
def test_method_names_and_refusals(toy):
    sae, probes, means, f, target = toy
    assert METHODS == D.STEER_METHODS and "paper" in METHODS and len(BASE_METHODS) >= 5
    assert all(f"{m}+match" in METHODS for m in BASE_METHODS)
    assert methods.split_method("orthogonal+match") == ("orthogonal", True)
    for bad in ("bogus", "paper+", "+match", "Paper"):
        with pytest.raises(AudioSAEError, match="unknown steering method"):
            methods.check_method(bad)
        with pytest.raises(AudioSAEError, match="unknown steering method"):
            prepare_method(None, "toy", sae, probes, "pitch", bad, means=means)
        with pytest.raises(AudioSAEError, match="unknown steering method"):
            steer_wave(None, None, None, None, np.zeros((1, 100), np.float32), "pitch", 0, 1.0,  # type: ignore[arg-type]
                       method=bad)
    for corpus_method in methods.CORPUS_METHODS:      # the corpus methods need class means (or a workspace)
        with pytest.raises(AudioSAEError, match="class means"):
            prepare_method(None, "toy", sae, probes, "pitch", corpus_method)
    with pytest.raises(AudioSAEError, match="not timbre"):
        prepare_method(None, "toy", sae, probes, "timbre", "mass-mean", means=means)


def test_cli_offers_every_method_and_refuses_others(tmp_path, capsys):
    from audiosae.cli import build_parser, main
    from tests.studio.test_steering_level import DEMO, FLUTE

    steer = next(a for a in build_parser()._subparsers._group_actions[0].choices["steer"]._actions
                 if "--method" in a.option_strings)
    assert tuple(steer.choices) == METHODS and steer.default == D.DEFAULT_STEER_METHOD
    out = tmp_path / "x.wav"
    rc = main(["steer", str(DEMO), str(FLUTE), "--attribute", "pitch", "--target", "A4", "--method", "bogus",
               "--out", str(out)])
    assert rc == 2 and "--method" in capsys.readouterr().err and not out.exists()


# ---- whole clips: every method through steer_wave; +match per frame ----------------------------------
def _frame_db(wave: np.ndarray, hop: int) -> np.ndarray:
    n = wave.shape[1] // hop
    return 10 * np.log10(np.mean(wave[:, :n * hop].reshape(wave.shape[0], n, hop) ** 2, axis=(0, 2)) + 1e-12)


def test_steer_wave_runs_every_method_and_match_follows_the_source_frame_by_frame():
    from tests.core.test_realtime import GainBackend, toy_clip

    backend = GainBackend()
    sae = _sae(d_in=backend.latent_dim)
    with torch.no_grad():   # latents of this backend are ~log rms: let the SAE see their scale
        sae.W_enc.mul_(0.5)
        sae.b_enc.fill_(0.3)
        sae.W_dec.add_(torch.randn(F, 1, generator=torch.Generator().manual_seed(5)) * 0.3)
    probes = _probes()
    x = torch.from_numpy(backend.encode(toy_clip(4.0)).latents)
    gen = torch.Generator().manual_seed(4)   # the toy clip's frames are alike: arbitrary classes
    labels = {a: torch.randint(0, k, (x.shape[0],), generator=gen) for a, k in K.items()}
    store = ArrayFrames({"train": {"latents": x, **labels}, "val": {"latents": x, **labels}})
    means = class_means(store, sae, "pitch", K["pitch"])
    target = int(np.argmax(means.counts))
    wave = toy_clip(3.0)
    spec = AttributeSpec()
    deviation = {}
    for method in METHODS:
        ctx = prepare_method(None, "toy", sae, probes, "pitch", method, means=means)
        result = steer_wave(backend, sae, probes, spec, wave, "pitch", target, 20.0, measure_shift=False,
                            context=ctx)
        assert result.report["method"] == method and result.report["match_frames"] == method.endswith("+match")
        assert np.isfinite(result.wave).all() and np.abs(result.wave).max() <= 10 ** (-1 / 20) + 1e-6
        loud = wave.std() > 0
        src, out = _frame_db(wave, backend.hop_length), _frame_db(result.wave, backend.hop_length)
        deviation[method] = float(np.mean(np.abs(out - src)[loud]))
    with pytest.raises(AudioSAEError, match="differs"):
        steer_wave(backend, sae, probes, spec, wave, "pitch", target, 1.0, method="paper",
                   context=prepare_method(None, "toy", sae, probes, "pitch", "solve"))
    # The per-frame match follows the source's frame loudness closer than the 0.2 s blocks do.
    for base in BASE_METHODS:
        assert deviation[base + "+match"] <= deviation[base] + 1e-6, (base, deviation)
    # (measured: ~0.5-0.7 dB mean |frame dB - source| with 0.2 s blocks, < 0.01 dB per frame)
    assert all(deviation[b + "+match"] < 0.2 * deviation[b] for b in BASE_METHODS), deviation


# ---- the CLI and the workspace cache -------------------------------------------------------------------
from tests.studio.test_steering_level import demo_copy  # noqa: E402,F401  (the demo workspace, copied)


def test_every_method_is_continuous_at_alpha_zero_on_the_demo_flute(demo_copy):  # noqa: F811
    """A small alpha is a small step for every method: max |delta latents| at alpha 0.1 is at most
    twice the paper method's and shrinks in proportion as alpha -> 0.  (Before clamp bit only on
    what the step pushed out of range, it clamped the held-out flute's unsteered code itself:
    max |delta| 5.8 at alpha 1 against the paper's 0.67.)"""
    from audiosae.analysis import LoadedModels
    from audiosae.audio import load_audio
    from audiosae.steering import steer_latents

    models = LoadedModels.load(demo_copy, None, device="cpu")
    backend, sae = models.backend, models.sae
    wave = load_audio(demo_copy / "clips" / "02-flute-melody.flac", backend.sample_rate, 1)[:, :3 * backend.sample_rate]
    latents = torch.from_numpy(backend.encode_long(wave).latents)
    target = models.spec.parse_target("pitch", "A4")
    delta = {}
    for method in BASE_METHODS:
        ctx = prepare_method(models.workspace, sae.cfg.name, sae, models.probes, "pitch", method)
        base = steer_latents(sae, latents, None, 0.0, context=ctx, target=target)
        delta[method] = {a: float((steer_latents(sae, latents, None, a, context=ctx, target=target) - base).abs().max())
                         for a in (1e-3, 1e-2, 0.1)}
    paper = delta["paper"][0.1]
    assert 0.02 < paper < 0.2
    for method, d in delta.items():
        assert d[0.1] <= 2 * paper, (method, d)
        assert 0 < d[1e-3] <= 0.02 * d[0.1] + 1e-6, (method, d)   # -> 0 linearly, no jump at alpha 0+


def test_cli_steers_with_a_new_method_and_the_cache_is_rebuilt_from_an_old_layout(demo_copy, tmp_path):  # noqa: F811
    import json
    from pathlib import Path

    import soundfile as sf

    from audiosae.audio import load_audio, save_audio
    from audiosae.cli import main
    from audiosae.workspace import Workspace
    from tests.studio.test_steering_level import CEILING, FLUTE, SR

    ws = Workspace.open(demo_copy)
    name = ws.sae_names()[0]
    sae = SparseAutoencoder.load(ws.sae_dir(name))
    cache = demo_copy / "steer" / f"class-means-{name}-pitch.npz"
    cache.parent.mkdir(exist_ok=True)
    # A cache written before the per-feature max existed: read as stale, recomputed and rewritten.
    np.savez(cache, key="old", sums=np.zeros((len(ws.attribute_spec.class_names("pitch")), sae.cfg.d_sae)),
             counts=np.zeros(len(ws.attribute_spec.class_names("pitch")), np.int64))
    means = methods.workspace_class_means(ws, name, sae, "pitch")
    assert means.fmax is not None and means.n_frames == ws.frame_store().n_frames("train") and means.counts.sum() > 0
    with np.load(cache, allow_pickle=False) as data:
        assert "fmax" in data and int(data["n_frames"]) == means.n_frames

    clip = tmp_path / "clip.wav"
    save_audio(clip, load_audio(FLUTE, SR, 1)[:, :3 * SR], SR)
    out = tmp_path / "solve.wav"
    assert main(["steer", str(demo_copy), str(clip), "--attribute", "pitch", "--target", "A4", "--alpha", "10",
                 "--method", "solve+match", "--sae", name, "--out", str(out), "--quiet"]) == 0
    side = json.loads(Path(str(out) + ".json").read_text())
    assert (side["method"], side["base"], side["match_frames"]) == ("solve+match", "solve", True)
    assert "sqrt(F)" in side["alpha_unit"] and side["level"]["rule"] == "matched+limited"
    steered, _ = sf.read(out, always_2d=True)
    assert np.abs(steered).max() <= CEILING + 1e-6
    assert side["shift"]["target"]["rate_after"] > side["shift"]["target"]["rate_before"]


def test_steer_wave_with_an_sae_without_rmsnorm_and_no_workspace():
    from tests.core.test_realtime import GainBackend, toy_clip

    backend = GainBackend()
    sae, probes = _sae(rmsnorm=False, d_in=backend.latent_dim, gain=3.0), _probes()
    wave = toy_clip(2.0)
    result = steer_wave(backend, sae, probes, AttributeSpec(), wave, "pitch", 1, 10.0, method="solve",
                        measure_shift=False, start=0.5, end=1.5)
    assert np.isfinite(result.wave).all() and "steered frames" in result.report["alpha_unit"]
    latents = backend.encode(wave).latents
    times = backend.frame_centers(latents.shape[0])
    outside = (times < 0.5) | (times >= 1.5)
    with torch.no_grad():   # frames outside the range decode exactly as the unsteered path
        plain = sae.decode(sae.encode(torch.from_numpy(latents))[1]).numpy()
    np.testing.assert_allclose(result.latents[outside], plain[outside], rtol=1e-5, atol=1e-5)
    assert not np.allclose(result.latents[~outside], plain[~outside], atol=1e-3)
