"""The audition dock's steering method, level label and the steering evaluation view (issue 12,
items 3-4, in the studio) on the tiny mel workspace of ``test_audition``.

* the method combo reaches the realtime renderer's steering (a spy on
  ``SteeringContext.steer_features``), the heatmap and the export's side-car; a corpus method's
  class means are prepared in a job and cached by the core in ``WORKSPACE/steer/``;
* the level label under alpha shows the renderer's merged ``LevelReport`` numbers;
* the evaluation view fills its matrix from a 2 methods x 2 alphas evaluation of a short tone
  clip, and a click on a cell plays (a spy on the snippet player) that cell's ``steer_wave``
  audio, made from ``SteeringEvaluation.steer_kwargs``; Save writes JSON + PNG.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from audiosae.steering.level import LevelReport, merge_reports  # noqa: E402
from audiosae.steering.methods import SteeringContext  # noqa: E402
from studio.models.audition import default_target, format_level  # noqa: E402
from audiosae.defaults import DEFAULT_STEER_METHOD  # noqa: E402
from tests.studio.test_audition import clip_env, make_panel  # noqa: E402,F401  (pytest fixtures)

EVAL_SECONDS = 1.5


def test_method_combo_reaches_the_renderer_heatmap_and_export(make_panel, qtbot, clip_env, tmp_path, monkeypatch):
    ws, _, analysis = clip_env
    used: list[str] = []
    original = SteeringContext.steer_features

    def spy(self, f, target, alpha, mask=None):
        used.append(self.method)
        return original(self, f, target, alpha, mask)

    monkeypatch.setattr(SteeringContext, "steer_features", spy)
    default_panel = make_panel(method=None)        # opens on the core's default method
    assert default_panel.method == DEFAULT_STEER_METHOD
    assert default_panel.method_combo.currentText() == f"{DEFAULT_STEER_METHOD} (default)"
    assert default_panel.renderer.params.method == DEFAULT_STEER_METHOD
    default_panel.shutdown()
    used.clear()
    panel = make_panel()                             # then the paper's method, picked
    assert panel.method == "paper" and panel.method_combo.currentData() == "paper"
    assert [panel.method_combo.itemData(i) for i in range(panel.method_combo.count())][:2] == ["paper", "mass-mean"]
    state = panel.state
    with qtbot.waitSignal(state.steered_features_changed, timeout=5000):
        panel.set_alpha(20.0)
    paper_f = state.steered_f.copy()
    qtbot.waitUntil(lambda: panel.renderer.invalid_chunks() == [], timeout=15000)
    assert set(used) == {"paper"}

    used.clear()
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("mass-mean"))
    panel.method_combo.activated.emit(panel.method_combo.currentIndex())   # as a user's pick
    qtbot.waitUntil(lambda: panel.renderer.params.method == "mass-mean", timeout=15000)  # class means: a job
    assert list((Path(ws.root) / "steer").glob("class-means-*-pitch.npz"))  # cached by the core
    qtbot.waitUntil(lambda: panel.renderer.invalid_chunks() == [], timeout=15000)
    assert "mass-mean" in used and "paper" not in used
    qtbot.waitUntil(lambda: state.steered_f is not None and not np.allclose(state.steered_f, paper_f), timeout=5000)
    assert state.steering.method == "mass-mean"

    path = str(tmp_path / "mm.wav")
    with qtbot.waitSignal(panel.export_finished, timeout=20000):
        panel.export_steered(path)
    side = json.loads(Path(path + ".json").read_text())
    assert side["method"] == "mass-mean" and side["level"]["rule"] == "matched+limited"


def test_level_label_shows_the_level_report(make_panel, qtbot):
    panel = make_panel()
    assert panel.level_label.text().startswith("level:")
    panel.set_alpha(30.0)
    qtbot.waitUntil(lambda: panel.renderer.invalid_chunks() == [], timeout=15000)
    summary = panel.renderer.level_summary()
    qtbot.waitUntil(lambda: panel.level_label.text() == format_level(panel.renderer.level_summary()), timeout=3000)
    text = panel.level_label.text()
    assert f"gain {summary['gain_db']:+.1f} dB" in text
    assert f"limited {summary['limited_samples']} samples" in text
    assert f"peak {summary['peak_before_dbfs']:+.1f} → {summary['peak_after_dbfs']:+.1f} dBFS" in text
    # Known numbers: a report with 12 limited samples of 1000, peak 2.0 -> 0.891 (+6.0 -> -1.0 dBFS).
    report = LevelReport(rule="matched+limited", gain_db=-6.04, limited_samples=12, limited_fraction=0.012,
                         samples=1000, peak_before=2.0, peak_after=10 ** (-1 / 20))
    line = format_level(merge_reports([report]))
    assert line == "level: gain -6.0 dB · peak +6.0 → -1.0 dBFS\nlimited 12 samples (1.20 %)"
    assert format_level(None) == "level: —"


@pytest.fixture
def short_state(qtbot, clip_env):
    """An explorer state on the first 1.5 s of the clip (the evaluation's clip)."""
    from studio.state import ExplorerState
    from studio.workers import JobRunner

    ws, models, analysis = clip_env
    rate = models.backend.sample_rate
    short = models.analyze(np.ascontiguousarray(analysis.wave[:, :int(EVAL_SECONDS * rate)]), source="tones/short")
    state, runner = ExplorerState(), JobRunner()
    state.set_workspace(ws)
    state.set_models(models)
    state.set_analysis(short, "short.wav")
    yield state, runner, models, short
    runner.shutdown()


def test_evaluation_view_fills_the_matrix_and_plays_a_cell(qtbot, short_state, tmp_path, monkeypatch):
    import audiosae.steering.control as control
    from studio.models.steer_eval import EvaluationModel
    from studio.models.snippets import SnippetPlayer
    from studio.widgets.steer_eval import SteeringEvaluationDialog, hit_colour

    state, runner, models, short = short_state
    model = EvaluationModel(state, runner, output="virtual")
    view = SteeringEvaluationDialog(model)
    qtbot.addWidget(view)
    target = default_target(short, "pitch", models.spec.n_classes("pitch"), models.probes.trained_classes("pitch"))
    model.set_target("pitch", target)     # a class index: the model names it (e.g. 'A4')
    assert model.target == models.spec.class_names("pitch")[target]
    for i in range(view.methods_list.count()):
        item = view.methods_list.item(i)
        item.setCheckState(Qt.CheckState.Checked if item.text() in ("paper", "mass-mean") else Qt.CheckState.Unchecked)
    view.alphas_edit.setText("1, 10")
    progress: list[float] = []
    model.progress.connect(lambda fraction, _msg: progress.append(fraction))
    assert view.run()
    assert view.cancel_button.isEnabled() and not view.run_button.isEnabled()
    qtbot.waitUntil(lambda: not model.running, timeout=60000)
    assert model.evaluation is not None, model.message
    ev = model.evaluation
    assert ev.methods == ["paper", "mass-mean"] and ev.alphas == [1.0, 10.0]
    assert progress and max(progress) <= 1.0
    table = view.table
    assert (table.rowCount(), table.columnCount()) == (2, 2)
    assert [table.verticalHeaderItem(i).text() for i in range(2)] == ["paper", "mass-mean"]
    assert [table.horizontalHeaderItem(j).text() for j in range(2)] == ["α 1", "α 10"]
    hits = ev.matrix("hit_rate").values
    loud = ev.matrix("loudness_shift_db").values
    for i in range(2):
        for j in range(2):
            item = table.item(i, j)
            assert item.text().startswith(f"hit {hits[i, j]:.2f}")
            if math.isfinite(loud[i, j]):
                assert f"ΔL {loud[i, j]:.1f} dB" in item.text()   # a non-target shift (pitch is the target)
            assert "Δp" not in item.text()
            assert item.background().color() == hit_colour(hits[i, j])

    played: list[tuple] = []
    monkeypatch.setattr(SnippetPlayer, "play", lambda self, wave, rate, tag=None: played.append((wave, rate, tag))
                        or True)
    calls: list[dict] = []
    original = control.steer_wave

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(control, "steer_wave", spy)
    rect = table.visualItemRect(table.item(1, 1))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: bool(played), timeout=20000)
    wave, rate, tag = played[0]
    assert tag == ("steer-eval", "mass-mean", 10.0) and rate == models.backend.sample_rate
    kwargs = ev.steer_kwargs(ev.select(method="mass-mean", alpha=10.0)[0])
    assert {k: calls[0][k] for k in kwargs} == kwargs      # the cell's own arguments
    assert calls[0]["context"].method == "mass-mean"
    expected = original(models.backend, models.sae, models.probes, models.spec, short.wave, measure_shift=False,
                        context=calls[0]["context"], **kwargs).wave
    assert np.allclose(wave, expected, atol=1e-6) and np.abs(wave).max() <= 1.0

    paths = view.save(str(tmp_path / "eval"))
    data = json.loads(Path(paths["json"]).read_text())
    assert data["kind"] == "audiosae.steering_evaluation" and data["methods"] == ["paper", "mass-mean"]
    assert paths["png"] and Path(paths["png"][0]).stat().st_size > 1000
    state.set_analysis(short, "again.wav")   # another clip: the matrix no longer describes it
    assert model.evaluation is None and view.table.rowCount() == 0
    model.shutdown()


def test_evaluation_can_be_cancelled(qtbot, short_state):
    from studio.models.steer_eval import EvaluationModel

    state, runner, models, _ = short_state
    model = EvaluationModel(state, runner, output="virtual")
    model.set_target("pitch", models.probes.trained_classes("pitch")[-1])
    model.set_methods(["paper"])
    model.set_alphas("1, 10, 20, 30")
    assert model.run() and model.running
    model.cancel()
    assert not model.running and model.message == "cancelled" and model.evaluation is None
    model.shutdown()
    qtbot.waitUntil(lambda: runner.active == [], timeout=5000)   # the job ended (cancelled), nothing left running
