"""The explorer's main window: it composes the panes, opens workspaces and clips, keeps settings.

Composition (panes never call each other; they share ``ExplorerState``)::

    central QStackedWidget: StartPage | TimelineView (waveform, heatmap, lanes)
    right dock:  FeatureInspector (studio.widgets.inspector over studio.models.inspector)
    bottom dock: AuditionPanel, and the Generation view tabbed beside it (built when first shown)

Each pane is built with its explicit constructor arguments, ``Pane(state, runner, settings,
parent=self)``, through ``studio.panes.build_pane`` (a placeholder when it cannot be built);
the wizard as ``TrainingWizard(runner, settings, parent=self)``.  The window calls only:
``TimelineView.zoom(factor)``, ``.fit()``; ``AuditionPanel.toggle_play()``, ``.toggle_loop()``,
``.export_steered()``, ``.set_output_device(name)``; ``shutdown()`` on any pane that has it.
Actions and menus: ``studio.window_menus``; geometry and drops: ``studio.window_state``; the
status bar's job line: ``studio.widgets.job_status``.  The workspace's models and the clip
load in jobs held by ``studio.models.explorer.ExplorerSession`` (``audiosae.explore.clips``);
the window shows what its signals say: status line, models label, error dialogs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QIcon
from PySide6.QtWidgets import (QDialog, QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox,
                               QStackedWidget, QWidget)

from audiosae.explore.analysis import ClipAnalysis, LoadedModels
from audiosae.audio import AUDIO_EXTENSIONS
from audiosae.corpus import Source
from audiosae.errors import AudioSAEError, WorkspaceError, printable
from audiosae.explore.clips import analyse_clip_job, load_models_job  # noqa: F401  (old import path)
from audiosae.explore.sources import CLIPS_FOLDER, default_clip  # noqa: F401  (old import path)
from audiosae.memory import settle_long_lived_objects
from audiosae.probes import preload_optimizer_modules
from audiosae.workspace import WORKSPACE_FILE, Workspace

from .logging_setup import current_log_file, one_line, show_error
from .models.explorer import ExplorerSession
from .panes import PANES, PanePlaceholder, build_pane, is_placeholder  # noqa: F401  (old import path)
from .settings import StudioSettings
from .widgets.start_page import StartPage
from .state import ExplorerState
from .widgets.job_status import JobStatus
from .widgets.shortcuts import ShortcutsDialog, about_box
from .window_menus import ZOOM_STEP, build_actions, build_menus, shortcut_rows
from .window_state import dropped_paths, restore_window, save_window_settings
from .workers import JobHandle, JobRunner

log = logging.getLogger("studio.main_window")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_WORKSPACE = REPO_ROOT / "resources" / "demo"
ICON_PATH = REPO_ROOT / "resources" / "icons" / "audiosae.png"
STATUS_TIMEOUT_MS = 10_000


def find_demo_workspace() -> Path:
    """The bundled demo workspace (``resources/demo`` in a source checkout)."""
    if (DEMO_WORKSPACE / WORKSPACE_FILE).is_file():
        return DEMO_WORKSPACE
    raise WorkspaceError(
        f"the bundled demo workspace is not installed (looked for {DEMO_WORKSPACE}); it ships in the "
        f"source checkout: install with `pip install -e .` from the repository, or build it with "
        f"`python packaging/make_demo.py` and open that folder")


def preload_heavy_imports() -> None:
    """Import, here, what loading models and the first training job (torch.optim ->
    torch._dynamo, sympy, ...) would import later.

    Otherwise the first training job imports ~900 modules (0.9 s with the GIL held: audio
    underran mid-playback in the soak).  Paid once, when the window is built, before anything
    is on screen, and before the heap is settled.  Analysing a clip imports nothing heavy:
    CREPE runs as ``audiosae.attributes.CrepeNet`` (torchcrepe and torchaudio are never
    imported).  librosa (and numba's compiling, a few seconds) comes with the registered
    attributes (onset, chroma ...): the explorer imports it in a warm-up job while the
    workspace's models load (measured: the same import during playback underran the output
    5-8 times), and measures them in a second job once the clip is on screen.
    """
    from audiosae import report  # noqa: F401  (LoadedModels.load imports it lazily)

    preload_optimizer_modules()


class MainWindow(QMainWindow):
    """The explorer window.  ``device`` (the ``--device`` option) overrides the saved setting."""

    clip_failed = Signal(str)          # one-line message of a failed clip analysis
    clip_warning = Signal(str)         # first warning about a clip that was analysed (clipped, truncated)
    models_failed = Signal(str)        # one-line message of a failed model load

    def __init__(self, settings: StudioSettings | None = None, *, device: str | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        from .qt_guard import guard_singleton_refcounts

        guard_singleton_refcounts()   # PySide6 6.12.0 on Python 3.11 (see there); a no-op elsewhere
        preload_heavy_imports()
        self.setObjectName("main_window")
        self.setWindowTitle("audiosae studio")
        if ICON_PATH.is_file():
            self.setWindowIcon(QIcon(str(ICON_PATH)))
        self.setAcceptDrops(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks)
        self.settings = settings if settings is not None else StudioSettings()
        self.device_override = device
        self.state = ExplorerState(self)
        self.runner = JobRunner(self)
        self._closed = False
        self._settle_heap_after_clip = False
        self.session = ExplorerSession(self.state, self.runner, self)
        self.session.models_loaded.connect(self._models_loaded)
        self.session.models_failed.connect(self._models_failed)
        self.session.load_cancelled.connect(lambda: self.show_status("loading the workspace was cancelled"))
        self.session.clip_analysed.connect(self._clip_analysed)
        self.session.clip_empty.connect(lambda: self.show_status(
            "this workspace has no clip to show yet: open an audio file (File > Open audio…)"))
        self.session.clip_failed.connect(self._clip_failed)
        self.session.clip_cancelled.connect(lambda: self.show_status("analysis cancelled"))
        self._wizard: QWidget | None = None
        self._dialogs: list[QWidget] = []          # non-modal windows to close with the main window
        self.actions_by_name: dict[str, QAction] = {}

        # ---- panes -------------------------------------------------------------------------
        self.start_page = StartPage(self.state, self.runner, self.settings, parent=self)
        state, runner, settings = self.state, self.runner, self.settings
        self.timeline = build_pane("timeline", self, lambda cls: cls(state, runner, settings, parent=self))
        self.inspector = build_pane("inspector", self, lambda cls: cls(state, runner, settings, parent=self))
        self.audition = build_pane("audition", self, lambda cls: cls(state, runner, settings, parent=self))
        self.stack = QStackedWidget(self)
        self.stack.setObjectName("central_stack")
        self.stack.addWidget(self.start_page)
        self.stack.addWidget(self.timeline)
        self.setCentralWidget(self.stack)
        self.inspector_dock = self._dock("inspector", self.inspector, Qt.DockWidgetArea.RightDockWidgetArea)
        self.audition_dock = self._dock("audition", self.audition, Qt.DockWidgetArea.BottomDockWidgetArea)
        # The inspector runs the full height; the audition sits under the timeline only.
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.setCorner(Qt.Corner.TopRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.docks = [self.inspector_dock, self.audition_dock]
        # The DiffRhythm generation view: a tab beside the audition, built when first shown.
        self.generation: QWidget | None = None
        self.generation_dock = QDockWidget(PANES["generation"][2], self)
        self.generation_dock.setObjectName("generation_dock")
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.generation_dock)
        self.tabifyDockWidget(self.audition_dock, self.generation_dock)
        self.generation_dock.hide()
        self.generation_dock.visibilityChanged.connect(
            lambda visible: visible and not self._closed and self.generation_view())
        self._dock_visible = {d.objectName(): True for d in self.docks}

        self.start_page.open_requested.connect(self.choose_workspace)
        self.start_page.new_requested.connect(self.new_workspace)
        self.start_page.demo_requested.connect(self.open_demo)
        self.start_page.recent_requested.connect(self.open_workspace)

        # ---- status bar --------------------------------------------------------------------
        bar = self.statusBar()
        bar.setObjectName("status_bar")
        self.models_label = QLabel(objectName="models_label")
        self.job_status = JobStatus(self.runner, bar, self.show_status, self)
        self.job_label = self.job_status.job_label
        self.progress_bar = self.job_status.progress_bar
        self.cancel_button = self.job_status.cancel_button
        bar.addPermanentWidget(self.models_label)
        self.state.status.connect(lambda text: self.show_status(text))
        self.state.feature_order_changed.connect(self._sync_feature_order)

        build_actions(self)
        build_menus(self)
        restore_window(self)
        self.show_start_page()

    # ---- construction helpers ----------------------------------------------------------------
    def _dock(self, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(PANES[name][2], self)
        dock.setObjectName(f"{name}_dock")    # saveState/restoreState key
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def generation_view(self) -> QWidget:
        """The Generation dock's ``GenerationView`` (or its placeholder), built on first use."""
        if self.generation is None:
            state, runner, settings = self.state, self.runner, self.settings
            self.generation = build_pane("generation", self,
                                         lambda cls: cls(state, runner, settings, parent=self))
            self.generation_dock.setWidget(self.generation)
        return self.generation

    def _generation_file(self, method: str) -> None:
        view = self.generation_view()
        self.generation_dock.show()
        self.generation_dock.raise_()
        if not is_placeholder(view):
            getattr(view, method)()

    # ---- pages ---------------------------------------------------------------------------------
    @property
    def on_start_page(self) -> bool:
        return self.stack.currentWidget() is self.start_page

    def show_start_page(self) -> None:
        if not self.on_start_page:
            self._dock_visible = {d.objectName(): d.isVisible() for d in self.docks}
        self.start_page.refresh()
        self.stack.setCurrentWidget(self.start_page)
        for dock in self.docks:
            dock.hide()
        for action in self._explorer_actions:
            action.setEnabled(False)

    def show_explorer(self) -> None:
        if self.on_start_page:
            self.stack.setCurrentWidget(self.timeline)
            for dock in self.docks:
                dock.setVisible(self._dock_visible.get(dock.objectName(), True))
        for action in self._explorer_actions:
            action.setEnabled(True)

    def _call_pane(self, pane: str, method: str, *args: Any) -> Any:
        """``getattr(pane, method)(*args)``, or a status message if the pane lacks it."""
        widget = getattr(self, pane)
        fn = getattr(widget, method, None)
        if fn is None:
            self.show_status(f"{PANES[pane][2]}: {method} is not available in this build")
            return None
        return fn(*args)

    # ---- opening ---------------------------------------------------------------------------------
    def effective_device(self) -> str:
        return self.device_override or self.settings.compute_device

    def choose_workspace(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a workspace folder", self.settings.last_directory)
        if folder:
            self.settings.last_directory = str(Path(folder).parent)
            self.open_workspace(folder)

    def open_demo(self, clip: str | None = None) -> bool:
        try:
            path = find_demo_workspace()
        except WorkspaceError as exc:
            self.report_error(str(exc))
            return False
        return self.open_workspace(path, clip=clip)

    def open_workspace(self, path: str | Path, sae_name: str | None = None, clip: str | None = None) -> bool:
        """Open ``path``; models and the first clip load in jobs.  False if it is not a workspace."""
        path = Path(path).expanduser()
        try:
            workspace = Workspace.open(path)
        except AudioSAEError as exc:
            self.report_error(str(exc), context="Cannot open the workspace")
            return False
        self.session.open(workspace, sae_name, clip, device=self.effective_device(),
                          crepe_model=self.settings.crepe_model)
        self.settings.add_recent_workspace(path)
        self.start_page.refresh()
        self.setWindowTitle(f"{workspace.root.resolve().name} — audiosae studio")
        self.models_label.setText(f"{workspace.backend_name} · loading…")
        self.show_explorer()
        return True

    def _models_loaded(self, models: LoadedModels) -> None:
        self._settle_heap_after_clip = True   # most long-lived objects exist once a clip is shown
        codec = "" if models.backend is not None else " (codec unavailable)"
        self.models_label.setText(f"{models.workspace.backend_name}{codec} · SAE {models.sae.cfg.name} · "
                                  f"{models.device}")
        message = (f"loaded SAE {models.sae.cfg.name} ({models.workspace.backend_name} backend{codec}, "
                   f"{models.device}) from {models.workspace.root}")
        log.info(message)
        for part in models.missing:   # no dialog: the clip's banner says what is missing and the fix
            log.warning("%s", part.line())
        self.show_status(message)

    def _models_failed(self, message: str, tb: str, current: bool) -> None:
        if current:
            self.models_label.setText("no models")
        self.report_error(message, tb, context="Loading the workspace failed")
        self.models_failed.emit(one_line(message))

    def reload_models(self) -> None:
        """Load the open workspace's SAE again (new device / CREPE model), keeping the clip."""
        self.session.reload(device=self.effective_device(), crepe_model=self.settings.crepe_model)

    def choose_audio(self) -> None:
        patterns = " ".join(f"*{ext}" for ext in AUDIO_EXTENSIONS)
        path, _ = QFileDialog.getOpenFileName(self, "Open audio", self.settings.last_directory,
                                              f"Audio ({patterns});;All files (*)")
        if path:
            self.settings.last_directory = str(Path(path).parent)
            self.open_audio(path)

    def open_audio(self, path: str | Path) -> bool:
        """Analyse an audio file with the open workspace's models (resampled to the backend's rate)."""
        path = str(Path(path).expanduser())
        if self.state.workspace is None:
            self.report_error(f"{path}: open a workspace first (File > Open workspace or the demo); the clip "
                              f"is analysed with its SAE and probes", context="No workspace")
            return False
        if self.state.models is None:
            if self.session.wait_for_models(path):
                self.show_status(f"{printable(Path(path).name)} opens once the workspace has loaded")
                return True
            self.report_error("the workspace's models failed to load; cannot analyse audio",
                              context="No models")
            return False
        self.analyse(path)
        return True

    def analyse(self, clip: str | Source | None = None) -> JobHandle | None:
        """Analyse ``clip`` (None: the workspace's default clip) in a job; the result goes to the state."""
        return self.session.analyse(clip)

    def _clip_analysed(self, analysis: ClipAnalysis, name: str) -> None:
        if self._settle_heap_after_clip:   # one full collection now, none mid-playback later
            self._settle_heap_after_clip = False
            QTimer.singleShot(0, settle_long_lived_objects)
        log.info("analysed %s: %.1f s, %d frames", name, analysis.seconds, analysis.n_frames)
        shown = printable(Path(name).name if Path(name).is_file() else name)
        for part in analysis.missing:  # shown without it; the banner over the panes says how to fix it
            log.warning("%s", part.line())
        if analysis.missing:
            self.show_status(f"{shown}: shown without {', '.join(p.what for p in analysis.missing)} "
                             f"(see the note above the panes)", 0)
            return
        if analysis.warnings:  # the clip is shown, but the user must know it is clipped / truncated
            for line in analysis.warnings:
                log.warning("%s", line)
            more = f" (+{len(analysis.warnings) - 1} more in the log)" if len(analysis.warnings) > 1 else ""
            self.show_status(f"warning: {analysis.warnings[0]}{more}", 0)
            self.clip_warning.emit(analysis.warnings[0])
            return
        self.show_status(f"{shown}: {analysis.seconds:.1f} s, {analysis.n_frames} frames")

    def _clip_failed(self, message: str, tb: str) -> None:
        self.report_error(message, tb, context="Analysing the clip failed")
        self.clip_failed.emit(one_line(message))

    # ---- wizard, dialogs -------------------------------------------------------------------------
    def new_workspace(self) -> QWidget | None:
        """Open the training wizard (non-modal); its ``workspace_ready`` opens the result."""
        if self._wizard is not None and _alive(self._wizard) and self._wizard.isVisible():
            self._wizard.raise_()
            self._wizard.activateWindow()
            return self._wizard
        try:
            from .widgets.wizard.wizard import TrainingWizard
        except ImportError as exc:
            log.warning("training wizard not available: %s", exc)
            self.report_error(f"the training wizard is not available in this build ({exc}); use the command "
                              f"line meanwhile: `audiosae build` then `audiosae train`", context="No wizard")
            return None
        wizard = TrainingWizard(self.runner, self.settings, parent=self)
        wizard.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        wizard.workspace_ready.connect(lambda path, sae: self.open_workspace(path, sae_name=sae or None))
        self._wizard = wizard
        wizard.show()
        return wizard

    def show_preferences(self) -> QDialog:
        from .widgets.preferences import PreferencesDialog

        dialog = PreferencesDialog(self.settings, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.changed.connect(self._preferences_changed)
        self._keep(dialog)
        dialog.open()   # window-modal, never blocks the event loop
        return dialog

    def _preferences_changed(self, keys: list[str]) -> None:
        if "audio_device" in keys:
            if hasattr(self.audition, "set_output_device"):
                self.audition.set_output_device(self.settings.audio_device)
            else:
                self.show_status("the audio output applies the next time playback starts")
        if "compute_device" in keys:
            self.device_override = None   # the saved choice wins over --device from now on
        if ({"compute_device", "crepe_model"} & set(keys)) and self.state.workspace is not None:
            self.show_status(f"reloading the workspace on {self.effective_device()}…")
            self.reload_models()

    def shortcut_rows(self) -> list[tuple[str, str, str]]:
        """(menu, action, keys) for every menu action with a shortcut, in menu order."""
        return shortcut_rows(self.menuBar())

    def show_shortcuts(self) -> ShortcutsDialog:
        dialog = ShortcutsDialog(self.shortcut_rows(), self)
        self._keep(dialog)
        dialog.show()
        return dialog

    def show_about(self) -> QMessageBox:
        box = about_box(self)
        self._keep(box)
        box.show()
        return box

    def _keep(self, widget: QWidget) -> None:
        self._dialogs = [d for d in self._dialogs if _alive(d)]
        self._dialogs.append(widget)

    # ---- errors and status -------------------------------------------------------------------------
    def show_status(self, text: str, timeout_ms: int = STATUS_TIMEOUT_MS) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    def report_error(self, message: str, details: str = "", *, context: str = "") -> QMessageBox | None:
        """One line in the status bar and a non-modal dialog pointing to the log file."""
        line = one_line(message)
        log.warning("%s%s%s", f"{context}: " if context else "", line, f"\n{details}" if details else "")
        self.show_status(f"{context + ': ' if context else ''}{line} (log: {current_log_file()})", 0)
        if self._closed:
            return None
        box = show_error(self, f"{context}: {line}" if context else line, details)
        self._keep(box)
        return box

    @property
    def error_dialogs(self) -> list[QMessageBox]:
        return [d for d in self._dialogs if _alive(d) and isinstance(d, QMessageBox)
                and d.objectName() == "studio_error_dialog" and d.isVisible()]

    def cancel_shown_job(self) -> None:
        self.job_status.cancel_shown_job()

    def _sync_feature_order(self, key: str) -> None:
        action = self.actions_by_name.get(f"order_{key}")
        if action is not None and not action.isChecked():
            action.setChecked(True)

    # ---- drag and drop --------------------------------------------------------------------------------
    dropped_paths = staticmethod(dropped_paths)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        workspaces, audio = self.dropped_paths(event.mimeData())
        if workspaces or audio:
            event.acceptProposedAction()
            self.show_status("drop to open " + (workspaces[0].name if workspaces else audio[0].name), 2000)
        else:
            event.ignore()

    def dragMoveEvent(self, event: QEvent) -> None:
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        workspaces, audio = self.dropped_paths(event.mimeData())
        if not (workspaces or audio):
            event.ignore()
            return
        event.acceptProposedAction()
        if workspaces:
            self.open_workspace(workspaces[0])
            return
        if len(audio) > 1:
            self.show_status(f"opening {audio[0].name} (the first of {len(audio)} dropped files)")
        self.open_audio(audio[0])

    # ---- window state and closing --------------------------------------------------------------------
    def save_window_settings(self) -> None:
        save_window_settings(self)

    def shutdown(self) -> None:
        """Cancel jobs, stop the panes' audio and timers, close the dialogs (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.session.close()
        self.job_status.close()
        self.runner.cancel_all()   # every job stops at its next safe point while the panes shut down
        for name in ("audition", "inspector", "timeline", "generation"):
            stop = getattr(getattr(self, name), "shutdown", None)
            if stop is not None:
                try:
                    stop()
                except Exception:  # one pane failing to stop must not keep the others running
                    log.exception("%s.shutdown() failed", name)
        if not self.runner.shutdown():
            log.warning("some jobs did not stop within the shutdown timeout")
        for dialog in [self._wizard, *self._dialogs]:
            if dialog is not None and _alive(dialog):
                dialog.close()
        self._dialogs.clear()
        self._wizard = None

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closed:
            self.save_window_settings()
            self.shutdown()
        super().closeEvent(event)


def _alive(obj: QObject | None) -> bool:
    import shiboken6

    return obj is not None and shiboken6.isValid(obj)
