"""The main window's actions and menus (built once, on the window: ``build_actions``, ``build_menus``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar

from .logging_setup import current_log_file, open_log_folder
from .widgets.start_page import workspace_exists
from .state import FEATURE_ORDERS

ZOOM_STEP = 1.5                  # TimelineView.zoom(factor): factor > 1 zooms in


def add_action(window: Any, name: str, text: str, slot: Callable[..., Any], keys: tuple[str, ...] = (),
               tip: str = "", *, checkable: bool = False, in_panes: bool = False) -> QAction:
    """A window action named ``action_<name>`` (kept in ``window.actions_by_name``)."""
    action = QAction(text, window)
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
        for dock in window.docks:
            dock.addAction(action)
    window.actions_by_name[name] = action
    return action


def fill_recent_menu(window: Any) -> None:
    """File > Open recent: the recent workspaces (a missing one is removed when clicked), Clear."""
    menu = window.recent_menu
    menu.clear()
    recent = window.settings.recent_workspaces

    def forget(path: str) -> None:
        window.settings.remove_recent_workspace(path)
        window.start_page.refresh()
        window.show_status(f"removed {path} from the recent workspaces (it no longer exists)")

    def clear_all() -> None:
        window.settings.clear_recent_workspaces()
        window.start_page.refresh()

    for path in recent:
        missing = not workspace_exists(path)
        text = f"{Path(path).name} — missing (click to remove)" if missing else Path(path).name
        action = menu.addAction(text)
        action.setToolTip(path)
        action.setStatusTip(path)
        action.setData(path)
        if missing:
            action.triggered.connect(lambda checked=False, p=path: forget(p))
        else:
            action.triggered.connect(lambda checked=False, p=path: window.open_workspace(p))
    if recent:
        menu.addSeparator()
    clear = menu.addAction("Clear the list")
    clear.setEnabled(bool(recent))
    clear.triggered.connect(clear_all)


def build_actions(window: Any) -> None:
    """The window's actions (``window.actions_by_name``), the feature-order group included."""
    def a(*args: Any, **kwargs: Any) -> QAction:
        return add_action(window, *args, **kwargs)

    a("open_workspace", "&Open workspace…", window.choose_workspace, ("Ctrl+O",),
      "Open a workspace folder (made by the wizard or `audiosae build`/`train`)")
    a("open_audio", "Open &audio…", window.choose_audio, ("Ctrl+Shift+O",),
      "Analyse an audio file with the open workspace's SAE")
    a("open_demo", "Open the &demo workspace", window.open_demo, (), "The small bundled tones/mel workspace")
    a("new_workspace", "&New workspace (wizard)…", window.new_workspace, ("Ctrl+N",),
      "Build a corpus and train SAEs and probes")
    a("export_steered", "&Export steered audio…", lambda: window._call_pane("audition", "export_steered"),
      ("Ctrl+E",), "Render the steered clip to a WAV/FLAC file", in_panes=True)
    quit_action = a("quit", "&Quit", window.close, ("Ctrl+Q",))
    quit_action.setMenuRole(QAction.MenuRole.QuitRole)
    a("zoom_in", "Zoom &in", lambda: window._call_pane("timeline", "zoom", ZOOM_STEP), ("+", "="),
      in_panes=True)
    a("zoom_out", "Zoom &out", lambda: window._call_pane("timeline", "zoom", 1.0 / ZOOM_STEP), ("-",),
      in_panes=True)
    a("fit", "&Fit the clip", lambda: window._call_pane("timeline", "fit"), ("F",), in_panes=True)
    a("play_pause", "&Play / pause", lambda: window._call_pane("audition", "toggle_play"), ("Space",),
      in_panes=True)
    a("loop", "&Loop", lambda: window._call_pane("audition", "toggle_loop"), ("L",),
      "Loop the selection (or the whole clip)", in_panes=True)
    prefs = a("preferences", "&Preferences…", window.show_preferences, ("Ctrl+,",))
    prefs.setMenuRole(QAction.MenuRole.PreferencesRole)
    a("shortcuts", "&Keyboard shortcuts", window.show_shortcuts, ("F1",))
    a("open_log_folder", "Open &log folder", open_log_folder, (), str(current_log_file().parent))
    about = a("about", "&About audiosae studio", window.show_about)
    a("open_trace", "Open &trace…", lambda: window._generation_file("choose_and_open"), (),
      "Open a DiffRhythm generation trace folder (made by the Generation view or `audiosae trace`)")
    a("save_trace", "Sa&ve trace…", lambda: window._generation_file("choose_and_save"), (),
      "Save the Generation view's trace to a folder")
    about.setMenuRole(QAction.MenuRole.AboutRole)

    window.feature_order_group = QActionGroup(window)
    window.feature_order_group.setExclusive(True)
    for key, text in FEATURE_ORDERS.items():
        action = QAction(f"By {text}", window.feature_order_group, checkable=True)
        action.setObjectName(f"action_order_{key}")
        action.setData(key)
        action.setChecked(key == window.state.feature_order)
        action.triggered.connect(lambda checked=False, k=key: window.state.set_feature_order(k))
        window.actions_by_name[f"order_{key}"] = action

def build_menus(window: Any) -> None:
    """File, View, Playback, Tools and Help; sets ``recent_menu`` and ``_explorer_actions``."""
    menus = window.menuBar()
    acts = window.actions_by_name
    file_menu = menus.addMenu("&File")
    file_menu.addAction(acts["open_workspace"])
    file_menu.addAction(acts["open_audio"])
    window.recent_menu = file_menu.addMenu("Open &recent")
    window.recent_menu.setObjectName("recent_menu")
    window.recent_menu.aboutToShow.connect(lambda: fill_recent_menu(window))
    fill_recent_menu(window)
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
    order_menu.addActions(window.feature_order_group.actions())
    view_menu.addSeparator()
    for dock in window.docks:
        toggle = dock.toggleViewAction()
        toggle.setObjectName(f"action_show_{dock.objectName()}")
        view_menu.addAction(toggle)
    generation_toggle = window.generation_dock.toggleViewAction()
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
    window._explorer_actions = [acts[n] for n in ("open_audio", "export_steered", "zoom_in", "zoom_out", "fit",
                                                "play_pause", "loop")]


def shortcut_rows(menubar: QMenuBar) -> list[tuple[str, str, str]]:
    """(menu, action, keys) for every menu action with a shortcut, in menu order."""
    rows: list[tuple[str, str, str]] = []

    def walk(menu: QMenu, path: str) -> None:
        for action in menu.actions():
            if action.menu() is not None:
                walk(action.menu(), f"{path} > {action.menu().title().replace('&', '')}")
            elif action.shortcuts():
                keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts())
                rows.append((path, action.text().replace("&", "").rstrip("…"), keys))

    for top in menubar.actions():
        if top.menu() is not None:
            walk(top.menu(), top.menu().title().replace("&", ""))
    return rows
