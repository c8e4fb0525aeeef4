"""studio.widgets.inspector.FeatureInspector and studio.models.snippets.SnippetPlayer (pytest-qt, offscreen)."""

from __future__ import annotations

import threading
import time
import types

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

import audiosae.steering.playback as playback  # noqa: E402
from audiosae.analysis import LoadedModels  # noqa: E402
from audiosae.corpus import builtin_sources  # noqa: E402
from audiosae.feature_index import boost_window, feature_index_path, load_feature_index  # noqa: E402
from studio.widgets.inspector import PLAYING_ROW, FeatureInspector  # noqa: E402
from studio.models.snippets import SnippetPlayer  # noqa: E402
from studio.state import ExplorerState  # noqa: E402
from studio.workers import JobRunner  # noqa: E402
from tests.core.test_feature_index import make_tiny_workspace  # noqa: E402

SR = 24000


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    ws, name = make_tiny_workspace(tmp_path_factory.mktemp("insp") / "ws")
    models = LoadedModels.load(ws, name, device="cpu")
    wave = builtin_sources("tones", minutes=0.3)[0].load(SR, 1)[:, : 3 * SR]
    return models, models.analyze(wave)


class Capture:
    """Stands in for SnippetPlayer.play: keeps what would have been played."""

    def __init__(self, player: SnippetPlayer):
        self.player = player
        self.calls: list[tuple[np.ndarray, int, object]] = []

    def __call__(self, wave, sample_rate, tag=None):
        self.calls.append((np.array(wave), int(sample_rate), tag))
        self.player.started.emit(tag)
        return True


@pytest.fixture
def inspector(qtbot, loaded, monkeypatch):
    models, analysis = loaded
    state = ExplorerState()
    runner = JobRunner()
    widget = FeatureInspector(state, runner, types.SimpleNamespace(audio_device=None, compute_device="cpu"))
    qtbot.addWidget(widget)
    capture = Capture(widget.snippets)
    monkeypatch.setattr(widget.snippets, "play", capture)
    widget.capture = capture
    widget.resize(420, 1400)
    widget.show()
    state.set_workspace(models.workspace)
    state.set_models(models)
    state.set_analysis(analysis)
    yield widget
    widget.close()
    assert runner.shutdown(20000)
    assert not runner.active
    assert not widget.snippets._poll.isActive() and not widget.snippets._idle.isActive()
    assert not audio_threads()
    qtbot.wait(10)  # let deleteLater run on the finished job threads


def audio_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("audiosae-") and t.is_alive()]


def strongest_feature(analysis, frame: int) -> int:
    return int(np.argmax(analysis.f[frame]))


def wait_for_index(qtbot, widget, frame: int, feature: int):
    with qtbot.waitSignal(widget.index_ready, timeout=30000):
        widget.state.select_feature(feature, frame)
    return widget.index


def test_selecting_a_feature_shows_its_id_and_activation(inspector, loaded, qtbot):
    _, analysis = loaded
    frame = 100
    j = strongest_feature(analysis, frame)
    inspector.state.select_feature(j, frame)
    assert inspector.title_label.text() == f"feature {j}"
    text = inspector.value_label.text()
    assert f"f = {analysis.f[frame, j]:.3f}" in text and f"h = {analysis.h[frame, j]:.3f}" in text
    assert f"frame {frame}" in text and f"t = {analysis.times[frame]:.3f} s" in text
    assert "steered" not in text
    # Steering: the frame's f' is shown next to f, and contributions follow f'.
    steered = analysis.f.copy()
    steered[frame, j] *= 0.5
    inspector.state.set_steered_features(steered)
    assert f"steered f′ = {steered[frame, j]:.3f}" in inspector.value_label.text()
    rows = inspector.contributions()
    w = inspector.models.probes.weights[inspector.attr_combo.currentText()]
    for row in rows:
        assert row["contribution"] == pytest.approx(float(w[row["class"], j]) * steered[frame, j], rel=1e-5)
    qtbot.waitUntil(lambda: inspector.index is not None, timeout=30000)


