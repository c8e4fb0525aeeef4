"""``audiosae train --probe-folds N --class-weights balanced|none``: the probe options reach the
core (``train_probes`` / ``cross_validate_probes``) with the defaults of ``audiosae.defaults``,
and the report's ``*_accuracy_std`` keys follow whether the probes were cross-validated."""

from __future__ import annotations

import json

import pytest

from audiosae import defaults as D
from audiosae.cli import build_parser, main
from audiosae.cli.training import train_settings_from_args


@pytest.fixture(scope="module")
def five_source_workspace(tmp_path_factory):
    """Five 0.6-s tones (five sources: fewer than the cross-validation limit)."""
    import soundfile as sf

    from audiosae.corpus import user_sources
    from audiosae.workspace import Workspace, build_corpus
    from tests.support.common import harmonic_tone

    root = tmp_path_factory.mktemp("flags")
    music = root / "music"
    music.mkdir()
    for i, (midi, level) in enumerate([(57, -30.0), (60, -12.0), (64, -20.0), (67, -6.0), (72, -24.0)]):
        sf.write(str(music / f"take{i}.wav"), harmonic_tone(midi, 0.6, 16000, level_db=level), 16000)
    sources, problems = user_sources([music])
    ws = Workspace.create(root / "ws", "mel")
    build_corpus(ws, sources, device="cpu", problems=problems)
    return ws


def _settings(*flags: str):
    return train_settings_from_args(build_parser().parse_args(["train", "WS", *flags]))


def test_defaults_come_from_audiosae_defaults():
    s = _settings()
    assert s.probe_folds == D.PROBE_FOLDS and s.probe_class_weight == D.PROBE_CLASS_WEIGHT
    assert s.probe_cv_max_sources == D.PROBE_CV_MAX_SOURCES
    from audiosae.training import TrainSettings

    plain = TrainSettings()       # what the wizard builds: the same defaults
    assert (plain.probe_folds, plain.probe_class_weight) == (s.probe_folds, s.probe_class_weight)


def test_flags_parse_into_train_settings():
    s = _settings("--probe-folds", "3", "--class-weights", "balanced")
    assert s.probe_folds == 3 and s.probe_class_weight == "balanced"
    s = _settings("--probe-folds", "0", "--class-weights", "none")
    assert s.probe_folds == 0 and s.probe_class_weight is None
    # a different probe setting is a different probe fingerprint (the probes are retrained)
    assert _settings("--probe-folds", "0").probe_fingerprint("x") != _settings().probe_fingerprint("x")
    assert _settings("--class-weights", "balanced").probe_fingerprint("x") != _settings().probe_fingerprint("x")
    # "auto" (the default) weighs the paper's three as "none" did: their probes are not retrained;
    # with an added attribute it balances that one, a different training
    assert D.PROBE_CLASS_WEIGHT == "auto" == _settings().probe_class_weight
    assert _settings().probe_fingerprint("x") == _settings("--class-weights", "none").probe_fingerprint("x")
    extra = ("--attributes", "pitch,onset")
    assert _settings(*extra).probe_fingerprint("x") != _settings(*extra, "--class-weights", "none").probe_fingerprint("x")


@pytest.mark.parametrize("bad", [["--probe-folds", "-1"], ["--probe-folds", "two"], ["--class-weights", "inverse"]])
def test_bad_flags_are_usage_errors(bad, capsys):
    assert main(["train", "WS", *bad]) == 2
    assert "--probe-folds" in capsys.readouterr().err or bad[0] == "--class-weights"


def test_negative_folds_are_refused_by_the_core(five_source_workspace):
    from audiosae.errors import AudioSAEError
    from audiosae.training import TrainSettings, train_workspace

    with pytest.raises(AudioSAEError, match="folds"):
        train_workspace(five_source_workspace, TrainSettings(expansions=[1], l1s=[0.05], epochs=1, probe_folds=-2))
    with pytest.raises(AudioSAEError, match="class weights"):
        train_workspace(five_source_workspace, TrainSettings(expansions=[1], l1s=[0.05], epochs=1,
                                                             probe_class_weight="inverse"))


def _spy(monkeypatch):
    """Record every ``train_probes`` call (the holdout one in training, the folds' in probes) and
    every ``cross_validate_probes`` call, passing through to the real functions."""
    import audiosae.probes as probes_module
    import audiosae.training as training_module

    calls: dict[str, list[dict]] = {"train_probes": [], "cross_validate": []}
    real_train, real_cv = probes_module.train_probes, probes_module.cross_validate_probes

    def train_spy(*args, **kwargs):
        calls["train_probes"].append(kwargs)
        return real_train(*args, **kwargs)

    def cv_spy(*args, **kwargs):
        calls["cross_validate"].append(kwargs)
        return real_cv(*args, **kwargs)

    monkeypatch.setattr(training_module, "train_probes", train_spy)
    monkeypatch.setattr(probes_module, "train_probes", train_spy)
    monkeypatch.setattr(training_module, "cross_validate_probes", cv_spy)
    return calls


def _train(ws, capsys, *flags: str) -> dict:
    rc = main(["train", str(ws.root), "--expansion", "1", "--l1", "0.05", "--epochs", "1", "--device", "cpu",
               "--quiet", "--json", *flags])
    out = capsys.readouterr().out
    assert rc == 0, out
    return json.loads(out)


@pytest.mark.slow
def test_flags_reach_the_probes_and_the_report(five_source_workspace, monkeypatch, capsys):
    ws = five_source_workspace
    attrs = ("pitch", "loudness", "timbre")

    # cross-validated, balanced: 2 probe sets (SAE, raw latent) x (holdout + 3 folds)
    calls = _spy(monkeypatch)
    report = _train(ws, capsys, "--probe-folds", "3", "--class-weights", "balanced")
    assert [c["n_folds"] for c in calls["cross_validate"]] == [3, 3]
    assert len(calls["train_probes"]) == 2 * (1 + 3)
    assert all(c["class_weight"] == "balanced" for c in calls["train_probes"])
    metrics = json.loads((ws.probe_dir("raw-latent") / "metrics.json").read_text())
    assert metrics["method"] == "cross-validation by source, 3 folds" and len(metrics["cv"]["folds"]) == 3
    for row in (report["saes"][0], report["baseline"]):
        for a in attrs:
            assert isinstance(row[f"{a}_accuracy"], float)
            assert isinstance(row[f"{a}_accuracy_std"], float) and row[f"{a}_accuracy_std"] >= 0

    # cross-validation off, no class weights: one probe set per name, measured on the val split
    calls = _spy(monkeypatch)
    report = _train(ws, capsys, "--probe-folds", "0", "--class-weights", "none")
    assert calls["cross_validate"] == []
    assert len(calls["train_probes"]) == 2 and all(c["class_weight"] is None for c in calls["train_probes"])
    metrics = json.loads((ws.probe_dir("raw-latent") / "metrics.json").read_text())
    assert metrics["method"] == "val split" and "cv" not in metrics
    for row in (report["saes"][0], report["baseline"]):
        for a in attrs:
            assert isinstance(row[f"{a}_accuracy"], float)
            assert not row.get(f"{a}_accuracy_std")          # absent, None or 0: no spread without folds

    # the same settings again: nothing retrained
    calls = _spy(monkeypatch)
    _train(ws, capsys, "--probe-folds", "0", "--class-weights", "none")
    assert calls["train_probes"] == [] and calls["cross_validate"] == []
