"""audiosae.feature_index: corpus statistics per SAE feature, equal to a brute-force computation;
cancel, staleness, round trip, snippets of built-in and user sources, boost rendering."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiosae.corpus import builtin_sources, user_sources
from audiosae.errors import AudioSAEError, JobCancelled
from audiosae.feature_index import (build_feature_index, decoder_direction, feature_index_path,
                                    histogram_counts, histogram_edges, load_feature_index, load_source_window,
                                    render_boost)
from audiosae.jobs import CancelToken
from audiosae.sae import SparseAutoencoder
from audiosae.training import TrainSettings, train_workspace
from audiosae.workspace import Workspace, build_corpus, read_shard

SR = 24000


def make_tiny_workspace(root: Path) -> tuple[Workspace, str]:
    """mel backend, 0.3 min of tones (2 sources, one shard each), one x4 SAE trained 2 epochs."""
    ws = Workspace.create(root, "mel")
    build_corpus(ws, builtin_sources("tones", minutes=0.3), device="cpu", shard_frames=600)
    train_workspace(ws, TrainSettings(expansions=[4], l1s=[0.02], epochs=2, batch_size=256))
    return ws, ws.sae_names()[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    ws, name = make_tiny_workspace(tmp_path_factory.mktemp("fi") / "ws")
    assert len(ws.manifest().shards) >= 2  # the local -> global source mapping is exercised
    return ws, name


def brute_force(ws: Workspace, name: str, top_k: int, edges: np.ndarray) -> dict:
    """Every frame at once through the SAE, statistics with plain numpy."""
    sae = SparseAutoencoder.load(ws.sae_dir(name))
    lat, src, frame, time = [], [], [], []
    for shard in ws.manifest().shards:
        tensors, meta = read_shard(ws.corpus_dir / shard["file"])
        lat.append(tensors["latents"].float())
        src += [meta["sources"][i] for i in tensors["source"].tolist()]
        frame.append(tensors["frame"].numpy())
        time.append(tensors["time"].numpy())
    with torch.no_grad():
        f = sae.encode(torch.cat(lat))[1].numpy()
    frame, time, src = np.concatenate(frame), np.concatenate(time), np.array(src)
    active = f > 0
    hist = np.stack([np.histogram(np.clip(f[active[:, j], j], edges[0], edges[-1]), bins=edges)[0]
                     for j in range(f.shape[1])])
    order = np.argsort(-f, axis=0, kind="stable")[:top_k].T           # [F, k] frame rows
    return {"f": f, "density": active.mean(0), "hist": hist,
            "mean_active": np.where(active.any(0), f.sum(0) / np.maximum(active.sum(0), 1), 0),
            "order": order, "src": src, "frame": frame, "time": time}


def test_index_equals_brute_force(tiny):
    ws, name = tiny
    k = 8
    # 250-row batches: several per shard, and a partial one at each shard's end.
    index = build_feature_index(ws, name, top_k=k, hist_bins=12, batch_size=250)
    ref = brute_force(ws, name, k, index.hist_edges)
    n, n_feat = ref["f"].shape
    assert index.n_frames == n and index.n_features == n_feat == 4 * 128
    np.testing.assert_allclose(index.hist_edges, histogram_edges(n_feat, 12))
    assert index.hist_edges[-1] == pytest.approx(np.sqrt(n_feat), rel=1e-6)
    np.testing.assert_allclose(index.density, ref["density"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(index.mean_active, ref["mean_active"], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(index.hist, ref["hist"])
    np.testing.assert_array_equal(index.active_counts(), np.round(ref["density"] * n))
    expected_top = np.take_along_axis(ref["f"].T, ref["order"], axis=1)
    np.testing.assert_allclose(index.top_activation, np.where(expected_top > 0, expected_top, 0), rtol=1e-5)
    live = expected_top > 0
    assert live.sum() > n_feat  # not a vacuous comparison
    got_ids = np.array(index.source_ids)[index.top_source]
    np.testing.assert_array_equal(got_ids[live], ref["src"][ref["order"]][live])
    np.testing.assert_array_equal(index.top_frame[live], ref["frame"][ref["order"]][live])
    np.testing.assert_allclose(index.top_time[live], ref["time"][ref["order"]][live])
    assert (index.top_source[~live] == -1).all() and (index.top_frame[~live] == -1).all()
    # Both sources appear among the top frames, so the per-shard source lists were mapped.
    assert set(got_ids[live]) == set(ws.manifest().sources)
    assert feature_index_path(ws, name).is_file()
    # The "spread out" list: a subset in rank order, no two frames of a source closer than the gap.
    j = int(np.argmax(index.active_counts()))
    spread = index.top_entries(j, min_gap_seconds=0.3)
    full = index.top_entries(j)
    assert spread[0] == full[0] and len(spread) < len(full)
    assert [e["rank"] for e in spread] == sorted(e["rank"] for e in spread)
    for a in spread:
        for b in spread:
            if a is not b and a["source_id"] == b["source_id"]:
                assert abs(a["time"] - b["time"]) >= 0.3


def test_histogram_counts_follow_the_index_rule():
    edges = np.array([0.01, 0.1, 1.0, 10.0], dtype=np.float32)
    counts = histogram_counts(np.array([0.0, 0.001, 0.05, 0.1, 0.5, 9.9, 10.0, 50.0, -1.0]), edges)
    np.testing.assert_array_equal(counts, [2, 2, 3])  # <lo -> bin 0, >=hi -> last bin, <=0 ignored


def test_cancel_mid_way_raises_and_leaves_no_file(tiny, tmp_path):
    ws, name = tiny
    path = feature_index_path(ws, name)
    path.unlink(missing_ok=True)
    token = CancelToken()
    seen = []

    def progress(event):
        seen.append(event.done)
        if event.done > 0:
            token.cancel()

    with pytest.raises(JobCancelled):
        build_feature_index(ws, name, batch_size=200, progress=progress, cancel=token)
    assert 0 < max(seen) < sum(s["n_frames"] for s in ws.manifest().shards)  # it really was mid-way
    assert not path.exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_round_trip_and_staleness(tiny):
    ws, name = tiny
    built = build_feature_index(ws, name, top_k=5, hist_bins=10)
    loaded = load_feature_index(ws, name)
    assert loaded is not None
    for field in ("density", "mean_active", "hist_edges", "hist", "top_activation", "top_source", "top_frame",
                  "top_time"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(built, field))
    assert loaded.source_ids == built.source_ids and loaded.source_labels == built.source_labels
    assert loaded.sae_fingerprint == SparseAutoencoder.load(ws.sae_dir(name)).fingerprint()
    assert loaded.n_frames == built.n_frames and loaded.sae_name == name

    # Another SAE (different weights) given this SAE's index: stale.
    other = SparseAutoencoder.load(ws.sae_dir(name))
    with torch.no_grad():
        other.W_dec.mul_(1.5)
    other.save(ws.sae_dir("other"))
    shutil.copy(feature_index_path(ws, name), feature_index_path(ws, "other"))
    assert load_feature_index(ws, "other") is None
    # A different corpus: stale.
    built.corpus_fingerprint = "0" * 64
    built.save(feature_index_path(ws, "other2"))
    shutil.copytree(ws.sae_dir(name), ws.sae_dir("other2"), dirs_exist_ok=True)
    built.save(feature_index_path(ws, "other2"))
    assert load_feature_index(ws, "other2") is None
    # Absent, truncated: None (a rebuild replaces it).
    assert load_feature_index(ws, "missing") is None
    data = feature_index_path(ws, name).read_bytes()
    feature_index_path(ws, "other").write_bytes(data[: len(data) // 2])
    assert load_feature_index(ws, "other") is None
    shutil.rmtree(ws.sae_dir("other"))
    shutil.rmtree(ws.sae_dir("other2"))


def test_snippet_of_a_builtin_source_is_the_right_audio(tiny):
    ws, name = tiny
    index = load_feature_index(ws, name) or build_feature_index(ws, name)
    # A top frame away from the source's ends, so the window is centred on it.
    feature, rank = next((j, r) for j in range(index.n_features) for r in range(index.top_k)
                         if index.top_source[j, r] >= 0 and 0.6 < index.top_time[j, r] < 8.0)
    wave, rate, start = index.snippet(ws, feature, rank, seconds=1.0)
    t = float(index.top_time[feature, rank])
    assert rate == SR and wave.shape == (1, SR)
    assert start == pytest.approx(t - 0.5, abs=1.0 / SR)
    source_id = index.source_ids[index.top_source[feature, rank]]
    source = next(s for s in builtin_sources("tones", minutes=0.3) if s.source_id == source_id)
    full = source.load(SR, 1)
    first = int(round(start * SR))
    np.testing.assert_array_equal(wave, full[:, first:first + SR])
    # The re-rendered audio is what the corpus encoded: the frame's latent matches the shard's.
    backend = ws.backend("cpu")
    encoded = backend.encode(full).latents
    record = ws.manifest().sources[source_id]
    tensors, meta = read_shard(ws.corpus_dir / ws.manifest().shards[record.shard]["file"])
    rows = (tensors["source"].numpy() == meta["sources"].index(source_id)) & \
           (tensors["frame"].numpy() == index.top_frame[feature, rank])
    np.testing.assert_allclose(encoded[index.top_frame[feature, rank]], tensors["latents"][rows][0].float().numpy(),
                               atol=2e-2)
    # Near the start of the source the window moves inside it instead of shrinking.
    early, _, early_start = load_source_window(ws, source_id, -0.3, 1.0)
    assert early_start == 0.0 and early.shape == (1, SR)
    with pytest.raises(AudioSAEError, match="no top frame|out of range"):
        index.snippet(ws, feature, index.top_k, seconds=1.0)


def test_snippet_window_of_a_user_file(tmp_path):
    t = np.arange(3 * 16000) / 16000
    for i, f0 in enumerate((150.0, 200.0)):
        # A rising sweep, so the corpus' centroids vary enough to fit the timbre bins.
        phase = 2 * np.pi * f0 * 3 / np.log(30) * (30 ** (t / 3) - 1)
        sf.write(tmp_path / f"clip{i}.wav", (0.3 * np.sin(phase)).astype(np.float32), 16000)
    ws = Workspace.create(tmp_path / "ws", "mel")
    sources, problems = user_sources([tmp_path / "clip0.wav", tmp_path / "clip1.wav"])
    assert not problems
    build_corpus(ws, sources, device="cpu")
    source_id = sources[1].source_id
    wave, rate, start = load_source_window(ws, source_id, 1.2, 0.5)
    assert rate == SR and wave.shape == (1, SR // 2) and start == pytest.approx(1.2)
    whole = sources[1].load(SR, 1)
    first = int(round(1.2 * SR))
    # Resampled in part vs. in whole: equal away from the cut's filter edges.
    np.testing.assert_allclose(wave[0, 200:-200], whole[0, first + 200:first + SR // 2 - 200], atol=2e-3)


def test_render_boost_and_decoder_direction(tiny):
    ws, name = tiny
    sae = SparseAutoencoder.load(ws.sae_dir(name))
    direction = decoder_direction(sae, 7)
    np.testing.assert_array_equal(direction, sae.W_dec[7].detach().numpy())
    with pytest.raises(AudioSAEError):
        decoder_direction(sae, sae.cfg.d_sae)
    backend = ws.backend("cpu")
    source = builtin_sources("tones", minutes=0.3)[0]
    wave = source.load(SR, 1)[:, : 4 * SR]
    latents = backend.encode(wave).latents
    frame = 150
    zero = render_boost(backend, latents, wave, frame, direction, 0.0, window_seconds=2.0, limit=False)  # raw decode
    a, b = zero.frames
    hop = backend.hop_length
    assert b - a == 150 and a <= frame < b and zero.start_time == pytest.approx(a * hop / SR)
    np.testing.assert_array_equal(zero.original, wave[:, a * hop:b * hop])
    plain = backend.decode(latents[a:b], reference=wave[:, a * hop:b * hop])
    np.testing.assert_allclose(zero.boosted, plain[:, : zero.original.shape[1]], atol=1e-6)
    err = np.sqrt(np.mean((zero.boosted - zero.original) ** 2) / np.mean(zero.original ** 2))
    assert err < 0.1  # an unchanged window decodes back to (nearly) the original
    boosted = render_boost(backend, latents, wave, frame, direction, 8.0, window_seconds=2.0, limit=False)
    change = np.sqrt(np.mean((boosted.boosted - zero.boosted) ** 2) / np.mean(zero.boosted ** 2))
    assert change > 0.2
    # At the clip's end the window moves inside the clip.
    end = render_boost(backend, latents, wave, len(latents) - 1, direction, 1.0, window_seconds=2.0)
    assert end.frames == (len(latents) - 150, len(latents))
