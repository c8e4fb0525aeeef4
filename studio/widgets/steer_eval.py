"""The steering evaluation view (a dialog; no torch): shows ``studio.models.steer_eval.
EvaluationModel`` — which methods and alphas, Run / Cancel with progress, the matrix (rows:
methods, columns: alpha; each cell coloured by the target hit rate and carrying the
non-target shifts), click a cell to hear it, Save JSON + PNG."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QFileDialog, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QListWidget, QListWidgetItem, QProgressBar, QPushButton, QSizePolicy,
                               QTableWidget, QTableWidgetItem, QVBoxLayout)

from audiosae.errors import AudioSAEError

# Hit rate 0 -> 1 along a dark-blue -> teal -> yellow ramp (viridis' ends and middle), so the
# numbers stay readable: dark text on light cells, light text on dark ones.
_RAMP = ((0.0, (68, 1, 84)), (0.5, (33, 145, 140)), (1.0, (253, 231, 37)))


def hit_colour(value: float) -> QColor:
    """The cell colour of a hit rate (grey when not measured)."""
    if not math.isfinite(value):
        return QColor(200, 200, 200)
    v = min(max(value, 0.0), 1.0)
    for (x0, c0), (x1, c1) in zip(_RAMP, _RAMP[1:]):
        if v <= x1:
            t = (v - x0) / (x1 - x0)
            return QColor(*(int(round(a + t * (b - a))) for a, b in zip(c0, c1)))
    return QColor(*_RAMP[-1][1])


class SteeringEvaluationDialog(QDialog):
    """Methods x alphas for the current clip, SAE and target; click a cell to hear it."""

    def __init__(self, model: Any, parent: Any = None):
        super().__init__(parent)
        self.model = model
        self.setWindowTitle("Steering evaluation")
        self.setWindowFlag(Qt.WindowType.Tool, True)
        self.resize(760, 440)

        self.target_label = QLabel()
        self.methods_list = QListWidget()
        self.methods_list.setFlow(QListWidget.Flow.LeftToRight)
        self.methods_list.setWrapping(True)
        self.methods_list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.methods_list.setSpacing(2)
        self.methods_list.setMaximumHeight(56)
        self.methods_list.setToolTip("The methods to compare (the paper's row is always included)")
        for method in model.all_methods:
            item = QListWidgetItem(method)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if method in model.methods else Qt.CheckState.Unchecked)
            self.methods_list.addItem(item)
        self.alphas_edit = QLineEdit(", ".join(f"{a:g}" for a in model.alphas))
        self.alphas_edit.setToolTip("Alpha values, comma separated (the paper's: 1, 10, 20, 30)")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.save_button = QPushButton("Save JSON + PNG…")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setMaximumHeight(10)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setWordWrap(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.legend = QLabel("Cells: target hit rate (colour; dark 0 → yellow 1) and the non-target shifts vs the "
                             "unsteered reconstruction (ΔL loudness dB, Δc centroid %, Δp pitch semitones). "
                             "Click a cell to hear it.")
        self.legend.setWordWrap(True)

        top = QHBoxLayout()
        top.addWidget(self.target_label, 1)
        top.addWidget(QLabel("α:"))
        top.addWidget(self.alphas_edit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress_bar, 1)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.methods_list)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.legend)

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(model.cancel)
        self.save_button.clicked.connect(lambda: self.save())
        self.table.cellClicked.connect(self._on_cell_clicked)
        model.changed.connect(self.refresh)
        model.progress.connect(self._on_progress)
        self.refresh()

    # ---- actions -------------------------------------------------------------------------
    def checked_methods(self) -> list[str]:
        return [self.methods_list.item(i).text() for i in range(self.methods_list.count())
                if self.methods_list.item(i).checkState() == Qt.CheckState.Checked]

    def run(self) -> bool:
        """Hand the chosen methods and alphas to the model and start the evaluation."""
        try:
            self.model.set_methods(self.checked_methods())
            self.model.set_alphas(self.alphas_edit.text())
        except AudioSAEError as exc:
            self.status_label.setText(str(exc))
            return False
        self.progress_bar.setValue(0)
        return self.model.run()

    def save(self, folder: str | None = None) -> dict[str, Any] | None:
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Save the steering evaluation")
            if not folder:
                return None
        try:
            return self.model.save(folder)
        except (AudioSAEError, OSError) as exc:
            self.status_label.setText(f"save failed: {exc}")
            return None

    def _on_cell_clicked(self, row: int, column: int) -> None:
        cells = self.model.cells()
        if 0 <= row < len(cells) and 0 <= column < len(cells[row]):
            cell = cells[row][column]
            self.model.audition(cell.method, cell.alpha)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(int(round(1000 * fraction)))
        self.status_label.setText(message)

    # ---- view ----------------------------------------------------------------------------
    def refresh(self) -> None:
        model = self.model
        target = f"{model.attribute} → {model.target}" if model.attribute else "no target"
        self.target_label.setText(f"<b>{target}</b> on the current clip and SAE")
        running = model.running
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.save_button.setEnabled(model.evaluation is not None and not running)
        if not running and model.evaluation is not None:
            self.progress_bar.setValue(1000)
        self.status_label.setText(model.message or model.ready or "ready")
        cells = model.cells()
        ev = model.evaluation
        if ev is None:
            self.table.clear()
            self.table.setRowCount(0)
            self.table.setColumnCount(0)
            return
        self.table.setRowCount(len(ev.methods))
        self.table.setColumnCount(len(ev.alphas))
        self.table.setHorizontalHeaderLabels([f"α {a:g}" for a in ev.alphas])
        self.table.setVerticalHeaderLabels(list(ev.methods))
        for i, row in enumerate(cells):
            for j, cell in enumerate(row):
                item = QTableWidgetItem(cell.text())
                colour = hit_colour(cell.hit_rate)
                item.setBackground(colour)
                luminance = 0.299 * colour.red() + 0.587 * colour.green() + 0.114 * colour.blue()
                item.setForeground(QColor(20, 20, 20) if luminance > 120 else QColor(245, 245, 245))
                item.setToolTip(cell.tooltip())
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(i, j, item)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt naming)
        self.model.stop()
        super().closeEvent(event)


__all__ = ["SteeringEvaluationDialog", "hit_colour"]
