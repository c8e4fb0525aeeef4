"""studio.widgets.audition: the control-vector audition panel on a tiny mel workspace.

Checks that an alpha move re-renders only the chunks the steered range reaches, that the
heatmap's f' follows the controls (in the scope only, None at alpha 0), that the export is
the audio the panel plays plus a side-car, that the panel works without an audio device,
that real playback through a PulseAudio null sink is the rendered audio (``-m audio_device``),
and that ``shutdown`` leaves no thread or timer behind.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("pytestqt")

from PySide6.QtCore import QTimer  # noqa: E402

import audiosae.steering.playback as playback  # noqa: E402
from audiosae.steering import control_vector  # noqa: E402
from studio.widgets.audition import AuditionPanel  # noqa: E402
from studio.settings import StudioSettings  # noqa: E402
from studio.state import ExplorerState  # noqa: E402
from studio.workers import JobRunner  # noqa: E402
from tests.support.audio_device import pulse_null_sink  # noqa: E402,F401  (pytest fixture)

CLIP_SECONDS = 5.0


@pytest.fixture(scope="module")
def clip_env(tmp_path_factory):
    """A tiny mel workspace (one SAE), its models and the analysis of a 5 s tones clip."""
    from audiosae.analysis import LoadedModels
    from audiosae.corpus import builtin_sources
    from audiosae.training import TrainSettings, train_workspace
    from audiosae.workspace import Workspace, build_corpus

    torch.manual_seed(0)
    ws = Workspace.create(tmp_path_factory.mktemp("audition") / "ws", "mel")
    build_corpus(ws, builtin_sources("tones", minutes=0.3), device="cpu")
    train_workspace(ws, TrainSettings(expansions=[4], l1s=[0.02], epochs=2, batch_size=256))
    models = LoadedModels.load(ws, device="cpu")
    rate = models.backend.sample_rate
    wave = builtin_sources("tones", minutes=0.3)[0].load(rate, 1)[:, :int(CLIP_SECONDS * rate)]
    analysis = models.analyze(np.ascontiguousarray(wave), source="tones/0000")
    return ws, models, analysis


def _real_threads() -> set[threading.Thread]:
    """Python threads, without the placeholders Python makes for Qt's own threads."""
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


@pytest.fixture
def make_panel(qtbot, clip_env, tmp_path, monkeypatch):
    """``make_panel(output="virtual", device=None)``: a panel on the clip, its session ready."""
    made = []

    def make(output: str = "virtual", device: str | None = None, wait: bool = True,
             method: str | None = "paper") -> AuditionPanel:
        """``method``: the steering method picked before the clip opens ("paper": the closed
        form these tests check against; None keeps the core's default, which may need the
        corpus's class means first: a job, so allow for it)."""
        ws, models, analysis = clip_env
        monkeypatch.setattr(AuditionPanel, "player_output", output)
        settings = StudioSettings(tmp_path / f"settings{len(made)}.ini")
        settings.audio_device = device
        state, runner = ExplorerState(), JobRunner()
        panel = AuditionPanel(state, runner, settings)
        if method is not None:
            panel.method_combo.setCurrentIndex(panel.method_combo.findData(method))
            assert panel.method == method
        made.append((panel, state, runner))
        panel.resize(460, 320)
        panel.show()
        state.set_workspace(ws)
        state.set_models(models)
        if wait:
            with qtbot.waitSignal(panel.session_ready, timeout=60000 if method == "paper" else 120000):
                state.set_analysis(analysis, "clip.wav")
        else:
            state.set_analysis(analysis, "clip.wav")
        return panel

    yield make
    for panel, state, runner in made:
        panel.shutdown()
        runner.shutdown()
        panel.close()
        panel.deleteLater()
        runner.deleteLater()
        state.deleteLater()
    qtbot.wait(10)


def _wait_rendered(qtbot, panel: AuditionPanel, timeout: int = 15000) -> None:
    qtbot.waitUntil(lambda: panel.renderer.invalid_chunks() == [], timeout=timeout)


