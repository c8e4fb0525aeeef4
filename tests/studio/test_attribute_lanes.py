"""Lanes and steering for every attribute the workspace labels (issue 14): an attribute registered
in a test can be picked in the timeline's "Lanes" menu and then draws its probe decode and its
measured classes, named on hover; the pick is remembered; an attribute without a probe says so;
the audition steers it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")

from PySide6.QtCore import QPointF, Qt  # noqa: E402

from audiosae.analysis import LoadedModels  # noqa: E402
from audiosae.corpus import builtin_sources  # noqa: E402
from audiosae.training import TrainSettings, train_workspace  # noqa: E402
from audiosae.workspace import Workspace, build_corpus  # noqa: E402
from studio.layers.lanes import category_ticks, lane_spec  # noqa: E402
from studio.models.lane_choice import LANES_KEY, LaneChoice  # noqa: E402
from studio.settings import StudioSettings  # noqa: E402
from studio.widgets.timeline import TimelineView  # noqa: E402
from tests.support.qt_fixtures import isolated_settings, qt_leak_check, qt_leak_guard  # noqa: E402,F401
from tests.support.timeline_view import shown_timeline  # noqa: E402
from tests.support.toy_attributes import BAND_VALUES, TOY, TOY_ORDINAL, register_toys, toy_attributes  # noqa: E402
from audiosae.attribute_registry import unregister  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A mel workspace labelling both toy attributes; its SAE has a probe for ``toy_level`` only."""
    register_toys()
    try:
        ws = Workspace.create(tmp_path_factory.mktemp("lanes") / "ws", "mel")
        sources = builtin_sources("tones", minutes=0.3)
        build_corpus(ws, sources, device="cpu", attributes=[TOY, TOY_ORDINAL])
        ws = Workspace.open(ws.root)
        train_workspace(ws, TrainSettings(expansions=[4], l1s=[0.02], epochs=2, batch_size=256, probe_folds=0,
                                          probe_attributes=("pitch", "loudness", "timbre", TOY)))
        models = LoadedModels.load(ws, device="cpu")
        analysis = models.analyze(sources[0].load(models.backend.sample_rate, 1))
        yield ws, models, analysis
    finally:
        unregister(TOY_ORDINAL)
        unregister(TOY)


@pytest.fixture
def toys():
    yield from toy_attributes()


@pytest.fixture
def env(qtbot, built, toys):
    ws, models, analysis = built
    with shown_timeline(qtbot, ws, models, (1200, 900)) as (view, state):
        state.set_analysis(analysis, "tones/0")
        qtbot.waitUntil(lambda: view.ready and view.display is not None, timeout=10_000)
        yield view, state, models, analysis


def _menu_actions(view: TimelineView) -> dict[str, object]:
    view.lanes_button.rebuild()
    return {a.text(): a for a in view.lanes_button.menu().actions() if a.isCheckable()}


