"""One path for every job (issue 13): ``audiosae build``/``train`` and the studio's wizard reach the
same workflow functions (``audiosae.workflows.train.run_build`` / ``run_train``), and with nothing
changed they ask for equal requests: the wizard's defaults are the CLI's.  ``audiosae trace`` and
the studio's generation view reach ``audiosae.workflows.trace.run_trace`` alike, and ``audiosae steer``
and the audition's export ``audiosae.workflows.steer.run_steer``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QWizard  # noqa: E402

from audiosae import defaults as D  # noqa: E402
from audiosae.cli import EXIT_ERROR, EXIT_OK, main  # noqa: E402
from audiosae.errors import AudioSAEError  # noqa: E402
from audiosae.workflows import train as flow  # noqa: E402
from studio.settings import StudioSettings  # noqa: E402
from studio.widgets.wizard.common import PAGE_ATTRIBUTES, PAGE_BACKEND, PAGE_GRID, PAGE_RUN  # noqa: E402
from studio.widgets.wizard.wizard import TrainingWizard  # noqa: E402
from studio.workers import JobRunner  # noqa: E402

from tests.support.qt_fixtures import isolated_settings, qt_leak_check, qt_leak_guard  # noqa: E402,F401  (fail on Qt leaks)

MINUTES = 0.3


class Stopped(AudioSAEError):
    """Raised by a spy once it has recorded its call: the test needs the request, not the work."""


def spy_on(monkeypatch, name: str, *, pass_through: int = 0) -> list:
    """Record each call of ``flow.<name>``; the first ``pass_through`` calls run the real function,
    later ones raise ``Stopped``."""
    real = getattr(flow, name)
    calls: list = []

    def spy(request, *, progress, cancel):
        calls.append(request)
        if len(calls) <= pass_through:
            return real(request, progress=progress, cancel=cancel)
        raise Stopped(f"{name} reached")

    monkeypatch.setattr(flow, name, spy)
    return calls


@pytest.fixture
def runner():
    jobs = JobRunner()
    yield jobs
    assert jobs.shutdown(), "a wizard job did not stop"


@pytest.fixture
def wizard(qtbot, runner, tmp_path):
    settings = StudioSettings(tmp_path / "settings.ini")
    settings.compute_device = "cpu"
    wiz = TrainingWizard(runner, settings)
    qtbot.addWidget(wiz)
    wiz.show()
    yield wiz
    wiz.close()


def next_page(wiz: TrainingWizard, expected: int) -> None:
    button = wiz.button(QWizard.WizardButton.NextButton)
    assert button.isEnabled(), f"Next is disabled on page {wiz.currentId()}"
    button.click()
    assert wiz.currentId() == expected


def drive_to_run(wiz: TrainingWizard) -> None:
    """Every page left at its default (the backend is mel, CREPE tiny, the grid untouched)."""
    next_page(wiz, PAGE_BACKEND)
    wiz.backend_page.select_backend("mel")
    next_page(wiz, PAGE_ATTRIBUTES)
    wiz.setField("crepe_model", "tiny")
    next_page(wiz, PAGE_GRID)
    next_page(wiz, PAGE_RUN)


def test_cli_and_wizard_reach_the_same_build_and_train_workflows(qtbot, monkeypatch, wizard, tmp_path, capsys):
    builds = spy_on(monkeypatch, "run_build", pass_through=1)
    trains = spy_on(monkeypatch, "run_train")

    # The CLI: build for real (the train step below needs a corpus), then train up to the workflow call.
    ws = tmp_path / "cli-ws"
    assert main(["build", str(ws), "--builtin", "tones", "--minutes", str(MINUTES), "--device", "cpu",
                 "--crepe-model", "tiny", "--quiet"]) == EXIT_OK
    capsys.readouterr()
    assert main(["train", str(ws), "--device", "cpu"]) == EXIT_ERROR  # the spy stops it
    assert len(builds) == 1 and len(trains) == 1
    err = capsys.readouterr().err
    # the estimate line (workflows.train_plan.describe_train_estimate) comes before the training
    assert err.index("SAE grid: 9 SAEs, up to") < err.index("run_train reached")
    cli_build, cli_train = builds[0], trains[0]

    # The wizard, on a new folder with the same audio: its run job calls run_build (the spy stops it).
    wizard.audio_page.use_builtin("tones", MINUTES)
    wizard.setField("workspace", str(tmp_path / "wizard-ws"))
    drive_to_run(wizard)
    run = wizard.run_page
    qtbot.waitUntil(lambda: run.state in ("failed", "done"), timeout=60_000)
    assert run.state == "failed" and "run_build reached" in run.error
    assert len(builds) == 2
    wiz_build = builds[1]
    for key in ("backend", "backend_options", "device", "crepe_model", "seed", "shard_frames", "problems"):
        assert getattr(wiz_build, key) == getattr(cli_build, key), key
    assert [s.label for s in wiz_build.sources] == [s.label for s in cli_build.sources]
    assert Path(wiz_build.workspace).name == "wizard-ws"

    # The wizard on the CLI's built workspace (no audio: it trains the corpus as it is).
    wizard.close()
    wiz2 = TrainingWizard(wizard.runner, wizard.audio_page.settings, initial_folder=ws)
    qtbot.addWidget(wiz2)
    wiz2.show()
    try:
        assert wiz2.audio_page.workspace_status.kind == "existing"
        drive_to_run(wiz2)
        run = wiz2.run_page
        qtbot.waitUntil(lambda: run.state in ("failed", "done"), timeout=60_000)
        assert run.state == "failed" and "run_train reached" in run.error
    finally:
        wiz2.close()
    assert len(builds) == 2 and len(trains) == 2   # nothing to build: straight to training
    wiz_train = trains[1]
    assert Path(wiz_train.workspace).resolve() == Path(cli_train.workspace).resolve()
    assert wiz_train.device == cli_train.device == "cpu"
    # Equal settings, field by field, and they are audiosae.defaults' values.
    assert wiz_train.settings == cli_train.settings
    s = cli_train.settings
    assert (s.expansions, s.l1s, s.ks) == (D.DEFAULT_EXPANSIONS, D.DEFAULT_L1S, D.DEFAULT_KS)
    assert (s.architecture, s.rmsnorm, s.epochs, s.frames) == (D.DEFAULT_ARCHITECTURE, None, None, None)
    assert (s.batch_size, s.seed, s.probe_folds) == (D.SAE_BATCH_SIZE, D.SEED, D.PROBE_FOLDS)


@pytest.mark.parametrize("flags, page", [
    (["--architecture", "topk", "--k", "4,12", "--expansion", "2,8", "--frames", "300000"],
     dict(architecture="topk", k_text="4, 12", widths=[2, 8], frames=300000)),
    (["--architecture", "jumprelu", "--no-rmsnorm", "--epochs", "3", "--batch-size", "256"],
     dict(architecture="jumprelu", rmsnorm=False, epochs=3, batch_size=256)),
    (["--l1", "0.01,0.1"], dict(l1_text="0.01, 0.1")),
    (["--attributes", "pitch,loudness,timbre,onset,chord"], dict(extra_probes=["onset", "chord"])),
])
def test_the_training_page_and_the_cli_resolve_choices_alike(qtbot, runner, flags, page):
    """The same choices made on the training page and as ``audiosae train`` flags give equal settings
    (jumprelu's lambda grid follows the architecture's default on both)."""
    from audiosae.cli import build_parser
    from audiosae.cli.training import train_settings_from_args
    from studio.models.wizard import TrainingModel

    cli = train_settings_from_args(build_parser().parse_args(["train", "WS", *flags]))
    model = TrainingModel(runner)
    arch = page.pop("architecture", None)
    if arch:
        model.update(architecture=arch)
    model.update(**page)
    assert model.problem() == ""
    assert model.train_settings() == cli
    if arch == "jumprelu":
        assert tuple(model.l1s()) == D.DEFAULT_L0S


def test_the_training_page_offers_the_architectures_and_the_budget(qtbot, wizard):
    page = wizard.grid_page
    combo = page.architecture_combo
    assert [combo.itemText(i) for i in range(combo.count())] == list(D.ARCHITECTURE_CHOICES)
    assert combo.currentText() == D.DEFAULT_ARCHITECTURE and page.rmsnorm_box.isChecked()
    assert page.k_edit.text() == ", ".join(f"{k:g}" for k in D.DEFAULT_KS)
    assert page.train_settings() == flow.train_settings()
    page.set_architecture("topk")
    assert page.k_edit.isVisibleTo(page) and not page.l1_edit.isVisibleTo(page)
    wizard.setField("ks", "8, x")
    assert "'x' is not a whole number" in page.message.text() and not page.isComplete()
    wizard.setField("ks", "8, 24")
    settings = page.train_settings()
    assert settings.architecture == "topk" and settings.ks == (8, 24)
    assert [c.k for c in settings.sae_configs(128)] == [8, 24] * len(D.DEFAULT_EXPANSIONS)
    wizard.setField("epochs", 2)
    assert not page.frames_spin.isEnabled()   # epochs and frames are exclusive, as on the CLI
    wizard.setField("epochs", 0)
    wizard.setField("frames", 500_000)
    assert page.train_settings().frames == 500_000 and page.train_settings().epochs is None
    # probes beyond the paper's three: every registered attribute measured from the sound, opt-in
    assert "onset" in page.probe_boxes and "chord" in page.probe_boxes and "instrument" not in page.probe_boxes
    assert not any(box.isChecked() for box in page.probe_boxes.values())
    assert page.train_settings().probe_attributes == ("pitch", "loudness", "timbre")
    page.probe_boxes["chord"].setChecked(True)
    assert page.train_settings().probe_attributes == ("pitch", "loudness", "timbre", "chord")


def test_the_estimate_follows_the_budget_and_the_architecture(qtbot, wizard, tmp_path):
    """The training page's estimate is recomputed when the budget, k or the architecture change;
    its SAE part is ``training.estimate_train_seconds`` of the page's settings (what the CLI prints)."""
    from audiosae.training import estimate_train_seconds

    wizard.audio_page.use_builtin("tones", MINUTES)
    wizard.setField("workspace", str(tmp_path / "ws"))
    page = wizard.grid_page
    next_page(wizard, PAGE_BACKEND)
    next_page(wizard, PAGE_ATTRIBUTES)
    wizard.setField("crepe_model", "tiny")
    with qtbot.waitSignal(page.estimate_ready, timeout=120_000):
        next_page(wizard, PAGE_GRID)
    auto = page.estimate
    cal_spf = sum(page.model._sae_cache[page.model._sae_key(page.model.context)][w] for w in D.DEFAULT_EXPANSIONS)
    n_train = int(page.model.context.corpus[0] * page.model.context.corpus[1] * 0.9)
    expected = estimate_train_seconds(page.train_settings(), 128, n_train, seconds_per_frame=cal_spf * 3)["seconds"]
    assert auto.sae_s == pytest.approx(expected, rel=1e-9)

    with qtbot.waitSignal(page.estimate_ready, timeout=30_000):
        wizard.setField("epochs", 1)     # one pass over ~1,200 frames: far below the default budget
    assert page.estimate.sae_s < auto.sae_s / 10
    with qtbot.waitSignal(page.estimate_ready, timeout=30_000):
        wizard.setField("epochs", 0)
    assert page.estimate.sae_s == pytest.approx(auto.sae_s)
    with qtbot.waitSignal(page.estimate_ready, timeout=30_000):
        wizard.setField("frames", 4 * 512_000)   # four times the default budget
    assert page.estimate.sae_s > 3 * auto.sae_s

    wizard.setField("frames", 0)
    with qtbot.waitSignal(page.estimate_ready, timeout=120_000):
        page.set_architecture("topk")           # another architecture is timed again
    topk = page.estimate
    assert page.model.context is not None and "topk" in page.summary.text()
    with qtbot.waitSignal(page.estimate_ready, timeout=30_000):
        wizard.setField("ks", "8")              # one k instead of three: a third of the SAE grid
    assert page.estimate.sae_s == pytest.approx(topk.sae_s / 3, rel=1e-6)


