"""The explorer's main window: start page, panes, menus and shortcuts, jobs, settings.

Composition (panes never call each other; they share ``ExplorerState``)::

    central QStackedWidget: StartPage | TimelineView (waveform, heatmap, lanes)
    right dock:  FeatureInspector
    bottom dock: AuditionPanel

Each pane is built as ``Pane(state, runner, settings, parent=self)`` (the wizard, which has no
``state`` parameter, as ``TrainingWizard(runner, settings, parent=self)``).  A pane whose module
cannot be imported yet (or fails to build) is replaced by a clearly labelled placeholder, so
the shell runs while the panes are being written; the failure is logged.  The window calls
only: ``TimelineView.zoom(factor)`` (> 1 zooms in), ``.fit()``; ``AuditionPanel.toggle_play()``,
``.toggle_loop()``, ``.export_steered()``, ``.set_output_device(name)``; ``shutdown()`` on any pane
that has it, when closing.

Opening a workspace: ``Workspace.open`` (reads two JSON files, GUI thread), then a job loads
``LoadedModels`` (backend + SAE + probes), then a job analyses a clip (``--clip``, a dropped
file, the workspace's ``clips/`` folder, or its first validation source re-synthesised /
re-loaded) and ``state.set_analysis`` hands it to the panes.  The status bar shows the running
job's progress with a Cancel button; failures show a one-line message and the log's path.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QEvent, QMimeData, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDockWidget, QFileDialog, QFrame,
                               QHeaderView, QLabel, QMainWindow, QMenu, QMessageBox, QProgressBar,
                               QStackedWidget, QTableWidget, QTableWidgetItem, QToolButton, QVBoxLayout,
                               QWidget)

from audiosae import __version__
from audiosae.analysis import ClipAnalysis, LoadedModels
from audiosae.audio import AUDIO_EXTENSIONS, load_audio
from audiosae.corpus import BUILTIN_CORPORA, Source, builtin_sources
from audiosae.errors import AudioSAEError, WorkspaceError, printable
from audiosae.jobs import CancelToken, Progress, ProgressSink
from audiosae.memory import settle_long_lived_objects
from audiosae.probes import preload_optimizer_modules
from audiosae.workspace import WORKSPACE_FILE, Workspace

from .logging_setup import current_log_file, one_line, open_log_folder, show_error
from .settings import StudioSettings
from .start_page import StartPage, workspace_exists
from .state import FEATURE_ORDERS, ExplorerState
from .workers import JobHandle, JobRunner

log = logging.getLogger("studio.main_window")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_WORKSPACE = REPO_ROOT / "resources" / "demo"
ICON_PATH = REPO_ROOT / "resources" / "icons" / "audiosae.png"
CLIPS_FOLDER = "clips"           # a workspace's own example clips (the demo ships two)
ZOOM_STEP = 1.5                  # TimelineView.zoom(factor): factor > 1 zooms in
PROGRESS_POLL_MS = 100           # status-bar refresh while a job runs
PROGRESS_SHOW_AFTER_S = 0.25     # jobs shorter than this never flash the progress bar
STATUS_TIMEOUT_MS = 10_000

# name -> (module, class, title); the order of the docks in the View menu
PANES = {
    "timeline": ("studio.timeline", "TimelineView", "Timeline"),
    "inspector": ("studio.inspector", "FeatureInspector", "Feature inspector"),
    "audition": ("studio.audition", "AuditionPanel", "Audition"),
    "generation": ("studio.generation", "GenerationView", "Generation"),
}


def find_demo_workspace() -> Path:
    """The bundled demo workspace (``resources/demo`` in a source checkout)."""
    if (DEMO_WORKSPACE / WORKSPACE_FILE).is_file():
        return DEMO_WORKSPACE
    raise WorkspaceError(
        f"the bundled demo workspace is not installed (looked for {DEMO_WORKSPACE}); it ships in the "
        f"source checkout: install with `pip install -e .` from the repository, or build it with "
        f"`python packaging/make_demo.py` and open that folder")


# ---- jobs (run in worker threads: no widgets here) --------------------------------------------
def load_models_job(workspace: Workspace, sae_name: str | None, device: str, crepe_model: str | None, *,
                    progress: ProgressSink, cancel: CancelToken) -> LoadedModels:
    """``LoadedModels.load`` as a job, with the CREPE model preference applied."""
    progress(Progress("load", 0, 2, f"loading the {workspace.backend_name} backend, SAE and probes"))
    models = LoadedModels.load(workspace, sae_name, device=device)
    cancel.raise_if_cancelled()
    if crepe_model:
        models.spec.crepe_model = crepe_model
    progress(Progress("load", 2, 2, f"SAE {models.sae.cfg.name} ready on {models.device}"))
    return models


def default_clip(workspace: Workspace) -> str | Source | None:
    """What to show first: the workspace's ``clips/`` folder, else its first validation source.

    Built-in corpus sources are re-synthesised (their label must match the manifest's, which
    guards against a corpus built with another seed); user sources are re-loaded from their file.
    """
    clips = workspace.root / CLIPS_FOLDER
    if clips.is_dir():
        files = sorted(p for p in clips.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        if files:
            return str(files[0])
    records = sorted(workspace.manifest().sources.values(), key=lambda r: (r.split != "val", r.source_id))
    builtin: dict[str, dict[str, Source]] = {}
    for record in records:
        if record.path and Path(record.path).is_file():
            return record.path
        corpus = record.source_id.split("/", 1)[0]
        if corpus not in BUILTIN_CORPORA:
            continue
        if corpus not in builtin:
            try:
                builtin[corpus] = {s.source_id: s for s in builtin_sources(corpus)}
            except AudioSAEError:  # e.g. FluidSynth missing for the midi corpus
                builtin[corpus] = {}
        source = builtin[corpus].get(record.source_id)
        if source is not None and source.label == record.label:
            return source
    return None


def analyse_clip_job(models: LoadedModels, clip: str | Source | None, *, progress: ProgressSink,
                     cancel: CancelToken) -> tuple[ClipAnalysis, str, str | Source] | None:
    """Load ``clip`` (a file, resampled to the backend's rate, or a corpus source) and analyse it.

    ``clip=None`` picks ``default_clip``; returns None when the workspace has nothing to show.
    Without the codec (``models.backend`` None) a corpus source is analysed from its stored
    latents, other audio shows its waveform and measured lanes only (``LoadedModels.analyze``).
    """
    if clip is None:
        clip = default_clip(models.workspace)
        if clip is None:
            return None
    progress(Progress("analyse", 0, 3, "loading audio"))
    warnings: list[str] = []
    if isinstance(clip, Source):
        wave = clip.load(models.sample_rate, models.channels, on_warning=warnings.append)
        name = clip.source_id
    else:
        wave = load_audio(clip, models.sample_rate, models.channels, on_warning=warnings.append)
        name = str(clip)
    cancel.raise_if_cancelled()
    stored = models.stored_frames(clip) if models.backend is None else None
    analysis = models.analyze(wave, stored=stored, source=name, progress=progress, cancel=cancel)
    analysis.warnings = warnings
    return analysis, name, clip


def preload_heavy_imports() -> None:
    """Import, here, what loading models and the first training job (torch.optim ->
    torch._dynamo, sympy, ...) would import later.

    Otherwise the first training job imports ~900 modules (0.9 s with the GIL held: audio
    underran mid-playback in the soak).  Paid once, when the window is built, before anything
    is on screen, and before the heap is settled.  Analysing a clip imports nothing heavy:
    CREPE runs as ``audiosae.attributes.CrepeNet`` (torchcrepe, and with it torchaudio,
    librosa and numba, is never imported).
    """
    from audiosae import report  # noqa: F401  (LoadedModels.load imports it lazily)

    preload_optimizer_modules()


# ---- widgets -------------------------------------------------------------------------------------
class PanePlaceholder(QFrame):
    """Stands in for a pane that is not available in this build; says which and why."""

    is_placeholder = True

    def __init__(self, title: str, module: str, class_name: str, reason: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(f"placeholder_{class_name}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.reason = reason
        label = QLabel(f"<b>{title}: placeholder</b><br>{module}.{class_name} is not available yet:<br>"
                       f"<i>{one_line(reason)}</i>")
        label.setWordWrap(True)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(label)


def build_pane(name: str, state: ExplorerState, runner: JobRunner, settings: StudioSettings,
               parent: QWidget) -> QWidget:
    """``Pane(state, runner, settings, parent=parent)`` for ``PANES[name]``, or a placeholder."""
    module_name, class_name, title = PANES[name]
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        log.warning("%s.%s not available: %s", module_name, class_name, exc)
        return PanePlaceholder(title, module_name, class_name, f"ImportError: {exc}", parent)
    except Exception as exc:  # a half-written module must not take the whole app down
        log.exception("importing %s failed", module_name)
        return PanePlaceholder(title, module_name, class_name, f"{exc.__class__.__name__}: {exc}", parent)
    try:
        return construct_pane(cls, state, runner, settings, parent)
    except Exception as exc:
        log.exception("building %s failed", class_name)
        return PanePlaceholder(title, module_name, class_name, f"{exc.__class__.__name__}: {exc}", parent)


def construct_pane(cls: type, state: ExplorerState, runner: JobRunner, settings: StudioSettings,
                   parent: QWidget) -> QWidget:
    """``cls(state, runner, settings, parent=parent)``, the studio's widget contract.

    A class whose constructor takes no ``state`` (the wizard builds workspaces, it does not
    explore one) gets ``cls(runner, settings, parent=parent)``.
    """
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):  # a C++ signature: assume the contract
        params = {"state": None}
    if "state" in params:
        return cls(state, runner, settings, parent=parent)
    return cls(runner, settings, parent=parent)


def is_placeholder(widget: QWidget | None) -> bool:
    return bool(getattr(widget, "is_placeholder", False))


class ShortcutsDialog(QDialog):
    """Help > Keyboard shortcuts: generated from the actions registered in the menus."""

    def __init__(self, rows: list[tuple[str, str, str]], parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("shortcuts_dialog")
        self.setWindowTitle("Keyboard shortcuts")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        table = QTableWidget(len(rows), 3, self)
        table.setObjectName("shortcuts_table")
        table.setHorizontalHeaderLabels(["Menu", "Action", "Keys"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                table.setItem(r, c, QTableWidgetItem(text))
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        self.table = table
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        note = QLabel("Space and L work wherever the focus is in the explorer, except in text fields. "
                      "Drop audio files (or a workspace folder) on the window to open them.")
        note.setWordWrap(True)
        layout.addWidget(note)
        table.resizeRowsToContents()
        table.resizeColumnsToContents()
        rows_height = sum(table.rowHeight(r) for r in range(len(rows))) + table.horizontalHeader().height()
        width = sum(table.columnWidth(c) for c in range(3)) + self.fontMetrics().horizontalAdvance("M") * 4
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        height = rows_height + self.fontMetrics().height() * 6
        if screen is not None and screen.height() > 0:
            height = min(height, int(screen.height() * 0.8))
        self.resize(width, height)


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
        self._load_job: JobHandle | None = None
        self._settle_heap_after_clip = False
        self._clip_job: JobHandle | None = None
        self._pending_clip: str | Source | None = None
        self._current_clip: str | Source | None = None
        self._job_started_at: dict[int, float] = {}
        self._shown_job: JobHandle | None = None
        self._wizard: QWidget | None = None
        self._dialogs: list[QWidget] = []          # non-modal windows to close with the main window
        self.actions_by_name: dict[str, QAction] = {}

        # ---- panes -------------------------------------------------------------------------
        self.start_page = StartPage(self.state, self.runner, self.settings, parent=self)
        self.timeline = build_pane("timeline", self.state, self.runner, self.settings, self)
        self.inspector = build_pane("inspector", self.state, self.runner, self.settings, self)
        self.audition = build_pane("audition", self.state, self.runner, self.settings, self)
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
        self.job_label = QLabel(objectName="job_label")
        self.progress_bar = QProgressBar(objectName="job_progress")
        self.progress_bar.setMaximumWidth(self.fontMetrics().horizontalAdvance("M") * 14)
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QToolButton(objectName="job_cancel")
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Cancel the running job")
        self.cancel_button.clicked.connect(self.cancel_shown_job)
        for w in (self.job_label, self.progress_bar, self.cancel_button):
            w.setVisible(False)
            bar.addPermanentWidget(w)
        bar.addPermanentWidget(self.models_label)
        self._progress_timer = QTimer(self)
        self._progress_timer.setInterval(PROGRESS_POLL_MS)
        self._progress_timer.timeout.connect(self._refresh_progress)
        self.runner.job_started.connect(self._on_job_started)
        self.runner.job_done.connect(self._on_job_done)
        self.state.status.connect(lambda text: self.show_status(text))
        self.state.feature_order_changed.connect(self._sync_feature_order)

        self._build_actions()
        self._build_menus()
        self._restore_window()
        self.show_start_page()

    # ---- construction helpers ----------------------------------------------------------------
    def _dock(self, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(PANES[name][2], self)
        dock.setObjectName(f"{name}_dock")    # saveState/restoreState key
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, name: str, text: str, slot: Callable[..., Any], keys: tuple[str, ...] = (),
                tip: str = "", *, checkable: bool = False, in_panes: bool = False) -> QAction:
        action = QAction(text, self)
        action.setObjectName(f"action_{name}")
        if keys:
            action.setShortcuts([QKeySequence(k) for k in keys])
        if tip:
            action.setStatusTip(tip)
        action.setCheckable(checkable)
        action.triggered.connect(lambda checked=False: slot())
        if in_panes:
            # Window context on the main window and on each dock: the keys work wherever the
            # focus is in the explorer, floating docks included, while text fields keep them
            # (they accept the ShortcutOverride for printable keys) and other windows (the
            # wizard, dialogs) are not affected, as an application-wide shortcut would be.
            for dock in self.docks:
                dock.addAction(action)
        self.actions_by_name[name] = action
        return action

    def _build_actions(self) -> None:
        a = self._action
        a("open_workspace", "&Open workspace…", self.choose_workspace, ("Ctrl+O",),
          "Open a workspace folder (made by the wizard or `audiosae build`/`train`)")
        a("open_audio", "Open &audio…", self.choose_audio, ("Ctrl+Shift+O",),
          "Analyse an audio file with the open workspace's SAE")
        a("open_demo", "Open the &demo workspace", self.open_demo, (), "The small bundled tones/mel workspace")
        a("new_workspace", "&New workspace (wizard)…", self.new_workspace, ("Ctrl+N",),
          "Build a corpus and train SAEs and probes")
        a("export_steered", "&Export steered audio…", lambda: self._call_pane("audition", "export_steered"),
          ("Ctrl+E",), "Render the steered clip to a WAV/FLAC file", in_panes=True)
        quit_action = a("quit", "&Quit", self.close, ("Ctrl+Q",))
        quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        a("zoom_in", "Zoom &in", lambda: self._call_pane("timeline", "zoom", ZOOM_STEP), ("+", "="),
          in_panes=True)
        a("zoom_out", "Zoom &out", lambda: self._call_pane("timeline", "zoom", 1.0 / ZOOM_STEP), ("-",),
          in_panes=True)
        a("fit", "&Fit the clip", lambda: self._call_pane("timeline", "fit"), ("F",), in_panes=True)
        a("play_pause", "&Play / pause", lambda: self._call_pane("audition", "toggle_play"), ("Space",),
          in_panes=True)
        a("loop", "&Loop", lambda: self._call_pane("audition", "toggle_loop"), ("L",),
          "Loop the selection (or the whole clip)", in_panes=True)
        prefs = a("preferences", "&Preferences…", self.show_preferences, ("Ctrl+,",))
        prefs.setMenuRole(QAction.MenuRole.PreferencesRole)
        a("shortcuts", "&Keyboard shortcuts", self.show_shortcuts, ("F1",))
        a("open_log_folder", "Open &log folder", open_log_folder, (), str(current_log_file().parent))
        about = a("about", "&About audiosae studio", self.show_about)
        a("open_trace", "Open &trace…", lambda: self._generation_file("choose_and_open"), (),
          "Open a DiffRhythm generation trace folder (made by the Generation view or `audiosae trace`)")
        a("save_trace", "Sa&ve trace…", lambda: self._generation_file("choose_and_save"), (),
          "Save the Generation view's trace to a folder")
        about.setMenuRole(QAction.MenuRole.AboutRole)

        self.feature_order_group = QActionGroup(self)
        self.feature_order_group.setExclusive(True)
        for key, text in FEATURE_ORDERS.items():
            action = QAction(f"By {text}", self.feature_order_group, checkable=True)
            action.setObjectName(f"action_order_{key}")
            action.setData(key)
            action.setChecked(key == self.state.feature_order)
            action.triggered.connect(lambda checked=False, k=key: self.state.set_feature_order(k))
            self.actions_by_name[f"order_{key}"] = action

    def _build_menus(self) -> None:
        menus = self.menuBar()
        acts = self.actions_by_name
        file_menu = menus.addMenu("&File")
        file_menu.addAction(acts["open_workspace"])
        file_menu.addAction(acts["open_audio"])
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.setObjectName("recent_menu")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._fill_recent_menu()
        file_menu.addAction(acts["open_demo"])
        file_menu.addAction(acts["new_workspace"])
        file_menu.addSeparator()
        file_menu.addAction(acts["export_steered"])
        file_menu.addSeparator()
        file_menu.addAction(acts["open_trace"])
        file_menu.addAction(acts["save_trace"])
        file_menu.addSeparator()
        file_menu.addAction(acts["quit"])

        view_menu = menus.addMenu("&View")
        for name in ("zoom_in", "zoom_out", "fit"):
            view_menu.addAction(acts[name])
        order_menu = view_menu.addMenu("Feature &order")
        order_menu.setObjectName("feature_order_menu")
        order_menu.addActions(self.feature_order_group.actions())
        view_menu.addSeparator()
        for dock in self.docks:
            toggle = dock.toggleViewAction()
            toggle.setObjectName(f"action_show_{dock.objectName()}")
            view_menu.addAction(toggle)
        generation_toggle = self.generation_dock.toggleViewAction()
        generation_toggle.setObjectName("action_show_generation_dock")
        view_menu.addAction(generation_toggle)

        playback_menu = menus.addMenu("&Playback")
        playback_menu.addAction(acts["play_pause"])
        playback_menu.addAction(acts["loop"])

        tools_menu = menus.addMenu("&Tools")
        tools_menu.addAction(acts["preferences"])

        help_menu = menus.addMenu("&Help")
        help_menu.addAction(acts["shortcuts"])
        help_menu.addAction(acts["open_log_folder"])
        help_menu.addSeparator()
        help_menu.addAction(acts["about"])
        self._explorer_actions = [acts[n] for n in ("open_audio", "export_steered", "zoom_in", "zoom_out", "fit",
                                                    "play_pause", "loop")]

    def generation_view(self) -> QWidget:
        """The Generation dock's ``GenerationView`` (or its placeholder), built on first use."""
        if self.generation is None:
            self.generation = build_pane("generation", self.state, self.runner, self.settings, self)
            self.generation_dock.setWidget(self.generation)
        return self.generation

    def _generation_file(self, method: str) -> None:
        view = self.generation_view()
        self.generation_dock.show()
        self.generation_dock.raise_()
        if not is_placeholder(view):
            getattr(view, method)()

    def _fill_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        recent = self.settings.recent_workspaces
        for path in recent:
            missing = not workspace_exists(path)
            text = f"{Path(path).name} — missing (click to remove)" if missing else Path(path).name
            action = menu.addAction(text)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.setData(path)
            if missing:
                action.triggered.connect(lambda checked=False, p=path: self._forget_recent(p))
            else:
                action.triggered.connect(lambda checked=False, p=path: self.open_workspace(p))
        if recent:
            menu.addSeparator()
        clear = menu.addAction("Clear the list")
        clear.setEnabled(bool(recent))
        clear.triggered.connect(self._clear_recent)

    def _forget_recent(self, path: str) -> None:
        self.settings.remove_recent_workspace(path)
        self.start_page.refresh()
        self.show_status(f"removed {path} from the recent workspaces (it no longer exists)")

    def _clear_recent(self) -> None:
        self.settings.clear_recent_workspaces()
        self.start_page.refresh()

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
        for job in (self._load_job, self._clip_job):
            if job is not None:
                job.cancel()
        self._load_job = self._clip_job = None
        self._pending_clip = str(Path(clip).expanduser().resolve()) if clip else None
        self._current_clip = None
        self.state.set_workspace(workspace)
        self.settings.add_recent_workspace(path)
        self.start_page.refresh()
        self.setWindowTitle(f"{workspace.root.resolve().name} — audiosae studio")
        self.models_label.setText(f"{workspace.backend_name} · loading…")
        self.show_explorer()
        self._start_model_load(workspace, sae_name)
        return True

    def _start_model_load(self, workspace: Workspace, sae_name: str | None) -> None:
        device = self.effective_device()

        def connect(job: JobHandle) -> None:
            self._load_job = job
            job.finished.connect(lambda models, j=job: self._models_loaded(j, models))
            job.failed.connect(lambda message, tb, j=job: self._models_failed(j, message, tb))
            job.cancelled.connect(lambda: self.show_status("loading the workspace was cancelled"))

        submit_connected(self.runner, f"loading {workspace.root.name}", load_models_job, workspace, sae_name,
                         device, self.settings.crepe_model, connect=connect)

    def _models_loaded(self, job: JobHandle, models: LoadedModels) -> None:
        if self._closed or job is not self._load_job:
            return  # superseded by another open, or the window is closing
        self._load_job = None
        self._settle_heap_after_clip = True   # most long-lived objects exist once a clip is shown
        self.state.set_models(models)
        codec = "" if models.backend is not None else " (codec unavailable)"
        self.models_label.setText(f"{models.workspace.backend_name}{codec} · SAE {models.sae.cfg.name} · "
                                  f"{models.device}")
        message = (f"loaded SAE {models.sae.cfg.name} ({models.workspace.backend_name} backend{codec}, "
                   f"{models.device}) from {models.workspace.root}")
        log.info(message)
        for part in models.missing:   # no dialog: the clip's banner says what is missing and the fix
            log.warning("%s", part.line())
        self.show_status(message)
        clip, self._pending_clip = self._pending_clip, None
        self.analyse(clip)

    def _models_failed(self, job: JobHandle, message: str, tb: str) -> None:
        if job is self._load_job:
            self._load_job = None
            self.models_label.setText("no models")
        self.report_error(message, tb, context="Loading the workspace failed")
        self.models_failed.emit(one_line(message))

    def reload_models(self) -> None:
        """Load the open workspace's SAE again (new device / CREPE model), keeping the clip."""
        if self.state.workspace is None:
            return
        sae = self.state.models.sae.cfg.name if self.state.models is not None else None
        self._pending_clip = self._current_clip
        self._start_model_load(self.state.workspace, sae)

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
            if self._load_job is not None:
                self._pending_clip = path
                self.show_status(f"{printable(Path(path).name)} opens once the workspace has loaded")
                return True
            self.report_error("the workspace's models failed to load; cannot analyse audio",
                              context="No models")
            return False
        self.analyse(path)
        return True

    def analyse(self, clip: str | Source | None = None) -> JobHandle | None:
        """Analyse ``clip`` (None: the workspace's default clip) in a job; the result goes to the state."""
        models = self.state.models
        if models is None:
            return None
        if self._clip_job is not None:
            self._clip_job.cancel()
        label = printable(Path(clip).name) if isinstance(clip, str) else (clip.source_id if clip is not None
                                                                           else "the first clip")

        def connect(job: JobHandle) -> None:
            self._clip_job = job
            job.finished.connect(lambda result, j=job: self._clip_analysed(j, result))
            job.failed.connect(lambda message, tb, j=job: self._clip_failed(j, message, tb))
            job.cancelled.connect(lambda: self.show_status("analysis cancelled"))

        return submit_connected(self.runner, f"analysing {label}", analyse_clip_job, models, clip, connect=connect)

    def _clip_analysed(self, job: JobHandle, result: tuple[ClipAnalysis, str, str | Source] | None) -> None:
        if self._closed or job is not self._clip_job:
            return
        self._clip_job = None
        if result is None:
            self.show_status("this workspace has no clip to show yet: open an audio file (File > Open audio…)")
            return
        analysis, name, clip = result
        self._current_clip = clip
        self.state.set_analysis(analysis, name)
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

    def _clip_failed(self, job: JobHandle, message: str, tb: str) -> None:
        if job is self._clip_job:
            self._clip_job = None
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
            from .wizard import TrainingWizard
        except ImportError as exc:
            log.warning("training wizard not available: %s", exc)
            self.report_error(f"the training wizard is not available in this build ({exc}); use the command "
                              f"line meanwhile: `audiosae build` then `audiosae train`", context="No wizard")
            return None
        wizard = construct_pane(TrainingWizard, self.state, self.runner, self.settings, self)
        wizard.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        wizard.workspace_ready.connect(lambda path, sae: self.open_workspace(path, sae_name=sae or None))
        self._wizard = wizard
        wizard.show()
        return wizard

    def show_preferences(self) -> QDialog:
        from .preferences import PreferencesDialog

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
        rows: list[tuple[str, str, str]] = []

        def walk(menu: QMenu, path: str) -> None:
            for action in menu.actions():
                if action.menu() is not None:
                    walk(action.menu(), f"{path} > {action.menu().title().replace('&', '')}")
                elif action.shortcuts():
                    keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts())
                    rows.append((path, action.text().replace("&", "").rstrip("…"), keys))

        for top in self.menuBar().actions():
            if top.menu() is not None:
                walk(top.menu(), top.menu().title().replace("&", ""))
        return rows

    def show_shortcuts(self) -> ShortcutsDialog:
        dialog = ShortcutsDialog(self.shortcut_rows(), self)
        self._keep(dialog)
        dialog.show()
        return dialog

    def show_about(self) -> QMessageBox:
        box = QMessageBox(self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setWindowTitle("About audiosae studio")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(f"<b>audiosae studio {__version__}</b><br>See and hear what the latent spaces of audio "
                    f"autoencoders encode: sparse autoencoders, linear probes and control vectors "
                    f"(after Paek et al. 2025).<br><br>Log file: {current_log_file()}")
        if not self.windowIcon().isNull():
            box.setIconPixmap(self.windowIcon().pixmap(self.fontMetrics().height() * 4))
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

    # ---- job progress in the status bar -----------------------------------------------------------
    def _on_job_started(self, job: JobHandle) -> None:
        self._job_started_at[id(job)] = time.monotonic()
        if not self._progress_timer.isActive() and not self._closed:
            self._progress_timer.start()

    def _on_job_done(self, job: JobHandle) -> None:
        self._job_started_at.pop(id(job), None)
        self._refresh_progress()

    def _refresh_progress(self) -> None:
        jobs = [j for j in self.runner.active if j.running]
        now = time.monotonic()
        # Jobs younger than PROGRESS_SHOW_AFTER_S are not shown: quick ones never flash the bar.
        shown = [j for j in jobs if now - self._job_started_at.get(id(j), 0.0) >= PROGRESS_SHOW_AFTER_S]
        if not shown or self._closed:
            self._shown_job = None
            for w in (self.job_label, self.progress_bar, self.cancel_button):
                w.setVisible(False)
            if not jobs or self._closed:
                self._progress_timer.stop()
            return
        job = shown[-1]
        self._shown_job = job
        event = job.last_progress
        fraction = event.fraction if event is not None else None
        if fraction is None:
            self.progress_bar.setRange(0, 0)        # busy indicator
        else:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(fraction * 1000))
        text = job.name if event is None or not event.message else f"{job.name}: {event.message}"
        self.job_label.setText(text if len(jobs) == 1 else f"{text} (+{len(jobs) - 1} more)")
        self.cancel_button.setEnabled(not job.cancel_token.cancelled)
        for w in (self.job_label, self.progress_bar, self.cancel_button):
            w.setVisible(True)

    def cancel_shown_job(self) -> None:
        job = self._shown_job
        if job is not None:
            job.cancel()
            self.cancel_button.setEnabled(False)
            self.show_status(f"cancelling {job.name}…")

    def _sync_feature_order(self, key: str) -> None:
        action = self.actions_by_name.get(f"order_{key}")
        if action is not None and not action.isChecked():
            action.setChecked(True)

    # ---- drag and drop --------------------------------------------------------------------------------
    @staticmethod
    def dropped_paths(mime: QMimeData) -> tuple[list[Path], list[Path]]:
        """(workspace folders, audio files) among the dropped local files."""
        workspaces, audio = [], []
        for url in mime.urls() if mime.hasUrls() else []:
            if not url.isLocalFile():
                continue
            path = Path(url.toLocalFile())
            if path.is_dir() and (path / WORKSPACE_FILE).is_file():
                workspaces.append(path)
            elif path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
                audio.append(path)
        return workspaces, audio

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
    def _restore_window(self) -> None:
        geometry = self.settings.window_geometry
        if geometry is None or not self.restoreGeometry(geometry):
            screen = self.screen().availableGeometry() if self.screen() is not None else None
            if screen is not None and screen.width() > 0:
                self.resize(int(screen.width() * 0.8), int(screen.height() * 0.85))
        state = self.settings.window_state
        if state is None or not self.restoreState(state):
            # First run: the inspector as wide as it asks, at least ~44 characters (font units,
            # HiDPI-safe), at most 40 % of the window.
            wanted = max(self.inspector.sizeHint().width(), self.fontMetrics().horizontalAdvance("M") * 44)
            self.resizeDocks([self.inspector_dock], [min(wanted, int(self.width() * 0.4))],
                             Qt.Orientation.Horizontal)
        self._dock_visible = {d.objectName(): not d.isHidden() for d in self.docks}

    def save_window_settings(self) -> None:
        on_start = self.on_start_page
        if on_start:
            # Save the explorer's dock layout, not the start page's hidden docks.
            self.setUpdatesEnabled(False)
            for dock in self.docks:
                dock.setVisible(self._dock_visible.get(dock.objectName(), True))
        self.settings.window_geometry = self.saveGeometry()
        self.settings.window_state = self.saveState()
        self.settings.sync()
        if on_start:
            for dock in self.docks:
                dock.hide()
            self.setUpdatesEnabled(True)

    def shutdown(self) -> None:
        """Cancel jobs, stop the panes' audio and timers, close the dialogs (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._progress_timer.stop()
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


def submit_connected(runner: JobRunner, name: str, fn: Callable[..., Any], *args: Any,
                     connect: Callable[[JobHandle], None], **kwargs: Any) -> JobHandle:
    """``runner.submit`` whose job waits until ``connect(handle)`` has connected its slots.

    ``JobRunner.submit`` starts the thread at once, and a queued signal emitted before a slot
    is connected is lost: a job failing in its first milliseconds (a missing file) could finish
    unseen.  The gate makes the connect-then-run order certain.
    """
    gate = threading.Event()

    def gated(*a: Any, progress: ProgressSink, cancel: CancelToken, **kw: Any) -> Any:
        gate.wait()
        cancel.raise_if_cancelled()
        return fn(*a, progress=progress, cancel=cancel, **kw)

    handle = runner.submit(name, gated, *args, **kwargs)
    try:
        connect(handle)
    finally:
        gate.set()
    return handle


def _alive(obj: QObject | None) -> bool:
    import shiboken6

    return obj is not None and shiboken6.isValid(obj)
