"""Tracing DiffRhythm generation through a workspace's SAE + probes, the s_t metric, conditioning.

Everything is tiny and offline: a scripted TorchScript stand-in for the DiffRhythm VAE, a
workspace built from a few seconds of the built-in tones (44.1 kHz stereo through the
diffrhythm-vae backend), a 4x SAE trained for one epoch with its probes, and a random tiny
DiT.  What needs downloads (MuQ-MuLan, the official vocab, espeak-ng) is tested through its
error path or through an injected stand-in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audiosae.analysis import LoadedModels
from audiosae.errors import AudioInputError, AudioSAEError, DependencyError, JobCancelled, WorkspaceError
from audiosae.generation import conditioning as cond
from audiosae.generation import trace as tr
from audiosae.generation.diffrhythm import CFM, build_cfm, tiny_config
from audiosae.jobs import CancelToken
from tests.core.test_diffrhythm import PassCounter

REPO = Path(__file__).resolve().parents[2]
SECONDS = 2.0
FRAMES = int(SECONDS * 44100 / 2048)  # 43


class TinyVAE(nn.Module):
    """The official export's method names and shapes: hop 2048, 128 moment channels, 64-d latents."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv1d(2, 128, 2048, stride=2048)
        self.up = nn.ConvTranspose1d(64, 2, 2048, stride=2048)

    @torch.jit.export
    def encode_export(self, audio: torch.Tensor) -> torch.Tensor:
        return self.down(audio)

    @torch.jit.export
    def decode_export(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.up(latents))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.decode_export(self.encode_export(audio)[:, :64])


def build_tiny_diffrhythm_workspace(root: Path) -> Path:
    """A workspace on the ``diffrhythm-vae`` backend (a tiny scripted VAE), tones corpus, one SAE."""
    from audiosae.corpus import builtin_sources
    from audiosae.training import TrainSettings, train_workspace
    from audiosae.workspace import Workspace, build_corpus

    torch.manual_seed(0)
    vae = root / "vae_model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch >= 2.10
        torch.jit.script(TinyVAE()).save(str(vae))
    ws = Workspace.create(root / "ws", "diffrhythm-vae", {"weights": str(vae)})
    build_corpus(ws, builtin_sources("tones", minutes=0.2), device="cpu")
    train_workspace(ws, TrainSettings(expansions=[4], l1s=[0.02], epochs=1, batch_size=128), device="cpu")
    return ws.root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return build_tiny_diffrhythm_workspace(tmp_path_factory.mktemp("trace"))


@pytest.fixture(scope="module")
def models(workspace) -> LoadedModels:
    return LoadedModels.load(workspace, device="cpu")


@pytest.fixture(scope="module")
def generator() -> CFM:
    torch.manual_seed(0)
    return build_cfm(tiny_config(num_heads=32, conv_layers=1))  # 32 heads: what a checkpoint file implies


def _unit(seed: int, rows: int = 1) -> torch.Tensor:
    v = torch.randn(rows, 512, generator=torch.Generator().manual_seed(seed))
    return v / v.norm(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def traced(models, generator):
    counter = PassCounter(generator.transformer)
    try:
        trace = tr.trace_generation(models, generator, style=_unit(1), negative_style=_unit(2), seconds=SECONDS,
                                    seed=7, prompt="test tones")
    finally:
        counter.close()
    return trace, counter.calls


# ---- the metric on hand-made distributions ----------------------------------------------------------


def test_endpoint_progress_known_values_and_guard():
    # frame 0 moves from class 0 to class 1 linearly; frame 1 never moves (excluded by the guard)
    a = np.array([1.0, 0.75, 0.5, 0.0])
    moving = np.stack([a, 1 - a], axis=-1)                  # [S=4, K=2]
    still = np.tile([[0.3, 0.7]], (4, 1))
    dists = np.stack([moving, still], axis=1)               # [S, T=2, K]
    curve, excluded = tr.endpoint_progress(dists, eps=1e-3)
    np.testing.assert_allclose(curve, [0.0, 0.25, 0.5, 1.0])
    assert excluded == 1
    # an overshoot past the end point clips to 0 instead of going negative
    over = np.stack([np.array([[0.5, 0.5], [0.0, 1.0], [1.0, 0.0]])], axis=1)
    np.testing.assert_allclose(tr.endpoint_progress(over)[0], [0.0, 0.0, 1.0])
    # nothing moves at all: every frame excluded -> s_t = 1 everywhere
    flat, excluded = tr.endpoint_progress(np.stack([still, still], axis=1))
    np.testing.assert_array_equal(flat, np.ones(4))
    assert excluded == 2


def test_paper_form_differs_from_endpoint_form_on_a_detour():
    # the distribution goes to class 2 and comes back half way: progress "away from the start"
    # counts the detour, the endpoint form does not
    p = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])[:, None, :]   # [S=3, T=1, K=3]
    np.testing.assert_allclose(tr.endpoint_progress(p)[0], [0.0, 0.0, 1.0])
    # per class at step 1: |0-1|/0.5 -> clipped 1, |0-0|/0.5 = 0, class 2 left out (span 0)
    np.testing.assert_allclose(tr.class_progress(p), [0.0, 0.5, 1.0])