def _select(panel: AuditionPanel, start: float, end: float) -> None:
    panel.state.set_selection((start, end))
    assert panel.scope_selection.isEnabled()
    panel.scope_selection.setChecked(True)


def _steered_chunks(panel: AuditionPanel, start: float, end: float) -> set[int]:
    """Chunks whose decode window holds a frame centred in [start, end): what a change of
    alpha must re-render."""
    times = panel.state.analysis.times
    mask = (times >= start) & (times < end)
    renderer = panel.renderer
    return {i for i in range(renderer.n_chunks) if mask[slice(*renderer.decode_window(i))].any()}


def test_alpha_change_rerenders_only_the_chunks_of_the_selection(make_panel, qtbot):
    panel = make_panel()
    renderer = panel.renderer
    assert renderer.n_chunks >= 16  # 5 s in 0.25 s chunks
    _select(panel, 2.0, 3.0)
    assert renderer.params.start == 2.0 and renderer.params.end == 3.0
    _wait_rendered(qtbot, panel)
    outside = renderer.mix(0, int(1.5 * renderer.sample_rate))

    spans: list[tuple[int, int]] = []
    renderer.add_audio_listener(lambda a, b: spans.append((a, b)))
    before = renderer.stats()
    panel.set_alpha(15.0)
    version = renderer.version
    assert version == before.version + 1 and renderer.params.alpha == 15.0
    _wait_rendered(qtbot, panel)
    after = renderer.stats()

    expected = _steered_chunks(panel, 2.0, 3.0)
    assert 4 <= len(expected) <= renderer.n_chunks // 2
    assert after.invalidated_by_version[version] == len(expected)
    assert after.renders_by_version[version] == len(expected)
    assert after.chunks_rendered - before.chunks_rendered == len(expected)
    assert {renderer.chunk_at((a + b) // 2) for a, b in spans} == expected
    # Audio far from the selection did not change.
    np.testing.assert_array_equal(renderer.mix(0, len(outside[0])), outside)


def test_heatmap_features_follow_alpha_in_the_scope_only(make_panel, qtbot, clip_env):
    _, models, analysis = clip_env
    panel = make_panel()
    state = panel.state
    _select(panel, 1.0, 2.0)
    with qtbot.waitSignal(state.steered_features_changed, timeout=5000):
        panel.set_alpha(20.0)
    steered = state.steered_f
    assert steered is not None and steered.shape == analysis.f.shape and steered.dtype == np.float32
    assert state.features_for_display() is steered
    assert state.steering == panel.params and state.steering.alpha == 20.0
    inside = (analysis.times >= 1.0) & (analysis.times < 2.0)
    np.testing.assert_array_equal(steered[~inside], analysis.f[~inside])
    assert np.abs(steered[inside] - analysis.f[inside]).max() > 1e-2
    # f' = RMSNorm(f + alpha * w_target) on the steered frames (the paper's control vector).
    params = panel.params
    w = control_vector(models.probes, params.attribute, params.target)
    expected = models.sae.normalize(torch.from_numpy(analysis.f[inside]) + 20.0 * w).numpy()
    np.testing.assert_allclose(steered[inside], expected, rtol=1e-5, atol=1e-5)

    with qtbot.waitSignal(state.steered_features_changed, timeout=5000):
        panel.set_alpha(5.0)
    assert np.abs(state.steered_f[inside] - steered[inside]).max() > 1e-3

    with qtbot.waitSignal(state.steered_features_changed, timeout=5000):
        panel.set_alpha(0.0)
    assert state.steered_f is None and state.features_for_display() is analysis.f

    panel.set_alpha(10.0)
    qtbot.waitUntil(lambda: state.steered_f is not None, timeout=5000)
    with qtbot.waitSignal(state.steered_features_changed, timeout=5000):
        panel.original_button.click()  # A/B on the original: the heatmap shows f again
    assert panel.mode == "original" and panel.renderer.mode == "original" and state.steered_f is None


def test_long_clips_steer_the_heatmap_only_in_view(make_panel, qtbot, clip_env, monkeypatch):
    """Above FULL_HEATMAP_ELEMENTS only the frames in view (plus a margin) get f'; rows
    steered for an earlier view go back to f when the view moves."""
    import studio.models.steered_heatmap as steered_heatmap

    _, _, analysis = clip_env
    monkeypatch.setattr(steered_heatmap, "FULL_HEATMAP_ELEMENTS", 1000)
    panel = make_panel()
    state = panel.state
    times = analysis.times
    state.set_view_range(0.0, 1.0)
    with qtbot.waitSignal(state.steered_features_changed, timeout=5000):
        panel.set_alpha(20.0)  # whole clip in scope
    first = state.steered_f
    changed = np.abs(first - analysis.f).max(axis=1) > 1e-6
    assert changed.any() and not changed[times > 1.0 + 0.25 + 0.02].any()
    assert changed[times < 1.0].all()
    with qtbot.waitSignal(state.steered_features_changed, timeout=5000):
        state.set_view_range(3.0, 4.0)
    changed = np.abs(state.steered_f - analysis.f).max(axis=1) > 1e-6
    assert changed[(times > 3.0) & (times < 4.0)].all()
    assert not changed[times < 3.0 - 0.25 - 0.02].any()  # the first view's rows are f again


def test_a_new_clip_replaces_the_session(make_panel, qtbot, clip_env):
    _, models, analysis = clip_env
    panel = make_panel()
    old = panel.session
    panel.toggle_play()
    short = models.analyze(np.ascontiguousarray(analysis.wave[:, :2 * analysis.sample_rate]))
    with qtbot.waitSignal(panel.session_ready, timeout=15000):
        panel.state.set_analysis(short, "short.wav")
    assert panel.session is not old and not old.worker.is_alive
    assert panel.renderer.n_samples == 2 * analysis.sample_rate and not panel.playing
    assert panel.play_button.text() == "Play" and panel.scope_whole.isChecked()


def test_export_writes_the_audio_the_panel_plays_and_a_sidecar(make_panel, qtbot, clip_env, tmp_path):
    ws, models, analysis = clip_env
    panel = make_panel()
    panel.attribute_combo.setCurrentIndex(panel.attribute_combo.findData("pitch"))
    target = max(panel.state.models.probes.trained_classes("pitch"))  # one the probe can steer toward
    target_name = panel.state.models.spec.class_names("pitch")[target]
    panel.target_combo.setCurrentIndex(target)
    panel._on_target_picked(target)  # as a pick from the list does
    panel.keep_residual_check.setChecked(True)
    _select(panel, 1.0, 3.5)
    panel.set_alpha(12.5)
    panel.original_button.click()  # A/B on the original must not change what is exported
    out = tmp_path / "steered.wav"
    with qtbot.waitSignal(panel.export_finished, timeout=30000) as finished:
        assert panel.export_steered(str(out)) == str(out)
    assert finished.args == [str(out)]

    audio, rate = sf.read(str(out), dtype="float32", always_2d=True)
    renderer = panel.renderer
    assert rate == renderer.sample_rate and audio.shape == (renderer.n_samples, 1)
    panel.steered_button.click()
    _wait_rendered(qtbot, panel)
    played = renderer.mix(0, renderer.n_samples)
    np.testing.assert_allclose(audio.T, played, atol=1e-6)
    assert np.abs(audio.T - analysis.wave).max() > 0.01  # steered, not the original

    side = json.loads((tmp_path / "steered.wav.json").read_text())
    assert side["attribute"] == "pitch" and side["target"] == target_name and side["target_class"] == target
    assert side["alpha"] == 12.5 and side["keep_residual"] is True
    assert side["scope"] == "selection" and (side["start"], side["end"]) == (1.0, 3.5)
    assert side["sae"] == models.sae.cfg.name and side["workspace"] == str(ws.root)
    assert side["backend"] == "mel" and side["input"] == "clip.wav" and side["sample_rate"] == rate
    # The level rule (steering.level): what the panel plays and exports is matched and limited.
    assert side["level"]["rule"] == "matched+limited" and side["level"]["chunks"] == renderer.n_chunks
    assert np.abs(audio).max() <= 10 ** (-1 / 20) + 1e-6 and side["level"]["peak_after"] <= 10 ** (-1 / 20) + 1e-6

    with qtbot.waitSignal(panel.export_failed, timeout=5000) as failed:
        assert panel.export_steered(str(tmp_path / "steered.mp3")) is None
    assert ".wav or .flac" in failed.args[0]
    for bad in (float("nan"), float("inf"), -1.0):  # refused: the controls keep 12.5
        panel.set_alpha(bad)
        assert panel.alpha == 12.5 and panel.alpha_spin.value() == 12.5
    assert "alpha must be" in panel.status_text()


def test_without_an_audio_device_the_panel_says_so_and_still_works(make_panel, qtbot, monkeypatch):
    monkeypatch.setattr(playback, "sounddevice_or_reason",
                        lambda: (None, "audio output unavailable: PortAudio library not found"))
    panel = make_panel(output="auto", device="Some Headphones")
    player = panel.player
    assert not player.available
    assert "playback unavailable: PortAudio library not found" in panel.status_label.text()
    assert panel.device_combo.currentText() == "Some Headphones (not found)"

    panel.set_alpha(7.5)
    assert panel.renderer.params.alpha == 7.5 and panel.state.steering.alpha == 7.5
    panel.toggle_play()  # the silent clock still moves the playhead
    assert panel.playing and panel.play_button.text() == "Pause"
    qtbot.waitUntil(lambda: panel.state.playhead > 0.1, timeout=5000)
    panel.toggle_play()
    assert not panel.playing and panel.play_button.text() == "Play"
    assert not any(t.isActive() for t in panel.findChildren(QTimer))


@pytest.mark.audio_device
def test_real_playback_of_the_steered_loop_through_a_null_sink(make_panel, qtbot, pulse_null_sink,  # noqa: F811
                                                             tmp_path):
    panel = make_panel(output="device", device="pulse")
    player, renderer = panel.player, panel.renderer
    assert player.available, player.reason
    assert player.device_name == "pulse" and "output: pulse" in panel.status_label.text()
    rate = renderer.sample_rate
    loop_start, loop_end = 1.0, 3.0
    _select(panel, loop_start, loop_end)
    panel.set_alpha(20.0)
    _wait_rendered(qtbot, panel)
    a, b = int(loop_start * rate), int(loop_end * rate)
    lap = renderer.mix(a, b - a)[0]

    record_path = tmp_path / "monitor.f32"
    recorder = pulse_null_sink.record(record_path, rate=rate)
    try:
        assert pulse_null_sink.wait_for_data(record_path), "the sink monitor delivered nothing"
        qtbot.wait(300)
        panel.toggle_loop()
        assert player.sync() and player.loop == (a, b)
        began = time.monotonic()
        panel.toggle_play()
        qtbot.wait(2500)
        panel.toggle_play()
        played_seconds = time.monotonic() - began
        qtbot.wait(int(1000 * (0.4 + player.output_latency)))
        assert player.underruns["ring_dry"] == 0, player.underruns
    finally:
        recorded = pulse_null_sink.stop_recording(recorder, record_path)[0]

    assert np.sqrt(np.mean(recorded ** 2)) > 0.005, "the sink monitor recorded silence"
    loud = np.flatnonzero(np.abs(recorded) > 0.02)
    heard_seconds = (loud[-1] - loud[0]) / rate
    assert abs(heard_seconds - played_seconds) < 0.25, (heard_seconds, played_seconds)
    # Normalised cross-correlation of one rendered lap with the recording, at full overlap.
    # The lap's first and last few ms are left out: the player fades in at play and
    # cross-fades the loop end into the audio before the loop start (Player's documented
    # fades), and with this barely trained SAE the steered audio has a click right there.
    edge = 2 * player.fade
    lap = lap[edge:-edge]
    n = len(recorded) + len(lap)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(recorded, size) * np.conj(np.fft.rfft(lap, size)), size)
    lags = len(recorded) - len(lap) + 1
    assert lags > 0, "the recording is shorter than one lap"
    energy = np.concatenate([[0.0], np.cumsum(recorded.astype(np.float64) ** 2)])
    window_norm = np.sqrt(np.maximum(energy[len(lap):len(lap) + lags] - energy[:lags], 1e-12))
    normalised = corr[:lags] / (window_norm * np.linalg.norm(lap))
    assert normalised.max() > 0.8, normalised.max()


def test_shutdown_stops_threads_and_timers_and_is_idempotent(make_panel, qtbot, clip_env):
    _, _, analysis = clip_env
    threads_before = _real_threads()
    panel = make_panel()
    panel.toggle_loop()
    panel.toggle_play()
    panel.set_alpha(30.0)
    qtbot.wait(200)
    player, worker = panel.player, panel.session.worker
    assert worker.is_alive and _real_threads() - threads_before
    panel.shutdown()
    panel.shutdown()
    assert panel.session is None and not worker.is_alive and worker.error is None
    assert _real_threads() <= threads_before
    assert not any(t.isActive() for t in panel.findChildren(QTimer))
    assert panel.runner.active == []
    # Signals after shutdown change nothing.
    panel.state.set_selection((0.5, 1.0))
    panel.state.set_playhead(1.0)
    panel.state.set_analysis(analysis, "clip.wav")
    assert panel.runner.active == [] and panel.session is None

    # Shut down while the session is still being built: nothing is left running either.
    second = make_panel(wait=False)
    second.shutdown()
    qtbot.wait(50)
    assert _real_threads() <= threads_before and second.runner.active == []


def test_the_view_model_runs_the_audition_without_its_widget(qtbot, clip_env):
    """The dock's state lives in ``AuditionModel`` (no widget here): it chooses an attribute and a
    target, builds the session in a job, steers the renderer at once on a change, plays, drops a
    superseded session on a new clip and leaves nothing running after ``shutdown``."""
    from tests.support.audition_model import started_audition

    ws, models, analysis = clip_env
    model, state, runner = started_audition(qtbot, ws, models, analysis, "clip.wav")
    assert model.attribute == model.attributes()[0]
    assert model.targets[model.attribute] in model.trained_classes(model.attribute)
    renderer = model.renderer
    assert renderer is not None and renderer.params.method == "paper" and renderer.params.alpha == 0.0

    playing = []
    model.playing_changed.connect(playing.append)
    model.toggle_play()
    assert model.playing and playing == [True]
    before = renderer.version
    model.alpha = 12.5
    model.apply_params()                               # what the slider forwards
    assert renderer.version > before and renderer.params.alpha == 12.5   # at once, not in a job
    assert state.steering == model.params and model._pending_change is not None
    qtbot.waitUntil(lambda: model.last_latency_ms is not None, timeout=10000)

    old = model.session
    short = models.analyze(np.ascontiguousarray(analysis.wave[:, :2 * analysis.sample_rate]))
    with qtbot.waitSignal(model.session_ready, timeout=15000):
        state.set_analysis(short, "short.wav")
    assert model.session is not old and not old.worker.is_alive and not model.playing and playing[-1] is False
    assert model.last_latency_ms is None and model.renderer.n_samples == 2 * analysis.sample_rate

    worker = model.session.worker
    model.shutdown()
    assert model.session is None and not worker.is_alive
    # every job stopped: a job that ended during shutdown leaves the runner's list on the next
    # event-loop turn (its queued "done"), so wait a bounded time for it, as the window would
    qtbot.waitUntil(lambda: runner.active == [], timeout=5_000)
    runner.shutdown()
    model.deleteLater()
    runner.deleteLater()
    state.deleteLater()
