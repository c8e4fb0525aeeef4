"""Step 4 of the wizard: the SAE grid (widths, architecture, λ or k, RMSNorm), its budget and the
time estimate.  Every control starts at ``audiosae train``'s default (``TrainingModel``)."""

from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QSpinBox, QVBoxLayout, QWidget, QWizard, QWizardPage)

from audiosae import defaults as D
from audiosae.attribute_registry import get_attribute
from audiosae.workflows.audio_plan import VAL_FRACTION
from audiosae.workflows.train import probe_choices
from audiosae.workflows.train_plan import Estimate, describe_estimate, format_duration

from ...models.wizard import ARCHITECTURE_CHOICES, WIDTH_CHOICES, EstimateContext, TrainingModel, csv
from ...workers import JobRunner
from .common import ERROR_STYLE, NOTE_STYLE, label

PAPER_L1_RANGE = D.PAPER_L1_RANGE                # the paper's lambda range is 0.005-0.15
ARCHITECTURE_TIPS = {
    "relu-rmsnorm": "The paper's SAE: ReLU code, L1 sparsity penalty \u03bb, RMSNorm (the default)",
    "topk": "TopK: exactly k active features per frame (SAELens' topk); no \u03bb",
    "batchtopk": "BatchTopK: k active features per frame on average over a batch; exported as JumpReLU",
    "jumprelu": "JumpReLU: learned thresholds, L0 sparsity penalty \u03bb (SAELens' l0_coefficient)",
}
MAX_FRAMES = 2_000_000_000


