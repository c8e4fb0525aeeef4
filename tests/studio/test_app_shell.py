"""The application shell: start page, opening the demo in jobs, menus/shortcuts, drag-and-drop,
errors, settings and a clean close.  Offscreen; every test closes what it opens."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeySequence  # noqa: E402
from PySide6.QtWidgets import QApplication, QFileDialog, QLineEdit  # noqa: E402

from studio import main_window as mw  # noqa: E402
from studio.app import build_parser  # noqa: E402
from studio.logging_setup import ErrorReporter, setup_logging  # noqa: E402
from studio.main_window import MainWindow, default_clip, find_demo_workspace  # noqa: E402
from studio.settings import MAX_RECENT, StudioSettings  # noqa: E402
from tests.support.common import harmonic_tone  # noqa: E402
from tests.support.qt_fixtures import isolated_settings, qt_leak_check, qt_leak_guard  # noqa: E402,F401

LOAD_TIMEOUT_MS = 60_000
DEMO = find_demo_workspace()
DEMO_FIRST_CLIP = DEMO / "clips" / sorted(p.name for p in (DEMO / "clips").iterdir())[0]   # real music (test_demo_music)


@pytest.fixture
def window(main_window):
    return main_window


def open_demo_and_wait(qtbot, win: MainWindow, clip: str | None = None) -> None:
    with qtbot.waitSignal(win.state.clip_changed, timeout=LOAD_TIMEOUT_MS):
        assert win.open_demo(clip=clip)


def wave_file(path: Path, seconds: float = 1.5, rate: int = 16000, midi: float = 69) -> Path:
    sf.write(str(path), harmonic_tone(midi, seconds, rate), rate)
    return path


# ---- settings ------------------------------------------------------------------------------------
def test_settings_types_and_recent_list(tmp_path):
    settings = StudioSettings(tmp_path / "s.ini")
    assert settings.recent_workspaces == [] and settings.compute_device == "auto" and settings.audio_device is None
    settings.add_recent_workspace(tmp_path / "only")
    # One element survives the INI round trip as a list (QSettings would return a bare string).
    assert StudioSettings(tmp_path / "s.ini").recent_workspaces == [str((tmp_path / "only").resolve())]
    for i in range(MAX_RECENT + 3):
        settings.add_recent_workspace(tmp_path / f"ws{i}")
    settings.add_recent_workspace(tmp_path / "ws5")          # re-opened: moves to the top, no duplicate
    recent = StudioSettings(tmp_path / "s.ini").recent_workspaces
    assert len(recent) == MAX_RECENT and recent[0].endswith("ws5") and len(set(recent)) == MAX_RECENT
    settings.remove_recent_workspace(recent[1])
    assert recent[1] not in settings.recent_workspaces
    settings.compute_device = "cpu"
    settings.audio_device = "Speakers (USB)"
    settings.crepe_model = "full"
    again = StudioSettings(tmp_path / "s.ini")
    assert (again.compute_device, again.audio_device, again.crepe_model) == ("cpu", "Speakers (USB)", "full")
    with pytest.raises(ValueError, match="unknown compute device"):
        settings.compute_device = "tpu"
    settings.set_value("compute/device", "tpu")              # a hand-edited file falls back to auto
    assert settings.compute_device == "auto"


def test_default_settings_live_in_the_temporary_folder(qapp, isolated_settings):
    assert Path(StudioSettings().file_name).resolve().parent == isolated_settings.resolve()


def test_cli_arguments():
    args = build_parser().parse_args(["ws", "--device", "cpu", "--clip", "a.wav"])
    assert (args.workspace, args.device, args.clip, args.demo) == ("ws", "cpu", "a.wav", False)
    assert build_parser().parse_args(["--demo"]).demo
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--device", "tpu"])


def test_missing_demo_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(mw, "DEMO_WORKSPACE", tmp_path / "nowhere")
    with pytest.raises(mw.WorkspaceError, match="pip install -e"):
        find_demo_workspace()


def test_default_clip_of_a_workspace_without_clips(tmp_path):
    """Without clips/, the first validation source is re-synthesised (label must match)."""
    root = tmp_path / "ws"
    (root / "corpus").mkdir(parents=True)
    shutil.copy(DEMO / "workspace.json", root / "workspace.json")
    shutil.copy(DEMO / "corpus" / "manifest.json", root / "corpus" / "manifest.json")
    ws = mw.Workspace.open(root)
    clip = default_clip(ws)
    # The demo's music lies in its music/ folder, not copied here: the first tones source of the
    # validation split is the first source that can be found again.
    val = sorted(r.source_id for r in ws.manifest().sources.values()
                 if r.split == "val" and r.source_id.startswith("tones/"))
    assert isinstance(clip, mw.Source) and clip.source_id == val[0]
    assert clip.load(24000).shape[1] == pytest.approx(clip.seconds * 24000, abs=2)
    # The demo itself ships clips: its first clip wins.
    assert default_clip(mw.Workspace.open(DEMO)) == str(DEMO_FIRST_CLIP)


# ---- the bundled demo ------------------------------------------------------------------------------
def test_bundled_demo_is_complete_and_small():
    ws = mw.Workspace.open(DEMO)
    assert ws.backend_name == "mel" and ws.manifest().complete
    for name in ws.sae_names():
        assert (ws.probe_dir(name) / "probes.safetensors").is_file()
    assert "x8-l1_0.02" in ws.sae_names()
    assert not (DEMO / "checkpoints").exists()
    assert DEMO_FIRST_CLIP.suffix == ".ogg" and "heldout" in DEMO_FIRST_CLIP.name
    size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert size < 20e6, f"the demo grew to {size / 1e6:.1f} MB"


def load_make_demo():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_demo", DEMO.parents[1] / "packaging" / "make_demo.py")
    make_demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_demo)
    return make_demo


def test_demo_ships_the_index_the_inspector_would_build():
    from audiosae.feature_index import load_feature_index
    from studio.models import inspector

    make_demo = load_make_demo()
    assert (make_demo.INDEX_TOP_K, make_demo.INDEX_HIST_BINS) == (inspector.INDEX_TOP_K, inspector.HIST_BINS)
    index = load_feature_index(mw.Workspace.open(DEMO), "x8-l1_0.02")
    assert index is not None, "the demo's feature index is missing or stale: rerun packaging/make_demo.py"


def test_demo_builder_runs_small(tmp_path):
    make_demo = load_make_demo()
    try:
        out = make_demo.build_demo(tmp_path / "demo", minutes=0.3, epochs=2, excerpt=3.0)
    except make_demo.MusicUnavailable as exc:   # no .debs cached and apt cannot fetch them
        pytest.skip(str(exc))
    ws = mw.Workspace.open(out)
    assert ws.sae_names() == ["x8-l1_0.02"] and not (out / "checkpoints").exists()
    assert (out / "saes" / "x8-l1_0.02" / "feature_index.safetensors").is_file()
    clip = sorted((out / "clips").iterdir())[0]
    info = sf.info(str(clip))
    assert info.samplerate == 24000 and 0 < info.duration <= 3.01 and clip.suffix == ".ogg"
    assert any(s.startswith("music/") for s in ws.manifest().sources)


# ---- start page ----------------------------------------------------------------------------------
def test_start_page_actions(qtbot, window, monkeypatch, tmp_path):
    page = window.start_page
    assert window.on_start_page and not window.inspector_dock.isVisible()
    assert not window.actions_by_name["play_pause"].isEnabled()

    # Recent: a missing workspace is listed, marked, cannot be opened, and can be removed.
    gone = str(tmp_path / "deleted-workspace")
    window.settings.recent_workspaces = [gone, str(DEMO)]
    page.refresh()
    texts = [page.recent_list.item(i).text() for i in range(page.recent_list.count())]
    assert texts == [f"deleted-workspace — missing\n{gone}", f"demo\n{DEMO}"]
    page.recent_list.setCurrentRow(0)
    assert not page.open_recent_button.isEnabled()
    qtbot.mouseClick(page.remove_recent_button, Qt.MouseButton.LeftButton)
    assert window.settings.recent_workspaces == [str(DEMO)]

    # New workspace: the wizard if it exists, else an error that says to use the CLI.
    qtbot.mouseClick(page.new_button, Qt.MouseButton.LeftButton)
    wizard = window._wizard
    if wizard is not None:
        assert wizard.isVisible()
        wizard.close()
    else:
        assert any("wizard" in d.text() for d in window.error_dialogs)

    # Open workspace: the folder dialog's answer is opened.
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(DEMO))
    with qtbot.waitSignal(window.state.clip_changed, timeout=LOAD_TIMEOUT_MS):
        qtbot.mouseClick(page.open_button, Qt.MouseButton.LeftButton)
    assert not window.on_start_page and window.inspector_dock.isVisible()
    assert window.state.workspace.root == DEMO
    assert window.actions_by_name["play_pause"].isEnabled()


def test_demo_button_opens_the_demo(qtbot, window):
    with qtbot.waitSignals([window.state.models_changed, window.state.clip_changed], timeout=LOAD_TIMEOUT_MS):
        qtbot.mouseClick(window.start_page.demo_button, Qt.MouseButton.LeftButton)
    assert window.state.workspace.root == DEMO and window.state.models is not None
    assert window.state.analysis is not None


# ---- opening the demo ------------------------------------------------------------------------------
def test_open_demo_loads_models_and_clip_without_blocking(qtbot, window, monkeypatch):
    ticks: list[float] = []
    probe = QTimer()
    probe.setInterval(10)
    probe.timeout.connect(lambda: ticks.append(time.monotonic()))
    handed_over: list[float] = []
    original = window.state.set_analysis

    def set_analysis(*args, **kwargs):  # the moment the job's result reaches the panes
        handed_over.append(time.monotonic())
        return original(*args, **kwargs)

    monkeypatch.setattr(window.state, "set_analysis", set_analysis)
    probe.start()
    try:
        start = time.monotonic()
        with qtbot.waitSignal(window.state.clip_changed, timeout=LOAD_TIMEOUT_MS):
            assert window.open_demo()
            returned = time.monotonic()
    finally:
        probe.stop()
    assert returned - start < 0.5, "open_workspace must hand the loading to jobs"
    # From the first tick after the call (the switch to the explorer and its first paint are
    # GUI work the user asked for) until the analysis reaches the panes.
    during = [t for t in ticks if returned <= t <= handed_over[0]]
    assert len(during) > 5
    gaps = np.diff(during)
    assert gaps.max() < 0.2, f"the GUI thread stalled {gaps.max() * 1000:.0f} ms while loading"

    state = window.state
    sae_name = state.models.sae.cfg.name
    assert sae_name in state.models.workspace.sae_names()
    assert state.clip_path == str(DEMO_FIRST_CLIP)
    analysis = state.analysis
    assert analysis.sample_rate == state.models.backend.sample_rate == 24000
    assert analysis.f.shape == (analysis.n_frames, state.models.sae.cfg.d_sae) and analysis.n_frames > 500
    assert sae_name in window.models_label.text()
    assert window.settings.recent_workspaces[0] == str(DEMO)
    assert window.windowTitle().startswith("demo")


def test_opening_the_demo_writes_nothing_into_it(qtbot, window):
    def snapshot():
        return {p: p.stat().st_mtime_ns for p in DEMO.rglob("*")}

    before = snapshot()
    open_demo_and_wait(qtbot, window)
    qtbot.waitUntil(lambda: not window.runner.active, timeout=LOAD_TIMEOUT_MS)   # the inspector's index job too
    assert snapshot() == before


def test_recent_list_persists_through_settings(qtbot, isolated_settings):
    first = MainWindow(StudioSettings())
    qtbot.addWidget(first)
    with qtbot.waitSignal(first.state.models_changed, timeout=LOAD_TIMEOUT_MS):
        first.open_workspace(DEMO)
    first.close()
    second = MainWindow(StudioSettings())      # a new session reads the same (temporary) file
    qtbot.addWidget(second)
    assert second.settings.recent_workspaces[0] == str(DEMO)
    assert second.start_page.recent_list.item(0).text().splitlines() == ["demo", str(DEMO)]
    second.recent_menu.aboutToShow.emit()
    entries = [a for a in second.recent_menu.actions() if a.data() == str(DEMO)]
    assert len(entries) == 1 and entries[0].text() == "demo"
    second.close()


# ---- menus and shortcuts ------------------------------------------------------------------------------
EXPECTED_KEYS = {
    "open_workspace": ["Ctrl+O"], "export_steered": ["Ctrl+E"], "quit": ["Ctrl+Q"],
    "zoom_in": ["+", "="], "zoom_out": ["-"], "fit": ["F"], "play_pause": ["Space"], "loop": ["L"],
}


def test_shortcuts_are_registered_with_their_keys(qtbot, window):
    for name, keys in EXPECTED_KEYS.items():
        action = window.actions_by_name[name]
        assert [s.toString(QKeySequence.SequenceFormat.PortableText) for s in action.shortcuts()] == keys, name
    rows = window.shortcut_rows()
    assert ("Playback", "Play / pause", "Space") in rows and ("View", "Zoom in", "+, =") in rows
    dialog = window.show_shortcuts()
    assert dialog.table.rowCount() == len(rows) >= len(EXPECTED_KEYS)
    dialog.close()
    menus = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert menus == ["File", "View", "Playback", "Tools", "Help"]


def test_space_and_l_reach_the_audition_but_not_from_text_fields(qtbot, window, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(window.audition, "toggle_play", lambda: calls.append("play"), raising=False)
    monkeypatch.setattr(window.audition, "toggle_loop", lambda: calls.append("loop"), raising=False)
    zooms: list[float] = []
    monkeypatch.setattr(window.timeline, "zoom", lambda f: zooms.append(f), raising=False)
    window.show_explorer()
    window.activateWindow()
    qtbot.waitActive(window)

    pane = window.timeline
    pane.setFocus()
    qtbot.keyClick(pane, Qt.Key.Key_Space)
    qtbot.keyClick(pane, Qt.Key.Key_L)
    qtbot.keyClick(pane, Qt.Key.Key_Equal)
    qtbot.keyClick(window.audition, Qt.Key.Key_Space)        # focus inside a dock works too
    assert calls == ["play", "loop", "play"] and zooms == [mw.ZOOM_STEP]
    # The widgets that really hold the focus: the plot canvas, a slider, a push button.
    from PySide6.QtWidgets import QAbstractButton, QGraphicsView, QSlider
    targets = [w for w in (window.timeline.findChild(QGraphicsView), window.audition.findChild(QSlider),
                           window.audition.findChild(QAbstractButton)) if w is not None]
    for target in targets:
        target.setFocus()
        qtbot.keyClick(target, Qt.Key.Key_Space)
    assert calls == ["play", "loop", "play"] + ["play"] * len(targets)
    calls.clear()

    field = QLineEdit(window.audition)                         # a text field inside a pane
    field.show()
    field.setFocus()
    qtbot.keyClicks(field, "l l")
    assert field.text() == "l l" and calls == []


def test_a_missing_pane_becomes_a_labelled_placeholder(qtbot, isolated_settings, monkeypatch):
    monkeypatch.setitem(mw.PANES, "audition", ("studio.not_written_yet", "AuditionPanel", "Audition"))
    win = MainWindow(StudioSettings())
    qtbot.addWidget(win)
    assert mw.is_placeholder(win.audition) and not mw.is_placeholder(win.start_page)
    text = win.audition.findChild(mw.QLabel).text()
    assert "Audition: placeholder" in text and "No module named 'studio.not_written_yet'" in text
    win.show_explorer()
    win.actions_by_name["play_pause"].trigger()                # the shortcut still answers, plainly
    assert win.statusBar().currentMessage() == "Audition: toggle_play is not available in this build"
    win.close()


def test_feature_order_menu_follows_the_state(qtbot, window):
    window.actions_by_name["order_density"].trigger()
    assert window.state.feature_order == "density"
    window.state.set_feature_order("probe")
    assert window.actions_by_name["order_probe"].isChecked()
    assert not window.actions_by_name["order_density"].isChecked()


def test_preferences_save_the_choices(qtbot, window):
    dialog = window.show_preferences()
    assert dialog.audio_combo.itemText(0) == "System default"
    dialog.compute_combo.setCurrentIndex(dialog.compute_combo.findData("cpu"))
    dialog.crepe_combo.setCurrentIndex(dialog.crepe_combo.findData("full"))
    with qtbot.waitSignal(dialog.changed) as changed:
        dialog.accept()
    assert sorted(changed.args[0]) == ["compute_device", "crepe_model"]
    reread = StudioSettings()
    assert reread.compute_device == "cpu" and reread.crepe_model == "full" and reread.audio_device is None


# ---- audio: drag and drop, failures ---------------------------------------------------------------------
def drop(window: MainWindow, paths: list[Path]) -> tuple[bool, bool]:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    with warnings.catch_warnings():   # PySide6 flags the (only) QPoint constructor as deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    if not enter.isAccepted():
        return False, False
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, event)
    return True, event.isAccepted()


def test_dropping_an_audio_file_analyses_it(qtbot, window, tmp_path):
    open_demo_and_wait(qtbot, window)
    (tmp_path / "notes.txt").write_text("not audio")
    assert drop(window, [tmp_path / "notes.txt"]) == (False, False)
    clip = wave_file(tmp_path / "dropped tone.wav", seconds=1.5, rate=16000)
    with qtbot.waitSignal(window.state.clip_changed, timeout=LOAD_TIMEOUT_MS):
        assert drop(window, [clip]) == (True, True)
    analysis = window.state.analysis
    assert window.state.clip_path == str(clip)
    assert analysis.sample_rate == 24000 and analysis.seconds == pytest.approx(1.5, abs=0.01)  # resampled
    pitch = analysis.measured.midi[np.isfinite(analysis.measured.midi)]
    assert np.median(pitch) == pytest.approx(69, abs=0.5)


def test_a_failing_job_shows_one_line_and_the_app_keeps_going(qtbot, window, tmp_path):
    open_demo_and_wait(qtbot, window)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage, not audio" * 3)
    with qtbot.waitSignal(window.clip_failed, timeout=LOAD_TIMEOUT_MS) as failed:
        window.open_audio(bad)
    message = failed.args[0]
    assert "broken.wav" in message and "\n" not in message
    status = window.statusBar().currentMessage()
    assert message in status and "log:" in status
    dialogs = window.error_dialogs
    assert len(dialogs) == 1 and message in dialogs[0].text() and "log" in dialogs[0].informativeText()
    assert window.state.clip_path == str(DEMO_FIRST_CLIP)   # the old clip stays
    good = wave_file(tmp_path / "good.wav")
    with qtbot.waitSignal(window.state.clip_changed, timeout=LOAD_TIMEOUT_MS):
        window.open_audio(good)
    assert window.state.clip_path == str(good)


def test_job_progress_shows_in_the_status_bar_and_cancels(qtbot, window, tmp_path):
    open_demo_and_wait(qtbot, window)
    long_clip = wave_file(tmp_path / "long.wav", seconds=40.0, rate=24000, midi=60)
    window.open_audio(long_clip)
    qtbot.waitUntil(lambda: window.job_label.isVisible() and window.job_label.text().startswith("analysing long.wav"),
                    timeout=10_000)
    assert window.progress_bar.isVisible() and window.cancel_button.isEnabled()
    qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.runner.active, timeout=30_000)
    qtbot.waitUntil(lambda: not window.cancel_button.isVisible(), timeout=2_000)
    assert window.statusBar().currentMessage() == "analysis cancelled"
    assert window.state.clip_path == str(DEMO_FIRST_CLIP)


def test_opening_something_that_is_not_a_workspace(qtbot, window, tmp_path):
    assert not window.open_workspace(tmp_path)
    assert "not an audiosae workspace" in window.statusBar().currentMessage()
    assert window.on_start_page and window.state.workspace is None
    assert not window.open_audio(wave_file(tmp_path / "a.wav"))       # no workspace yet: says so
    assert "open a workspace first" in window.statusBar().currentMessage()


# ---- close, logging --------------------------------------------------------------------------------------
def test_close_saves_geometry_and_leaves_no_threads(qtbot, isolated_settings, qt_leak_check):
    win = MainWindow(StudioSettings())
    qtbot.addWidget(win)
    win.show()
    win.resize(760, 560)          # inside the offscreen screen (800 x 600): restoring keeps it
    qtbot.waitExposed(win)
    win.open_demo()                      # close while the models are still loading
    assert win.runner.active
    size = (win.width(), win.height())
    win.close()
    assert not win.runner.active
    assert not [t for t in qt_leak_check.qthreads if t.isRunning()]
    saved = StudioSettings()
    assert saved.window_geometry is not None and saved.window_state is not None
    again = MainWindow(StudioSettings())
    qtbot.addWidget(again)
    # The width may be clamped to the small offscreen screen (800 px); the height fits.
    assert again.height() == size[1] != int(again.screen().availableGeometry().height() * 0.85)
    again.close()


def test_uncaught_exceptions_are_logged_and_shown(qtbot, tmp_path):
    log_path = setup_logging(directory=tmp_path)
    reporter = ErrorReporter()
    reporter.install()
    try:
        def crash():
            raise RuntimeError("worker exploded\nsecond line")

        thread = threading.Thread(target=crash, name="crashing-thread")
        thread.start()
        thread.join()
        qtbot.waitUntil(lambda: bool(reporter.dialogs), timeout=5000)
        try:
            raise ValueError("from the GUI thread")
        except ValueError as exc:
            reporter._excepthook(type(exc), exc, exc.__traceback__)
        qtbot.waitUntil(lambda: len(reporter.dialogs) == 2, timeout=5000)
    finally:
        reporter.uninstall()
        for handler in list(logging.getLogger("studio").handlers) + list(logging.getLogger("audiosae").handlers):
            if getattr(handler, "baseFilename", "").startswith(str(tmp_path)):
                handler.close()
                logging.getLogger("studio").removeHandler(handler)
                logging.getLogger("audiosae").removeHandler(handler)
    first = reporter.dialogs[0]
    assert first.text() == "RuntimeError: worker exploded"
    assert str(log_path) in first.informativeText()
    assert any(b.text() == "Open log folder" for b in first.buttons())
    text = log_path.read_text()
    assert "crashing-thread" in text and "second line" in text and "ValueError: from the GUI thread" in text
    for dialog in reporter.dialogs:
        dialog.close()


# ---- the leak fixture itself ------------------------------------------------------------------------------
LEAKY_TESTS = """
import threading, time
from PySide6.QtCore import QThread, QTimer
from PySide6.QtWidgets import QWidget
from tests.support.qt_fixtures import isolated_settings, qt_leak_check, qt_leak_guard  # noqa: F401

