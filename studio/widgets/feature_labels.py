"""The top of the feature inspector: what the feature is (its automatic labels), the boost check,
and a search box that finds features by label ("C#4", "onset", "brass", "minor").

Draws what ``studio.models.feature_labels.FeatureLabelsModel`` holds; "Label features" and
"Measure boost check" start its jobs (progress and cancel here).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QHBoxLayout, QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton, QVBoxLayout,
                               QWidget)

from audiosae.jobs import Progress

from ..models.feature_labels import FeatureLabelsModel
from ..state import ExplorerState
from ..workers import JobRunner
from .inspector_parts import item, section, table

__all__ = ["FeatureLabelsPanel"]


class FeatureLabelsPanel(QWidget):
    """Labels of the selected feature, the boost check and the label search (module docstring)."""

    def __init__(self, state: ExplorerState, runner: JobRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = FeatureLabelsModel(state, runner, parent=self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)

        layout.addWidget(section("What this feature is"))
        self.headline = QLabel()
        font = QFont(self.headline.font())
        font.setBold(True)
        self.headline.setFont(font)
        self.headline.setWordWrap(True)
        self.headline.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.headline)
        self.label_table = table(["attribute", "class", "AUROC", "mass"])
        self.label_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.label_table.setToolTip("AUROC: how well the feature's activation tells this class from the rest "
                                    "(0.5 = not at all); mass: share of its activation on this class's frames")
        layout.addWidget(self.label_table)
        self.loop_label = QLabel()
        self.loop_label.setWordWrap(True)
        layout.addWidget(self.loop_label)

        row = QHBoxLayout()
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.model.cancel)
        self.compute_button = QPushButton("Label features")
        self.compute_button.setToolTip("score every feature against every class of every attribute over the "
                                       "corpus (audiosae describe); cached beside the SAE")
        self.compute_button.clicked.connect(self.model.compute)
        self.loop_button = QPushButton("Measure boost check")
        self.loop_button.setToolTip("boost the top-labelled features of each attribute on corpus clips and "
                                    "measure whether their labelled class grows (the steering evaluation's "
                                    "measuring); cached beside the SAE")
        self.loop_button.clicked.connect(self.model.check_loop)
        row.addWidget(self.progress_bar, 1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.compute_button)
        row.addWidget(self.loop_button)
        layout.addLayout(row)

        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("find features by label: C#4, onset, brass, minor …")
        self.search_box.setClearButtonEnabled(True)
        self.search_box.returnPressed.connect(lambda: self.model.search(self.search_box.text()))
        self.search_box.textChanged.connect(self._on_text)
        layout.addWidget(self.search_box)
        self.hit_table = table(["feature", "label", "AUROC", "density"])
        self.hit_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.hit_table.setMaximumHeight(160)
        self.hit_table.cellClicked.connect(lambda r, _c: self.model.open_hit(r))
        self.hit_table.cellActivated.connect(lambda r, _c: self.model.open_hit(r))
        layout.addWidget(self.hit_table)
        self.search_status = QLabel()
        self.search_status.setWordWrap(True)
        layout.addWidget(self.search_status)

        m = self.model
        m.changed.connect(self.refresh)
        m.state_changed.connect(self._refresh_controls)
        m.progress.connect(self._on_progress)
        m.hits_changed.connect(self._refresh_hits)
        self.refresh()
        self._refresh_hits()

    # ---- drawing ----------------------------------------------------------------------------------
    def refresh(self) -> None:
        m = self.model
        self.headline.setText(m.headline())
        labels = m.labels()
        self.label_table.setRowCount(len(labels))
        for r, lab in enumerate(labels):
            self.label_table.setItem(r, 0, item(lab["attribute"]))
            self.label_table.setItem(r, 1, item(lab["class"]))
            self.label_table.setItem(r, 2, item(f"{lab['score']:.3f}", True))
            self.label_table.setItem(r, 3, item(f"{100 * lab['mass_fraction']:.0f} %", True))
        self.label_table.setVisible(bool(labels))
        self.label_table.setFixedHeight(self.label_table.horizontalHeader().height() + 4
                                        + self.label_table.verticalHeader().defaultSectionSize() * max(1, len(labels)))
        self.loop_label.setText(m.loop_summary() if m.description is not None else "")
        self._refresh_controls()

    def _refresh_controls(self) -> None:
        m = self.model
        loaded = m.state.models is not None
        self.progress_bar.setVisible(m.running)
        self.cancel_button.setVisible(m.running)
        self.compute_button.setVisible(loaded and m.description is None and not m.running)
        self.loop_button.setVisible(loaded and m.description is not None and m.loop is None and not m.running)
        self.search_box.setEnabled(loaded)
        if m.failed and not m.running:
            self.headline.setText(f"labelling {m.failed}" if m.failed == "cancelled" else f"labelling failed: {m.failed}")

    def _on_progress(self, ev: Progress) -> None:
        self.progress_bar.setVisible(True)
        total = int(ev.total or 0)
        self.progress_bar.setRange(0, total)            # 0..0: busy (no total known)
        self.progress_bar.setValue(min(int(ev.done), total))
        self.progress_bar.setFormat(f"{ev.stage}: {ev.message}" if ev.message else ev.stage)

    def _on_text(self, text: str) -> None:
        if not text.strip():
            self.model.search("")

    def _refresh_hits(self) -> None:
        hits = self.model.hits
        self.hit_table.setRowCount(len(hits))
        for r, h in enumerate(hits):
            self.hit_table.setItem(r, 0, item(str(h["feature"]), True, h["feature"]))
            self.hit_table.setItem(r, 1, item(f"{h['attribute']} {h['class']}"))
            self.hit_table.setItem(r, 2, item(f"{h['score']:.3f}", True))
            self.hit_table.setItem(r, 3, item(f"{h['density']:.3f}", True))
        self.hit_table.setVisible(bool(hits))
        self.search_status.setText(self.model.search_message)
