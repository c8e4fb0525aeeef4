"""audiosae.explore: probe decoding and "find this corpus source again", each written once
(issue 13), and what they compute."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from audiosae.corpus import Source
from audiosae.explore import decoding, sources
from audiosae.probes import ProbeSet
from audiosae.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "resources" / "demo"


@pytest.fixture
def probes() -> ProbeSet:
    g = torch.Generator().manual_seed(0)
    weights = {"pitch": torch.randn(7, 12, generator=g), "loudness": torch.randn(4, 12, generator=g)}
    bias = {"pitch": torch.randn(7, generator=g), "loudness": torch.randn(4, generator=g)}
    names = {"pitch": [f"p{k}" for k in range(7)], "loudness": [f"l{k}" for k in range(4)]}
    return ProbeSet(weights=weights, bias=bias, class_names=names, feature_kind="sae")


def test_decoding_paths_agree(probes):
    f = np.abs(np.random.default_rng(1).normal(size=(50, 12))).astype(np.float32)
    dist = decoding.probe_distributions(probes, torch.from_numpy(f))
    classes = decoding.decode_classes(probes, f, ["pitch", "loudness"], chunk_frames=7)   # chunks agree
    for attr in ("pitch", "loudness"):
        logits = decoding.probe_logits(probes, f, attr)
        np.testing.assert_allclose(logits, f @ probes.weights[attr].numpy().T + probes.bias[attr].numpy(),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dist[attr], decoding.softmax(logits), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dist[attr].sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(classes[attr], dist[attr].argmax(axis=1))


def test_feature_contributions_at_a_frame(probes):
    row = np.abs(np.random.default_rng(2).normal(size=12)).astype(np.float32)
    j = 5
    rows = decoding.feature_contributions(probes, row, "pitch", j, top=4)
    logits = decoding.probe_logits(probes, row, "pitch")
    p = decoding.softmax(logits)
    assert [c.klass for c in rows] == list(np.argsort(-p)[:4])
    assert rows[0].predicted and not any(c.predicted for c in rows[1:])
    w = probes.weights["pitch"].numpy()
    for c in rows:
        assert c.contribution == pytest.approx(float(w[c.klass, j]) * float(row[j]), rel=1e-6)
        assert c.weight == pytest.approx(float(w[c.klass, j]))
        assert c.p == pytest.approx(float(p[c.klass]), rel=1e-6)
        assert c.name == f"p{c.klass}"
    # The contributions of every feature and the bias add up to the logit.
    k = rows[0].klass

    def contribution(i: int) -> float:
        return next(c.contribution for c in decoding.feature_contributions(probes, row, "pitch", i, top=7)
                    if c.klass == k)

    total = sum(contribution(i) for i in range(12)) + float(probes.bias["pitch"][k])
    assert total == pytest.approx(rows[0].logit, rel=1e-4, abs=1e-4)
    names, col = decoding.probe_weight_column(probes, "pitch", j)
    assert names == probes.class_names["pitch"] and col.dtype == np.float64
    np.testing.assert_allclose(col, w[:, j])


def test_probe_decoding_and_source_finding_are_written_once():
    """The studio and the analysis use the core's functions; no other copy is left."""
    import audiosae.analysis
    import audiosae.feature_index
    import studio.main_window
    import studio.models.steered_lanes

    assert studio.models.steered_lanes.decode_classes is decoding.decode_classes   # the lanes' view-model
    assert audiosae.analysis.probe_distributions is decoding.probe_distributions
    assert audiosae.feature_index._builtin_source is sources.builtin_source
    assert studio.main_window.default_clip is sources.default_clip
    science = re.compile(r"\.logits\(|predict_proba\(|torch\.softmax|\bbuiltin_sources\(")
    offenders = {}
    for path in [*sorted((REPO / "studio").rglob("*.py")), REPO / "audiosae" / "analysis.py",
                 REPO / "audiosae" / "feature_index.py"]:
        found = science.findall(path.read_text(encoding="utf-8"))
        rel = path.relative_to(REPO).as_posix()
        if found and not rel.startswith(("studio/models/wizard", "studio/widgets/wizard")):  # corpus making
            offenders[rel] = sorted(set(found))
    assert offenders == {}


@pytest.fixture
def bare_demo(tmp_path) -> Workspace:
    """The demo's workspace and manifest without its clips/ (so the corpus is all there is)."""
    root = tmp_path / "ws"
    (root / "corpus").mkdir(parents=True)
    shutil.copy(DEMO / "workspace.json", root / "workspace.json")
    shutil.copy(DEMO / "corpus" / "manifest.json", root / "corpus" / "manifest.json")
    return Workspace.open(root)


def test_find_source_again(bare_demo, tmp_path):
    ws = bare_demo
    record = sorted((r for r in ws.manifest().sources.values() if r.source_id.startswith("tones/")),
                    key=lambda r: r.source_id)[0]
    found = sources.find_source(ws, record)
    assert isinstance(found, Source) and found.source_id == record.source_id and found.label == record.label
    assert found is sources.builtin_source(record.source_id.split("/")[0], sources.corpus_seed(ws), record.source_id)
    # Another label than the manifest's (a corpus made with another seed): not that source.
    assert sources.find_source(ws, dataclasses.replace(record, label="something else")) is None
    # A file that is still there wins; a moved user file is not found.
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"")
    assert sources.find_source(ws, dataclasses.replace(record, path=str(audio))) == str(audio)
    user = dataclasses.replace(record, source_id="user/gone.wav", path=str(tmp_path / "gone.wav"))
    assert sources.find_source(ws, user) is None


def test_default_clip_prefers_clips_then_the_first_validation_source(bare_demo):
    ws = bare_demo
    clip = sources.default_clip(ws)
    # Sources of other corpora (a music folder not copied here) cannot be found again: the first
    # built-in validation source is the first one that can.
    val = sorted(r.source_id for r in ws.manifest().sources.values()
                 if r.split == "val" and r.source_id.startswith("tones/"))
    assert isinstance(clip, Source) and clip.source_id == val[0]
    (ws.root / "clips").mkdir()
    (ws.root / "clips" / "b.flac").write_bytes(b"")
    (ws.root / "clips" / "a.flac").write_bytes(b"")
    (ws.root / "clips" / "notes.txt").write_text("not audio")
    assert sources.default_clip(ws) == str(ws.root / "clips" / "a.flac")
