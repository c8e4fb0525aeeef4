"""Step 6 of the wizard: the paper-style table of the trained grid; pick the SAE to explore."""

from __future__ import annotations

import html
import math
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
                               QWizard, QWizardPage)

from audiosae.workflows.train_plan import format_duration

from ...workers import JobRunner
from .common import NOTE_STYLE, label


RESULT_COLUMNS = (
    ("SAE", "sae", None, "Name: width \u00d7 and \u03bb"),
    ("Width", "d_sae", "d", "Number of features (d_sae)"),
    ("\u03bb", "l1", "g", "L1 coefficient"),
    ("Sparsity", "sparsity", ".3f", "Fraction of zero entries of h on validation frames"),
    ("L0", "l0", ".1f", "Active features per frame on validation frames"),
    ("Dead", "dead_features", "d", "Features never active on validation frames"),
    ("FVU", "fvu", ".3f", "Fraction of variance unexplained on validation frames"),
    ("Pitch acc.", "pitch_accuracy", ".3f", "Probe accuracy, 66 pitch classes (validation frames)"),
    ("Loudness acc.", "loudness_accuracy", ".3f", "Probe accuracy, 20 loudness bins (validation frames)"),
    ("Timbre acc.", "timbre_accuracy", ".3f", "Probe accuracy, 20 timbre bins (validation frames)"),
)


def _fmt(value: Any, spec: str | None) -> str:
    if value is None:
        return "\u2013"
    if spec is None:
        return str(value)
    try:
        if isinstance(value, float) and not math.isfinite(value):
            return "\u2013"
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


class ResultsPage(QWizardPage):
    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.setTitle("6 \u00b7 Results")
        self.setSubTitle("The paper-style table on validation frames.  Pick the SAE to explore and finish.")
        self.report: dict[str, Any] | None = None
        self.corpus_label = label("")
        self.table = QTableWidget(0, len(RESULT_COLUMNS))
        self.table.setHorizontalHeaderLabels([c[0] for c in RESULT_COLUMNS])
        for i, (_, _, _, tip) in enumerate(RESULT_COLUMNS):
            self.table.horizontalHeaderItem(i).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(64)
        for c in range(1, len(RESULT_COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.footnote = label("Sparsity = fraction of zero h; L0 = active features per frame; dead = never active "
                               "on validation frames; FVU = fraction of variance unexplained.  The raw-latent row "
                               "is the baseline probe on x itself; chance = always guessing the most common "
                               "class.  Bold = best SAE per accuracy column.", NOTE_STYLE)
        self.selection_label = label("")
        layout = QVBoxLayout(self)
        layout.addWidget(self.corpus_label)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.footnote)
        layout.addWidget(self.selection_label)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.setButtonText(QWizard.WizardButton.FinishButton, "Open in explorer")
        self.setFinalPage(True)

    # ---- public API ------------------------------------------------------------------------------
    def sae_rows(self) -> list[dict[str, Any]]:
        return list((self.report or {}).get("saes", []))

    def selected_sae(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)

    def select_sae(self, name: str) -> None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == name:
                self.table.selectRow(r)
                return
        raise ValueError(f"no SAE named {name!r} in the results")

    def show_report(self, report: dict[str, Any]) -> None:
        self.report = report
        corpus = report.get("corpus", {})
        skipped = corpus.get("skipped") or []
        warned = corpus.get("warnings") or []
        self.corpus_label.setToolTip(html.escape("\n".join([*(f"skipped {s}" for s in skipped),
                                                             *(f"warning: {w}" for w in warned)])))
        self.corpus_label.setText(
            f"Workspace <b>{report.get('workspace')}</b> \u00b7 backend <b>{report.get('backend')}</b> \u00b7 "
            f"{corpus.get('frames', '?'):,} frames ({corpus.get('train_frames', '?'):,} train / "
            f"{corpus.get('val_frames', '?'):,} validation) \u00b7 "
            f"{format_duration(float(corpus.get('seconds_of_audio') or 0))} of audio"
            + (f" \u00b7 {len(skipped)} file(s) skipped" if skipped else "")
            + (f" \u00b7 {len(warned)} file(s) with warnings" if warned else "")
            if isinstance(corpus.get("frames"), int) else
            f"Workspace <b>{report.get('workspace')}</b> \u00b7 backend <b>{report.get('backend')}</b>")
        rows = self.sae_rows()
        base = report.get("baseline", {})
        self.table.setRowCount(len(rows) + 2)
        best = {}
        for key in ("pitch_accuracy", "loudness_accuracy", "timbre_accuracy"):
            values = [r.get(key) for r in rows if r.get(key) is not None]
            best[key] = max(values) if values else None
        for r, row in enumerate(rows):
            for c, (_, key, spec, _) in enumerate(RESULT_COLUMNS):
                item = QTableWidgetItem(_fmt(row.get(key), spec))
                if c == 0:
                    item.setData(Qt.ItemDataRole.UserRole, row.get("sae"))
                else:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if key in best and best[key] is not None and row.get(key) == best[key] and len(rows) > 1:
                    f = item.font()
                    f.setBold(True)
                    item.setFont(f)
                self.table.setItem(r, c, item)
        extra_rows = (("raw latent (x)", {k: base.get(k) for k in best}),
                      ("chance (majority)", {k: base.get(k.replace("accuracy", "chance")) for k in best}))
        for i, (row_label, values) in enumerate(extra_rows):
            r = len(rows) + i
            for c, (_, key, spec, _) in enumerate(RESULT_COLUMNS):
                text = row_label if c == 0 else (_fmt(values.get(key), spec) if key in values else "")
                item = QTableWidgetItem(text)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled)  # not selectable: only SAEs can be explored
                item.setForeground(QBrush(QColor("#5f6368")))
                f = item.font()
                f.setItalic(True)
                item.setFont(f)
                if c > 0:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        scored = [r for r in rows if r.get("pitch_accuracy") is not None]
        if scored:
            self.select_sae(max(scored, key=lambda r: r["pitch_accuracy"])["sae"])
        elif rows:
            self.select_sae(rows[0]["sae"])
        self._on_selection()

    # ---- wizard hooks ----------------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        report = self.wizard().run_page.report
        if report is not None:
            self.show_report(report)

    def isComplete(self) -> bool:  # noqa: N802
        return self.selected_sae() is not None

    def _on_selection(self) -> None:
        name = self.selected_sae()
        self.selection_label.setText(f"Selected: <b>{name}</b>; Finish opens it in the explorer." if name
                                     else "Select an SAE row to explore.")
        self.completeChanged.emit()
