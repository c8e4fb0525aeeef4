"""The main window's state between runs (geometry, dock layout) and what a drop on it opens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData, Qt

from audiosae.audio import AUDIO_EXTENSIONS
from audiosae.workspace import WORKSPACE_FILE


def restore_window(window: Any) -> None:
    """Geometry and dock layout from the settings; on the first run, a sized inspector."""
    geometry = window.settings.window_geometry
    if geometry is None or not window.restoreGeometry(geometry):
        screen = window.screen().availableGeometry() if window.screen() is not None else None
        if screen is not None and screen.width() > 0:
            window.resize(int(screen.width() * 0.8), int(screen.height() * 0.85))
    state = window.settings.window_state
    if state is None or not window.restoreState(state):
        # First run: the inspector as wide as it asks, at least ~44 characters (font units,
        # HiDPI-safe), at most 40 % of the window.
        wanted = max(window.inspector.sizeHint().width(), window.fontMetrics().horizontalAdvance("M") * 44)
        window.resizeDocks([window.inspector_dock], [min(wanted, int(window.width() * 0.4))],
                           Qt.Orientation.Horizontal)
    window._dock_visible = {d.objectName(): not d.isHidden() for d in window.docks}


def save_window_settings(window: Any) -> None:
    """Geometry and the explorer's dock layout (not the start page's hidden docks) to the settings."""
    on_start = window.on_start_page
    if on_start:
        # Save the explorer's dock layout, not the start page's hidden docks.
        window.setUpdatesEnabled(False)
        for dock in window.docks:
            dock.setVisible(window._dock_visible.get(dock.objectName(), True))
    window.settings.window_geometry = window.saveGeometry()
    window.settings.window_state = window.saveState()
    window.settings.sync()
    if on_start:
        for dock in window.docks:
            dock.hide()
        window.setUpdatesEnabled(True)


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
