"""The page shown when no workspace is open: open, new (wizard), recent, demo.

It only emits requests; the main window acts on them.  Recent workspaces that no longer
exist stay listed, greyed and marked "missing", until the user removes them.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout,
                               QWidget)

from audiosae.workspace import WORKSPACE_FILE

PATH_ROLE = Qt.ItemDataRole.UserRole
MISSING_ROLE = Qt.ItemDataRole.UserRole + 1


def workspace_exists(path: str | Path) -> bool:
    return (Path(path) / WORKSPACE_FILE).is_file()


class StartPage(QWidget):
    open_requested = Signal()
    new_requested = Signal()
    demo_requested = Signal()
    recent_requested = Signal(str)

    def __init__(self, state, runner, settings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("start_page")
        self.settings = settings

        title = QLabel("audiosae studio")
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 2.0)  # relative to the system font: scales with DPI
        font.setBold(True)
        title.setFont(font)
        subtitle = QLabel("See and hear what audio latent spaces encode: sparse autoencoder features, "
                          "probes and control vectors.", wordWrap=True)

        self.open_button = QPushButton("Open workspace…", objectName="start_open")
        self.new_button = QPushButton("New workspace…", objectName="start_new")
        self.demo_button = QPushButton("Open the demo", objectName="start_demo")
        self.open_button.setToolTip("Open a folder made by `audiosae build` / `audiosae train` or the wizard")
        self.new_button.setToolTip("Build a corpus and train SAEs and probes step by step")
        self.demo_button.setToolTip("A small bundled workspace: synthetic tones, mel latents, trained SAEs")
        self.open_button.clicked.connect(self.open_requested)
        self.new_button.clicked.connect(self.new_requested)
        self.demo_button.clicked.connect(self.demo_requested)

        self.recent_list = QListWidget(objectName="start_recent")
        self.recent_list.itemActivated.connect(self._activate)
        self.recent_list.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.open_recent_button = QPushButton("Open", objectName="start_recent_open")
        self.remove_recent_button = QPushButton("Remove from list", objectName="start_recent_remove")
        self.open_recent_button.clicked.connect(lambda: self._activate(self.recent_list.currentItem()))
        self.remove_recent_button.clicked.connect(self.remove_selected)

        actions = QVBoxLayout()
        for button in (self.open_button, self.new_button, self.demo_button):
            actions.addWidget(button)
        tip = QLabel("Tip: drop a workspace folder or audio files onto the window to open them.",
                     wordWrap=True)
        tip.setEnabled(False)
        actions.addSpacing(self.fontMetrics().height())
        actions.addWidget(tip)
        actions.addStretch(1)
        recent_buttons = QHBoxLayout()
        recent_buttons.addStretch(1)
        recent_buttons.addWidget(self.remove_recent_button)
        recent_buttons.addWidget(self.open_recent_button)
        recent = QVBoxLayout()
        recent.addWidget(QLabel("Recent workspaces"))
        recent.addWidget(self.recent_list, 1)
        recent.addLayout(recent_buttons)
        columns = QHBoxLayout()
        columns.addLayout(actions)
        columns.addSpacing(self.fontMetrics().horizontalAdvance("M") * 2)
        columns.addLayout(recent, 1)

        inner = QVBoxLayout()
        inner.addWidget(title)
        inner.addWidget(subtitle)
        inner.addSpacing(self.fontMetrics().height())
        inner.addLayout(columns, 1)
        panel = QWidget()
        panel.setLayout(inner)
        # Keep the content a readable width on big screens (in text units, not pixels).
        panel.setMaximumWidth(self.fontMetrics().horizontalAdvance("M") * 70)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        outer.addWidget(panel, 4)
        outer.addStretch(1)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the recent list from the settings and mark missing workspaces."""
        self.recent_list.clear()
        for path in self.settings.recent_workspaces:
            missing = not workspace_exists(path)
            name = Path(path).name or path
            # Two lines: the name, then where it is (two workspaces are often both called "ws").
            item = QListWidgetItem(f"{name} — missing\n{path}" if missing else f"{name}\n{path}")
            item.setData(PATH_ROLE, path)
            item.setData(MISSING_ROLE, missing)
            item.setToolTip(f"{path}\n(no workspace there any more; remove it from the list)" if missing else path)
            if missing:
                item.setForeground(self.palette().placeholderText())
                font = item.font()
                font.setItalic(True)
                item.setFont(font)
            self.recent_list.addItem(item)
        if self.recent_list.count():
            self.recent_list.setCurrentRow(0)
        self._update_buttons()

    def _update_buttons(self) -> None:
        item = self.recent_list.currentItem()
        self.remove_recent_button.setEnabled(item is not None)
        self.open_recent_button.setEnabled(item is not None and not item.data(MISSING_ROLE))

    def _activate(self, item: QListWidgetItem | None) -> None:
        if item is None:
            return
        if item.data(MISSING_ROLE):
            self.recent_list.setCurrentItem(item)
            return
        self.recent_requested.emit(item.data(PATH_ROLE))

    def remove_selected(self) -> None:
        item = self.recent_list.currentItem()
        if item is not None:
            self.settings.remove_recent_workspace(item.data(PATH_ROLE))
            self.refresh()