class GridPage(QWizardPage):
    """The training page: one SAE per (width, λ) or (width, k) pair, all trained together."""

    estimate_ready = Signal()

    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None,
                 model: TrainingModel | None = None):
        super().__init__(parent)
        self.model = model if model is not None else TrainingModel(runner, self)
        m = self.model
        self.setTitle("4 \u00b7 SAE grid")
        self.setSubTitle("One SAE per (width, \u03bb) pair, or (width, k) for TopK, all trained together in one "
                         "pass per epoch.")

        self.width_boxes: dict[int, QCheckBox] = {}
        widths_row = QHBoxLayout()
        for w in WIDTH_CHOICES:
            box = QCheckBox(f"{w}\u00d7")
            box.setChecked(w in m.widths)
            box.toggled.connect(lambda _on: m.update(widths=self.widths()))
            self.width_boxes[w] = box
            widths_row.addWidget(box)
        widths_row.addStretch(1)
        self.width_note = label("", NOTE_STYLE, wrap=False)

        self.architecture_combo = QComboBox()
        for name in ARCHITECTURE_CHOICES:
            self.architecture_combo.addItem(name, name)
            self.architecture_combo.setItemData(self.architecture_combo.count() - 1, ARCHITECTURE_TIPS.get(name, ""),
                                                 Qt.ItemDataRole.ToolTipRole)
        self.architecture_combo.setCurrentText(m.architecture)
        self.rmsnorm_box = QCheckBox("RMSNorm on the code")
        self.rmsnorm_box.setChecked(m.rmsnorm)
        self.rmsnorm_box.setToolTip("The paper normalises the SAE code by its RMS; off = SAELens' plain forward "
                                    "(`audiosae train --no-rmsnorm`).")
        arch_row = QHBoxLayout()
        arch_row.addWidget(self.architecture_combo)
        arch_row.addSpacing(12)
        arch_row.addWidget(self.rmsnorm_box)
        arch_row.addStretch(1)
        self.architecture_note = label("", NOTE_STYLE, wrap=False)

        self.l1_edit = QLineEdit(m.l1_text)
        self.l1_edit.setToolTip("Sparsity coefficients \u03bb, separated by commas or spaces.  The paper's range is "
                                "0.005-0.15: larger \u03bb gives sparser features and a worse reconstruction.")
        self.l1_note = label("", NOTE_STYLE, wrap=False)
        self.k_edit = QLineEdit(m.k_text)
        self.k_edit.setToolTip("Active features per frame of TopK / BatchTopK, a grid like \u03bb "
                               "(`audiosae train --k`).")
        self.k_note = label("One SAE per width and k; smaller k = sparser features.", NOTE_STYLE, wrap=False)

        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(0, 10000)
        self.epochs_spin.setSpecialValueText("auto (until converged)")
        self.epochs_spin.setValue(m.epochs)
        self.epochs_spin.setToolTip("auto: train until the held-out loss stops improving, within a budget of "
                                    f"max({D.SAE_EPOCHS_EQUIVALENT:g} epochs, {D.SAE_MIN_STEPS} steps) or the "
                                    "frames below; a number: exactly that many passes over the training frames.")
        self.frames_spin = QSpinBox()
        self.frames_spin.setRange(0, MAX_FRAMES)
        self.frames_spin.setSingleStep(100_000)
        self.frames_spin.setGroupSeparatorShown(True)
        self.frames_spin.setSpecialValueText("default budget")
        self.frames_spin.setValue(m.frames)
        self.frames_spin.setToolTip("SAE budget in training frames (`audiosae train --frames`); training still "
                                    "stops earlier on a plateau.  Ignored when epochs are set.")
        self.budget_note = label("", NOTE_STYLE)
        self.budget_note.setMinimumWidth(640)   # the form keeps fields at their size hint: a wrapped label's is narrow
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(16, 1 << 17)
        self.batch_spin.setSingleStep(256)
        self.batch_spin.setValue(m.batch_size)
        self.batch_spin.setToolTip("Frames per SAE training step.")
        self.summary = label("")

        # Probes beyond the paper's three: every build labels them; probing them is opt-in (time)
        self.probe_boxes: dict[str, QCheckBox] = {}
        probes_row = QHBoxLayout()
        probes_row.addWidget(QLabel("pitch, loudness, timbre, and"))
        for name in probe_choices():
            box = QCheckBox(name)
            box.setChecked(name in m.extra_probes)
            box.setToolTip(f"{get_attribute(name).description}.  Every build labels it; probing it too adds "
                           "a probe per SAE (`audiosae train --attributes ...`), which the estimate includes.")
            box.toggled.connect(lambda _on: m.update(extra_probes=self.extra_probes()))
            self.probe_boxes[name] = box
            probes_row.addWidget(box)
        probes_row.addStretch(1)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        self.l1_edit.setMinimumWidth(320)
        self.k_edit.setMinimumWidth(320)
        self.epochs_spin.setMinimumWidth(180)
        self.frames_spin.setMinimumWidth(180)
        self.batch_spin.setMinimumWidth(100)
        form.addRow("Widths (expansion):", widths_row)
        form.addRow("", self.width_note)
        form.addRow("Architecture:", arch_row)
        form.addRow("", self.architecture_note)
        self.l1_label = QLabel("\u03bb (L1 coefficients):")
        form.addRow(self.l1_label, self.l1_edit)
        form.addRow("", self.l1_note)
        form.addRow("k (active features):", self.k_edit)
        form.addRow("", self.k_note)
        form.addRow("Epochs:", self.epochs_spin)
        form.addRow("Frames:", self.frames_spin)
        form.addRow("", self.budget_note)
        form.addRow("Batch size:", self.batch_spin)
        form.addRow("Probes:", probes_row)
        self.form = form
        grid_box = QGroupBox("Grid")
        grid_box.setLayout(form)

        est_box = QGroupBox("Time estimate")
        el = QVBoxLayout(est_box)
        est_row = QHBoxLayout()
        self.estimate_label = QLabel("\u2026")
        font = QFont(self.estimate_label.font())
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        self.estimate_label.setFont(font)
        self.busy = QProgressBar()
        self.busy.setMaximumWidth(200)
        self.busy.setVisible(False)
        est_row.addWidget(self.estimate_label, 1)
        est_row.addWidget(self.busy)
        el.addLayout(est_row)
        self.estimate_detail = label("", NOTE_STYLE)
        el.addWidget(self.estimate_detail)

        self.message = label("", ERROR_STYLE)
        layout = QVBoxLayout(self)
        layout.addWidget(grid_box)
        layout.addWidget(self.summary)
        layout.addWidget(est_box)
        layout.addStretch(1)
        layout.addWidget(self.message)

        self.registerField("l1s", self.l1_edit)
        self.registerField("ks", self.k_edit)
        self.registerField("architecture", self.architecture_combo, "currentText",
                           self.architecture_combo.currentTextChanged)
        self.registerField("rmsnorm", self.rmsnorm_box)
        self.registerField("epochs", self.epochs_spin, "value", self.epochs_spin.valueChanged)
        self.registerField("frames", self.frames_spin, "value", self.frames_spin.valueChanged)
        self.registerField("batch_size", self.batch_spin, "value", self.batch_spin.valueChanged)
        self.architecture_combo.currentTextChanged.connect(lambda text: m.update(architecture=text))
        self.rmsnorm_box.toggled.connect(lambda on: m.update(rmsnorm=bool(on)))
        self.l1_edit.textChanged.connect(lambda text: m.update(l1_text=text))
        self.k_edit.textChanged.connect(lambda text: m.update(k_text=text))
        self.epochs_spin.valueChanged.connect(lambda v: m.update(epochs=int(v)))
        self.frames_spin.valueChanged.connect(lambda v: m.update(frames=int(v)))
        self.batch_spin.valueChanged.connect(lambda v: m.update(batch_size=int(v)))
        m.changed.connect(self._on_changed)
        m.estimate_due.connect(self._update_estimate)
        m.estimate_started.connect(self._on_estimate_started)
        m.estimate_ready.connect(self._show_estimate)
        m.estimate_failed.connect(self._on_failed)
        self.setButtonText(QWizard.WizardButton.NextButton, "Build && train")
        self._on_changed()

    # ---- public API ------------------------------------------------------------------------------
    def widths(self) -> list[int]:
        return [w for w, box in self.width_boxes.items() if box.isChecked()]

    def extra_probes(self) -> list[str]:
        return [name for name, box in self.probe_boxes.items() if box.isChecked()]

    def set_widths(self, widths: Sequence[int]) -> None:
        for w, box in self.width_boxes.items():
            box.setChecked(w in widths)

    def set_architecture(self, name: str) -> None:
        index = self.architecture_combo.findData(name)
        if index < 0:
            raise ValueError(f"unknown architecture {name!r}; choose {', '.join(ARCHITECTURE_CHOICES)}")
        self.architecture_combo.setCurrentIndex(index)

    def l1s(self) -> list[float]:
        """The parsed λ list (raises ``ValueError`` with a message when it cannot be read)."""
        return self.model.l1s()

    def ks(self) -> list[int]:
        return self.model.ks()

    def train_settings(self) -> Any:
        return self.model.train_settings()

    @property
    def estimate(self) -> Estimate | None:
        return self.model.estimate

    @property
    def estimate_seconds(self) -> float | None:
        return None if self.model.estimate is None else self.model.estimate.total_s

    # ---- wizard hooks ----------------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        self._on_changed()

    def cleanupPage(self) -> None:  # noqa: N802
        self.cancel_jobs()

    def isComplete(self) -> bool:  # noqa: N802
        return not self.model.problem()

    def cancel_jobs(self) -> None:
        self.model.cancel_jobs()
        self.busy.setVisible(False)

    # ---- internals -------------------------------------------------------------------------------
    def _backend_dim(self) -> int | None:
        wizard = self.wizard()
        spec = wizard.backend_page.spec() if wizard is not None else None
        return spec.latent_dim if spec is not None else None

    def _on_changed(self) -> None:
        m = self.model
        if self.l1_edit.text() != m.l1_text:   # the lambda list followed the architecture's default
            self.l1_edit.setText(m.l1_text)
        topk, jump = m.uses_k, m.architecture == "jumprelu"
        for row, visible in ((self.l1_edit, not topk), (self.l1_note, not topk), (self.k_edit, topk),
                             (self.k_note, topk)):
            self.form.setRowVisible(row, visible)
        self.l1_label.setText("\u03bb (L0 coefficients):" if jump else "\u03bb (L1 coefficients):")
        self.architecture_note.setText(ARCHITECTURE_TIPS.get(m.architecture, ""))
        self.frames_spin.setEnabled(m.epochs == 0)
        problem = m.problem()
        self.message.setText(problem)
        d_in = self._backend_dim()
        if d_in:
            self.width_note.setText(f"{d_in}-d latents \u2192 " + ", ".join(
                f"{w}\u00d7 = {w * d_in:,}" for w in m.widths) + " features" if m.widths else "")
            for w, box in self.width_boxes.items():
                box.setToolTip(f"{w * d_in:,} features (d_sae = {w} \u00d7 {d_in})")
        self.budget_note.setText(self._budget_text())
        if not problem:
            n_w = len(m.widths)
            values = f"{len(m.ks())} k value(s)" if topk else f"{len(m.l1s())} \u03bb value(s)"
            budget = (f"{m.epochs} epoch(s)" if m.epochs else
                      f"up to {m.frames:,} frames, stopping when converged" if m.frames else "trained until converged")
            self.summary.setText(f"{m.n_configs()} {m.architecture} SAE(s): {n_w} width(s) \u00d7 {values}, "
                                 f"{budget}, batches of {m.batch_size} frames.")
            if not topk and not jump:
                extra = [v for v in m.l1s() if not PAPER_L1_RANGE[0] <= v <= PAPER_L1_RANGE[1]]
                self.l1_note.setText(
                    f"Paper range {PAPER_L1_RANGE[0]:g}\u2013{PAPER_L1_RANGE[1]:g}"
                    + (f"; outside it: {csv(extra)}" if extra else "") + "; larger \u03bb = sparser features.")
            elif jump:
                self.l1_note.setText(f"Default {csv(D.DEFAULT_L0S)}; larger \u03bb = fewer active features.")
        else:
            self.summary.setText("")
        self.completeChanged.emit()
        wizard = self.wizard()
        if wizard is not None and wizard.currentPage() is self and not problem:
            m.schedule_estimate()

    def _budget_text(self) -> str:
        m = self.model
        if m.epochs:
            return "A fixed number of passes over the training frames (no plateau stop)."
        context = self._context()
        if context is None:
            return ""
        seconds, rate, _ = context.corpus
        n_train = int(seconds * rate * (1.0 - VAL_FRACTION))
        if n_train < 1:
            return ""
        frames = m.frames or D.default_sae_frames(n_train, m.batch_size)
        how = "your budget" if m.frames else (f"the default: max({D.SAE_EPOCHS_EQUIVALENT:g} passes, "
                                              f"{D.SAE_MIN_STEPS} steps)")
        return (f"Up to {frames:,} training frames ({frames / n_train:.1f} passes over about {n_train:,}; {how}); "
                "stops earlier when the held-out loss stops improving.")

    def _context(self) -> EstimateContext | None:
        wizard = self.wizard()
        if wizard is None:
            return None
        spec = wizard.backend_page.spec()
        if spec is None:
            return None
        return EstimateContext(audio=wizard.audio_page.audio_choice(), spec=spec,
                               options=tuple(sorted(wizard.backend_page.backend_options().items())),
                               device=wizard.backend_page.device(),
                               crepe_model=wizard.attributes_page.crepe_combo.currentText(),
                               status=wizard.audio_page.workspace_status)

    def _update_estimate(self) -> None:
        wizard = self.wizard()
        if wizard is None or wizard.currentPage() is not self or self.model.problem():
            return
        context = self._context()
        if context is not None:
            self.model.request_estimate(context)

    def _on_estimate_started(self) -> None:
        self.busy.setVisible(True)
        self.busy.setRange(0, 0)
        self.estimate_label.setText("estimating\u2026")
        self.estimate_detail.setText("Timing the encoding of 2 s of your audio, an SAE step of each width "
                                     "and a probe epoch.")

    def _on_failed(self, message: str) -> None:
        self.busy.setVisible(False)
        self.estimate_label.setText("no estimate")
        self.estimate_detail.setText(f"The calibration failed: {message}")

    def _show_estimate(self, est: Estimate) -> None:
        self.busy.setVisible(False)
        context = self.model.context
        corpus_seconds, frame_rate, needs_extraction = context.corpus if context is not None else (0.0, 0.0, False)
        self.estimate_label.setText(describe_estimate(est))
        parts = []
        if needs_extraction:
            parts.append(f"extraction \u2248 {format_duration(est.extraction_s)}")
        parts += [f"SAE training \u2248 {format_duration(est.sae_s)}", f"probes \u2248 {format_duration(est.probes_s)}"]
        notes = "".join(f" Note: {n}." for n in est.notes)
        joined = " \u00b7 ".join(parts)
        self.estimate_detail.setText(
            f"{joined} for {format_duration(corpus_seconds)} of audio "
            f"({corpus_seconds * frame_rate:,.0f} frames).  This is an estimate extrapolated from a quick "
            f"calibration on this machine (2 s of audio, a few SAE and probe steps); the real time can differ.{notes}")
        self.estimate_ready.emit()
