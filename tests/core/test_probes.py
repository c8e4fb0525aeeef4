"""Linear probes: training on SAE features and raw latents, contributions, evaluation, files."""

from __future__ import annotations

import json

import pytest

from tests.support.common import copy_folder
import torch

from audiosae.errors import AudioSAEError, WorkspaceError
from audiosae.frames import ArrayFrames
from audiosae.probes import ProbeSet, train_probes
from audiosae.sae import SAEConfig, SparseAutoencoder

N_CLASSES = {"pitch": 6, "loudness": 4, "timbre": 3}
D = sum(N_CLASSES.values())  # one latent dimension per class: the attributes are linearly separable


def labelled_frames(n: int, seed: int, offset: float | torch.Tensor = 0.0,
                    gain: float | torch.Tensor = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = {a: torch.randint(0, k, (n,), generator=g) for a, k in N_CLASSES.items()}
    x = 0.3 * torch.randn(n, D, generator=g)
    start = 0
    for a, k in N_CLASSES.items():
        x[torch.arange(n), start + labels[a]] += 3.0
        start += k
    return {"latents": offset + gain * x, **labels}


def make_store(offset: float | torch.Tensor = 0.0, gain: float | torch.Tensor = 1.0) -> ArrayFrames:
    return ArrayFrames({"train": labelled_frames(1500, 0, offset, gain), "val": labelled_frames(400, 1, offset, gain)})


def class_sae() -> SparseAutoencoder:
    """Features relu(x_i) and relu(-x_i): the first D features each fire for one class."""
    sae = SparseAutoencoder(SAEConfig(D, 2 * D, 0.1, name="by-hand"))
    with torch.no_grad():
        eye = torch.eye(D)
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.b_enc.zero_()
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_dec.zero_()
    return sae


class CountingStore:
    def __init__(self, inner):
        self.inner, self.d_in, self.calls = inner, inner.d_in, []

    def n_frames(self, split):
        return self.inner.n_frames(split)

    def iter_batches(self, split, batch_size, *, shuffle, seed=0, columns=("latents",)):
        self.calls.append((split, columns))
        return self.inner.iter_batches(split, batch_size, shuffle=shuffle, seed=seed, columns=columns)


@pytest.fixture(scope="module")
def sae_probes():
    store = CountingStore(make_store())
    sae = class_sae()
    names = {"pitch": ["unvoiced", "C4", "C#4", "D4", "D#4", "E4"]}
    probes = train_probes(store, sae=sae, n_classes=N_CLASSES, class_names=names, max_epochs=12, batch_size=128,
                          lr=1e-2, patience=3)
    return store, sae, probes


def test_probes_on_sae_features_reach_high_accuracy_in_one_pass_per_epoch(sae_probes):
    store, sae, probes = sae_probes
    epochs = probes.metrics["epochs"]
    train_calls = [c for c in store.calls if c[0] == "train"]
    assert len(train_calls) == epochs + 1  # one pass for the input statistics, then every attribute in one pass
    assert all(set(c[1]) == {"latents", *N_CLASSES} for c in train_calls)
    assert probes.feature_kind == "sae" and probes.sae["name"] == "by-hand"
    for a, k in N_CLASSES.items():
        assert probes.weights[a].shape == (k, 2 * D) and probes.bias[a].shape == (k,)
    assert probes.class_names["pitch"][1] == "C4" and probes.class_names["timbre"] == ["0", "1", "2"]
    result = probes.evaluate(store.inner, "val", sae=sae)
    for a, k in N_CLASSES.items():
        r = result[a]
        assert r["accuracy"] > 0.95 and r["balanced_accuracy"] > 0.95, (a, r)
        assert r["n_frames"] == 400 and 1 / k <= r["chance"] < 0.5
        assert len(r["confusion"]) == k and sum(map(sum, r["confusion"])) == 400


def test_raw_latent_baseline_trains_with_standardisation_folded_in():
    # far from standardised, differently per dimension: the folded mean and scale must be right
    offset, gain = torch.linspace(-60.0, 90.0, D), torch.linspace(0.5, 40.0, D)
    store = make_store(offset=offset, gain=gain)
    probes = train_probes(store, sae=None, n_classes=N_CLASSES, max_epochs=12, batch_size=128, lr=1e-2)
    assert probes.feature_kind == "latent" and probes.sae is None
    assert probes.weights["pitch"].shape == (6, D)
    result = probes.evaluate(store, "val")
    val = next(store.iter_batches("val", 400, shuffle=False, columns=("latents", *N_CLASSES)))
    for a in N_CLASSES:
        assert result[a]["accuracy"] > 0.95, (a, result[a])
        cross_entropy = torch.nn.functional.cross_entropy(probes.logits(val["latents"], a), val[a])
        assert cross_entropy < 0.2, (a, cross_entropy)  # calibrated, not just the right argmax
    with pytest.raises(AudioSAEError):
        probes.evaluate(store, "val", sae=class_sae())


def test_contributions_sum_with_the_bias_to_the_logits(sae_probes):
    _, sae, probes = sae_probes
    x = labelled_frames(5, 7)["latents"]
    f = probes.features(x, sae)
    for a, k in N_CLASSES.items():
        logits = probes.logits(f, a)
        for cls in range(k):
            c = probes.contributions(f, a, cls)
            assert c.shape == f.shape
            assert torch.allclose(c.sum(-1) + probes.bias[a][cls], logits[:, cls], atol=1e-5)
            single = probes.contributions(f[0], a, cls)
            assert torch.allclose(single, probes.weights[a][cls] * f[0])
        assert torch.allclose(probes.predict_proba(f, a).sum(-1), torch.ones(5))
    with pytest.raises(AudioSAEError):
        probes.contributions(f, "pitch", 6)


def test_probe_set_round_trip_and_sae_identity(sae_probes, tmp_path):
    store, sae, probes = sae_probes
    probes.save(tmp_path / "p")
    assert {p.name for p in (tmp_path / "p").iterdir()} == {"probes.safetensors", "probes.json"}
    loaded = ProbeSet.load(tmp_path / "p")
    f = probes.features(labelled_frames(20, 3)["latents"], sae)
    for a in N_CLASSES:
        assert torch.equal(loaded.logits(f, a), probes.logits(f, a))
    assert loaded.class_names == probes.class_names and loaded.sae == probes.sae
    assert loaded.metrics["best_epoch"] == probes.metrics["best_epoch"]
    other = class_sae()
    with torch.no_grad():
        other.b_enc.add_(0.01)
    with pytest.raises(AudioSAEError, match="trained on SAE"):
        loaded.evaluate(store.inner, "val", sae=other)
    with pytest.raises(AudioSAEError, match="pass that SAE"):
        loaded.evaluate(store.inner, "val")


def test_probe_set_load_refuses_damaged_files(sae_probes, tmp_path):
    probes = sae_probes[2]
    good = probes.save(tmp_path / "good")

    def copy(name):
        return copy_folder(good, tmp_path / name)

    trunc = copy("trunc")
    data = (trunc / "probes.safetensors").read_bytes()
    (trunc / "probes.safetensors").write_bytes(data[:-100])
    with pytest.raises(WorkspaceError):
        ProbeSet.load(trunc)
    for name, change in [("newer", lambda m: m.update(schema_version=7)),
                         ("classes", lambda m: m["attributes"][0].update(n_classes=7)),
                         ("kind", lambda m: m.update(feature_kind="latent"))]:
        folder = copy(name)
        meta = json.loads((folder / "probes.json").read_text())
        change(meta)
        (folder / "probes.json").write_text(json.dumps(meta))
        with pytest.raises(WorkspaceError):
            ProbeSet.load(folder)


def test_evaluate_on_a_hand_checkable_case():
    probes = ProbeSet(weights={"a": torch.eye(3)}, bias={"a": torch.zeros(3)}, class_names={"a": ["x", "y", "z"]},
                      feature_kind="latent")
    predicted = torch.tensor([0, 0, 1, 1, 2, 0, 2])
    labels = torch.tensor([0, 0, 0, 1, 2, 2, -1])  # the last frame is unlabelled
    frames = torch.eye(3)[predicted] * 2.0
    store = ArrayFrames({"train": {"latents": frames, "a": labels}, "val": {"latents": frames, "a": labels}})
    r = probes.evaluate(store, "val", batch_size=4)["a"]
    assert r["confusion"] == [[2, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert r["n_frames"] == 6
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    assert r["chance"] == pytest.approx(3 / 6)


def test_early_stopping_stops_when_validation_stops_improving():
    g = torch.Generator().manual_seed(0)
    noise = {s: {"latents": torch.randn(n, 8, generator=g), "a": torch.randint(0, 3, (n,), generator=g)}
             for s, n in (("train", 300), ("val", 300))}
    probes = train_probes(ArrayFrames(noise), sae=None, n_classes={"a": 3}, max_epochs=40, batch_size=30, lr=5e-2,
                          patience=2)
    m = probes.metrics
    assert m["epochs"] < 40 and m["epochs"] == m["best_epoch"]["a"] + 2
    assert m["history"][-1]["a"]["stopped"] is True


def test_bad_labels_and_arguments_are_reported():
    store = make_store()
    with pytest.raises(WorkspaceError, match="out of range"):
        train_probes(store, sae=None, n_classes={"pitch": 3}, max_epochs=1, batch_size=256)
    with pytest.raises(AudioSAEError):
        train_probes(store, sae=None, n_classes={"pitch": 1}, max_epochs=1)
    with pytest.raises(AudioSAEError):
        train_probes(store, sae=SparseAutoencoder(SAEConfig(D + 1, 8, 0.1)), n_classes=N_CLASSES, max_epochs=1)


# ---- issue 11: standardised inputs, L2 chosen inside training, ordinal metrics, CV by source ----
import math  # noqa: E402

import numpy as np  # noqa: E402

from audiosae.probes import (balanced_class_weights, confusion_metrics, cross_validate_probes,  # noqa: E402
                             range_warning, summarize_folds)


def sourced_frames(n_sources: int, per_source: int, seed: int, *, noise: float = 0.3,
                   shift: float = 0.0) -> ArrayFrames:
    """``labelled_frames`` in ``n_sources`` sources (int ``source`` column); train = all but the
    last source.  ``shift`` * source number is added to the latents (sources differ)."""
    rows = []
    for s in range(n_sources):
        part = labelled_frames(per_source, seed + s)
        part["latents"] = part["latents"] + noise * torch.randn(per_source, D, generator=torch.Generator()
                                                                  .manual_seed(99 + s)) + shift * s
        part["source"] = torch.full((per_source,), s)
        rows.append(part)
    cat = {c: torch.cat([r[c] for r in rows]) for c in rows[0]}
    last = cat["source"] == n_sources - 1
    return ArrayFrames({"train": {c: v[~last] for c, v in cat.items()}, "val": {c: v[last] for c, v in cat.items()}})


def test_within_one_bin_and_mean_error_on_a_hand_checkable_confusion():
    # true class (rows) -> predicted (columns); class values are bin centres 10, 20, 30, 40
    cm = [[3, 1, 0, 0],     # 3 exact, 1 one bin off (err 10)
          [0, 2, 0, 2],     # 2 exact, 2 two bins off (err 20 each)
          [0, 0, 0, 0],
          [1, 0, 0, 1]]     # 1 exact, 1 three bins off (err 30)
    r = confusion_metrics(cm, [10.0, 20.0, 30.0, 40.0])
    assert r["n_frames"] == 10 and r["accuracy"] == pytest.approx(6 / 10)
    assert r["within1"] == pytest.approx(7 / 10)
    assert r["mae"] == pytest.approx((10 + 20 + 20 + 30) / 10)
    assert r["chance"] == pytest.approx(4 / 10) and r["support"] == [4, 4, 0, 2]
    # a class without a value (say "unvoiced") is left out of both
    r = confusion_metrics([[5, 0], [0, 1]], [float("nan"), 3.0])
    assert r["within1"] == 1.0 and r["mae"] == 0.0 and r["accuracy"] == 1.0
    assert "within1" not in confusion_metrics(cm)
    with pytest.raises(AudioSAEError):
        confusion_metrics(cm, [1.0, 2.0])


def test_evaluate_reports_ordinal_metrics_for_the_attributes_given_values():
    probes = ProbeSet(weights={"a": torch.eye(3)}, bias={"a": torch.zeros(3)}, class_names={"a": ["x", "y", "z"]},
                      feature_kind="latent")
    predicted = torch.tensor([0, 2, 1, 1])
    labels = torch.tensor([0, 0, 0, 1])
    frames = torch.eye(3)[predicted]
    store = ArrayFrames({"train": {"latents": frames, "a": labels}, "val": {"latents": frames, "a": labels}})
    r = probes.evaluate(store, "val", class_values={"a": [-50.0, -47.0, -44.0]})["a"]
    assert r["accuracy"] == pytest.approx(2 / 4) and r["within1"] == pytest.approx(3 / 4)
    assert r["mae"] == pytest.approx((6.0 + 3.0) / 4)
    assert "mae" not in probes.evaluate(store, "val")["a"]


def test_balanced_class_weights():
    w = balanced_class_weights(torch.tensor([90, 10, 0]))
    assert w.tolist() == pytest.approx([100 / (2 * 90), 100 / (2 * 10), 0.0])
    assert float((w * torch.tensor([90.0, 10.0, 0.0])).sum()) == pytest.approx(100.0)  # averages 1 per frame


def test_balanced_class_weighting_raises_minority_recall():
    g = torch.Generator().manual_seed(5)

    def frames(n):
        y = (torch.rand(n, generator=g) < 0.1).long()           # 10 % minority class, overlapping
        x = torch.randn(n, 2, generator=g) + torch.stack([1.2 * y.float(), torch.zeros(n)], 1)
        return {"latents": x, "a": y}

    data = {"train": frames(3000), "val": frames(3000)}
    store = ArrayFrames(data)
    kw = dict(sae=None, n_classes={"a": 2}, max_epochs=15, batch_size=256, lr=5e-2, patience=15)
    plain = train_probes(store, **kw).evaluate(store)["a"]
    balanced_probes = train_probes(store, class_weight="balanced", **kw)
    balanced = balanced_probes.evaluate(store)["a"]
    recall = [cm[1][1] / sum(cm[1]) for cm in (plain["confusion"], balanced["confusion"])]
    assert recall[0] < 0.3 < 0.6 < recall[1], recall
    assert balanced["balanced_accuracy"] > plain["balanced_accuracy"] + 0.1
    assert balanced_probes.metrics["class_weight"] == "balanced"
    with pytest.raises(AudioSAEError):
        train_probes(store, class_weight="bogus", **kw)

    # "auto" (the default of train): the paper's attributes unweighted, the registered ones balanced
    both = ArrayFrames({s: {"latents": d["latents"], "pitch": d["a"], "onset": d["a"]} for s, d in data.items()})
    kw["n_classes"] = {"pitch": 2, "onset": 2}
    auto = train_probes(both, class_weight="auto", **kw).evaluate(both)
    assert auto["pitch"]["confusion"] == plain["confusion"]
    assert auto["onset"]["confusion"] == balanced["confusion"]


def test_l2_is_chosen_on_an_inner_split_of_the_training_sources():
    # Few frames, many useless dimensions, one weakly informative one: weak L2 overfits the
    # noise, so held-out accuracy favours strong L2.  A second, clean problem must not.
    def problem(n_sources, per_source, d, signal, seed):
        g = torch.Generator().manual_seed(seed)
        parts = []
        for s in range(n_sources):
            y = torch.randint(0, 2, (per_source,), generator=g)
            x = torch.randn(per_source, d, generator=g)
            x[:, 0] += signal * (2 * y.float() - 1)
            parts.append({"latents": x, "a": y, "source": torch.full((per_source,), s)})
        cat = {c: torch.cat([p[c] for p in parts]) for c in parts[0]}
        return ArrayFrames({"train": cat, "val": {c: v[:0] for c, v in cat.items()}})

    kw = dict(sae=None, n_classes={"a": 2}, max_epochs=40, batch_size=64, lr=3e-2, patience=40,
              l2=[1e-4, 1e-2, 1.0])
    noisy = train_probes(problem(8, 12, 150, 0.6, 1), **kw)
    sel = noisy.metrics["selection"]
    assert sel["on"] == "inner source split" and sel["val_sources"] == 2 and sel["train_sources"] == 6
    assert set(sel["scores"]["a"]) == {"0.0001", "0.01", "1"}
    assert sel["chosen"]["a"] == 1.0 and noisy.metrics["l2"] == {"a": 1.0}
    best = max(sel["scores"]["a"].values())
    assert sel["scores"]["a"]["1"] == best
    # plenty of frames, few dimensions, unequal classes: strong L2 flattens the probe toward the
    # majority class and loses held-out accuracy, so a weaker strength wins
    g = torch.Generator().manual_seed(2)
    parts = []
    for s in range(8):
        y = torch.multinomial(torch.tensor([0.55, 0.25, 0.12, 0.08]), 80, replacement=True, generator=g)
        x = torch.randn(80, 4, generator=g)
        x[torch.arange(80), y] += 1.5
        parts.append({"latents": x, "a": y, "source": torch.full((80,), s)})
    cat = {c: torch.cat([p[c] for p in parts]) for c in parts[0]}
    clean = train_probes(ArrayFrames({"train": cat, "val": {c: v[:0] for c, v in cat.items()}}),
                         **{**kw, "n_classes": {"a": 4}, "max_epochs": 15, "batch_size": 128, "patience": 15})
    scores = clean.metrics["selection"]["scores"]["a"]
    assert clean.metrics["selection"]["chosen"]["a"] < 1.0 and scores["1"] < max(scores.values()) - 0.05
    # without sources, a grid is chosen on the val split and says so
    store = make_store()
    p = train_probes(store, sae=None, n_classes={"pitch": 6}, max_epochs=3, batch_size=256, l2=[1e-4, 1e-1])
    assert p.metrics["selection"]["on"] == "val split (no source table)"


def test_sae_features_are_standardised_and_the_map_is_folded_into_the_weights():
    # features of different scales: feature j of the by-hand SAE is relu(x_j) scaled by s_j
    store = make_store()
    sae = class_sae()
    scale = torch.logspace(-0.5, 0.5, D)
    with torch.no_grad():
        sae.W_enc.mul_(torch.cat([scale, scale]))
    probes = train_probes(store, sae=sae, n_classes=N_CLASSES, max_epochs=8, batch_size=256, lr=3e-2)
    assert probes.metrics["standardized"] is True
    result = probes.evaluate(store, "val", sae=sae)
    for a in N_CLASSES:
        assert result[a]["accuracy"] > 0.95, (a, result[a])
    # the saved weights take the features as they are: logits = f W^T + b
    x = labelled_frames(5, 7)["latents"]
    f = probes.features(x, sae)
    for a in N_CLASSES:
        assert torch.allclose(probes.logits(f, a), f @ probes.weights[a].T + probes.bias[a])


def test_std_floor_keeps_rare_features_from_dominating_the_weights():
    g = torch.Generator().manual_seed(3)
    n = 2000
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 4, generator=g)
    x[:, 0] += 2 * y.float()
    x[:, 3] = 0.0
    x[:7, 3] = 1e-4 * (2 * y[:7].float() - 1)     # almost never non-zero, tiny
    store = ArrayFrames({"train": {"latents": x, "a": y}, "val": {"latents": x, "a": y}})
    p = train_probes(store, sae=None, n_classes={"a": 2}, max_epochs=10, batch_size=200, lr=5e-2)
    w = p.weights["a"].abs()
    assert float(w[:, 3].max()) <= 20 * float(w[:, 0].max())


def test_cross_validation_by_source_holds_each_source_out_once_and_reports_the_spread():
    store = sourced_frames(6, 120, 10, shift=0.0)
    cv = cross_validate_probes(store, sae=None, n_classes=N_CLASSES, n_folds=3, seed=0,
                               class_values={"loudness": [1.0, 2.0, 3.0, 4.0]},
                               max_epochs=6, batch_size=128, lr=1e-2, l2=[1e-3, 1e-1])
    assert cv["n_folds"] == 3 and len(cv["folds"]) == 3
    held = sorted(s for f in cv["folds"] for s in f["sources"])
    assert held == [str(s) for s in range(6)]      # each source held out exactly once
    assert all(len(f["sources"]) == 2 for f in cv["folds"])
    summary = cv["summary"]
    assert summary["pitch"]["n_frames"] == 6 * 120 and summary["pitch"]["n_folds"] == 3
    accs = np.array([f["evaluation"]["pitch"]["accuracy"] for f in cv["folds"]])
    assert summary["pitch"]["accuracy"] == pytest.approx(accs.mean())
    assert summary["pitch"]["accuracy_std"] == pytest.approx(accs.std(ddof=1))
    assert summary["loudness"]["within1"] >= summary["loudness"]["accuracy"] > 0.9
    assert "mae" in summary["loudness"] and "mae" not in summary["pitch"]
    # more folds than sources: one source per fold
    cv = cross_validate_probes(sourced_frames(3, 60, 1), sae=None, n_classes=N_CLASSES, n_folds=5,
                               max_epochs=2, batch_size=128, l2=1e-3)
    assert cv["n_folds"] == 3
    assert all(f["l2_chosen_on"] is None for f in cv["folds"])          # one strength: nothing to choose
    # two sources: each fold trains on one, so the strength cannot be chosen without looking at
    # the held-out fold; the grid's middle value is used instead
    cv = cross_validate_probes(sourced_frames(2, 60, 1), sae=None, n_classes=N_CLASSES, n_folds=5,
                               max_epochs=2, batch_size=128, l2=[1e-4, 1e-2, 1e-1])
    assert cv["n_folds"] == 2
    assert all(f["l2_chosen_on"] == "none (one training source)" and f["l2"]["pitch"] == 1e-2 for f in cv["folds"])
    with pytest.raises(AudioSAEError):
        cross_validate_probes(make_store(), sae=None, n_classes=N_CLASSES)


def test_summarize_folds_mean_and_std():
    folds = [{"a": {"accuracy": 0.5, "chance": 0.2, "confusion": [[1, 1], [0, 0]]}},
             {"a": {"accuracy": 0.7, "chance": 0.3, "confusion": [[0, 0], [1, 2]]}}]
    s = summarize_folds(folds)["a"]
    assert s["accuracy"] == pytest.approx(0.6) and s["accuracy_std"] == pytest.approx(math.sqrt(0.02))
    assert s["chance"] == pytest.approx(0.25) and s["confusion"] == [[1, 1], [1, 2]] and s["n_frames"] == 5


def test_a_validation_split_that_misses_most_of_the_training_range_is_warned_about():
    names = [f"bin{k}" for k in range(10)]
    train = [5] * 10
    line = range_warning("loudness", train, [0, 0, 3, 4, 0, 0, 0, 0, 0, 0], names, where="val split")
    assert line and "loudness" in line and "bin2 .. bin3" in line and "20%" in line
    assert range_warning("loudness", train, [1, 0, 0, 0, 0, 0, 0, 0, 0, 1], names) is None
    assert "no labelled" in range_warning("timbre", train, [0] * 10)
    # in cross-validation: every source has its own narrow loudness range -> every fold warns
    store = sourced_frames(4, 80, 3)
    for split in ("train", "val"):
        cols = store._splits[split]
        cols["loudness"] = cols["source"].clone()      # loudness class = source number
    cv = cross_validate_probes(store, sae=None, n_classes=N_CLASSES, n_folds=4,
                               class_values={"loudness": [1.0, 2.0, 3.0, 4.0]}, max_epochs=2, batch_size=128,
                               l2=1e-3)
    assert len(cv["warnings"]) == 4 and all("fold" in w and "loudness" in w for w in cv["warnings"])


@pytest.fixture(scope="module")
def tiny_user_workspaces(tmp_path_factory):
    """The same five short files built into two workspaces from two different folders."""
    import soundfile as sf

    from audiosae.corpus import user_sources
    from audiosae.workspace import Workspace, build_corpus
    from tests.support.common import harmonic_tone

    root = tmp_path_factory.mktemp("split")
    first = root / "a" / "music"
    first.mkdir(parents=True)
    for i, (midi, level) in enumerate([(57, -30.0), (60, -12.0), (64, -20.0), (67, -6.0), (72, -24.0)]):
        sf.write(str(first / f"take{i}.wav"), harmonic_tone(midi, 0.6, 16000, level_db=level), 16000)
    (root / "elsewhere" / "deeper").mkdir(parents=True)
    second = copy_folder(first, root / "elsewhere" / "deeper" / "copied")
    out = []
    for n, folder in enumerate((first, second)):
        sources, problems = user_sources([folder])
        ws = Workspace.create(root / f"ws{n}", "mel")
        build_corpus(ws, sources, device="cpu", problems=problems)
        out.append(ws)
    return out


def test_the_split_does_not_depend_on_where_the_files_are(tiny_user_workspaces):
    from audiosae.corpus import source_folds

    a, b = tiny_user_workspaces
    ra, rb = a.manifest().sources, b.manifest().sources
    assert len(ra) == len(rb) == 5 and set(ra).isdisjoint(rb)       # ids are absolute paths
    by_name = [{r.label: r.split for r in m.values()} for m in (ra, rb)]
    assert by_name[0] == by_name[1] and set(by_name[0].values()) == {"train", "val"}
    tables = [ws.frame_store().source_table() for ws in (a, b)]
    keys = [{sid: k for sid, (k, _, _) in t.items()} for t in tables]
    assert sorted(keys[0].values()) == sorted(keys[1].values()) == [f"take{i}.wav" for i in range(5)]
    folds = [{keys[i][sid]: f for sid, f in source_folds(keys[i], 3).items()} for i in (0, 1)]
    assert folds[0] == folds[1] and sorted(set(folds[0].values())) == [0, 1, 2]


def test_regrouped_store_counts_and_streams_the_chosen_sources(tiny_user_workspaces):
    store = tiny_user_workspaces[0].frame_store()
    table = store.source_table()
    one = sorted(table)[0]
    view = store.with_splits({sid: ("val" if sid == one else "train") for sid in table})
    assert view.n_frames("val") == table[one][2]
    assert view.n_frames("train") == sum(n for _, _, n in table.values()) - table[one][2]
    assert sum(b["latents"].shape[0] for b in view.iter_batches("val", 64, shuffle=True)) == table[one][2]
    assert store.n_frames("val") != 0 and store.source_table() == table       # the original is untouched
    two = sorted(table)[:2]
    part = store.with_splits({two[0]: "train", two[1]: "val"})                  # the others are left out
    assert set(part.source_table()) == set(two) and part.source_table()[two[1]][1] == "val"


def test_train_writes_cross_validated_probe_metrics_and_the_report_keys(tiny_user_workspaces):
    from audiosae.report import format_report, workspace_report
    from audiosae.training import TrainSettings, train_workspace

    ws = tiny_user_workspaces[0]
    settings = TrainSettings(expansions=[1], l1s=[0.05], epochs=1, probe_folds=3, probe_l2=[1e-3, 1e-1],
                             probe_max_epochs=2)
    report = train_workspace(ws, settings, device="cpu")
    metrics = json.loads((ws.probe_dir("raw-latent") / "metrics.json").read_text())
    assert metrics["format"] == 2 and metrics["method"].startswith("cross-validation by source, 3 folds")
    assert len(metrics["cv"]["folds"]) == 3 and "holdout" in metrics and isinstance(metrics["warnings"], list)
    row, base = report["saes"][0], report["baseline"]
    for r in (row, base):
        for key in ("pitch_accuracy", "loudness_accuracy", "timbre_accuracy", "pitch_accuracy_std",
                    "loudness_accuracy_std", "timbre_accuracy_std", "loudness_within1", "timbre_within1",
                    "loudness_mae_db", "timbre_mae_hz"):
            assert key in r, key
        assert r["loudness_within1"] >= r["loudness_accuracy"] and r["loudness_mae_db"] >= 0
    for key in ("sparsity", "l0", "fvu"):
        assert key in row
    for a in ("pitch", "loudness", "timbre"):
        assert 0 < base[f"{a}_chance"] <= 1
    ev = metrics["evaluation"]["loudness"]
    folds = [f["evaluation"]["loudness"]["accuracy"] for f in metrics["cv"]["folds"]]
    assert base["loudness_accuracy"] == pytest.approx(np.mean(folds))
    assert ev["accuracy_std"] == pytest.approx(np.std(folds, ddof=1))
    text = format_report(report)
    assert "cross-validation by source" in text and "within one bin" in text
    assert report["probe_warnings"] == metrics["warnings"] or report["probe_warnings"]
    # a schema-1 metrics file (evaluation on the val split only) still reads
    old = {"schema_version": 1, "fingerprint": "x", "sae": "raw-latent",
           "evaluation": {a: {"accuracy": 0.5, "balanced_accuracy": 0.4, "chance": 0.3} for a in ("pitch", "loudness",
                                                                                                   "timbre")}}
    (ws.probe_dir("raw-latent") / "metrics.json").write_text(json.dumps(old))
    base = workspace_report(ws)["baseline"]
    assert base["loudness_accuracy"] == 0.5 and base["loudness_within1"] is None and base["loudness_accuracy_std"] is None


def test_decayed_schedule_with_strided_selection_matches_the_long_schedule():
    # The default probe schedule (a few epochs, rate decayed to 0, L2 compared on every 4th
    # frame) must reach what the long constant-rate schedule reaches, in far fewer steps.
    from audiosae.probes import _Strided

    store = sourced_frames(8, 300, 5)
    view = _Strided(store, 4)
    assert view.n_frames("train") == -(-store.n_frames("train") // 4)
    first = next(store.iter_batches("train", 400, shuffle=False, columns=("latents", "pitch")))
    strided = next(view.iter_batches("train", 100, shuffle=False, columns=("latents", "pitch")))
    assert torch.equal(strided["latents"], first["latents"][::4]) and torch.equal(strided["pitch"], first["pitch"][::4])

    kw = dict(sae=None, n_classes={"pitch": 6}, batch_size=128, lr=1e-2, l2=[1e-3, 1e-1])
    long = train_probes(store, max_epochs=40, patience=40, **kw)
    short = train_probes(store, max_epochs=6, patience=6, lr_decay=True, selection_stride=4, **kw)
    assert short.metrics["lr_decay"] is True and short.metrics["selection"]["stride"] == 4
    assert short.metrics["epochs"] <= 12 < long.metrics["epochs"]
    acc = {name: p.evaluate(store, "val")["pitch"]["accuracy"] for name, p in (("long", long), ("short", short))}
    assert acc["short"] >= acc["long"] - 0.03, acc
    assert acc["short"] > 0.8, acc
    with pytest.raises(AudioSAEError):
        train_probes(store, max_epochs=2, selection_stride=0, **kw)