def test_convergence_step():
    assert tr.convergence_step([0.0, 0.95, 0.5, 0.92, 1.0], 0.9) == 3
    assert tr.convergence_step([0.0, 0.2, 1.0], 0.9) == 2
    assert tr.convergence_step([1.0, 1.0], 0.9) == 0
    with pytest.raises(AudioSAEError, match="threshold"):
        tr.convergence_step([1.0], 1.5)


def test_mean_ci_is_the_student_t_interval():
    rows = np.array([[1.0], [2.0], [3.0]])
    mean, lo, hi = tr.mean_ci(rows)
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n)
    np.testing.assert_allclose([mean[0], lo[0], hi[0]], [2.0, 2.0 - half, 2.0 + half])
    assert tr.mean_ci(rows[:1])[1] is None


# ---- conditioning ---------------------------------------------------------------------------------------


def test_lrc_parsing_and_token_placement():
    text = "[ar:someone]\n[00:00.50]hello world.\nnot a lyric line\n[00:01.00]la\n[1:02.5]second minute\n[00:01.40]end"
    lines = cond.parse_lrc(text)
    assert [(round(l.seconds, 2), l.text) for l in lines] == [
        (0.5, "hello world."), (1.0, "la"), (62.5, "second minute"), (1.4, "end")]
    fake = {"hello world.": [5, 6, 2, 7], "la": [9], "second minute": [11, 12], "end": [13]}
    tokens = cond.lyrics_to_tokens(lines, 40, max_frames=6144, tokenizer=fake.__getitem__)
    assert tokens.shape == (40,) and tokens.dtype == torch.long
    start = int(0.5 * 44100 / 2048)  # 10
    # periods inside a line become commas, a period closes each line
    assert tokens[start:start + 5].tolist() == [5, 6, 1, 7, 2]
    # "la" is due at frame 21 (after the first line ended at 15)
    assert tokens[21:23].tolist() == [9, 2]
    # "end" at 1.4 s = frame 30; the 62.5 s line falls after this 40-frame song
    assert tokens[30:32].tolist() == [13, 2] and int((tokens != 0).sum()) == 9
    # overlapping lines are pushed after the previous one
    crowded = cond.lyrics_to_tokens([cond.LrcLine(0.0, "a"), cond.LrcLine(0.01, "b")], 10, max_frames=6144,
                                    tokenizer=lambda s: [20, 21, 22])
    assert crowded.tolist()[:8] == [20, 21, 22, 2, 20, 21, 22, 2]
    # the 95 s model drops the last line, as upstream does
    base = cond.lyrics_to_tokens(lines[:2], 40, max_frames=2048, tokenizer=fake.__getitem__)
    assert int((base != 0).sum()) == 5


def test_instrumental_needs_no_tokenizer():
    assert torch.equal(cond.lyrics_to_tokens([], 12, max_frames=2048, tokenizer=None), torch.zeros(12, dtype=torch.long))
    with pytest.raises(AudioSAEError, match="g2p-vocab"):
        cond.lyrics_to_tokens([cond.LrcLine(0.0, "x"), cond.LrcLine(1.0, "y")], 50, max_frames=6144, tokenizer=None)
    with pytest.raises(AudioSAEError, match="vocab.json"):
        cond.load_g2p_vocab(None)


