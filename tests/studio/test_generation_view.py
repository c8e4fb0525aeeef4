"""The studio's DiffRhythm generation view, offscreen, on a tiny offline workspace and a tiny DiT.

The workspace and generator are built as in ``tests/core/test_trace.py`` (a scripted stand-in for
the DiffRhythm VAE, a 4x SAE and probes trained on a few seconds of tones, a random tiny DiT
saved as a ``cfm_model.pt``), once per module; each run generates 2 s (43 frames) in 32 states.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from PySide6.QtCore import Qt  # noqa: E402

from audiosae.analysis import LoadedModels  # noqa: E402
from audiosae.generation import trace as tr  # noqa: E402
from audiosae.generation.diffrhythm import build_cfm, tiny_config  # noqa: E402
from tests.core.test_trace import build_tiny_diffrhythm_workspace  # noqa: E402

SECONDS = 2.0
FRAMES = int(SECONDS * 44100 / 2048)  # 43
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return build_tiny_diffrhythm_workspace(tmp_path_factory.mktemp("genview"))


@pytest.fixture(scope="module")
def models(workspace) -> LoadedModels:
    return LoadedModels.load(workspace, device="cpu")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A tiny DiT as a ``cfm_model.pt`` (the Run form's "generator weights" file)."""
    torch.manual_seed(0)
    cfm = build_cfm(tiny_config(num_heads=32, conv_layers=1))
    path = tmp_path_factory.mktemp("cfm") / "cfm_model.pt"
    torch.save({"model_state_dict": {k: v.half() for k, v in cfm.state_dict().items()}}, path)
    return path


