"""DiffRhythm generator (DiT + CFM sampler + checkpoints) and the diffrhythm-vae backend."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audiosae.codecs import backend_spec, get_backend
from audiosae.codecs.diffrhythm_vae import DiffRhythmVAE, chunk_plan
from audiosae.errors import BackendError, JobCancelled
from audiosae.generation.diffrhythm import (CFM, DiTConfig, build_cfm, infer_config, load_cfm, make_noise,
                                            read_checkpoint, tiny_config)
from audiosae.jobs import CancelToken

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "diffrhythm_tiny.pt"
needs_fixture = pytest.mark.skipif(not FIXTURE.is_file(), reason=f"parity fixture not found at {FIXTURE}")

FRAMES = 24


@pytest.fixture(scope="module")
def tiny_model() -> CFM:
    torch.manual_seed(0)
    model = build_cfm(tiny_config(conv_layers=1))
    # Text fusion is zero-initialised upstream; give it weights so the lyric path matters.
    with torch.no_grad():
        for p in model.transformer.text_fusion_linears.parameters():
            p.normal_(0, 0.02)
    return model


def _inputs(frames: int = FRAMES, batch: int = 1) -> dict:
    g = torch.Generator().manual_seed(5)
    style = torch.randn(batch, 512, generator=g)
    negative = torch.randn(batch, 512, generator=g)
    return dict(text=torch.randint(0, 364, (batch, frames), generator=g),
                style_prompt=style / style.norm(dim=1, keepdim=True),
                negative_style_prompt=negative / negative.norm(dim=1, keepdim=True))


class PassCounter:
    def __init__(self, module: nn.Module):
        self.calls = 0
        self.handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.calls += 1

    def close(self) -> None:
        self.handle.remove()


# ---- parity ----------------------------------------------------------------------------------------


@needs_fixture
def test_parity_cli_passes_and_prints_rows():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "audiosae.parity", str(FIXTURE)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("fwd_out_cond", "fwd_out_cond_official32heads", "fwd_int_block1_out",
                 "sample_trajectory[31]", "sample_edit_out"):
        assert name in proc.stdout
    assert "FAIL" not in proc.stdout


@needs_fixture
def test_parity_api_every_recorded_output():
    from audiosae.generation.diffrhythm.parity import check

    fixture = torch.load(str(FIXTURE), map_location="cpu", weights_only=True)
    rows = {row.name: row for row in check(fixture)}
    recorded = [k for k in fixture if k.startswith(("fwd_out_", "fwd_int_")) or k in ("sample_out", "sample_edit_out")]
    for key in recorded:
        assert key in rows, f"{key} not checked"
    for k in range(fixture["sample_trajectory"].shape[0]):
        assert f"sample_trajectory[{k}]" in rows and f"sample_edit_trajectory[{k}]" in rows
    for name, row in rows.items():
        limit = 1e-5 if name.startswith("fwd_") else 1e-4  # README: forward ~1e-5, trajectory ~1e-4
        assert row.max_rel <= limit, f"{name}: relative error {row.max_rel:.3e}"


# ---- checkpoints -----------------------------------------------------------------------------------


def test_state_dict_keys_use_official_names(tiny_model):
    keys = set(tiny_model.state_dict())
    assert all(k.startswith("transformer.") for k in keys)
    for key in ("transformer.transformer_blocks.0.self_attn.q_proj.weight",
                "transformer.transformer_blocks.1.mlp.down_proj.weight",
                "transformer.input_embed.conv_pos_embed.conv1d.2.weight",
                "transformer.text_embed.text_blocks.0.grn.gamma", "transformer.text_fusion_linears.0.0.bias",
                "transformer.norm_out.linear.weight", "transformer.proj_out.bias"):
        assert key in keys
    assert not any("freqs_cis" in k or "inv_freq" in k for k in keys)  # non-persistent, as upstream
    assert not any("duration_time_embed" in k for k in keys)
    full = build_cfm(tiny_config(max_frames=6144, depth=1, conv_layers=0))
    assert any(k.startswith("transformer.duration_time_embed.") for k in full.state_dict())
    short = full.sample(seed=0, steps=2, song_duration=0.1, **_inputs()).latent
    long = full.sample(seed=0, steps=2, song_duration=0.9, **_inputs()).latent
    assert not torch.allclose(short, long)  # the full model reads the song duration


def test_strict_loading_names_missing_and_unexpected_keys(tiny_model):
    state = dict(tiny_model.state_dict())
    del state["transformer.proj_out.bias"]
    state["transformer.long_skip_connection.weight"] = torch.zeros(3)
    with pytest.raises(BackendError) as info:
        load_cfm({"model_state_dict": state}, tiny_model.config)
    message = str(info.value)
    assert "transformer.proj_out.bias" in message and "missing" in message
    assert "transformer.long_skip_connection.weight" in message and "unexpected" in message


def test_shape_mismatch_is_reported(tiny_model):
    state = dict(tiny_model.state_dict())
    state["transformer.proj_out.bias"] = torch.zeros(7)
    with pytest.raises(BackendError, match="proj_out.bias"):
        load_cfm(state, tiny_model.config)


def test_fp16_checkpoint_file_loads_into_fp32_model(tiny_model, tmp_path):
    half = {k: v.half() for k, v in tiny_model.state_dict().items()}
    path = tmp_path / "cfm_model.pt"
    torch.save({"model_state_dict": half, "step": 3}, path)
    loaded = load_cfm(path, tiny_model.config, dtype=torch.float32)
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, half[key].float()), key
    assert infer_config(read_checkpoint(path), num_heads=4) == tiny_model.config
    # and into an fp16 model, which still produces finite velocities
    loaded16 = load_cfm(path, tiny_model.config, dtype=torch.float16)
    result = loaded16.sample(steps=3, seed=0, **_inputs())
    assert result.latent.dtype == torch.float16 and torch.isfinite(result.latent).all()


def test_unreadable_checkpoint_is_a_backend_error(tmp_path):
    bad = tmp_path / "cfm_model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(BackendError, match="cannot read checkpoint"):
        load_cfm(bad, tiny_config())
    with pytest.raises(BackendError, match="not found"):
        load_cfm(tmp_path / "missing.pt", tiny_config())


def test_config_validation():
    with pytest.raises(ValueError, match="text_dim"):
        DiTConfig(dim=64, depth=2, num_heads=4, text_dim=32)
    with pytest.raises(ValueError, match="even"):
        DiTConfig(dim=96, depth=2, num_heads=32)  # head size 3: rotate-half needs an even size
    official = DiTConfig.from_official({"dim": 2048, "depth": 16, "heads": 8, "ff_mult": 4, "text_dim": 512,
                                        "conv_layers": 4, "mel_dim": 64, "text_num_embeds": 363}, max_frames=2048)
    assert official.num_heads == 32  # `heads` is ignored, like upstream


# ---- sampler -----------------------------------------------------------------------------------------


def test_sampler_is_deterministic_with_a_seed(tiny_model):
    first = tiny_model.sample(seed=11, steps=4, **_inputs()).latent
    second = tiny_model.sample(seed=11, steps=4, **_inputs()).latent
    other = tiny_model.sample(seed=12, steps=4, **_inputs()).latent
    assert torch.equal(first, second)
    assert not torch.allclose(first, other)
    torch.manual_seed(11)
    expected = torch.randn(FRAMES, 64)
    assert torch.equal(make_noise(FRAMES, seed=11)[0], expected)
    explicit = tiny_model.sample(noise=expected, steps=4, **_inputs()).latent
    assert torch.equal(explicit, first)


def test_iterator_yields_every_state_without_extra_passes(tiny_model):
    counter = PassCounter(tiny_model.transformer)
    try:
        states = list(tiny_model.iter_sample(seed=3, **_inputs()))
        passes_traced = counter.calls
        counter.calls = 0
        plain = tiny_model.sample(seed=3, **_inputs())
        passes_plain = counter.calls
        counter.calls = 0
        traced = tiny_model.sample(seed=3, return_trajectory=True, **_inputs())
        passes_trajectory = counter.calls
        counter.calls = 0
        tiny_model.sample(seed=3, batch_cfg=False, **_inputs())
        passes_unbatched = counter.calls
    finally:
        counter.close()
    assert len(states) == 32 and [s.index for s in states] == list(range(32))
    assert passes_traced == passes_plain == passes_trajectory == 31  # one batched cond+uncond pass per update
    assert passes_unbatched == 62
    t_grid = torch.linspace(0, 1, 32)
    assert [s.t for s in states] == pytest.approx(t_grid.tolist())
    assert torch.equal(states[0].x_t, make_noise(FRAMES, seed=3))
    for k, state in enumerate(states[:-1]):
        assert torch.allclose(state.x1_pred, state.x_t + (1 - t_grid[k]) * state.velocity, atol=1e-6)
        assert torch.allclose(states[k + 1].x_t, state.x_t + (t_grid[k + 1] - t_grid[k]) * state.velocity, atol=1e-6)
        assert torch.allclose(state.velocity, state.velocity_cond + 4.0 * (state.velocity_cond - state.velocity_uncond),
                              atol=1e-5)
    final = states[-1]
    assert final.is_final and final.velocity is None
    assert torch.equal(final.x1_pred, plain.latent) and torch.equal(final.x1_pred, final.x_t)
    assert traced.trajectory.shape == (32, 1, FRAMES, 64) and traced.x1_predictions.shape == (32, 1, FRAMES, 64)
    assert torch.equal(traced.trajectory[-1], plain.latent)


def test_edit_mode_keeps_frames_outside_the_segments(tiny_model):
    cond = torch.randn(1, FRAMES, 64, generator=torch.Generator().manual_seed(9))
    states = list(tiny_model.iter_sample(seed=4, cond=cond, latent_pred_segments=[(6, 15)], steps=5, **_inputs()))
    out = states[-1].x1_pred
    inside = torch.zeros(FRAMES, dtype=torch.bool)
    inside[6:15] = True
    assert torch.equal(out[:, ~inside], cond[:, ~inside])
    assert not torch.allclose(out[:, inside], cond[:, inside])
    for state in states:  # predicted end points already carry the pasted frames
        assert torch.equal(state.x1_pred[:, ~inside], cond[:, ~inside])
    # the model sees the reference outside the segment: changing it changes the generated frames
    other = tiny_model.sample(seed=4, cond=cond * 0.5, latent_pred_segments=[(6, 15)], steps=5, **_inputs()).latent
    assert not torch.allclose(other[:, inside], out[:, inside])


def test_batched_and_separate_guidance_agree(tiny_model):
    batched = tiny_model.sample(seed=2, steps=6, batch_cfg=True, **_inputs(batch=2)).latent
    separate = tiny_model.sample(seed=2, steps=6, batch_cfg=False, **_inputs(batch=2)).latent
    assert batched.shape == (2, FRAMES, 64)
    assert torch.allclose(batched, separate, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1])  # each item draws its own noise


def test_sampler_input_validation_and_cancel(tiny_model):
    inputs = _inputs()
    with pytest.raises(ValueError, match="tokens"):
        tiny_model.sample(frames=FRAMES - 1, seed=0, **inputs)
    with pytest.raises(ValueError, match="segment"):
        tiny_model.sample(seed=0, latent_pred_segments=[(5, 5)], **inputs)
    padded = tiny_model.sample(frames=FRAMES + 4, seed=0, steps=3, **inputs).latent
    assert padded.shape == (1, FRAMES + 4, 64)
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        tiny_model.sample(seed=0, cancel=token, **inputs)


# ---- diffrhythm-vae backend -----------------------------------------------------------------------


class StubVAE(nn.Module):
    """Official method names and shapes (hop 2048, 128-channel moments, 64-d latents), tiny
    convolutions whose receptive field is one latent frame on each side."""

    def __init__(self):
        super().__init__()
        self.down1 = nn.Conv1d(2, 4, 32, stride=32)
        self.down2 = nn.Conv1d(4, 8, 64, stride=64)
        self.moments = nn.Conv1d(8, 128, 3, padding=1)
        self.unmix = nn.Conv1d(64, 8, 3, padding=1)
        self.up1 = nn.ConvTranspose1d(8, 4, 64, stride=64)
        self.up2 = nn.ConvTranspose1d(4, 2, 32, stride=32)

    @torch.jit.export
    def encode_export(self, audio: torch.Tensor) -> torch.Tensor:
        return self.moments(torch.tanh(self.down2(torch.tanh(self.down1(audio)))))

    @torch.jit.export
    def decode_export(self, latents: torch.Tensor) -> torch.Tensor:
        return self.up2(torch.tanh(self.up1(torch.tanh(self.unmix(latents)))))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.decode_export(self.encode_export(audio)[:, :64])


@pytest.fixture(scope="module")
def stub_vae_path(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("vae") / "vae_model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch >= 2.10
        torch.jit.script(StubVAE()).save(str(path))
    return path


def test_vae_spec_is_registered():
    spec = backend_spec("diffrhythm-vae")
    facts = (spec.sample_rate, spec.channels, spec.hop_length, spec.latent_dim, spec.kind)
    assert facts == (44100, 2, 2048, 64, "continuous")


def test_vae_encode_takes_the_posterior_mean(stub_vae_path):
    backend = get_backend("diffrhythm-vae", device="cpu", weights=str(stub_vae_path))
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 5 * 2048 + 100)).astype(np.float32)
    latents = backend.encode(wave).latents
    assert latents.shape == (6, 64) and latents.dtype == np.float32  # padded to whole hops
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        script = torch.jit.load(str(stub_vae_path), map_location="cpu")
    padded = np.zeros((1, 2, 6 * 2048), np.float32)
    padded[0, :, : wave.shape[1]] = wave
    with torch.no_grad():
        moments = script.encode_export(torch.from_numpy(padded))[0]
    np.testing.assert_allclose(latents, moments[:64].T.numpy(), atol=1e-6)
    assert not np.allclose(latents, moments[64:].T.numpy(), atol=1e-3)
    audio = backend.decode(latents)
    assert audio.shape == (2, 6 * 2048) and audio.dtype == np.float32
    assert backend.options()["weights"] == str(stub_vae_path)


def test_vae_chunked_equals_unchunked(stub_vae_path):
    chunked = DiffRhythmVAE("cpu", weights=stub_vae_path)  # 128-frame chunks, overlap 32
    whole = DiffRhythmVAE("cpu", weights=stub_vae_path, chunked=False)
    frames = 300
    wave = np.random.default_rng(1).uniform(-0.5, 0.5, (2, frames * 2048)).astype(np.float32)
    lat_chunked = chunked.encode(wave).latents
    lat_whole = whole.encode(wave).latents
    assert lat_chunked.shape == (frames, 64)
    np.testing.assert_allclose(lat_chunked, lat_whole, atol=1e-5)
    np.testing.assert_allclose(chunked.decode(lat_whole), whole.decode(lat_whole), atol=1e-5)
    small = DiffRhythmVAE("cpu", weights=stub_vae_path, chunk_frames=16, overlap_frames=4)
    np.testing.assert_allclose(small.decode(lat_whole), whole.decode(lat_whole), atol=1e-5)


def test_chunk_plan_matches_the_official_layout():
    # 300 frames, chunk 128, overlap 32: starts 0, 96 and the end-aligned 172; 16 frames trimmed.
    assert chunk_plan(300, 128, 32) == [(0, 0, 112), (96, 112, 208), (172, 188, 300)]
    assert chunk_plan(224, 128, 32) == [(0, 0, 112), (96, 112, 224)]
    assert chunk_plan(50, 128, 32) == [(0, 0, 50)]
    for total in (129, 200, 1000):
        covered = np.zeros(total, bool)
        for start, lo, hi in chunk_plan(total, 128, 32):
            assert start <= lo < hi <= start + 128
            covered[lo:hi] = True
        assert covered.all()


def test_vae_rejects_missing_or_non_torchscript_weights(tmp_path):
    with pytest.raises(BackendError, match="not found"):
        DiffRhythmVAE("cpu", weights=tmp_path / "nope.pt")
    plain = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(1)}, plain)
    with pytest.raises(BackendError, match="TorchScript"):
        DiffRhythmVAE("cpu", weights=plain)
