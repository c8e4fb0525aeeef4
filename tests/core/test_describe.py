"""audiosae.describe: every feature labelled with attribute classes (AUROC, mass), the histogram
AUROC against an exact rank AUROC within its stated bound, the cache, the CLI, the search."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from audiosae.cli import main
from audiosae.describe import (DESCRIBE_FILE, auroc_from_histograms, describe_features, description_path,
                               load_description, load_or_describe, search_features,
                               top_frame_precision)
from audiosae.errors import JobCancelled
from audiosae.feature_index import histogram_counts, histogram_edges
from audiosae.jobs import CancelToken
from audiosae.sae import SparseAutoencoder
from audiosae.workspace import Workspace, read_shard
from tests.support.common import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from bench_describe import save_sae, write_frames_workspace  # noqa: E402

N_FRAMES = 2400
N_NOTES = 7          # pitch classes 0 (unvoiced) .. 6 (G1 .. C2)
D_IN = 10
N_FEAT = 10


def exact_auroc(values: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney with mid-ranks: P(a > b) + 0.5 P(a = b), exactly."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    ranks = rankdata(values)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def make_known(root) -> tuple[Workspace, np.ndarray, dict[str, np.ndarray]]:
    """Latents: dims 0..6 one-hot of the pitch class, 7 random, 8 = loudness class / 20, 9 = 1.

    SAE features: j < 7 fires exactly on pitch class j; 7 is random (about half the frames);
    8 is dead; 9 fires on the loud frames (loudness classes >= 15, several classes).
    """
    rng = np.random.default_rng(0)
    labels = {"pitch": rng.integers(0, N_NOTES, N_FRAMES), "loudness": rng.integers(0, 20, N_FRAMES),
              "timbre": rng.integers(0, 20, N_FRAMES)}
    x = np.zeros((N_FRAMES, D_IN), np.float32)
    x[np.arange(N_FRAMES), labels["pitch"]] = 1.0
    x[:, 7] = rng.standard_normal(N_FRAMES)
    x[:, 8] = labels["loudness"] / 20.0
    x[:, 9] = 1.0
    ws = write_frames_workspace(root, x, labels["pitch"], labels["loudness"], labels["timbre"], n_sources=4,
                                shard_frames=1000)
    w = np.zeros((D_IN, N_FEAT), np.float32)
    b = np.zeros(N_FEAT, np.float32)
    for j in range(N_NOTES):
        w[j, j], b[j] = 1.0, -0.5
    w[7, 7] = 1.0
    b[8] = -100.0
    w[8, 9], b[9] = 1.0, -0.72          # x8 >= 0.75 <=> loudness class >= 15
    save_sae(ws, "known", w, b)
    return ws, x, labels


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    ws, x, labels = make_known(tmp_path_factory.mktemp("describe") / "ws")
    desc = describe_features(ws, "known", chunk_elements=3000)   # 300-frame batches, partial ones at shard ends
    return ws, x, labels, desc


def test_known_labels(known):
    ws, _, labels, desc = known
    assert desc.n_frames == N_FRAMES and desc.n_features == N_FEAT
    assert desc.auroc.shape == (N_FEAT, 66 + 20 + 20)
    np.testing.assert_array_equal(desc.class_frames[:N_NOTES], np.bincount(labels["pitch"], minlength=N_NOTES))
    single = desc.single_label_score()
    names = ws.attribute_spec.class_names("pitch")
    for j in range(N_NOTES):
        best = desc.labels(j, top=1)[0]
        assert (best["attribute"], best["class"]) == ("pitch", names[j])
        assert best["score"] == 1.0 and best["mass_fraction"] == 1.0 and best["auroc_error"] == 0.0
        assert single[j] == pytest.approx(1.0)
        assert desc.density[j] == pytest.approx(np.mean(labels["pitch"] == j), abs=1e-6)
    # The random feature: about 0.5 for every class with frames; its best class holds little mass.
    au = desc.auroc[7][np.isfinite(desc.auroc[7])]
    assert np.all(np.abs(au - 0.5) < 0.15), au
    assert single[7] < 0.4
    # Dead: no labels, score 0; classes without frames: no AUROC.
    assert desc.labels(8) == [] and single[8] == 0 and desc.density[8] == 0
    assert np.isnan(desc.auroc[0, N_NOTES:66]).all()
    # Loud feature: its labels are the loud bins, each AUROC well above 0.5, mass on them only.
    loud = desc.labels(9, top=5)
    assert all(lab["attribute"] == "loudness" for lab in loud)
    assert {lab["class"] for lab in loud} <= set(ws.attribute_spec.class_names("loudness")[15:])
    frac = desc.mass_fraction()[9, 66:86]
    assert frac[:15].sum() == 0 and frac[15:].sum() == pytest.approx(1.0)


def test_histogram_auroc_matches_exact_within_bound():
    """Random sparse activations with few bins (large ties): |hist - exact| <= the stated bound."""
    rng = np.random.default_rng(1)
    n, n_feat, n_cls = 3000, 6, 5
    edges = histogram_edges(64, bins=6)
    y = rng.integers(0, n_cls, n)
    vals = np.where(rng.random((n, n_feat)) < 0.3, rng.lognormal(0.0, 1.0, (n, n_feat)), 0.0)
    vals[:, 0] += np.where(vals[:, 0] > 0, 0.5 * y, 0)           # class-dependent features
    vals[:, 1] = np.where(y == 2, rng.lognormal(1.0, 0.3, n), vals[:, 1])
    bounds = []
    for j in range(n_feat):
        total = histogram_counts(vals[:, j], edges)
        for c in range(n_cls):
            pos = histogram_counts(vals[y == c, j], edges)
            au, bound = auroc_from_histograms(pos, total, np.int64((y == c).sum()), n)
            exact = exact_auroc(vals[:, j], y == c)
            assert abs(au - exact) <= bound + 1e-9, (j, c, au, exact, bound)
            bounds.append(bound)
    assert max(bounds) > 0.001      # the bins really were coarse: the check was not vacuous


def test_pipeline_equals_brute_force(tmp_path):
    """A random SAE on random latents: streamed AUROC / mass / active equal numpy on all frames."""
    rng = np.random.default_rng(2)
    n, d, f = 1500, 8, 24
    labels = {"pitch": rng.integers(0, 66, n), "loudness": rng.integers(0, 20, n), "timbre": rng.integers(0, 20, n)}
    x = rng.standard_normal((n, d)).astype(np.float32)
    ws = write_frames_workspace(tmp_path / "ws", x, labels["pitch"], labels["loudness"], labels["timbre"],
                                shard_frames=600)
    sae = save_sae(ws, "rand", rng.standard_normal((d, f)).astype(np.float32) / np.sqrt(d),
                   np.full(f, -0.8, np.float32))
    desc = describe_features(ws, "rand", bins=16, chunk_elements=5000)
    lat = torch.cat([read_shard(ws.corpus_dir / s["file"])[0]["latents"].float() for s in ws.manifest().shards])
    with torch.no_grad():
        acts = sae.encode(lat)[1].numpy()
    off = 0
    for attr, n_cls in (("pitch", 66), ("loudness", 20), ("timbre", 20)):
        onehot = np.eye(n_cls)[labels[attr]]
        np.testing.assert_allclose(desc.mass[:, off:off + n_cls], acts.T @ onehot, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(desc.active[:, off:off + n_cls], (acts > 0).T.astype(int) @ onehot)
        for c in range(0, n_cls, 7):
            pos = labels[attr] == c
            for j in range(f):
                if 0 < pos.sum() < n:
                    exact = exact_auroc(acts[:, j], pos)
                    assert abs(desc.auroc[j, off + c] - exact) <= desc.auroc_error[j, off + c] + 1e-5
        off += n_cls
    np.testing.assert_allclose(desc.density, (acts > 0).mean(0), atol=1e-6)
    assert np.nanmax(desc.auroc_error) < 0.05


def test_cache_reused_and_recomputed(tmp_path, monkeypatch):
    ws, _, _ = make_known(tmp_path / "ws")
    desc = describe_features(ws, "known")
    path = description_path(ws, "known")
    assert path.name == DESCRIBE_FILE and path.is_file()
    cached = load_description(ws, "known")
    assert cached is not None
    np.testing.assert_array_equal(cached.auroc, desc.auroc)
    assert cached.class_names == desc.class_names and cached.sae_fingerprint == desc.sae_fingerprint

    import audiosae.describe as mod

    def boom(*a, **k):
        raise AssertionError("recomputed although the cache is current")

    monkeypatch.setattr(mod, "describe_features", boom)
    assert load_or_describe(ws, "known").n_frames == N_FRAMES      # from the file
    monkeypatch.undo()

    # A changed SAE (one bias) makes the cache stale; the next call recomputes and rewrites it.
    sae = SparseAutoencoder.load(ws.sae_dir("known"))
    with torch.no_grad():
        sae.b_enc[0] = -2.0                                           # feature 0 now dead
    sae.save(ws.sae_dir("known"))
    assert load_description(ws, "known") is None
    fresh = load_or_describe(ws, "known")
    assert fresh.density[0] == 0 and fresh.labels(0) == []
    assert load_description(ws, "known") is not None
    # A different bin count is another cache key.
    assert load_description(ws, "known", bins=32) is None


def test_cancel_leaves_no_file(tmp_path):
    ws, _, _ = make_known(tmp_path / "ws")
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        describe_features(ws, "known", cancel=token)
    assert not description_path(ws, "known").exists()


def test_search(known):
    ws, _, _, desc = known
    desc = load_or_describe(ws, "known")
    hits = search_features(desc, "g#1")
    assert hits[0]["feature"] == 2 and hits[0]["score"] == 1.0 and hits[0]["class"] == "G#1"
    assert search_features(desc, "Ab1")[0]["feature"] == 2          # enharmonic spelling
    assert search_features(desc, "  UNVOICED ")[0]["feature"] == 0
    loud = search_features(desc, "loud", min_score=0.8)
    assert loud[0]["feature"] == 9 and loud[0]["attribute"] == "loudness"
    assert 7 not in {h["feature"] for h in loud}
    pitch = {h["feature"] for h in search_features(desc, "pitch", min_score=0.99)}
    assert {1, 2, 3, 4, 5, 6} <= pitch
    assert search_features(desc, "no such label") == []


def test_cli_json_and_neuronpedia(known, tmp_path, capsys):
    ws, _, _, _ = known
    out = tmp_path / "np.json"
    assert main(["describe", str(ws.root), "--sae", "known", "--json", "--top", "3", "--quiet",
                 "--device", "cpu", "--neuronpedia", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"sae", "features"} and data["sae"] == "known"
    assert [f["feature"] for f in data["features"]] == list(range(N_FEAT))
    for item in data["features"]:
        assert {"feature", "labels", "single_label_score", "density"} <= set(item)
        assert len(item["labels"]) <= 3
        scores = [lab["score"] for lab in item["labels"]]
        assert scores == sorted(scores, reverse=True)
        for lab in item["labels"]:
            assert {"attribute", "class", "score", "mass_fraction"} <= set(lab)
    assert data["features"][3]["labels"][0]["class"] == "A1" and data["features"][3]["single_label_score"] == 1.0
    doc = json.loads(out.read_text())
    assert doc["features"][3]["explanations"][0]["description"] == "pitch A1 (AUROC 1.00)"
    assert doc["features"][3]["frac_nonzero"] == pytest.approx(data["features"][3]["density"])

    assert main(["describe", str(ws.root), "--sae", "known", "--feature", "5", "--json", "--quiet",
                 "--device", "cpu"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert [f["feature"] for f in one["features"]] == [5]
    assert main(["describe", str(ws.root), "--sae", "known", "--feature", "99", "--quiet", "--device", "cpu"]) == 1
    assert main(["describe", str(ws.root), "--sae", "nope", "--quiet", "--device", "cpu"]) == 1
    assert main(["describe", str(ws.root), "--sae", "known", "--device", "cpu", "--quiet", "--top", "1"]) == 0
    text = capsys.readouterr().out
    assert "pitch C2 1.00" in text and "dead (never active)" in text


def test_top_frame_precision(known):
    ws, _, _, _ = known
    desc = load_or_describe(ws, "known")
    prec = top_frame_precision(ws, "known", desc, k=50)
    for j in range(1, N_NOTES):
        assert prec[j]["precision"] == 1.0 and prec[j]["frames"] == 50
    assert 0 not in prec and 8 not in prec      # unvoiced best label skipped; dead feature skipped
    assert prec[3]["mode_class"] == "A1" and prec[3]["mode_precision"] == 1.0
    # Ranking only pitched frames: no feature's top frames are then unvoiced.
    voiced = top_frame_precision(ws, "known", desc, k=50, among_classes_only=True)
    assert all(r["mode_class"] != "unvoiced" for r in voiced.values())
    assert all(voiced[j]["precision"] == 1.0 for j in range(1, N_NOTES))


def test_rare_classes_are_not_labels(known):
    import dataclasses

    _, _, _, desc = known
    strict = dataclasses.replace(desc, min_class_frames=10**6)
    assert strict.labels(1) == [] and np.isfinite(strict.auroc[1, 1])
    assert search_features(strict, "G#1") == []


def test_end_to_end_tones(tmp_path, capsys):
    """A real (tiny) workspace: mel tones, one x4 SAE; the CLI labels it and the cache is used."""
    from audiosae.corpus import builtin_sources
    from audiosae.sae import grid_configs, train_sae_grid
    from audiosae.workspace import build_corpus

    ws = Workspace.create(tmp_path / "ws", "mel")
    build_corpus(ws, builtin_sources("tones", minutes=0.2), device="cpu", shard_frames=600)
    (sae, _), = train_sae_grid(ws.frame_store(), grid_configs(128, [4], [0.02]), epochs=1, batch_size=256)
    name = sae.cfg.name
    sae.save(ws.sae_dir(name))    # SAE only: the probes are not needed to describe it
    assert main(["describe", str(ws.root), "--sae", name, "--json", "--quiet", "--device", "cpu", "--top", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["features"]) == 4 * 128
    live = [f for f in data["features"] if f["labels"]]
    assert live and all(0.0 <= f["labels"][0]["score"] <= 1.0 for f in live)
    assert all(0.0 <= f["single_label_score"] <= 1.0 for f in data["features"])
    assert load_description(ws, name) is not None