def test_probe_weight_chart_and_contributions(inspector, loaded, qtbot):
    models, analysis = loaded
    frame = 120
    j = strongest_feature(analysis, frame)
    inspector.state.select_feature(j, frame)
    for attr in models.probes.attributes:
        inspector.attr_combo.setCurrentText(attr)
        weights = models.probes.weights[attr][:, j].numpy()
        heights = np.asarray(inspector.weight_bars.opts["height"])
        assert len(heights) == models.probes.n_classes(attr) == len(models.probes.class_names[attr])
        np.testing.assert_allclose(heights, weights, rtol=1e-6)
        rows = inspector.contributions()
        assert rows and rows[0]["predicted"]
        assert rows[0]["class"] == int(analysis.predicted(attr)[frame])
        table = inspector.contrib_table
        assert table.rowCount() == len(rows)
        fj = float(analysis.f[frame, j])
        for r, row in enumerate(rows):
            k = row["class"]
            expected = float(models.probes.weights[attr][k, j]) * fj
            assert row["contribution"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
            assert table.item(r, 3).text() == f"{expected:+.3f}"
            assert table.item(r, 0).text().endswith(models.probes.class_names[attr][k])
        probs = analysis.probabilities[attr][frame]
        assert [row["class"] for row in rows] == list(np.argsort(-probs)[: len(rows)])
        best = models.probes.class_names[attr][int(np.argmax(weights))]
        assert f"votes for: {best}" in inspector.votes_label.text()
    qtbot.waitUntil(lambda: inspector.index is not None, timeout=30000)


def test_top_frames_fill_after_the_index_job_and_a_click_plays_the_snippet(inspector, loaded, qtbot):
    models, analysis = loaded
    feature_index_path(models.workspace, models.sae.cfg.name).unlink(missing_ok=True)
    frame = 80
    j = strongest_feature(analysis, frame)
    with qtbot.waitSignal(inspector.index_ready, timeout=30000):
        inspector.state.select_feature(j, frame)
        assert inspector.top_table.rowCount() == 0
        assert "building" in inspector.stats_label.text()
        assert inspector.index_progress.isVisible() and inspector.index_cancel.isVisible()
    index = inspector.index
    assert load_feature_index(models.workspace, models.sae.cfg.name) is not None  # cached on disk
    table = inspector.top_table
    assert inspector.spread_check.isChecked()
    entries = index.top_entries(j, min_gap_seconds=0.3)
    assert 0 < table.rowCount() == len(entries)
    assert table.item(0, 1).text() == f"{index.top_activation[j, 0]:.3f}"
    assert table.item(0, 2).text() == entries[0]["label"]
    assert [table.item(r, 3).text() for r in range(table.rowCount())] == [f"{e['time']:.2f}" for e in entries]
    inspector.spread_check.setChecked(False)
    everything = index.top_entries(j)
    assert table.rowCount() == len(everything) >= len(entries)
    inspector.spread_check.setChecked(True)
    assert f"{100 * index.density[j]:.2f} %" in inspector.stats_label.text()
    assert not inspector.index_progress.isVisible()
    counts = index.hist[j].astype(np.float64)
    np.testing.assert_allclose(inspector.hist_bars.opts["height"], 100 * counts / counts.sum(), rtol=1e-6)

    row = min(1, table.rowCount() - 1)
    rect = table.visualItemRect(table.item(row, 2))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: len(inspector.capture.calls) == 1, timeout=20000)
    wave, rate, tag = inspector.capture.calls[0]
    rank = entries[row]["rank"]
    assert rate == SR and wave.shape == (1, SR)   # ~1 s around the frame
    assert tag == ("top", j, rank)
    expected, _, _ = index.snippet(models.workspace, j, rank, seconds=1.0)
    np.testing.assert_array_equal(wave, expected)
    assert inspector.playing_rank == rank
    assert table.item(row, 0).text() == f"▶ {rank + 1}"
    assert table.item(row, 0).background().color() == PLAYING_ROW
    inspector.snippets.finished.emit(tag)
    assert inspector.playing_rank is None and table.item(row, 0).background().color() != PLAYING_ROW