def test_phoneme_tokenizer_with_an_injected_phonemizer(tmp_path):
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"vocab": {",": 0, ".": 1, "_": 3, "h": 10, "ə": 11, "l": 12, "oʊ": 13}}))
    tok = cond.PhonemeTokenizer(vocab, phonemize=lambda text: [["h", "ə", "l", "oʊ"], ["l", "q", ","]])
    assert tok.encode("hello lo,") == [11, 12, 13, 14, 4, 13, 1]  # ids + 1; "_" between words; "q" unknown
    with pytest.raises(AudioSAEError, match="English"):
        tok.encode("你好")


def test_missing_phonemizer_and_muq_raise_install_hints(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "phonemizer", None)
    monkeypatch.setitem(sys.modules, "phonemizer.backend", None)
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"vocab": {"a": 0}}))
    with pytest.raises(DependencyError, match=r"audiosae-studio\[diffrhythm\].*espeak-ng"):
        cond.PhonemeTokenizer(vocab)
    monkeypatch.setitem(sys.modules, "muq", None)
    with pytest.raises(DependencyError) as info:
        cond.load_mulan("cpu")
    assert "pip install 'audiosae-studio[diffrhythm]'" in str(info.value) and "--style-embedding" in str(info.value)


class FakeMuLan:
    """Stands in for MuQ-MuLan: records what it is given, returns non-normalised vectors."""

    def __init__(self):
        self.calls = []

    def __call__(self, *, wavs=None, texts=None):
        self.calls.append(("wavs", tuple(wavs.shape)) if wavs is not None else ("texts", list(texts)))
        return 3.0 * _unit(5)


def test_styles_from_text_audio_and_files(tmp_path):
    from audiosae.audio import save_audio

    mulan = FakeMuLan()
    text = cond.style_from_text("calm piano", mulan)
    assert mulan.calls[-1] == ("texts", ["calm piano"])
    assert text.vector.shape == (1, 512) and abs(float(text.vector.norm()) - 1) < 1e-6
    long = tmp_path / "long.wav"
    rate = 8000
    ramp = np.linspace(0, 1, int(13.0 * rate), dtype=np.float32)  # value = position in the file
    save_audio(long, np.stack([ramp, ramp]), rate)
    clip = cond.read_style_clip(long)
    assert clip.shape == (240000,)
    # 13 s file: floor(13 / 2) - 5 = 1 s .. 11 s
    assert abs(clip[1000] - 1.04 / 13) < 0.01 and abs(clip[-1000] - 10.96 / 13) < 0.01
    audio = cond.style_from_audio(long, mulan)
    assert mulan.calls[-1] == ("wavs", (1, 240000)) and audio.source == "audio"
    short = tmp_path / "short.wav"
    save_audio(short, np.zeros((1, 9 * rate), np.float32), rate)
    with pytest.raises(AudioInputError, match="at least 10 s"):
        cond.read_style_clip(short)

    from safetensors.torch import save_file

    np.save(tmp_path / "one.npy", 2.0 * _unit(3).numpy())
    save_file({"style": 5.0 * _unit(4, rows=3)}, str(tmp_path / "three.safetensors"))
    one = cond.style_from_file(tmp_path / "one.npy", row=4)  # one row serves every prompt
    assert torch.allclose(one.vector, _unit(3), atol=1e-6)
    table = cond.load_style_embeddings(tmp_path / "three.safetensors")
    assert table.shape == (3, 512) and torch.allclose(table.norm(dim=1), torch.ones(3))
    np.save(tmp_path / "bad.npy", np.zeros((2, 256), np.float32))
    with pytest.raises(AudioSAEError, match=r"\[N, 512\]"):
        cond.load_style_embeddings(tmp_path / "bad.npy")
    np.save(tmp_path / "zero.npy", np.zeros(512, np.float32))
    with pytest.raises(AudioSAEError, match="zero norm"):
        cond.load_style_embeddings(tmp_path / "zero.npy")
    negative = cond.load_negative_style(None)
    assert negative.source == "zeros" and float(negative.vector.abs().sum()) == 0
    assert "vocal.npy" in negative.note and "differs from the official" in negative.note
    with pytest.raises(AudioSAEError, match="one vector"):
        cond.load_negative_style(tmp_path / "three.safetensors")


