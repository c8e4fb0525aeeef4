"""Attributes as plug-ins (issue 14): an attribute registered in a test is labelled by build, probed,
reported, described and steered without further code; ``audiosae label`` adds attributes to a built
workspace without re-encoding; workspaces from before the registry load unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audiosae.attribute_spec import AttributeSpec
from audiosae.corpus import builtin_sources
from audiosae.errors import AudioSAEError, WorkspaceError
from audiosae.workspace import Workspace, build_corpus, read_shard
from tests.support.toy_attributes import TOY, toy_attributes



@pytest.fixture
def toy_attribute():
    """``toy_level`` (quiet / loud by a -35 dB threshold) and ``toy_band``, registered for the test."""
    yield from toy_attributes()


def test_old_workspace_specs_load_and_keep_their_json(tmp_path):
    old = AttributeSpec().to_dict()
    assert "extra_attributes" not in old                                   # the paper's layout, unchanged
    assert AttributeSpec.from_dict(json.loads(json.dumps(old))).attributes == ("pitch", "loudness", "timbre")
    spec = AttributeSpec().with_attributes(["onset", "chord"])
    doc = spec.to_dict()
    assert doc["attributes"] == ["pitch", "loudness", "timbre"]            # older readers still accept it
    assert doc["extra_attributes"]["chord"]["classes"][:2] == ["none", "C"]
    assert AttributeSpec.from_dict(json.loads(json.dumps(doc))) == spec
    doc["extra_attributes"]["chord"]["classes"][1] = "X"
    with pytest.raises(WorkspaceError, match="chord class names"):
        AttributeSpec.from_dict(doc)
    doc = spec.to_dict()
    doc["extra_attributes"]["nonesuch"] = {"params": {}}
    with pytest.raises(WorkspaceError, match="nonesuch"):
        AttributeSpec.from_dict(doc)
    with pytest.raises(AudioSAEError, match="unknown attribute"):
        AttributeSpec().with_attributes(["nonesuch"])


def test_a_registered_attribute_appears_in_labels_probes_report_description_and_steering(tmp_path, toy_attribute):
    from audiosae.describe import describe_features
    from audiosae.probes import ProbeSet
    from audiosae.report import attribute_rows, format_report
    from audiosae.sae import SparseAutoencoder
    from audiosae.steering import steer_wave
    from audiosae.training import TrainSettings, train_workspace

    ws = Workspace.create(tmp_path / "ws", "mel")
    build_corpus(ws, builtin_sources("tones", minutes=0.4), device="cpu", attributes=[TOY])
    ws = Workspace.open(tmp_path / "ws")
    spec = ws.attribute_spec
    assert spec.attributes == ("pitch", "loudness", "timbre", TOY)
    tensors, _ = read_shard(ws.corpus_dir / ws.manifest().shards[0]["file"])
    assert "x.toy_ms" in tensors
    rows = ws.frame_store().load_shard(0, None, columns=("loudness", TOY))
    toy = rows[TOY].numpy()
    assert set(np.unique(toy)) == {0, 1}
    # the toy label is a loudness threshold: it agrees with the paper's loudness bins
    edges = spec.loudness_edges
    loud_bins = rows["loudness"].numpy()
    assert np.mean(toy[edges[loud_bins] >= -33]) > 0.9 and np.mean(toy[edges[loud_bins + 1] <= -37] == 0) > 0.9

    settings = TrainSettings(expansions=(2,), l1s=(0.05,), epochs=2, probe_folds=0, probe_max_epochs=3,
                             probe_attributes=("pitch", "loudness", "timbre", TOY))
    report = train_workspace(ws, settings, device="cpu")
    assert report["attributes"] == ["pitch", "loudness", "timbre", TOY]
    base = report["baseline"]
    assert base[f"{TOY}_chance"] is not None and base[f"{TOY}_accuracy"] is not None
    sae_row = report["saes"][0]
    assert sae_row[f"{TOY}_accuracy"] > base[f"{TOY}_chance"] - 0.05       # a linear probe finds a level split
    row = [r for r in attribute_rows(report) if r["attribute"] == TOY][0]
    assert row["n_classes"] == 2 and row["best_sae"] == sae_row["sae"]
    assert any(line.startswith(TOY) for line in format_report(report).splitlines())

    name = sae_row["sae"]
    probes = ProbeSet.load(ws.probe_dir(name))
    assert probes.n_classes(TOY) == 2 and probes.class_names[TOY] == ["quiet", "loud"]
    desc = describe_features(ws, name, device="cpu", save=False)
    assert TOY in desc.attributes and desc.class_names[TOY] == ["quiet", "loud"]
    assert int(desc.class_frames[desc.offsets[TOY]:desc.offsets[TOY] + 2].sum()) == desc.n_frames

    sae = SparseAutoencoder.load(ws.sae_dir(name), device="cpu")
    backend = ws.backend("cpu")
    wave = builtin_sources("tones", minutes=0.1)[0].load(backend.sample_rate, backend.channels)[:, :backend.sample_rate * 2]
    result = steer_wave(backend, sae, probes, spec, wave, TOY, 1, 10.0, method="paper")
    target = result.report["shift"]["target"]
    assert result.report["attribute"] == TOY and target["attribute"] == TOY and target["name"] == "loud"
    assert 0.0 <= target["rate_after"] <= 1.0 and np.isfinite(result.wave).all()

    _assert_toy_in_lane_exports(ws, name, wave, tmp_path)

    with pytest.raises(AudioSAEError, match="no labels for chord"):
        train_workspace(ws, TrainSettings(expansions=(2,), l1s=(0.05,), epochs=1, probe_folds=0,
                                          probe_attributes=("pitch", "chord")), device="cpu")


def _assert_toy_in_lane_exports(ws, name, wave, tmp_path) -> None:
    """The per-frame CSV and the Sonic Visualiser layers of an analysed clip carry the toy attribute:
    its probe's class (value = class index, label = class name) and its measured label."""
    import csv

    from audiosae.explore.analysis import LoadedModels
    from audiosae.exports import export_lanes_csv, export_sonic_visualiser

    models = LoadedModels.load(ws, name, device="cpu")
    analysis = models.analyze(wave)
    names = ["quiet", "loud"]
    predicted, measured = analysis.predicted(TOY), analysis.measured_classes[TOY]
    assert measured.shape == (analysis.n_frames,) and (measured >= 0).any()
    export_lanes_csv(analysis, models.spec, tmp_path / "lanes.csv")
    with open(tmp_path / "lanes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == analysis.n_frames
    assert [r[f"{TOY}_class"] for r in rows] == [names[k] for k in predicted]
    assert [float(r[f"{TOY}_value"]) for r in rows] == [float(k) for k in predicted]
    assert [r[f"measured_{TOY}_class"] for r in rows] == [names[k] if k >= 0 else "" for k in measured]
    assert list(rows[0])[-1] == f"measured_{TOY}_class"

    files = export_sonic_visualiser(analysis, models.spec, tmp_path / "sv")
    assert {f"decoded_{TOY}", f"measured_{TOY}"} <= set(files)

    def lane(which: str) -> list[list[str]]:
        with open(files[f"{which}_{TOY}"], newline="") as fh:
            return list(csv.reader(fh))

    times = analysis.times
    assert [(float(t), float(v), label) for t, v, label in lane("decoded")] == \
        [(float(times[i]), float(k), names[k]) for i, k in enumerate(predicted)]
    assert [(float(t), float(v), label) for t, v, label in lane("measured")] == \
        [(float(times[i]), float(k), names[k]) for i, k in enumerate(measured) if k >= 0]


def _write_tone(path, midi: int, seconds: float, sr: int = 24000) -> None:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5))
    wave *= 0.3 / np.abs(wave).max() * (np.sin(2 * np.pi * 2 * t) > -0.5)   # notes with gaps: onsets
    sf.write(str(path), wave.astype(np.float32), sr)


