"""Linear probes: training on SAE features and raw latents, contributions, evaluation, files."""

from __future__ import annotations

import json

import pytest

from tests.conftest import copy_folder
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
    assert len(train_calls) == epochs  # every attribute in the same pass
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
