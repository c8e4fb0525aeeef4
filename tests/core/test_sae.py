"""The SAE: forward pass, RMSNorm, manual gradients, grid training in one pass, files, resume, evaluation."""

from __future__ import annotations

import json
import math

import pytest

from tests.support.common import copy_folder
import torch

import audiosae.sae as sae_mod
import audiosae.sae.config as sae_config
from audiosae.errors import AudioSAEError, JobCancelled, WorkspaceError
from audiosae.frames import ArrayFrames
from audiosae.jobs import CancelToken
from audiosae.sae import (CHECKPOINT_FILE, SAEConfig, SparseAutoencoder, _WidthGroup, evaluate_sae, grid_configs,
                          rms_norm, train_sae_grid)
from audiosae.storage import load_tensors, load_tensors_metadata

D_IN = 12


def sparse_latents(n: int, d: int = D_IN, seed: int = 0, offset: float = 3.0, gain: float = 7.0) -> torch.Tensor:
    """Frames made of a few active dictionary atoms (plus noise), with a large offset and scale."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(4 * d, d, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    active = torch.rand(n, 4 * d, generator=g) < 3.0 / (4 * d)
    codes = active * torch.rand(n, 4 * d, generator=g).add(0.5)
    base = torch.randn(d, generator=g) * offset
    return base + gain * (codes @ atoms + 0.05 * torch.randn(n, d, generator=g))


def make_store(n_train: int = 1200, n_val: int = 300, seed: int = 0) -> ArrayFrames:
    x = sparse_latents(n_train + n_val, seed=seed)
    return ArrayFrames({"train": {"latents": x[:n_train]}, "val": {"latents": x[n_train:]}})


class CountingStore:
    """Wraps a store, counts passes and batches, and can cancel a token after N batches."""

    def __init__(self, inner, cancel_after: int | None = None, token: CancelToken | None = None):
        self.inner, self.d_in = inner, inner.d_in
        self.calls: list[tuple[str, int]] = []
        self.batches = 0
        self.cancel_after, self.token = cancel_after, token

    def n_frames(self, split):
        return self.inner.n_frames(split)

    def iter_batches(self, split, batch_size, *, shuffle, seed=0, columns=("latents",)):
        self.calls.append((split, seed))
        for batch in self.inner.iter_batches(split, batch_size, shuffle=shuffle, seed=seed, columns=columns):
            self.batches += 1
            if self.cancel_after is not None and self.batches >= self.cancel_after:
                self.token.cancel()
            yield batch


def all_weights(results):
    return [{k: getattr(sae, k).detach().clone() for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
            for sae, _ in results]


# ---- model ------------------------------------------------------------------------------
def test_config_names_expansion_and_validation():
    cfg = SAEConfig(d_in=64, d_sae=512, l1_coefficient=0.05)
    assert cfg.expansion == 8 and cfg.name == "x8-l1_0.05" and cfg.rms_eps == sae_mod.DEFAULT_RMS_EPS
    assert SAEConfig.with_expansion(128, 4, 0.1).d_sae == 512
    grid = grid_configs(64, [4, 8], [0.01, 0.1])
    assert [(c.d_sae, c.l1_coefficient) for c in grid] == [(256, 0.01), (256, 0.1), (512, 0.01), (512, 0.1)]
    for bad in (dict(d_in=0, d_sae=4, l1_coefficient=0.1), dict(d_in=4, d_sae=4, l1_coefficient=-1),
                dict(d_in=4, d_sae=4, l1_coefficient=0.1, rms_eps=0.0)):
        with pytest.raises(AudioSAEError):
            SAEConfig(**bad)


def test_shapes_of_encode_decode_forward():
    sae = SparseAutoencoder(SAEConfig(D_IN, 48, 0.1))
    for shape in [(D_IN,), (7, D_IN), (2, 5, D_IN)]:
        x = torch.randn(shape)
        h, f = sae.encode(x)
        x_hat, h2, f2 = sae(x)
        assert h.shape == f.shape == shape[:-1] + (48,)
        assert x_hat.shape == shape and torch.equal(sae.decode(f), x_hat)
        assert torch.equal(h, h2) and torch.equal(f, f2) and (h >= 0).all()
    assert sae.W_enc.shape == (D_IN, 48) and sae.W_dec.shape == (48, D_IN)


def test_rms_norm_has_unit_rms_and_is_scale_invariant():
    # Seeded: eps (1e-6 on the mean square) is not scale-invariant, so a random row with a
    # very small code would break the 1e-5 comparison below by chance.
    torch.manual_seed(0)
    h = torch.relu(torch.randn(20, 64)) * 3
    f = rms_norm(h)
    assert torch.allclose(f.pow(2).mean(-1).sqrt(), torch.ones(20), atol=1e-5)
    for c in (0.1, 10.0, 1000.0):
        assert torch.allclose(rms_norm(h * c), f, atol=1e-4)
    zero = rms_norm(torch.zeros(3, 64))
    assert torch.equal(zero, torch.zeros(3, 64))  # eps keeps the all-zero code at zero, no NaN
    sae = SparseAutoencoder(SAEConfig(D_IN, 48, 0.1))
    x = torch.randn(9, D_IN)
    _, f1 = sae.encode(x)
    with torch.no_grad():  # scaling the encoder (W and b together) leaves f unchanged
        sae.W_enc.mul_(5.0)
        sae.b_enc.mul_(5.0)
    assert torch.allclose(sae.encode(x)[1], f1, atol=1e-5)


def test_manual_gradients_equal_autograd_of_the_documented_loss(monkeypatch):
    monkeypatch.setattr(sae_config, "MAX_CHUNK_ELEMENTS", 2 * 32 * 7)  # several chunks per batch
    assert _WidthGroup([SAEConfig(8, 32, 0.1)] * 2, [0, 1], 8, 0, torch.device("cpu")).chunk_rows(50) == 7
    cfgs = [SAEConfig(8, 32, 0.1), SAEConfig(8, 32, 0.5, rms_eps=1e-2)]
    grp = _WidthGroup(cfgs, [0, 1], 8, seed=3, device=torch.device("cpu"))
    with torch.no_grad():
        grp.params["b_enc"].normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
        grp.params["b_dec"].normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(4))
    sums = grp.compute_gradients(x, lam_scale=0.7, measure=True)
    for j, c in enumerate(cfgs):
        p = {k: grp.params[k][j].clone().requires_grad_(True) for k in grp.params}
        h = torch.relu(x @ p["W_enc"] + p["b_enc"])
        f = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + c.rms_eps)
        x_hat = f @ p["W_dec"] + p["b_dec"]
        loss = (x_hat - x).pow(2).mean() + 0.7 * c.l1_coefficient * h.sum(1).mean() / math.sqrt(8)
        loss.backward()
        for k in p:
            assert torch.allclose(grp.grads[k][j], p[k].grad, atol=1e-6, rtol=1e-4), k
        assert sums["sq_err"][j].item() == pytest.approx((x_hat - x).pow(2).sum().item(), rel=1e-5)
        assert sums["l1"][j].item() == pytest.approx(h.sum().item(), rel=1e-5)
        assert sums["active"][j].item() == (h > 0).sum().item()


# ---- training -----------------------------------------------------------------------------
def test_grid_trains_in_one_pass_and_lambda_controls_sparsity():
    store = CountingStore(make_store())
    configs = grid_configs(D_IN, [2, 4], [0.005, 0.5])
    events = []
    epochs = 6
    results = train_sae_grid(store, configs, epochs=epochs, batch_size=100, lr=3e-3, progress=events.append)
    n_batches = math.ceil(1200 / 100)
    # one statistics pass + one pass per epoch, whatever the number of configs
    assert [c for c in store.calls if c[0] == "train"] == [("train", 0)] + [("train", e) for e in range(epochs)]
    assert store.batches == (epochs + 1) * n_batches + 1  # + one batch of held-out validation frames
    assert [c for c in store.calls if c[0] == "val"] == [("val", 0)]
    assert [sae.cfg.name for sae, _ in results] == [c.name for c in configs]
    train_events = [e for e in events if e.stage == "train SAEs" and e.metrics.get("configs")]
    assert train_events[-1].done == epochs * n_batches == train_events[-1].total
    first, last = train_events[0].metrics["configs"], train_events[-1].metrics["configs"]
    for c in configs:
        assert set(last[c.name]) >= {"loss", "mse", "l1", "l0", "sparsity"}
        assert last[c.name]["mse"] < 0.5 * first[c.name]["mse"]  # reconstruction improves
    evals = {sae.cfg.name: evaluate_sae(sae, store.inner, "val") for sae, _ in results}
    for width in (2, 4):
        low, high = evals[f"x{width}-l1_0.005"], evals[f"x{width}-l1_0.5"]
        assert high["sparsity"] > low["sparsity"] + 0.05
        assert low["explained_variance"] > 0.5
    for (sae, metrics), c in zip(results, configs):
        assert metrics["steps"] == epochs * n_batches and metrics["frames"] == epochs * 1200
        assert 0 <= metrics["sparsity"] <= 1 and metrics["l0"] > 0


def test_a_config_trained_in_a_grid_equals_the_same_config_trained_alone():
    store = make_store(600, 100)
    cfg = SAEConfig(D_IN, 24, 0.05)
    grid = train_sae_grid(store, [SAEConfig(D_IN, 24, 0.3), cfg, SAEConfig(D_IN, 36, 0.1)], epochs=2,
                          batch_size=64)
    alone = train_sae_grid(store, [cfg], epochs=2, batch_size=64)
    for k in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.allclose(getattr(grid[1][0], k), getattr(alone[0][0], k), atol=1e-5, rtol=1e-4), k


def test_training_rejects_bad_arguments():
    store = make_store(100, 10)
    with pytest.raises(AudioSAEError):
        train_sae_grid(store, [], epochs=1)
    with pytest.raises(AudioSAEError):
        train_sae_grid(store, [SAEConfig(D_IN + 1, 8, 0.1)], epochs=1)
    with pytest.raises(AudioSAEError):
        train_sae_grid(store, [SAEConfig(D_IN, 8, 0.1, name="a"), SAEConfig(D_IN, 16, 0.1, name="a")], epochs=1)


def test_kill_and_resume_ends_equal_to_an_uninterrupted_run(tmp_path):
    store = make_store(700, 100)
    configs = grid_configs(D_IN, [2, 3], [0.01, 0.2])
    kwargs = dict(epochs=3, batch_size=64, lr=2e-3, seed=5)
    reference = all_weights(train_sae_grid(store, configs, **kwargs))
    per_epoch = math.ceil(700 / 64)

    ckpt = tmp_path / "ckpt"
    # Batches are counted per call.  1st call: the statistics pass (n), the held-out batch, then
    # epoch 0, cut at its 5th batch (4 done).  2nd call: the held-out batch, resumes in epoch 0,
    # then epochs 1 and 2, cut at 2n + 4.
    expected_states = [(0, 4), (2, 2)]
    for cut, (epoch, done) in zip((per_epoch + 6, 2 * per_epoch + 4), expected_states):
        token = CancelToken()
        wrapped = CountingStore(store, cancel_after=cut, token=token)
        with pytest.raises(JobCancelled):
            train_sae_grid(wrapped, configs, cancel=token, checkpoint_dir=ckpt, checkpoint_every_s=1e9, **kwargs)
        state = load_tensors_metadata(ckpt / CHECKPOINT_FILE)["state"]
        assert (state["epoch"], state["batch_in_epoch"]) == (epoch, done)
    resumed = train_sae_grid(store, configs, cancel=CancelToken(), checkpoint_dir=ckpt, checkpoint_every_s=0,
                             **kwargs)
    for ref, got in zip(reference, all_weights(resumed)):
        for k in ref:
            assert torch.equal(ref[k], got[k]), k

    # a finished checkpoint returns the same SAEs without another pass over the data
    counting = CountingStore(store)
    again = train_sae_grid(counting, configs, checkpoint_dir=ckpt, **kwargs)
    assert counting.batches == 0
    for ref, got in zip(reference, all_weights(again)):
        for k in ref:
            assert torch.equal(ref[k], got[k]), k
    # other settings with the same checkpoint folder are refused, not silently mixed
    with pytest.raises(WorkspaceError, match="other settings"):
        train_sae_grid(store, configs, checkpoint_dir=ckpt, **{**kwargs, "lr": 1e-3})


def test_cancel_without_checkpoint_raises_job_cancelled():
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        train_sae_grid(make_store(100, 10), [SAEConfig(D_IN, 8, 0.1)], epochs=1, batch_size=32, cancel=token)


# ---- files ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained SAE plus its normalised-space weights read back from the training checkpoint."""
    folder = tmp_path_factory.mktemp("train")
    store = make_store(800, 200)
    [(sae, metrics)] = train_sae_grid(store, [SAEConfig(D_IN, 36, 0.05)], epochs=3, batch_size=100,
                                      checkpoint_dir=folder)
    return sae, metrics, store, load_tensors(folder / CHECKPOINT_FILE), load_tensors_metadata(folder / CHECKPOINT_FILE)