def _style(seed: int = 1) -> torch.Tensor:
    v = torch.randn(1, 512, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


@pytest.fixture
def make_view(qtbot, workspace, models):
    from studio.widgets.generation.view import GenerationView
    from studio.state import ExplorerState
    from studio.workers import JobRunner
    from audiosae.workspace import Workspace

    made = []

    def make():
        state = ExplorerState()
        state.set_workspace(Workspace.open(workspace))
        state.set_models(models)
        runner = JobRunner()
        view = GenerationView(state, runner, SimpleNamespace(audio_device=None, compute_device="cpu"))
        qtbot.addWidget(view)
        view.resize(1200, 800)
        made.append((view, runner, state))
        return view

    yield make
    for view, runner, _state in made:
        view.shutdown()
        assert runner.shutdown()


def _run(qtbot, view, weights, **kw):
    with qtbot.waitSignal(view.run_finished, timeout=TIMEOUT_MS) as blocker:
        job = view.run(style=_style(), weights=str(weights), seconds=SECONDS, seed=7, **kw)
        assert job is not None
    qtbot.waitUntil(lambda: not view.running and view.run_button.isEnabled(), timeout=5000)
    return blocker.args[0]


def _expected_image(trace: tr.Trace, step: int) -> np.ndarray:
    full = trace.features["x_t"].full
    assert full is not None  # 32 x 43 x 256 is under the full-features limit
    order = np.argsort(-trace.features["x_t"].mean.max(axis=0), kind="stable")
    return full[step][:, order].astype(np.float32).T


def test_run_scrub_and_keys(make_view, weights, qtbot):
    view = make_view()
    seen, ranges = [], []
    view.step_received.connect(lambda i: (seen.append(i), ranges.append(view.slider.maximum())))
    assert _run(qtbot, view, weights) == "finished"
    trace = view.trace
    assert trace is not None and trace.steps == 32 and trace.frames == FRAMES
    # live: every state arrived through on_step, in order, and the slider range grew with them
    assert seen == list(range(32)) and ranges == list(range(32))
    assert view.slider.minimum() == 0 and view.slider.maximum() == 31
    assert view.step == 31 and view.slider.value() == 31

    levels = view.levels
    for step in (4, 17):
        view.set_step(step)
        np.testing.assert_allclose(view.image.image, _expected_image(trace, step), rtol=1e-3, atol=1e-4)
        assert view.levels == levels and tuple(view.image.levels) == pytest.approx(levels)  # fixed over states
        for attr in trace.attributes:
            np.testing.assert_array_equal(view.lane_classes[attr],
                                          trace.distributions["x_t"][attr][step].astype(np.float32).argmax(-1))
        assert view.cursor.value() == step and view.slider.value() == step
        # the image spans the clip's seconds x the shown features, whatever the state
        rect = view.image.mapRectToParent(view.image.boundingRect())
        assert (rect.left(), rect.top()) == pytest.approx((0.0, 0.0))
        assert (rect.width(), rect.height()) == pytest.approx((FRAMES * 2048 / 44100, view.row_features.size))
    # the ghost is the final state's decode; the s_t curves are the endpoint form, paper form on request
    pitch_ghost = view.ghost_curves["loudness"].getData()[1]
    final = trace.distributions["x_t"]["loudness"][-1].astype(np.float32).argmax(-1)
    np.testing.assert_array_equal(pitch_ghost[0::2], final)
    np.testing.assert_allclose(view.st_curves["pitch"].getData()[1], trace.s_t("pitch", "x_t", "endpoint"))
    view.paper_form.setChecked(True)
    np.testing.assert_allclose(view.st_curves["pitch"].getData()[1], trace.s_t("pitch", "x_t", "paper"))

    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert view.step == 18 and view.cursor.value() == 18
    qtbot.keyClick(view, Qt.Key.Key_Left)
    qtbot.keyClick(view, Qt.Key.Key_Left)
    assert view.step == 16
    qtbot.keyClick(view, Qt.Key.Key_End)
    assert view.step == 31
    qtbot.keyClick(view, Qt.Key.Key_Right)   # clamped at the last state
    assert view.step == 31
    qtbot.keyClick(view, Qt.Key.Key_Home)
    assert view.step == 0 and view.slider.value() == 0
    np.testing.assert_allclose(view.image.image, _expected_image(trace, 0), rtol=1e-3, atol=1e-4)


def test_save_then_open_restores_the_view(make_view, weights, qtbot, tmp_path):
    view = make_view()
    _run(qtbot, view, weights)
    view.set_step(9)
    folder = tmp_path / "trace"
    with qtbot.waitSignal(view.trace_saved, timeout=TIMEOUT_MS):
        view.save_trace(folder)
    assert tr.is_trace_folder(folder)

    other = make_view()
    with qtbot.waitSignal(other.trace_changed, timeout=TIMEOUT_MS):
        other.open_trace(folder)
    assert other.trace.meta["trace_id"] == view.trace.meta["trace_id"]
    assert other.slider.maximum() == 31 and other.step == 31
    other.set_step(9)
    np.testing.assert_allclose(other.image.image, view.image.image, rtol=1e-3, atol=1e-4)
    assert other.levels == pytest.approx(view.levels)
    np.testing.assert_array_equal(other.row_features, view.row_features)
    for attr in view.trace.attributes:
        np.testing.assert_array_equal(other.lane_classes[attr], view.lane_classes[attr])
        np.testing.assert_allclose(other.st_curves[attr].getData()[1], view.st_curves[attr].getData()[1])
    assert other.cursor.value() == 9
    assert other.convergence_label.text() == view.convergence_label.text()


def test_cancel_mid_run_leaves_the_view_usable(make_view, weights, qtbot, monkeypatch):
    view = make_view()
    gate = threading.Event()
    real = tr.trace_generation

    def held(*args, on_step=None, **kw):
        def step(s):
            on_step(s)
            if s.index == 2:
                gate.wait(20)   # hold the worker until the test has pressed Cancel
        return real(*args, on_step=step, **kw)

    monkeypatch.setattr(tr, "trace_generation", held)
    with qtbot.waitSignal(view.step_received, timeout=TIMEOUT_MS, check_params_cb=lambda i: i == 2):
        view.run(style=_style(), weights=str(weights), seconds=SECONDS)
    with qtbot.waitSignal(view.run_finished, timeout=TIMEOUT_MS) as blocker:
        view.cancel()
        gate.set()
    assert blocker.args == ["cancelled"]
    qtbot.waitUntil(lambda: view.run_button.isEnabled(), timeout=5000)
    assert not view.running and not view.cancel_button.isEnabled() and view.trace is None
    assert view.available_steps == 3 and view.slider.maximum() == 2
    view.set_step(1)
    assert view.step == 1 and view.cursor.value() == 1
    assert "cancelled" in view.status_label.text()
    monkeypatch.setattr(tr, "trace_generation", real)
    assert _run(qtbot, view, weights) == "finished"   # and it runs again
    assert view.slider.maximum() == 31


def test_playback_decodes_the_chosen_state_and_caches_it(make_view, weights, qtbot, monkeypatch, models):
    view = make_view()
    _run(qtbot, view, weights)
    calls, played = [], []
    real = tr.decode_state

    def recording(trace, backend, index, which="x_t"):
        calls.append((index, which))
        return real(trace, backend, index, which)

    monkeypatch.setattr(tr, "decode_state", recording)
    monkeypatch.setattr(view.snippets, "play", lambda audio, rate, tag=None: played.append((audio, rate, tag)) or True)
    view.set_step(7)
    view.set_play_source("x1")
    with qtbot.waitSignal(view.playback_requested, timeout=TIMEOUT_MS):
        assert view.play_step() is not None
    assert calls == [(7, "x1")]
    audio, rate, tag = played[-1]
    assert rate == 44100 and tag == (7, "x1")
    np.testing.assert_allclose(audio, real(view.trace, models.backend, 7, "x1"), atol=1e-6)
    assert audio.shape == (2, FRAMES * 2048)
    # the same state again comes from the cache: no second decode
    with qtbot.waitSignal(view.playback_requested, timeout=TIMEOUT_MS):
        assert view.play_step() is None
    assert calls == [(7, "x1")] and len(played) == 2
    view.set_play_source("x_t")
    with qtbot.waitSignal(view.playback_requested, timeout=TIMEOUT_MS):
        view.play_step()
    assert calls == [(7, "x1"), (7, "x_t")]
    assert not np.allclose(played[-1][0], played[0][0])


def test_form_notes_and_missing_style(make_view, qtbot):
    from studio.models.generation import muq_available

    view = make_view()
    assert not view.muq_note.isHidden() == (not muq_available())
    assert "vocal.npy" in view.negative_note.text() and not view.negative_note.isHidden()
    view.negative.edit.setText("/tmp/some/vocal.npy")
    assert view.negative_note.isHidden()
    view.negative.edit.setText("")
    assert "GB" in view.weights_note.text()
    if muq_available():
        pytest.skip("muq is installed: the missing-package message cannot be shown")
    with qtbot.waitSignal(view.run_finished, timeout=TIMEOUT_MS) as blocker:
        view.run(seconds=SECONDS)   # no embedding given and no muq: the text prompt cannot be embedded
    assert blocker.args == ["failed"]
    assert "muq" in view.status_label.text()
    qtbot.waitUntil(lambda: view.run_button.isEnabled(), timeout=5000)


def test_main_window_hosts_the_view_lazily_and_opens_traces(qtbot, isolated_settings, monkeypatch, make_view,
                                                           weights, tmp_path):
    from studio.widgets.generation.view import GenerationView
    from studio.main_window import MainWindow
    from studio.settings import StudioSettings

    source = make_view()
    _run(qtbot, source, weights)
    folder = tmp_path / "saved"
    with qtbot.waitSignal(source.trace_saved, timeout=TIMEOUT_MS):
        source.save_trace(folder)

    win = MainWindow(StudioSettings())
    qtbot.addWidget(win)
    try:
        assert win.generation is None and win.generation_dock.isHidden()   # nothing built until needed
        file_menu = win.menuBar().actions()[0].menu()
        texts = [a.text() for a in file_menu.actions()]
        assert "Open &trace…" in texts and "Sa&ve trace…" in texts
        monkeypatch.setattr("studio.widgets.generation.view.QFileDialog.getExistingDirectory", lambda *a, **k: str(folder))
        win.actions_by_name["open_trace"].trigger()
        view = win.generation
        assert isinstance(view, GenerationView) and win.generation_dock.widget() is view
        qtbot.waitUntil(lambda: view.trace is not None, timeout=TIMEOUT_MS)
        assert view.trace.meta["trace_id"] == source.trace.meta["trace_id"] and view.slider.maximum() == 31
        again = tmp_path / "again"
        monkeypatch.setattr("studio.widgets.generation.view.QFileDialog.getExistingDirectory", lambda *a, **k: str(again))
        with qtbot.waitSignal(view.trace_saved, timeout=TIMEOUT_MS):
            win.actions_by_name["save_trace"].trigger()
        assert tr.load_trace(again, load_audio=False).meta["trace_id"] == source.trace.meta["trace_id"]
    finally:
        win.close()
