"""SAE architectures (TopK, BatchTopK, JumpReLU, ReLU, each with or without RMSNorm), the
convergence rule (budget, warm-ups, plateau stop on a held-out loss), dead features, k grids,
and the not-converged marking in the report."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from audiosae import defaults as D
from audiosae.errors import AudioSAEError, JobCancelled, WorkspaceError
from audiosae.frames import ArrayFrames
from audiosae.jobs import CancelToken
from audiosae.sae import CHECKPOINT_FILE, SAEConfig, SparseAutoencoder, evaluate_saes, grid_configs, train_sae_grid
from audiosae.sae.config import default_name, parse_architecture
from audiosae.sae.group import _AutogradGroup, _JumpReLUFn, _StepFn, make_group
from audiosae.sae.trainer import estimate_sae_seconds, make_schedule
from audiosae.storage import load_tensors_metadata
from tests.core.test_sae import D_IN, CountingStore, all_weights, make_store

ARCHS = [("relu", False), ("topk", True), ("topk", False), ("batchtopk", True), ("batchtopk", False),
         ("jumprelu", True), ("jumprelu", False)]


def configs_for(arch: str, rmsnorm: bool, width: int = 4) -> list[SAEConfig]:
    if arch in ("topk", "batchtopk"):
        return grid_configs(D_IN, [width], ks=[3], architecture=arch, rmsnorm=rmsnorm)
    lam = {"relu": 0.05, "jumprelu": 1.0}[arch]
    return grid_configs(D_IN, [width], [lam], architecture=arch, rmsnorm=rmsnorm)


# ---- configuration -----------------------------------------------------------------------------
def test_architecture_names_and_validation():
    assert parse_architecture("relu-rmsnorm") == ("relu", True)
    assert parse_architecture("standard") == ("relu", False)
    assert parse_architecture("BatchTopK") == ("batchtopk", True)
    with pytest.raises(AudioSAEError):
        parse_architecture("gated")
    assert default_name(8, 0.05) == "x8-l1_0.05"                       # the paper's SAE: names as before
    assert default_name(8, 0, "topk", True, 32) == "x8-topk32"
    assert default_name(8, 1.0, "jumprelu", False) == "x8-jumprelu_l0_1-nonorm"
    with pytest.raises(AudioSAEError):
        SAEConfig(D_IN, 48, 0.0, architecture="topk")                  # k is required
    with pytest.raises(AudioSAEError):
        SAEConfig(D_IN, 48, 0.0, architecture="topk", k=49)            # k <= d_sae
    with pytest.raises(AudioSAEError):
        SAEConfig(D_IN, 48, 0.1, architecture="topk", k=4)             # no lambda for TopK
    with pytest.raises(AudioSAEError):
        SAEConfig(D_IN, 48, 0.1, k=4)                                  # k only for the TopK family


def test_a_k_grid_varies_k_like_lambda_and_trains_in_one_pass():
    grid = grid_configs(D_IN, [2, 4], ks=[2, 5], architecture="topk")
    assert [(c.d_sae, c.k) for c in grid] == [(24, 2), (24, 5), (48, 2), (48, 5)]
    assert [c.name for c in grid] == ["x2-topk2", "x2-topk5", "x4-topk2", "x4-topk5"]
    store = CountingStore(make_store(600, 100))
    results = train_sae_grid(store, grid, epochs=2, batch_size=100)
    assert [c for c in store.calls if c[0] == "train"] == [("train", 0), ("train", 0), ("train", 1)]
    evals = evaluate_saes([s for s, _ in results], store.inner, "val")
    for (sae, _), ev in zip(results, evals):
        assert ev["l0"] <= sae.cfg.k + 1e-9                            # TopK: at most k per frame
    assert evals[1]["l0"] > evals[0]["l0"] + 1 and evals[3]["l0"] > evals[2]["l0"] + 1   # k sets the L0


# ---- each architecture ------------------------------------------------------------------------
@pytest.mark.parametrize("arch,rmsnorm", ARCHS)
def test_each_architecture_trains_saves_and_loads_to_the_same_outputs(arch, rmsnorm, tmp_path):
    store = make_store(1500, 300)
    [(sae, metrics)] = train_sae_grid(store, configs_for(arch, rmsnorm), frames=20_000, batch_size=100, lr=3e-3)
    [ev] = evaluate_saes([sae], store, "val")
    assert ev["fvu"] < 0.5, ev                                          # it learned to reconstruct
    assert ev["sparsity"] > 0.5 and ev["l0"] > 0.5, ev                  # ... with a sparse code
    if arch == "topk":
        assert ev["l0"] <= 3 + 1e-9
    if arch == "batchtopk":                                            # k x batch at training: about k a frame
        assert 1.0 < ev["l0"] < 9.0, ev
    if arch in ("jumprelu", "batchtopk"):
        assert sae.threshold is not None and float(sae.threshold.detach().min()) >= 0
    assert {"converged", "plateau_step", "steps", "frames", "dead_features_train", "held_out_loss"} <= set(metrics)
    assert metrics["architecture"] == sae.cfg.label
    sae.save(tmp_path / "sae", metrics={"fvu": ev["fvu"]})
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["architecture"] == sae.cfg.label and cfg["rmsnorm"] is rmsnorm and cfg["schema_version"] >= 1
    back = SparseAutoencoder.load(tmp_path / "sae")
    assert back.cfg == sae.cfg and back.fingerprint() == sae.fingerprint()
    x = next(store.iter_batches("val", 300, shuffle=False))["latents"]
    for a, b in zip(sae(x), back(x)):
        assert torch.equal(a, b)
    if not rmsnorm:
        assert torch.equal(sae(x)[2], sae(x)[1])                       # f = h without RMSNorm
    # an edited architecture is refused, not silently loaded as another model
    cfg["architecture"] = "relu-rmsnorm" if arch != "relu" else "topk"
    cfg.pop("activation")
    cfg["k"] = None if arch != "relu" else 3
    (tmp_path / "sae" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(WorkspaceError):
        SparseAutoencoder.load(tmp_path / "sae")


def test_files_written_before_architectures_load_as_relu_rmsnorm(tmp_path):
    sae = SparseAutoencoder(SAEConfig(D_IN, 24, 0.05))
    sae.save(tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg["architecture"] == "relu-rmsnorm"
    for key in ("activation", "rmsnorm", "k"):                        # what an old cfg.json lacked
        cfg.pop(key)
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(cfg))
    back = SparseAutoencoder.load(tmp_path / "s")
    assert back.cfg.is_default_architecture and back.fingerprint() == sae.fingerprint()
    assert "architecture" not in load_tensors_metadata(tmp_path / "s" / "sae.safetensors")


def test_batchtopk_keeps_k_times_batch_at_training_and_topk_k_per_frame():
    x = torch.randn(40, D_IN, generator=torch.Generator().manual_seed(0))
    for arch in ("topk", "batchtopk"):
        cfgs = grid_configs(D_IN, [4], ks=[3], architecture=arch)
        grp = make_group(cfgs, [0], D_IN, 0, torch.device("cpu"))
        sums = grp.compute_gradients(x, 1.0, True)
        assert sums["active"][0].item() == 3 * 40
        assert isinstance(grp, _AutogradGroup)
    # the inference threshold of BatchTopK is an EMA of the smallest kept activation
    grp.adam_step(1, 1e-3)
    assert 0 < float(grp.topk_threshold[0])


def test_jumprelu_pseudo_derivatives_follow_the_paper():
    pre = torch.tensor([[[0.10, 0.29, 0.31, 0.50]]], requires_grad=True)
    thr = torch.full((1, 1, 4), 0.3, requires_grad=True)
    bw = 0.05
    out = _JumpReLUFn.apply(pre, thr, bw)
    assert torch.equal(out.detach(), torch.tensor([[[0.0, 0.0, 0.31, 0.50]]]))
    out.sum().backward()
    assert torch.equal(pre.grad, torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]))           # the gate
    # d/dt = -(t / bw) * K((pre - t) / bw): nonzero only within bw/2 of the threshold
    assert torch.allclose(thr.grad, torch.tensor([[[0.0, -6.0, -6.0, 0.0]]]))
    thr.grad = None
    _StepFn.apply(pre.detach(), thr, bw).sum().backward()
    assert torch.allclose(thr.grad, torch.tensor([[[0.0, -20.0, -20.0, 0.0]]]))     # -(1 / bw) K


def test_jumprelu_lambda_controls_sparsity():
    store = make_store(1500, 300)
    cfgs = grid_configs(D_IN, [4], [0.1, 10.0], architecture="jumprelu")
    results = train_sae_grid(store, cfgs, frames=20_000, batch_size=100, lr=3e-3)
    low, high = evaluate_saes([s for s, _ in results], store, "val")
    assert high["l0"] < low["l0"] - 1


def test_auxk_gives_dead_topk_features_a_gradient():
    x = torch.randn(30, D_IN, generator=torch.Generator().manual_seed(1))
    cfgs = grid_configs(D_IN, [4], ks=[2], architecture="topk")
    grp = make_group(cfgs, [0], D_IN, 0, torch.device("cpu"))
    grp.compute_gradients(x, 1.0, False)
    fired = grp._fired[0]
    silent = ~fired
    assert silent.any()
    assert float(grp.grads["W_enc"][0][:, silent].abs().sum()) == 0        # without AuxK: no signal
    grp.dead_now = torch.ones_like(grp.last_fired, dtype=torch.bool)
    grp.compute_gradients(x, 1.0, False)
    assert float(grp.grads["W_enc"][0][:, silent].abs().sum()) > 0          # AuxK reaches them


def test_dead_features_over_training_are_reported():
    store = make_store(800, 200)
    # far wider than the data needs, and a large k: many features never fire
    cfgs = [SAEConfig(D_IN, 240, 0.0, architecture="topk", k=1)]
    [(_, metrics)] = train_sae_grid(store, cfgs, epochs=3, batch_size=100)
    assert 0 < metrics["dead_features_train"] < 240


# ---- the schedule and the convergence rule ----------------------------------------------------
def test_the_default_budget_scales_with_the_corpus():
    small, big = D.default_sae_frames(1000, 1024), D.default_sae_frames(10_000_000, 1024)
    assert small == D.SAE_MIN_STEPS * 1024                   # a small corpus: the minimum number of steps
    assert D.default_sae_frames(500_000, 1024) == D.SAE_EPOCHS_EQUIVALENT * 500_000   # epochs-equivalent
    assert big == D.SAE_MAX_FRAMES                           # capped
    s = make_schedule(500_000, 1024)
    assert s.total_steps == math.ceil(D.SAE_EPOCHS_EQUIVALENT * 500_000 / 1024) and s.stop_on_plateau
    fixed = make_schedule(1000, 100, epochs=3)
    assert fixed.total_steps == 30 and not fixed.stop_on_plateau and fixed.lr_warmup_steps == 0
    with pytest.raises(AudioSAEError):
        make_schedule(1000, 100, epochs=3, frames=10)


def test_learning_rate_and_lambda_warm_up_then_decay():
    s = make_schedule(1000, 10, frames=1000, l1_warmup_fraction=0.1, lr_warmup_fraction=0.05)
    assert (s.total_steps, s.l1_warmup_steps, s.lr_warmup_steps, s.decay_steps) == (100, 10, 5, 20)
    start, end = s.total_steps - s.decay_steps, s.total_steps
    lrs = [s.lr_factor(done, start, end) for done in range(100)]
    assert lrs[0] == pytest.approx(0.2) and lrs[4] == 1.0                 # linear warm-up over 5 steps
    assert all(v == 1.0 for v in lrs[5:80])                              # constant
    assert lrs[80] == 1.0 and lrs[90] == pytest.approx(0.5) and lrs[99] == pytest.approx(0.05)   # decay to 0
    lams = [s.lam_factor(step) for step in range(1, 101)]
    assert lams[0] == pytest.approx(0.1) and lams[9] == 1.0 and lams[-1] == 1.0


def test_training_stops_on_a_held_out_plateau_and_marks_convergence():
    store = make_store(1200, 300)
    cfgs = grid_configs(D_IN, [2], [0.02, 0.1])
    # A loose rule (less than 5 % better over 2 checks) so that these tiny SAEs reach it soon.
    rule = dict(patience=2, tolerance=0.05)
    budget = 300_000                                       # 3,000 steps: far more than the rule needs
    results = train_sae_grid(store, cfgs, frames=budget, batch_size=100, lr=3e-3, **rule)
    for sae, m in results:
        assert m["converged"] is True and m["stopped"] == "plateau", m
        assert m["held_out"] == "val" and m["held_out_loss"] > 0
    # stopped early: once the last SAE converged, a cool-down of a quarter of the steps so far
    last = max(m["plateau_step"] for _, m in results)
    for _, m in results:
        assert m["steps"] == last + math.ceil(0.25 * last) < m["budget_steps"]
    # the same grid with a budget too small to reach the plateau: not converged
    short = train_sae_grid(store, cfgs, frames=3_000, batch_size=100, lr=3e-3)   # the default rule
    for _, m in short:
        assert m["converged"] is False and m["stopped"] == "budget" and m["steps"] == 30


def test_kill_and_resume_with_the_plateau_stop_is_bit_equal(tmp_path):
    store = make_store(700, 100)
    cfgs = [*grid_configs(D_IN, [2], [0.02]), *grid_configs(D_IN, [2], ks=[2], architecture="batchtopk"),
            *grid_configs(D_IN, [2], [1.0], architecture="jumprelu", rmsnorm=False)]
    kwargs = dict(frames=40_000, batch_size=64, lr=3e-3, seed=2, patience=2, tolerance=0.05)
    reference = train_sae_grid(store, cfgs, **kwargs)
    steps = reference[0][1]["steps"]
    ckpt = tmp_path / "ckpt"
    for cut in (steps // 3, steps // 2 + 7):               # cancel twice, resume from the checkpoints
        token = CancelToken()
        with pytest.raises(JobCancelled):
            train_sae_grid(CountingStore(store, cancel_after=cut, token=token), cfgs, cancel=token,
                           checkpoint_dir=ckpt, checkpoint_every_s=1e9, **kwargs)
    resumed = train_sae_grid(store, cfgs, checkpoint_dir=ckpt, **kwargs)
    for ref, got in zip(all_weights(reference), all_weights(resumed)):
        for k in ref:
            assert torch.equal(ref[k], got[k]), k
    for (sa, ma), (sb, mb) in zip(reference, resumed):
        assert (ma["steps"], ma["plateau_step"], ma["converged"]) == (mb["steps"], mb["plateau_step"], mb["converged"])
        if sa.threshold is not None:
            assert torch.equal(sa.threshold, sb.threshold)
    state = load_tensors_metadata(ckpt / CHECKPOINT_FILE)["state"]
    assert state["step"] == steps and sorted(state["plateau"]) == sorted(
        s.cfg.name for s, m in reference if m["converged"])


def test_without_validation_frames_a_training_sample_is_held_out():
    x = make_store(600, 0).iter_batches("train", 600, shuffle=False)
    store = ArrayFrames({"train": {"latents": next(x)["latents"]}})
    [(_, m)] = train_sae_grid(store, [SAEConfig(D_IN, 24, 0.05)], frames=6_000, batch_size=100)
    assert m["held_out"] == "train-sample"


def test_time_estimate_is_the_budget_times_the_measured_speed():
    cfgs = grid_configs(D_IN, [2, 4], [0.02])
    est = estimate_sae_seconds(cfgs, 10_000, batch_size=100, seconds_per_frame=1e-5)
    assert est["frames"] == D.default_sae_frames(10_000, 100) and est["stops_on_plateau"]
    assert est["seconds"] >= est["frames"] * 1e-5
    fixed = estimate_sae_seconds(cfgs, 10_000, epochs=2, batch_size=100, seconds_per_frame=1e-5)
    assert fixed["frames"] == 20_000 and not fixed["stops_on_plateau"]
    measured = estimate_sae_seconds(cfgs, 10_000, epochs=1, batch_size=100)
    assert measured["seconds_per_frame"] > 0


def test_the_run_estimate_grows_with_the_classes_of_extra_probes():
    """The wizard's estimate of the probes scales with the classes scored: chord's 25 on top of the
    paper's 106 (pitch 66, loudness 20, timbre 20)."""
    from audiosae.workflows.train import train_settings
    from audiosae.workflows.train_plan import Calibration, estimate_run, probe_class_scale

    paper = train_settings(expansions=[4], l1s=[0.02])
    chord = train_settings(expansions=[4], l1s=[0.02], probe_attributes=("pitch", "loudness", "timbre", "chord"))
    assert probe_class_scale(paper) == 1.0 and probe_class_scale(chord) == pytest.approx((106 + 25) / 106)
    cal = Calibration(extraction_per_second=None, d_in=D_IN, sae_per_frame={4: 0.0}, probe_per_frame=1e-4)
    a, b = estimate_run(cal, 60.0, 75.0, paper), estimate_run(cal, 60.0, 75.0, chord)
    assert b.probes_s == pytest.approx(a.probes_s * (106 + 25) / 106) and b.sae_s == a.sae_s and a.probes_s > 0