def test_registered_attributes_are_offered_and_drawn_as_lanes(env, qtbot):
    view, state, models, analysis = env
    assert analysis.measured_classes[TOY].shape == (analysis.n_frames,)     # measured on the clip
    actions = _menu_actions(view)
    assert list(actions) == ["pitch", "loudness", "timbre", TOY, TOY_ORDINAL]
    assert [a for a, act in actions.items() if act.isChecked()] == ["pitch", "loudness", "timbre"]
    assert list(view.panes)[2:] == ["pitch lane", "loudness lane", "centroid lane"]

    actions[TOY].setChecked(True)                                           # the user picks it
    assert list(view.panes)[-1] == f"{TOY} lane"
    lane = view.lanes.lanes[TOY]
    assert lane.plot.scene() is view.graphics.scene()
    predicted = analysis.probabilities[TOY].argmax(axis=1)
    assert np.array_equal(lane.classes, predicted)
    assert np.array_equal(lane._series["decoded"], predicted.astype(float))  # categorical: the class index
    measured = analysis.measured_classes[TOY]
    assert np.array_equal(lane.data.measured_y, measured.astype(float))
    assert set(np.unique(measured)) == {0, 1}                               # tones with gaps: both classes
    loud = int(np.flatnonzero(measured == 1)[0])
    text = lane.describe(loud)
    assert f"measured loud" in text and text.startswith(f"probe {('quiet', 'loud')[predicted[loud]]}")
    assert lane.view_box.viewRange()[1] == pytest.approx([-0.6, 1.6])
    ticks = lane.plot.getAxis("left")._tickLevels[0]
    assert [name for _v, name in ticks] == ["quiet", "loud"]
    # the time axis moved to the new last lane; every lane follows the waveform's time range
    assert view.panes[f"{TOY} lane"].getAxis("bottom").style["showValues"]
    assert not view.panes["centroid lane"].getAxis("bottom").style["showValues"]
    view.waveform.view_box.setXRange(1.0, 2.0, padding=0)
    assert lane.view_box.viewRange()[0] == pytest.approx([1.0, 2.0], abs=1e-6)
    with qtbot.waitSignal(state.playhead_changed, timeout=2000):                # a click on the new lane seeks
        point = view.graphics.mapFromScene(lane.view_box.mapViewToScene(QPointF(1.5, 0.5)))
        qtbot.mouseClick(view.graphics.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert state.playhead == pytest.approx(1.5, abs=0.05)
    # steering: the lane shows the decode of f' (here: the features of another frame everywhere)
    other = 1 - predicted[loud]
    donor = int(np.flatnonzero(predicted == other)[0])
    state.set_steered_features(np.repeat(analysis.f[donor:donor + 1], analysis.n_frames, axis=0))
    qtbot.waitUntil(lambda: view.ready and lane.steered, timeout=5_000)
    assert np.all(lane.classes == other) and lane._series["ghost"] is not None
    assert "(was " in lane.describe(loud)

    actions = _menu_actions(view)
    actions["pitch"].setChecked(False)                                      # and drops another
    assert "pitch lane" not in view.panes and list(view.panes)[2] == "loudness lane"
    assert view.lanes.lanes["loudness"].plot.scene() is view.graphics.scene()


def test_an_ordinal_attribute_lane_draws_class_values_and_one_without_a_probe_says_so(env):
    view, state, models, analysis = env
    view.lane_choice.set_shown(TOY_ORDINAL, True)
    lane = view.lanes.lanes[TOY_ORDINAL]
    assert TOY_ORDINAL not in analysis.probabilities                         # not probed by this SAE
    assert lane.placeholder.isVisible() and f"no {TOY_ORDINAL} probe" in lane.placeholder.textItem.toPlainText()
    assert lane._series["decoded"] is None or not np.isfinite(lane._series["decoded"]).any()
    bands = analysis.measured_classes[TOY_ORDINAL]
    assert np.array_equal(lane.data.measured_y, np.asarray(BAND_VALUES)[bands])  # bin values, not indices
    lo, hi = lane.view_box.viewRange()[1]
    assert lo < -50 and hi > -10
    assert lane.describe(0).endswith(f"measured {('low', 'mid', 'high')[bands[0]]}")


def test_the_pick_is_remembered_and_unknown_names_wait_for_their_workspace(env, qtbot):
    view, state, models, analysis = env
    view.lane_choice.set_shown(TOY, True)
    view.lane_choice.set_shown("chord", True)          # not labelled by this workspace: kept, not shown
    assert "chord lane" not in view.panes
    stored = StudioSettings().value(LANES_KEY)
    assert stored.split(",") == ["pitch", "loudness", "timbre", TOY, "chord"]
    again = LaneChoice(StudioSettings())
    again.set_available(["pitch", "loudness", "timbre", TOY])
    assert again.shown == ["pitch", "loudness", "timbre", TOY]
    view.lane_choice.reset()
    assert list(view.panes)[2:] == ["pitch lane", "loudness lane", "centroid lane"]
    state.set_models(None)                              # no workspace models: the paper's three only
    assert view.lane_choice.available == ["pitch", "loudness", "timbre"]


def test_the_audition_steers_a_registered_attribute(qtbot, built, toys):
    import dataclasses

    import torch

    from tests.support.audition_model import started_audition

    ws, models, analysis = built
    model, state, runner = started_audition(qtbot, ws, models, analysis, "tones/0")
    assert model.attributes() == ["pitch", "loudness", "timbre", TOY]         # toy_band: no probe to steer with
    assert model.class_names(TOY) == ["quiet", "loud"] and "louder" in model.steering_meaning(TOY)
    model.set_attribute(TOY)
    model.targets[TOY] = 1
    model.alpha = 10.0
    model.apply_params()
    renderer = model.renderer
    assert state.steering.attribute == TOY and renderer.params.attribute == TOY and renderer.params.target == 1
    n = analysis.n_frames
    steered = renderer.steered_latents(0, n)
    unsteered = renderer.steered_latents(0, n, renderer._prepare(dataclasses.replace(renderer.params, alpha=0.0)))
    assert not torch.allclose(steered, unsteered)                             # alpha 10 moves the latents
    model.shutdown()
    runner.shutdown()
    model.deleteLater()


def test_the_explorer_shows_the_clip_first_and_its_registered_attributes_after(qtbot, built, toys, tmp_path):
    """The clip is analysed with the paper's attributes only (no wait for librosa's first import);
    a second job measures the registered ones and the shown lanes fill in."""
    import soundfile as sf

    from studio.models.explorer import ExplorerSession

    ws, models, analysis = built
    clip = tmp_path / "clip.wav"
    sf.write(clip, analysis.wave[0], analysis.sample_rate)
    with shown_timeline(qtbot, ws, models) as (view, state):
        view.lane_choice.set_shown(TOY, True)
        session = ExplorerSession(state, view.runner)
        shown, measured = [], []
        session.clip_analysed.connect(lambda a, _name: shown.append((a.pending, dict(a.measured_classes))))
        state.measurements_changed.connect(lambda: measured.append(True))
        session.analyse(str(clip))
        qtbot.waitUntil(lambda: bool(measured), timeout=30_000)
        (pending, classes_then), = shown
        assert pending == (TOY, TOY_ORDINAL) and np.all(classes_then[TOY] == -1)      # shown before measuring
        now = state.analysis
        assert now.pending == () and np.array_equal(now.measured_classes[TOY], analysis.measured_classes[TOY])
        assert np.array_equal(view.lanes.lanes[TOY].data.measured_y, analysis.measured_classes[TOY].astype(float))
        session.close()


def test_category_ticks_thin_out_to_what_fits():
    names = [f"c{k}" for k in range(25)]
    major, minor = category_ticks(names, 8)
    assert len(major) <= 8 and major[0] == (0.0, "c0") and len(major) + len(minor) == 25
    assert category_ticks(["none", "a very long class name"], 10)[0][1][1] == "a very…"
    assert lane_spec("timbre").key == "centroid" and lane_spec("pitch").kind == "pitch"