def test_seconds_to_frames_respects_the_model():
    assert cond.frames_for_seconds(95, 2048) == 2045
    assert cond.frames_for_seconds(285, 6144) == 6136
    with pytest.raises(AudioSAEError, match="285 s"):
        cond.frames_for_seconds(120, 2048)


# ---- tracing -------------------------------------------------------------------------------------------


def test_trace_records_every_state_without_extra_passes(traced, models):
    trace, passes = traced
    assert passes == 31  # one batched cond+uncond DiT pass per Euler update, as plain sampling
    assert trace.steps == 32 and trace.frames == FRAMES
    np.testing.assert_allclose(trace.t_grid, np.linspace(0, 1, 32), atol=1e-6)
    assert trace.latents.shape == trace.x1_predictions.shape == (32, FRAMES, 64)
    assert trace.latents.dtype == np.float16
    assert np.allclose(trace.latents[-1], trace.final_latent, atol=1e-2)
    assert trace.attributes == ["pitch", "loudness", "timbre"]
    for source in tr.SOURCES:
        for attr in trace.attributes:
            d = trace.distributions[source][attr]
            assert d.shape == (32, FRAMES, models.probes.n_classes(attr)) and d.dtype == np.float16
            np.testing.assert_allclose(d.astype(np.float32).sum(-1), 1.0, atol=5e-3)
        summary = trace.features[source]
        assert summary.l0.shape == (32, FRAMES) and summary.mean.shape == (32, 256)
        assert summary.full.shape == (32, FRAMES, 256)  # small enough to keep whole
        np.testing.assert_array_equal(summary.top, summary.full[:, :, summary.top_index])
        peaks = summary.mean.max(axis=0)
        assert peaks[summary.top_index[0]] == peaks.max()
        np.testing.assert_array_equal(summary.l0, (summary.full > 0).sum(-1))
    assert trace.audio.shape == (2, FRAMES * 2048) and trace.sample_rate == 44100
    # state 0 is the seeded noise; its distributions are the probes' verdict on that noise
    from audiosae.analysis import probe_distributions
    from audiosae.generation.diffrhythm import make_noise

    noise = make_noise(FRAMES, seed=7)[0]
    np.testing.assert_allclose(trace.latents[0], noise.numpy(), atol=4e-3)
    expected = probe_distributions(models.probes, models.sae.encode(noise)[1])
    for attr in trace.attributes:
        np.testing.assert_allclose(trace.distributions["x_t"][attr][0].astype(np.float32), expected[attr], atol=1e-3)
    final = probe_distributions(models.probes, models.sae.encode(torch.from_numpy(trace.final_latent))[1])
    np.testing.assert_allclose(trace.distributions["x1"]["pitch"][-1].astype(np.float32), final["pitch"], atol=1e-3)


def test_curves_are_bounded_anchored_and_consistent_with_convergence(traced):
    trace, _ = traced
    for source in tr.SOURCES:
        for form in tr.FORMS:
            for attr in trace.attributes:
                curve = trace.s_t(attr, source, form)
                assert curve.shape == (32,) and np.all((curve >= 0) & (curve <= 1))
                assert curve[-1] == pytest.approx(1.0)
                defined = trace.excluded_frames[source][attr] < trace.frames if form == "endpoint" \
                    else not np.all(curve == 1.0)
                if defined:
                    assert curve[0] == pytest.approx(0.0)
                step = trace.convergence[source][form][attr]
                threshold = trace.meta["threshold"]
                assert np.all(curve[step:] >= threshold)
                assert step == 0 or curve[step - 1] < threshold
    # x1 at the final state is the final latent, so both sources end at the same distribution
    for attr in trace.attributes:
        np.testing.assert_array_equal(trace.distributions["x_t"][attr][-1], trace.distributions["x1"][attr][-1])


