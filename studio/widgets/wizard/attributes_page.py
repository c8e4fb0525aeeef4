"""Step 3 of the wizard: the CREPE model and how a sample of the audio falls into the attribute bins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget, QWizardPage

from audiosae import defaults as D
from audiosae.attributes import ATTRIBUTES, CREPE_MODELS, DEFAULT_CREPE_MODEL, AttributeSpec
from audiosae.codecs import backend_spec
from audiosae.jobs import Progress
from audiosae.workflows.audio_plan import PREVIEW_SECONDS, AttributePreview, WorkspaceStatus
from audiosae.workflows.train_plan import format_duration

from ...models.wizard import PreviewModel, PreviewRequest
from ...workers import JobRunner
from .common import ERROR_STYLE, NOTE_STYLE, label, setting, small_plot


class AttributesPage(QWizardPage):
    preview_ready = Signal()

    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None,
                 model: PreviewModel | None = None):
        super().__init__(parent)
        self.model = model if model is not None else PreviewModel(runner, self)
        self.setTitle("3 \u00b7 Attributes")
        self.setSubTitle("Every latent frame gets a pitch, a loudness and a timbre class (and onset, harmony, "
                         "flatness and MFCC-timbre labels, which step 4 can probe too); the probes learn to read "
                         "them.  Here is how a sample of your audio falls into the paper's bins.")

        self.crepe_combo = QComboBox()
        for model in CREPE_MODELS:
            self.crepe_combo.addItem(model)
        self.crepe_combo.setItemData(CREPE_MODELS.index("tiny"),
                                     "CREPE tiny: fast, accurate enough for class labels (default)",
                                     Qt.ItemDataRole.ToolTipRole)
        if "full" in CREPE_MODELS:
            self.crepe_combo.setItemData(CREPE_MODELS.index("full"),
                                         "CREPE full: the reference model, about 10\u00d7 slower",
                                         Qt.ItemDataRole.ToolTipRole)
        preferred = setting(settings, "crepe_model", DEFAULT_CREPE_MODEL)
        self.crepe_combo.setCurrentText(preferred if preferred in CREPE_MODELS else DEFAULT_CREPE_MODEL)
        self.crepe_note = label("Pitch tracker: tiny is fast; full is the reference model (slower).", NOTE_STYLE)
        crepe_row = QHBoxLayout()
        crepe_row.addWidget(QLabel("Pitch model (CREPE):"))
        crepe_row.addWidget(self.crepe_combo)
        crepe_row.addWidget(self.crepe_note, 1)

        self.status = label("")
        self.busy = QProgressBar()
        self.busy.setMaximumWidth(200)
        self.busy.setVisible(False)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status, 1)
        status_row.addWidget(self.busy)

        self.plots: dict[str, pg.PlotWidget] = {
            "pitch": small_plot("Pitch: 66 classes (unvoiced + G1..B6)", "class"),
            "loudness": small_plot("Loudness: 20 bins", "dBFS"),
            "timbre": small_plot("Timbre: 20 bins of spectral centroid", "Hz"),
        }
        self.edges_labels = {a: label("", NOTE_STYLE) for a in ATTRIBUTES}
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.addWidget(self.plots["pitch"], 0, 0, 1, 2)
        grid.addWidget(self.edges_labels["pitch"], 1, 0, 1, 2)
        grid.addWidget(self.plots["loudness"], 2, 0)
        grid.addWidget(self.plots["timbre"], 2, 1)
        grid.addWidget(self.edges_labels["loudness"], 3, 0)
        grid.addWidget(self.edges_labels["timbre"], 3, 1)
        self.timbre_note = label("", NOTE_STYLE)
        self.message = label("", ERROR_STYLE)

        layout = QVBoxLayout(self)
        layout.addLayout(crepe_row)
        layout.addLayout(status_row)
        layout.addLayout(grid, 1)
        layout.addWidget(self.timbre_note)
        layout.addWidget(self.message)
        self.registerField("crepe_model", self.crepe_combo, "currentText", self.crepe_combo.currentTextChanged)
        self.crepe_combo.currentTextChanged.connect(lambda _text: (self._sync_crepe(), self.start_preview()))
        self.model.due.connect(self._start_preview_now)
        self.model.progress.connect(self._on_progress)
        self.model.ready.connect(self._on_finished)
        self.model.failed.connect(self._on_failed)
        self.model.stopped.connect(lambda: self.busy.setVisible(False))
        self._show_default_bins()

    @property
    def preview(self) -> AttributePreview | None:
        return self.model.preview

    def crepe_model(self) -> str | None:
        """The CREPE model for the build; None keeps an existing workspace's own."""
        return None if not self.crepe_combo.isEnabled() else self.crepe_combo.currentText()

    def _sync_crepe(self) -> None:
        wizard_model = getattr(self.wizard(), "model", None)
        if wizard_model is not None:
            wizard_model.crepe_model = self.crepe_model()

    def initializePage(self) -> None:  # noqa: N802
        status: WorkspaceStatus = self.wizard().audio_page.workspace_status
        locked = status.kind == "existing" and status.sources_built > 0 and status.crepe_model in CREPE_MODELS
        if locked:
            self.crepe_combo.blockSignals(True)
            self.crepe_combo.setCurrentText(status.crepe_model)  # type: ignore[arg-type]
            self.crepe_combo.blockSignals(False)
            self.crepe_note.setText("This workspace's frames were labelled with this model; it cannot change.")
        self.crepe_combo.setEnabled(not locked)
        self._sync_crepe()
        self.start_preview()

    def cleanupPage(self) -> None:  # noqa: N802
        self.cancel_jobs()

    def cancel_jobs(self) -> None:
        self.model.cancel()
        self.busy.setVisible(False)

    def start_preview(self) -> None:
        """Preview the bins on the current audio (after a short settle delay); ``preview_ready`` follows."""
        self.model.schedule()

    def _start_preview_now(self) -> None:
        wizard = self.wizard()
        if wizard is None or wizard.currentPage() is not self:
            return
        audio = wizard.audio_page.audio_choice()
        spec = wizard.backend_page.spec() or backend_spec(D.DEFAULT_BACKEND)
        status = wizard.audio_page.workspace_status
        workspace = str(Path(wizard.field("workspace")).expanduser()) \
            if status.kind == "existing" and status.sources_built else None
        device = wizard.backend_page.device()
        crepe = self.crepe_combo.currentText()
        request = PreviewRequest(audio, spec.sample_rate, spec.hop_length, crepe, device, workspace)
        outcome = self.model.start(request)
        if outcome == "empty":
            self.status.setText("No audio to preview.")
        elif outcome == "started":
            self.message.setText("")
            self.status.setText("Measuring pitch, loudness and centroid on a sample of the audio\u2026")
            self.busy.setVisible(True)
            self.busy.setRange(0, 0)

    def _on_progress(self, event: Progress) -> None:
        if event.total:
            self.busy.setRange(0, int(event.total))
            self.busy.setValue(int(event.done))

    def _on_failed(self, message: str) -> None:
        self.busy.setVisible(False)
        self.status.setText("")
        self.message.setText(f"Preview failed: {message}")

    def _on_finished(self, preview: AttributePreview) -> None:
        self.busy.setVisible(False)
        if preview.from_workspace:
            self.status.setText(f"Bins of this workspace, on the {preview.n_frames:,} stored frames "
                                f"of its first shard.")
        else:
            self.status.setText(f"Sample: {preview.n_frames:,} frames from {preview.n_sources} source(s), "
                                f"{format_duration(preview.seconds)} of audio (the first "
                                f"{PREVIEW_SECONDS:.0f} s of each).")
        self.timbre_note.setText(preview.timbre_note[0].upper() + preview.timbre_note[1:] + ".")
        self._draw(preview.spec, preview.counts)
        self.preview_ready.emit()

    def _show_default_bins(self) -> None:
        spec = AttributeSpec()
        self._draw(spec, {a: np.zeros(spec.n_classes(a), dtype=np.int64) for a in ATTRIBUTES})

    def _draw(self, spec: AttributeSpec, counts: dict[str, np.ndarray]) -> None:
        colors = {"pitch": "#0072B2", "loudness": "#009E73", "timbre": "#D55E00"}
        names = spec.class_names("pitch")
        for attr in ATTRIBUTES:
            item = self.plots[attr].getPlotItem()
            item.clear()
            c = np.asarray(counts[attr], dtype=float)
            if attr == "pitch":
                x = np.arange(len(c), dtype=float)
                width = 0.8
                ticks = [(0, "unv.")] + [(k, names[k]) for k in range(1, len(names)) if names[k].startswith("C")
                                             and "#" not in names[k]]
                item.getAxis("bottom").setTicks([ticks, []])
                item.setXRange(-1.5, len(c) + 0.5, padding=0)
            else:
                edges = spec.edges(attr)
                x = 0.5 * (edges[:-1] + edges[1:])
                width = float(edges[1] - edges[0]) * 0.9
                item.getAxis("bottom").setTicks(None)  # nice round numbers; the edges are listed below
                item.setXRange(float(edges[0]), float(edges[-1]), padding=0.04)
            bars = pg.BarGraphItem(x=x, height=c, width=width, brush=colors[attr], pen=pg.mkPen(None))
            item.addItem(bars)
            item.setYRange(0, max(1.0, float(c.max()) * 1.08 if c.size else 1.0), padding=0)
        unvoiced = int(counts["pitch"][0]) if len(counts["pitch"]) else 0
        total = int(np.sum(counts["pitch"]))
        voiced_note = f"; {unvoiced:,} of {total:,} frames unvoiced" if total else ""
        self.edges_labels["pitch"].setText(
            f"One class per semitone, MIDI 31 (G1) to 95 (B6), plus 'unvoiced' (silent or aperiodic frames)"
            f"{voiced_note}.")
        le = spec.loudness_edges
        self.edges_labels["loudness"].setText(
            f"{spec.n_loudness_bins} equal bins of {le[1] - le[0]:.0f} dB over {le[0]:.0f}..{le[-1]:.0f} dBFS; "
            f"edges {', '.join(f'{e:.0f}' for e in le)}.")
        te = spec.timbre_edges
        self.edges_labels["timbre"].setText(
            f"{spec.n_timbre_bins} equal bins of {te[1] - te[0]:.0f} Hz over {te[0]:.0f}..{te[-1]:.0f} Hz; "
            f"edges {', '.join(f'{e:.0f}' for e in te)}.")