# ---- trace: ``audiosae trace`` and the studio's generation view -----------------------------------------

@pytest.fixture(scope="module")
def trace_workspace(tmp_path_factory) -> Path:
    from tests.core.test_trace import build_tiny_diffrhythm_workspace

    return build_tiny_diffrhythm_workspace(tmp_path_factory.mktemp("trace-paths"))


def spy_on_trace(monkeypatch) -> list:
    """Record each ``run_trace`` call (request and keyword arguments) and stop it."""
    from audiosae.workflows import trace as trace_flow

    calls: list = []

    def spy(request, *, progress, cancel, **kwargs):
        calls.append((request, kwargs))
        raise Stopped("run_trace reached")

    monkeypatch.setattr(trace_flow, "run_trace", spy)
    return calls


def test_cli_and_generation_view_reach_the_same_trace_workflow(qtbot, monkeypatch, trace_workspace, tmp_path,
                                                               capsys):
    """Equal choices (prompt, seed, duration, style file, generator weights, negative style, SAE,
    device) made as ``audiosae trace`` flags and in the generation view's form give equal
    ``TraceRequest``s; with nothing chosen, both are ``audiosae.defaults``' ``TRACE_*``."""
    from types import SimpleNamespace

    import numpy as np

    from audiosae.analysis import LoadedModels
    from audiosae.cli import build_parser
    from audiosae.workflows.trace import TraceRequest
    from audiosae.workspace import Workspace
    from studio.widgets.generation.view import GenerationView
    from studio.state import ExplorerState

    models = LoadedModels.load(trace_workspace, device="cpu")
    sae = models.sae.cfg.name
    style, negative, weights = tmp_path / "style.npy", tmp_path / "vocal.npy", tmp_path / "cfm_model.pt"
    np.save(style, np.ones((1, 512), dtype=np.float32) / np.sqrt(512))
    np.save(negative, -np.ones((1, 512), dtype=np.float32) / np.sqrt(512))
    weights.write_bytes(b"never read: the spy stops the run first")
    calls = spy_on_trace(monkeypatch)

    out = tmp_path / "cli-trace"
    common = [str(trace_workspace), "--sae", sae, "--device", "cpu", "--out", str(out), "--quiet"]
    assert main(["trace", *common, "--prompt", "soft tones", "--seconds", "2.5", "--seed", "7", "--style-embedding",
                 str(style), "--weights", str(weights), "--negative-style", str(negative)]) == EXIT_ERROR
    assert main(["trace", *common, "--prompt", "soft tones"]) == EXIT_ERROR
    assert "run_trace reached" in capsys.readouterr().err
    assert len(calls) == 2
    (cli_chosen, cli_kw), (cli_default, _) = calls
    assert cli_kw.get("models") is None and cli_chosen.out == out

    state = ExplorerState()
    state.set_workspace(Workspace.open(trace_workspace))
    state.set_models(models)
    runner = JobRunner()
    view = GenerationView(state, runner, SimpleNamespace(audio_device=None, compute_device="cpu"))
    qtbot.addWidget(view)
    try:
        view.prompt_edit.setText("soft tones")
        with qtbot.waitSignal(view.run_finished, timeout=30_000) as blocker:   # the form at its defaults
            view.run()
        assert blocker.args == ["failed"] and "run_trace reached" in view.status_label.text()
        view.seed_spin.setValue(7)
        view.seconds_spin.setValue(2.5)
        view.style_file.edit.setText(str(style))
        view.weights.edit.setText(str(weights))
        view.negative.edit.setText(str(negative))
        with qtbot.waitSignal(view.run_finished, timeout=30_000) as blocker:
            view.run()
        assert blocker.args == ["failed"]
        qtbot.waitUntil(lambda: not view.running and view.run_button.isEnabled(), timeout=5000)
    finally:
        view.shutdown()
        assert runner.shutdown()
    assert len(calls) == 4
    (view_default, view_kw), (view_chosen, _) = calls[2:]
    assert view_kw["models"] is models       # the explorer's models are reused, not loaded again
    assert callable(view_kw["on_step"])      # live states reach the view
    assert replace(cli_chosen, out=None) == view_chosen
    assert replace(cli_default, out=None) == view_default
    assert view_chosen.style_file == str(style) and view_chosen.seed == 7 and view_chosen.seconds == 2.5
    # nothing chosen: the defaults module's values, and the CLI's flags default to them too
    assert (view_default.seconds, view_default.seed, view_default.steps) == (D.TRACE_SECONDS, D.TRACE_SEED,
                                                                              D.TRACE_STEPS)
    assert (view_default.cfg_strength, view_default.threshold, view_default.dtype) == (
        D.TRACE_CFG_STRENGTH, D.TRACE_THRESHOLD, D.TRACE_DTYPE)
    assert view_default == TraceRequest(workspace=trace_workspace, prompt="soft tones", sae=sae, device="cpu")
    args = build_parser().parse_args(["trace", "WS", "--prompt", "x", "--out", "T"])
    assert (args.seconds, args.seed, args.steps, args.cfg, args.threshold, args.dtype) == (
        D.TRACE_SECONDS, D.TRACE_SEED, D.TRACE_STEPS, D.TRACE_CFG_STRENGTH, D.TRACE_THRESHOLD, D.TRACE_DTYPE)