def test_trace_is_deterministic_with_a_seed(traced, models, generator):
    trace, _ = traced
    again = tr.trace_generation(models, generator, style=_unit(1), negative_style=_unit(2), seconds=SECONDS, seed=7,
                                decode_final=False, full_features_limit=0)
    np.testing.assert_array_equal(again.latents, trace.latents)
    for attr in trace.attributes:
        np.testing.assert_array_equal(again.distributions["x_t"][attr], trace.distributions["x_t"][attr])
        assert again.progress["x_t"]["endpoint"][attr] == trace.progress["x_t"]["endpoint"][attr]
    # without the full features kept, the top features are recomputed and agree
    assert again.features["x_t"].full is None
    np.testing.assert_array_equal(again.features["x_t"].top_index, trace.features["x_t"].top_index)
    np.testing.assert_allclose(again.features["x_t"].top.astype(np.float32),
                               trace.features["x_t"].top.astype(np.float32), atol=1e-3)
    other = tr.trace_generation(models, generator, style=_unit(1), negative_style=_unit(2), seconds=SECONDS, seed=8,
                                decode_final=False)
    assert not np.allclose(other.latents[-1], trace.latents[-1])


def _models_with(models: LoadedModels, architecture: str, rmsnorm: bool, k: int | None = None) -> LoadedModels:
    """The workspace's SAE weights under another architecture, with its probes re-keyed to it."""
    from audiosae.probes import ProbeSet, _sae_info
    from audiosae.sae import SAEConfig, SparseAutoencoder

    base = models.sae
    cfg = SAEConfig(d_in=base.cfg.d_in, d_sae=base.cfg.d_sae, l1_coefficient=0.0, architecture=architecture,
                    rmsnorm=rmsnorm, k=k)
    sae = SparseAutoencoder(cfg)
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(sae, name).copy_(getattr(base, name))
        if sae.threshold is not None:   # a gate that closes on about half of the positive pre-activations
            noise = torch.randn(256, base.cfg.d_in, generator=torch.Generator().manual_seed(3))
            pre = (noise @ base.W_enc + base.b_enc).clamp_min(0)
            sae.threshold.copy_(pre.median(dim=0).values)
    probes = models.probes
    rekeyed = ProbeSet(weights=dict(probes.weights), bias=dict(probes.bias), class_names=dict(probes.class_names),
                       feature_kind="sae", sae=_sae_info(sae))
    return LoadedModels(models.workspace, models.backend, sae, rekeyed, models.spec)


@pytest.mark.parametrize("architecture,rmsnorm,k", [("topk", False, 4), ("jumprelu", True, None),
                                                    ("batchtopk", False, 8)])
def test_trace_follows_the_sae_s_own_encode_for_every_architecture(models, generator, architecture, rmsnorm, k):
    variant = _models_with(models, architecture, rmsnorm, k)
    sae = variant.sae
    kw = dict(style=_unit(1), negative_style=_unit(2), seconds=SECONDS, seed=7, decode_final=False, steps=6)
    full = tr.trace_generation(variant, generator, **kw)                              # f kept whole
    slim = tr.trace_generation(variant, generator, full_features_limit=0, **kw)       # top features recomputed
    assert full.meta["sae_architecture"] == sae.cfg.label and full.meta["sae_k"] == k
    for source in tr.SOURCES:
        whole, summary = full.features[source], slim.features[source]
        assert whole.full is not None and summary.full is None
        # the stored f is the SAE's: encode of the stored latents (float16) agrees
        latents = torch.from_numpy((full.latents if source == "x_t" else full.x1_predictions).astype(np.float32))
        with torch.no_grad():
            f = sae.encode(latents)[1].numpy()
        assert 0 < np.mean(f != 0) < 0.6                 # the architecture's sparsity, not ReLU's
        off = np.abs(whole.full.astype(np.float32) - f) > 0.02 + 0.02 * np.abs(f)
        assert off.mean() < 0.01                          # (float16 latents may flip a near-tie of TopK)
        if architecture == "topk":
            assert whole.l0.max() <= k
        np.testing.assert_array_equal(whole.l0, (whole.full != 0).sum(-1))
        np.testing.assert_array_equal(summary.l0, whole.l0)
        # without the full f, the top features' per-frame f is still the SAE's: zero where the
        # TopK code / JumpReLU gate is closed (a slice of the encoder through a ReLU is not)
        np.testing.assert_array_equal(summary.top_index, whole.top_index)
        expected = whole.full[:, :, whole.top_index].astype(np.float32)
        np.testing.assert_allclose(summary.top.astype(np.float32), expected, atol=2e-3)
        assert np.array_equal(summary.top == 0, expected == 0)
    # the distributions are the probes' on those features
    from audiosae.analysis import probe_distributions

    with torch.no_grad():
        expected = probe_distributions(variant.probes, sae.encode(torch.from_numpy(full.latents[0].astype(np.float32)))[1])
    np.testing.assert_allclose(full.distributions["x_t"]["pitch"][0].astype(np.float32), expected["pitch"], atol=5e-3)