# ---- the report -----------------------------------------------------------------------------
def test_report_marks_an_sae_that_did_not_converge(tmp_path):
    from pathlib import Path

    from audiosae.report import format_report, workspace_report
    from audiosae.workspace import Workspace

    demo = Path(__file__).resolve().parents[2] / "resources" / "demo"
    if not (demo / "workspace.json").is_file():
        pytest.skip("resources/demo is absent")
    ws_root = tmp_path / "ws"
    ws_root.mkdir()
    shutil.copy(demo / "workspace.json", ws_root / "workspace.json")
    shutil.copytree(demo / "saes", ws_root / "saes")
    ws = Workspace.open(ws_root)
    name = ws.sae_names()[0]
    before = workspace_report(ws)["saes"][0]
    assert before["converged"] is True                    # the demo trains with the default schedule: plateau stop
    path = ws.sae_dir(name) / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics.update(converged=False, steps=123, frames=45_600)
    path.write_text(json.dumps(metrics))
    report = workspace_report(ws)
    row = report["saes"][0]
    assert row["converged"] is False and row["steps"] == 123 and row["frames"] == 45_600
    text = format_report(report)
    assert f"{name} *" in text and "did not converge" in text
    metrics["converged"] = "no"
    path.write_text(json.dumps(metrics))
    with pytest.raises(WorkspaceError):
        workspace_report(ws)