# ---- steer: ``audiosae steer`` and the audition's "Export steered audio" ----------------------------------

from tests.studio.test_audition import _select, clip_env, make_panel  # noqa: E402,F401  (pytest fixtures)


def spy_on_steer(monkeypatch) -> list:
    """Record each ``workflows.steer.run_steer`` call (request and keyword arguments) and stop it."""
    from audiosae.workflows import steer as steer_flow

    calls: list = []

    def spy(request, *, progress, cancel, **kwargs):
        calls.append((request, kwargs))
        raise Stopped("run_steer reached")

    monkeypatch.setattr(steer_flow, "run_steer", spy)
    return calls


def test_cli_and_audition_export_reach_the_same_steer_workflow(qtbot, monkeypatch, make_panel, clip_env, tmp_path,
                                                              capsys):
    """Equal choices (attribute, target, alpha, method, selection, keep residual, SAE, device, output)
    made as ``audiosae steer`` flags and in the audition dock give equal ``SteerRequest``s; the
    studio's call also hands over its live renderer (the file is rendered as heard)."""
    from audiosae.cli import build_parser
    from audiosae.workflows.steer import SteerRequest

    ws, models, _ = clip_env
    panel = make_panel()                                   # the paper's method, picked
    calls = spy_on_steer(monkeypatch)
    target = max(models.probes.trained_classes("pitch"))
    name = models.spec.class_names("pitch")[target]
    panel.attribute_combo.setCurrentIndex(panel.attribute_combo.findData("pitch"))
    panel.target_combo.setCurrentIndex(target)
    panel._on_target_picked(target)
    panel.keep_residual_check.setChecked(True)
    _select(panel, 1.0, 3.5)
    panel.set_alpha(12.5)
    out = tmp_path / "steered.wav"
    with qtbot.waitSignal(panel.export_failed, timeout=30_000) as failed:
        assert panel.export_steered(str(out)) == str(out)
    assert "run_steer reached" in failed.args[0] and not out.exists()

    assert main(["steer", str(ws.root), "clip.wav", "--attribute", "pitch", "--target", name, "--alpha", "12.5",
                 "--method", "paper", "--start", "1.0", "--end", "3.5", "--keep-residual", "--sae",
                 models.sae.cfg.name, "--device", "cpu", "--out", str(out), "--quiet"]) == EXIT_ERROR
    assert "run_steer reached" in capsys.readouterr().err
    assert len(calls) == 2
    (studio, studio_kw), (cli, cli_kw) = calls
    assert studio == cli
    assert (studio.target, studio.alpha, studio.method, studio.start, studio.end) == (name, 12.5, "paper", 1.0, 3.5)
    assert studio.keep_residual and studio.limit and studio.device == "cpu" and studio.audio == Path("clip.wav")
    assert studio_kw["live"] is panel.renderer and studio_kw["workspace"] is not None
    assert cli_kw.get("live") is None                      # the CLI steers the file offline
    # nothing chosen: the CLI's flags and the request default to audiosae.defaults' values
    args = build_parser().parse_args(["steer", "WS", "a.wav", "--attribute", "pitch", "--target", "A4",
                                      "--out", "o.wav"])
    assert (args.alpha, args.method, args.limit) == (D.STEER_ALPHA, D.DEFAULT_STEER_METHOD, True)
    plain = SteerRequest(workspace="WS", audio="a.wav", attribute="pitch", target="A4", out="o.wav")
    assert (plain.alpha, plain.method, plain.limit) == (D.STEER_ALPHA, D.DEFAULT_STEER_METHOD, True)


