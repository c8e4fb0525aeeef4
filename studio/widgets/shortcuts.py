"""Help > Keyboard shortcuts (a table generated from the actions registered in the menus) and Help > About."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QHeaderView, QLabel, QMessageBox, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from audiosae import __version__

from ..logging_setup import current_log_file


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


def about_box(parent: QWidget) -> QMessageBox:
    """Help > About: the version, what the studio is for, the log file (not shown yet)."""
    box = QMessageBox(parent)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowTitle("About audiosae studio")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(f"<b>audiosae studio {__version__}</b><br>See and hear what the latent spaces of audio "
                f"autoencoders encode: sparse autoencoders, linear probes and control vectors "
                f"(after Paek et al. 2025).<br><br>Log file: {current_log_file()}")
    if not parent.windowIcon().isNull():
        box.setIconPixmap(parent.windowIcon().pixmap(parent.fontMetrics().height() * 4))
    return box