def test_hear_boosted_differs_from_the_original_and_equals_it_at_beta_zero(inspector, loaded, qtbot):
    models, analysis = loaded
    frame = 110
    j = strongest_feature(analysis, frame)
    wait_for_index(qtbot, inspector, frame, j)
    a, b = boost_window(analysis.n_frames, frame, models.backend.frame_rate, 2.0)
    hop = models.backend.hop_length
    original = analysis.wave[:, a * hop:b * hop]

    inspector.hear_original()
    wave, rate, tag = inspector.capture.calls[-1]
    assert tag[0] == "original" and rate == SR
    np.testing.assert_array_equal(wave, original)

    inspector.beta_spin.setValue(5.0)
    assert inspector.boost_amount() == pytest.approx(5.0 * float(inspector.index.mean_active[j]))
    with qtbot.waitSignal(inspector.boost_ready, timeout=30000):
        inspector.boost_button.click()
    boosted, rate, tag = inspector.capture.calls[-1]
    assert tag[0] == "boosted" and rate == SR and boosted.shape == original.shape
    change = np.sqrt(np.mean((boosted - original) ** 2) / np.mean(original ** 2))
    assert change > 0.2

    inspector.beta_spin.setValue(0.0)
    qtbot.waitUntil(lambda: inspector.boost_button.isEnabled(), timeout=10000)
    with qtbot.waitSignal(inspector.boost_ready, timeout=30000):
        inspector.boost_button.click()
    same, _, _ = inspector.capture.calls[-1]
    assert np.sqrt(np.mean((same - original) ** 2) / np.mean(original ** 2)) < 0.1
    # beta 0 is the plain decode, through the same level rule every steered output takes.
    from audiosae.steering.level import apply_level_rule

    plain = models.backend.decode(analysis.latents[a:b], reference=original)[:, : original.shape[1]]
    ruled, _ = apply_level_rule(np.ascontiguousarray(plain, dtype=np.float32), np.ascontiguousarray(original), SR)
    np.testing.assert_allclose(same, ruled, atol=1e-6)


def test_index_build_shows_progress_and_can_be_cancelled(inspector, loaded, qtbot, monkeypatch):
    import studio.models.inspector as inspector_module   # the view-model starts the index job
    from audiosae.errors import JobCancelled
    from audiosae.jobs import Progress

    calls = []

    def slow_index(workspace, sae_name, *, progress, cancel, **options):
        calls.append(sae_name)
        for step in range(10000):
            progress(Progress("feature index", step, 10000, f"{step} / 10000 frames"))
            if cancel.cancelled:
                raise JobCancelled("cancelled by the user")
            time.sleep(0.002)
        raise AssertionError("never cancelled")

    original = inspector_module.load_or_build_feature_index
    monkeypatch.setattr(inspector_module, "load_or_build_feature_index", slow_index)
    _, analysis = loaded
    inspector.state.select_feature(strongest_feature(analysis, 50), 50)
    qtbot.waitUntil(lambda: inspector.index_progress.value() > 0, timeout=10000)
    assert inspector.index_progress.isVisible() and "building" in inspector.stats_label.text()
    handle = inspector.model.index_job.handle
    with qtbot.waitSignal(handle.done, timeout=10000):
        inspector.index_cancel.click()
    assert inspector.index is None and "cancelled" in inspector.stats_label.text()
    assert inspector.index_build.isVisible() and not inspector.index_progress.isVisible()
    # Another selection does not restart what the user stopped; the button does.
    inspector.state.select_feature(strongest_feature(analysis, 60), 60)
    assert inspector.model.index_job.handle is None and len(calls) == 1
    monkeypatch.setattr(inspector_module, "load_or_build_feature_index", original)
    with qtbot.waitSignal(inspector.index_ready, timeout=30000):
        inspector.index_build.click()
    assert inspector.index is not None and inspector.top_table.rowCount() > 0