def test_cli_and_evaluation_view_reach_the_same_evaluate_workflow(monkeypatch, clip_env, capsys):
    """``audiosae steer-eval`` and the studio's steering-evaluation job call
    ``workflows.evaluate.run_evaluate`` with the same target, alphas, methods and device; the
    studio hands over its open clip and loaded models and writes nothing until asked."""
    from audiosae.steering.evaluate import Clip
    from audiosae.workflows import evaluate as eval_flow
    from studio.models.steer_eval import run_evaluation

    ws, models, analysis = clip_env
    calls: list = []

    def spy(request, *, progress, cancel, **kwargs):
        calls.append((request, kwargs))
        raise Stopped("run_evaluate reached")

    monkeypatch.setattr(eval_flow, "run_evaluate", spy)
    with pytest.raises(Stopped):
        run_evaluation(models, "clip.wav", analysis.wave, "pitch", "A4", ["paper", "mass-mean"], [10.0, 20.0])
    clip = Path(ws.root) / "clip.wav"   # never read: the spy stops the run before
    assert main(["steer-eval", str(ws.root), "--audio", str(clip), "--attribute", "pitch", "--target", "A4",
                 "--alpha", "10,20", "--method", "paper,mass-mean", "--device", "cpu", "--quiet"]) == EXIT_ERROR
    assert "run_evaluate reached" in capsys.readouterr().err
    (studio, studio_kw), (cli, cli_kw) = calls
    assert studio_kw["models"] is models and cli_kw.get("models") is None
    assert [type(c) for c in studio.audio] == [Clip] and cli.audio == [clip]
    assert not studio.save and cli.save and cli.out is None        # the CLI writes WORKSPACE/steer/eval
    same = ("workspace", "targets", "alphas", "methods", "sae", "start", "end", "keep_residual", "limit", "device")
    assert {k: getattr(studio, k) for k in same} == {k: getattr(cli, k) for k in same}