def test_label_adds_attributes_without_reencoding_and_missing_audio_gets_no_label(tmp_path, capsys):
    from audiosae.cli import main
    from audiosae.corpus import user_sources

    audio = tmp_path / "audio"
    audio.mkdir()
    for i, midi in enumerate((60, 64, 67)):
        _write_tone(audio / f"clip{i}.wav", midi, 3.0)
    sources, _ = user_sources([audio])
    ws = Workspace.create(tmp_path / "ws", "mel")
    build_corpus(ws, sources, device="cpu", attributes=[])
    assert Workspace.open(ws.root).attribute_spec.attributes == ("pitch", "loudness", "timbre")
    shards = [ws.corpus_dir / s["file"] for s in ws.manifest().shards]
    before = {p.name: read_shard(p)[0] for p in shards}
    (audio / "clip2.wav").unlink()                                          # its audio is gone

    labels = tmp_path / "labels.csv"
    labels.write_text("file,start,end,label\nclip0.wav,0,3,sax\nclip1.wav,0,1.5,sax\n")
    assert main(["label", str(ws.root), "--attributes", "onset,chroma,chord", "--labels", str(labels),
                 "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["attributes"] == ["onset", "chroma", "chord", "instrument"]
    assert out["missing_sources"] == [str((audio / "clip2.wav").resolve().as_posix())] or \
        out["missing_sources"][0].endswith("clip2.wav")
    assert any("clip2.wav" in w for w in out["warnings"])

    ws = Workspace.open(ws.root)
    spec = ws.attribute_spec
    assert spec.attributes == ("pitch", "loudness", "timbre", "onset", "chroma", "chord", "instrument")
    assert "sax" in spec.class_names("instrument")
    store = ws.frame_store()
    for p in shards:
        tensors, meta = read_shard(p)
        assert torch.equal(tensors["latents"], before[p.name]["latents"])   # not re-encoded
        assert {"x.onset", "x.onset_strength", "x.chroma", "x.instrument"} <= set(tensors)
    rows = {c: [] for c in ("source", "chroma", "onset", "instrument", "pitch")}
    for i in range(len(ws.manifest().shards)):
        got = store.load_shard(i, None, columns=tuple(rows))
        names = read_shard(shards[i])[1]["sources"]
        rows["source"] += [names[k] for k in got["source"].tolist()]
        for c in ("chroma", "onset", "instrument", "pitch"):
            rows[c] += got[c].tolist()
    src = np.array([s.rsplit("/", 1)[-1] for s in rows["source"]])
    chroma, onset, inst = (np.array(rows[c]) for c in ("chroma", "onset", "instrument"))
    gone = src == "clip2.wav"
    assert gone.any() and np.all(chroma[gone] == -1) and np.all(onset[gone] == -1) and np.all(inst[gone] == -1)
    assert np.all(np.array(rows["pitch"])[gone] >= 0)                      # the paper's labels are untouched
    names = spec.class_names("chroma")
    assert np.mean(np.array(names)[chroma[src == "clip0.wav"]] == "C") > 0.5    # C4 tone
    assert np.mean(np.array(names)[chroma[src == "clip1.wav"]] == "E") > 0.5    # E4 tone
    assert onset[~gone].sum() >= 4                                          # the gaps make onsets
    assert np.all(inst[src == "clip0.wav"] == spec.class_names("instrument").index("sax"))

    # re-running skips the shards that hold every column; unknown names fail before any work
    assert main(["label", str(ws.root), "--attributes", "onset", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["shards_skipped"] == len(shards)
    assert main(["label", str(ws.root), "--attributes", "nonesuch", "--quiet"]) != 0
    assert "unknown attribute" in capsys.readouterr().err


def test_cli_attribute_options_and_the_default_build_list(tmp_path):
    from audiosae.attribute_registry import registered_names
    from audiosae.cli import build_parser
    from audiosae.cli.training import train_settings_from_args
    from audiosae.training import check_labelled
    from audiosae.workflows.train import attribute_choice, default_build_attributes

    parser = build_parser()
    args = parser.parse_args(["build", str(tmp_path / "ws"), "--builtin", "tones", "--attributes", "onset, chord"])
    assert args.attributes == ["onset", "chord"]
    assert parser.parse_args(["build", str(tmp_path / "ws"), "--builtin", "tones", "--attributes", "none"]
                             ).attributes == []
    # the default labels every registered attribute (cheap next to CREPE: see bench_attribute_cost.py)
    assert default_build_attributes() == tuple(registered_names())
    assert attribute_choice(None)[0] == list(registered_names())
    assert attribute_choice(["pitch", "chord", "chord"])[0] == ["chord"]
    with pytest.raises(AudioSAEError, match="unknown attribute"):
        attribute_choice(["chrome"])
    args = parser.parse_args(["train", str(tmp_path / "ws"), "--attributes", "pitch,onset"])
    assert train_settings_from_args(args).probe_attributes == ("pitch", "onset")
    assert train_settings_from_args(parser.parse_args(["train", str(tmp_path / "ws")])).probe_attributes \
        == ("pitch", "loudness", "timbre")

    class Store:   # an attribute no training frame has a label of is refused before training
        manifest = type("M", (), {"shards": [{"n_train": 3}]})()

        def load_shard(self, i, split, columns):
            return {"instrument": torch.tensor([-1, -1, -1]), "onset": torch.tensor([0, 1, -1])}

    check_labelled(Store(), ["onset"])
    with pytest.raises(AudioSAEError, match="no training frame has a label of instrument"):
        check_labelled(Store(), ["onset", "instrument"])