def test_saved_sae_folds_the_normalisation_and_round_trips(trained, tmp_path):
    sae, metrics, store, ckpt, meta = trained
    x_raw = next(store.iter_batches("val", 200, shuffle=False))["latents"]
    # the model as trained: normalised inputs, normalised weights
    mean, scale = ckpt["norm.mean"].float(), meta["norm_scale"]
    w = {k: ckpt[f"w36.{k}"][0] for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
    x_n = (x_raw - mean) * scale
    h_n = torch.relu(x_n @ w["W_enc"] + w["b_enc"])
    x_hat_n = rms_norm(h_n) @ w["W_dec"] + w["b_dec"]
    expected = x_hat_n / scale + mean
    x_hat, h, _ = sae(x_raw)
    assert torch.allclose(h, h_n, atol=1e-4, rtol=1e-4)
    assert torch.allclose(x_hat, expected, atol=1e-3 * float(x_raw.std()), rtol=1e-4)

    sae.save(tmp_path / "sae", metrics={"fvu": 0.25, "nan": float("nan")}, extra={"backend": "mel"})
    assert {p.name for p in (tmp_path / "sae").iterdir()} == {"cfg.json", "sae.safetensors", "metrics.json"}
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["d_in"] == D_IN and cfg["d_sae"] == 36 and cfg["l1_coefficient"] == 0.05 and cfg["schema_version"] == 1
    assert cfg["metadata"]["backend"] == "mel" and cfg["metadata"]["normalisation"]["folded"] is True
    loaded = SparseAutoencoder.load(tmp_path / "sae")
    assert loaded.metrics == {"fvu": 0.25, "nan": None}
    assert loaded.metadata["backend"] == "mel"
    assert loaded.cfg == sae.cfg and loaded.fingerprint() == sae.fingerprint()
    for a, b in zip(sae(x_raw), loaded(x_raw)):
        assert torch.equal(a, b)


def test_load_refuses_truncated_edited_and_newer_files(trained, tmp_path):
    sae = trained[0]
    good = sae.save(tmp_path / "good")

    def copy(name):
        return copy_folder(good, tmp_path / name)

    trunc = copy("truncated")
    data = (trunc / "sae.safetensors").read_bytes()
    (trunc / "sae.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WorkspaceError, match="corrupt or truncated"):
        SparseAutoencoder.load(trunc)

    def edit(name, **changes):
        folder = copy(name)
        cfg = json.loads((folder / "cfg.json").read_text())
        cfg.update(changes)
        (folder / "cfg.json").write_text(json.dumps(cfg))
        return folder

    with pytest.raises(WorkspaceError, match="shape"):
        SparseAutoencoder.load(edit("width", d_sae=40))
    with pytest.raises(WorkspaceError, match="rms_eps"):
        SparseAutoencoder.load(edit("eps", rms_eps=0.5))
    with pytest.raises(WorkspaceError, match="newer"):
        SparseAutoencoder.load(edit("newer", schema_version=99))
    with pytest.raises(WorkspaceError, match="lacks 'l1_coefficient'"):
        folder = copy("missing")
        cfg = json.loads((folder / "cfg.json").read_text())
        del cfg["l1_coefficient"]
        (folder / "cfg.json").write_text(json.dumps(cfg))
        SparseAutoencoder.load(folder)
    broken = copy("badjson")
    (broken / "cfg.json").write_text('{"d_in": 12,')
    with pytest.raises(WorkspaceError, match="not valid JSON"):
        SparseAutoencoder.load(broken)
    # same shapes, other weights: the fingerprint in cfg.json catches the swap
    other = SparseAutoencoder(sae.cfg)
    swapped = copy("swapped")
    (swapped / "sae.safetensors").write_bytes(other.save(tmp_path / "other").joinpath("sae.safetensors").read_bytes())
    with pytest.raises(WorkspaceError, match="fingerprint"):
        SparseAutoencoder.load(swapped)
    with pytest.raises(WorkspaceError, match="not found"):
        SparseAutoencoder.load(tmp_path / "nowhere")


# ---- evaluation --------------------------------------------------------------------------
def test_evaluate_sae_on_a_hand_checkable_case():
    # h = (relu(x1), relu(-x1), relu(x2), relu(-x2)); one active feature -> f = 2 on it, so
    # x_hat = +-0.5 * 2 along its axis: (1, 0), (-1, 0), (0, 1) or (0, 0) for the all-zero code.
    sae = SparseAutoencoder(SAEConfig(2, 4, 0.1))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]))
        sae.b_enc.zero_()
        sae.W_dec.copy_(torch.tensor([[0.5, 0.0], [-0.5, 0.0], [0.0, 0.5], [0.0, -0.5]]))
        sae.b_dec.zero_()
    val = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, 0.0]])
    store = ArrayFrames({"train": {"latents": val}, "val": {"latents": val}})
    m = evaluate_sae(sae, store, "val", batch_size=3)  # streaming across uneven batches
    # errors: 0, (0,-1), (2,0), 0 -> SSE 5; deviations from the mean (-0.5, 0.5): 2.5+2.5+6.5+0.5 = 12
    assert m["n_frames"] == 4
    assert m["sparsity"] == pytest.approx(13 / 16)
    assert m["l0"] == pytest.approx(0.75)
    assert m["l1"] == pytest.approx(1.5)
    assert m["dead_features"] == 1 and m["dead_fraction"] == pytest.approx(0.25)
    assert m["mse"] == pytest.approx(5 / 8, rel=1e-4)
    assert m["fvu"] == pytest.approx(5 / 12, rel=1e-4)
    assert m["explained_variance"] == pytest.approx(7 / 12, rel=1e-4)
    with pytest.raises(WorkspaceError):
        evaluate_sae(sae, ArrayFrames({"train": {"latents": val}, "val": {"latents": val[:0]}}), "val")