def test_clean(qtbot):
    w = QWidget(); qtbot.addWidget(w); w.show()
    t = QTimer(); t.start(10); t.stop()
    QTimer.singleShot(0, lambda: None)

def test_timer(qtbot):
    test_timer.t = QTimer(); test_timer.t.start(1000)

def test_window(qtbot):
    test_window.w = QWidget(); test_window.w.setObjectName("forgotten"); test_window.w.show()

class Sleeper(QThread):
    def run(self): time.sleep(1.5)

def test_qthread(qtbot):
    test_qthread.t = Sleeper(); test_qthread.t.start()

def test_python_thread(qtbot):
    test_python_thread.ev = threading.Event()
    threading.Thread(target=test_python_thread.ev.wait, args=(3,), daemon=True, name="leaky-feeder").start()

def test_single_shot(qtbot):
    QTimer.singleShot(60_000, lambda: None)

def test_without_qt():
    threading.Thread(target=time.sleep, args=(0.5,), daemon=True).start()   # not a Qt test: not checked
"""


def test_leak_fixture_catches_each_kind_of_leak(tmp_path):
    (tmp_path / "test_leaky.py").write_text(LEAKY_TESTS)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QT_LEAK_GRACE_S="0.3",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rE", "-p", "no:cacheprovider",
                           str(tmp_path / "test_leaky.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    out = done.stdout
    errors = {line.split("::")[1].split()[0] for line in out.splitlines() if line.startswith("ERROR ")}
    assert errors == {"test_timer", "test_window", "test_qthread", "test_python_thread", "test_single_shot"}, out
    for text in ("QTimers still active: QTimer(interval=1000 ms", "top-level widgets left open: QWidget('forgotten')",
                 "QThreads still running: Sleeper", "Python threads still alive: leaky-feeder",
                 "single-shot timers not fired: QTimer.singleShot(60000"):
        assert text in out, text
    assert "7 passed, 5 errors" in out


def test_clicking_a_heatmap_cell_opens_the_inspector_on_that_feature_and_frame(qtbot, window):
    """The whole path a user takes: demo -> real mouse click on a heatmap cell -> inspector."""
    from PySide6.QtCore import QPointF

    with qtbot.waitSignals([window.state.models_changed, window.state.clip_changed], timeout=LOAD_TIMEOUT_MS):
        window.open_demo()
    timeline, analysis = window.timeline, window.state.analysis
    qtbot.waitUntil(lambda: timeline.ready and len(timeline.heatmap.row_features) > 0, timeout=LOAD_TIMEOUT_MS)
    row, frame = 3, analysis.n_frames // 2
    feature = int(timeline.heatmap.row_features[row])
    vb = timeline.heatmap.view_box
    point = timeline.graphics.mapFromScene(vb.mapViewToScene(QPointF(float(analysis.times[frame]), row + 0.5)))
    with qtbot.waitSignal(window.state.feature_selected, timeout=5000) as blocker:
        qtbot.mouseClick(timeline.graphics.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert blocker.args == [feature, frame]
    assert window.inspector_dock.isVisible()
    assert window.inspector.title_label.text() == f"feature {feature}"
    assert f"{analysis.f[frame, feature]:.3f}" in window.inspector.value_label.text()
    qtbot.waitUntil(lambda: not window.runner.active, timeout=LOAD_TIMEOUT_MS)


def test_long_lived_objects_leave_the_collector_once_the_first_clip_is_shown(qtbot, window):
    """Full garbage collections must not walk the whole loaded app while audio plays (each one
    held the GIL ~200 ms and starved the audio callback): after the demo opens, the objects
    alive are frozen and a full collection sees only what came later."""
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    open_demo_and_wait(qtbot, window)
    qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=5000)
    frozen = gc.get_freeze_count()
    assert frozen > 50_000, frozen          # the studio's import-time and loaded objects
    assert len(gc.get_objects()) < frozen / 4