def test_save_load_round_trip_and_corruption(traced, tmp_path, models):
    trace, _ = traced
    folder = tr.save_trace(trace, tmp_path / "t")
    assert sorted(p.name for p in folder.iterdir()) == ["final.wav", "trace.json", "trace.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left
    loaded = tr.load_trace(folder)
    assert loaded.meta == trace.meta
    assert loaded.progress == trace.progress and loaded.convergence == trace.convergence
    np.testing.assert_array_equal(loaded.latents, trace.latents)
    np.testing.assert_array_equal(loaded.x1_predictions, trace.x1_predictions)
    np.testing.assert_array_equal(loaded.final_latent, trace.final_latent)
    for attr in trace.attributes:
        np.testing.assert_array_equal(loaded.distributions["x1"][attr], trace.distributions["x1"][attr])
    np.testing.assert_array_equal(loaded.features["x_t"].top, trace.features["x_t"].top)
    np.testing.assert_allclose(loaded.audio, trace.audio, atol=1e-6)
    # a step decoded on demand with the workspace backend
    assert tr.decode_state(loaded, models.backend, 5, "x1").shape == (2, FRAMES * 2048)
    # saving again replaces the folder as a whole
    tr.save_trace(trace, folder)
    assert tr.load_trace(folder).meta["trace_id"] == trace.meta["trace_id"]

    data = json.loads((folder / "trace.json").read_text())
    data["schema_version"] = 99
    (folder / "trace.json").write_text(json.dumps(data))
    with pytest.raises(WorkspaceError, match="newer"):
        tr.load_trace(folder)
    data["schema_version"], data["trace_id"] = 1, "someone-else"
    (folder / "trace.json").write_text(json.dumps(data))
    with pytest.raises(WorkspaceError, match="another trace"):
        tr.load_trace(folder)
    tr.save_trace(trace, folder)
    blob = (folder / "trace.safetensors").read_bytes()
    (folder / "trace.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(WorkspaceError, match="corrupt|truncated"):
        tr.load_trace(folder)
    (folder / "trace.json").write_text("{not json")
    with pytest.raises(WorkspaceError, match="not valid JSON"):
        tr.load_trace(folder)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(WorkspaceError, match="not a trace folder"):
        tr.save_trace(trace, tmp_path / "other")


def test_trace_refuses_other_backends_and_cancels(models, generator, tmp_path):
    from audiosae.workspace import Workspace

    mel = LoadedModels(Workspace.create(tmp_path / "mel", "mel"), models.backend, models.sae, models.probes,
                       models.spec)
    with pytest.raises(WorkspaceError, match="diffrhythm-vae"):
        tr.trace_generation(mel, generator, style=_unit(1), negative_style=_unit(2), seconds=SECONDS)
    token = CancelToken()
    seen = []

    def stop_after_three(step: tr.TraceStep) -> None:
        seen.append(step.index)
        if step.index == 2:
            token.cancel()

    with pytest.raises(JobCancelled):
        tr.trace_generation(models, generator, style=_unit(1), negative_style=_unit(2), seconds=SECONDS,
                            on_step=stop_after_three, cancel=token)
    assert seen == [0, 1, 2]
    with pytest.raises(AudioSAEError, match="longer than"):
        tr.trace_generation(models, generator, style=_unit(1), negative_style=_unit(2), seconds=200)


# ---- CLI ------------------------------------------------------------------------------------------------


def test_cli_trace_and_report_end_to_end(workspace, generator, tmp_path, monkeypatch, capsys):
    checkpoint = tmp_path / "cfm_model.pt"
    torch.save({"model_state_dict": {k: v.half() for k, v in generator.state_dict().items()}}, checkpoint)
    style = tmp_path / "style.npy"
    np.save(style, _unit(1).numpy())
    out = tmp_path / "single"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "audiosae.cli", "trace", str(workspace), "--prompt", "soft tones", "--seconds", "1.5",
           "--seed", "3", "--style-embedding", str(style), "--weights", str(checkpoint), "--device", "cpu",
           "--out", str(out), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["steps"] == 32 and data["frames"] == int(1.5 * 44100 / 2048)
    assert "vocal.npy" in res.stderr and data["warnings"]  # the zero negative style is announced
    trace = tr.load_trace(out)
    assert trace.meta["prompt"] == "soft tones" and trace.meta["style"]["source"] == "file"
    assert (out / "final.wav").is_file()
    res = subprocess.run([sys.executable, "-m", "audiosae.cli", "trace-report", str(out), "--json"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["n"] == 1 and report["convergence"]["x_t"]["endpoint"]["pitch"]["steps"] == \
        [trace.convergence["x_t"]["endpoint"]["pitch"]]
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "report.json").read_text())["kind"] == "audiosae.trace_report.trace"

    # a batch (in-process through the same entry point): one style row per prompt, seeds 3 + i
    from audiosae.cli import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two prompts\nfirst prompt\n\nsecond prompt\n")
    np.save(tmp_path / "styles.npy", _unit(9, rows=2).numpy())
    batch = tmp_path / "batch"
    args = ["trace", str(workspace), "--prompts", str(prompts), "--seconds", "1.5", "--seed", "3", "--no-audio",
            "--style-embedding", str(tmp_path / "styles.npy"), "--weights", str(checkpoint), "--device", "cpu",
            "--out", str(batch), "--quiet"]
    assert main(args) == 0
    summary = json.loads((batch / "summary.json").read_text())
    assert summary["n"] == 2 and [t["seed"] for t in summary["traces"]] == [3, 4]
    assert "Student t" in summary["ci"]
    curve = summary["curves"]["x_t"]["endpoint"]["loudness"]
    assert len(curve["mean"]) == 32 and all(lo <= m <= hi for lo, m, hi in zip(curve["lo"], curve["mean"], curve["hi"]))
    first = tr.load_trace(batch / "trace-000")
    assert first.meta["prompt"] == "first prompt" and first.audio is None
    assert main(["trace-report", str(batch), "--quiet"]) == 0
    assert json.loads((batch / "report.json").read_text())["kind"] == "audiosae.trace_report.batch"
    assert (batch / "report.png").stat().st_size > 1000
    # usage and input errors exit like the other commands
    assert main(["trace", str(workspace), "--out", str(tmp_path / "x")]) == 2
    assert main(["trace", str(workspace), "--prompt", "x", "--weights", str(checkpoint), "--device", "cpu",
                 "--style-embedding", str(tmp_path / "styles.npy"), "--out", str(tmp_path / "x"), "--quiet"]) == 1
    assert "2 style rows for 1 prompt" in capsys.readouterr().err
    # a text prompt needs MuQ-MuLan: without the package, one line saying what to install
    monkeypatch.setitem(sys.modules, "muq", None)
    assert main(["trace", str(workspace), "--prompt", "x", "--weights", str(checkpoint), "--device", "cpu",
                 "--out", str(tmp_path / "x"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'audiosae-studio[diffrhythm]'" in err and err.count("\n") <= 2
    # lyrics without the (unshippable) vocabulary: told where to get it
    (tmp_path / "song.lrc").write_text("[00:00.10]hello\n[00:01.00]world\n")
    assert main(["trace", str(workspace), "--prompt", "x", "--style-embedding", str(style), "--lyrics",
                 str(tmp_path / "song.lrc"), "--weights", str(checkpoint), "--device", "cpu",
                 "--out", str(tmp_path / "x"), "--quiet"]) == 1
    assert "--g2p-vocab" in capsys.readouterr().err