def test_without_models_the_inspector_says_what_to_do(qtbot):
    state, runner = ExplorerState(), JobRunner()
    widget = FeatureInspector(state, runner, object())
    qtbot.addWidget(widget)
    assert "Open a workspace" in widget.value_label.text()
    assert not widget.boost_button.isEnabled()
    widget.close()
    assert runner.shutdown()


# ---- the snippet player ---------------------------------------------------------------------------
def test_snippet_player_plays_once_and_reports_start_and_end(qtbot):
    player = SnippetPlayer(output="virtual")
    wave = (0.1 * np.sin(np.arange(2400) / 5.0)).astype(np.float32)
    started, finished = [], []
    player.started.connect(started.append)
    player.finished.connect(finished.append)
    with qtbot.waitSignal(player.finished, timeout=5000):
        assert player.play(wave, 24000, tag="a")
        assert player.playing and player.tag == "a"
    assert started == ["a"] and finished == ["a"] and not player.playing
    # A second snippet replaces a first one that is still sounding.
    assert player.play(np.zeros((1, 48000), np.float32), 24000, tag="long")
    assert player.play(wave, 24000, tag="short")
    assert finished[-1] == "long"
    player.close()
    assert finished[-1] == "short" and not player.playing
    assert not player._poll.isActive() and not player._idle.isActive() and player._player is None
    assert not audio_threads()  # the player's feeder and virtual clock are gone


def test_snippet_player_without_a_device_says_playback_is_unavailable(qtbot, monkeypatch):
    monkeypatch.setattr(playback, "sounddevice_or_reason",
                        lambda: (None, "audio output unavailable: no PortAudio in this test"))
    player = SnippetPlayer()
    messages = []
    player.message.connect(messages.append)
    assert player.play(np.zeros(1000, np.float32), 24000, tag="x") is False
    assert messages and messages[-1].startswith("playback unavailable") and "PortAudio" in messages[-1]
    assert not player.playing
    player.close()


# ---- the view-model alone ---------------------------------------------------------------------------
def test_the_view_model_works_without_widgets_and_drops_a_stale_index(loaded, qtbot):
    """``InspectorModel`` (no QtWidgets): texts and contributions for a selection; an index job
    whose models were replaced while it ran is forgotten, the new models' job gives the index."""
    from studio.models.inspector import InspectorModel

    models, analysis = loaded
    state, runner = ExplorerState(), JobRunner()
    model = InspectorModel(state, runner, audio_device=None)
    assert model.header()[0] == "Feature inspector" and model.contributions() == []
    state.set_workspace(models.workspace)
    state.set_models(models)
    state.set_analysis(analysis)
    frame = 40
    j = strongest_feature(analysis, frame)
    ready = []
    model.index_ready.connect(ready.append)
    state.select_feature(j, frame)
    first = model.index_job.handle
    assert first is not None and model.stats_text() == "corpus statistics: building…"
    assert model.header() == (f"feature {j}", model.header()[1]) and f"{analysis.f[frame, j]:.3f}" in model.header()[1]
    rows = model.contributions()
    assert rows and rows[0]["predicted"] and rows[0]["class"] == int(analysis.predicted(model.attribute)[frame])
    state.set_models(models)               # the same models again: the running job is stale
    assert first.cancel_token.cancelled and model.index_job.handle is None and model.index is None
    model.ensure_index()
    qtbot.waitUntil(lambda: model.index is not None, timeout=30000)
    assert len(ready) == 1 and ready[0] is model.index
    assert f"{100 * model.index.density[j]:.2f} %" in model.stats_text()
    hist = model.histogram()
    assert hist is not None and hist.corpus_share is not None and "bars: corpus" in hist.legend
    model.shutdown()
    assert runner.shutdown(20000)
