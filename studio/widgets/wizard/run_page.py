"""Step 5 of the wizard: build and train (``RunModel``), with live progress, curves, Stop and Resume."""

from __future__ import annotations

import logging
import time
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QGroupBox, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton,
                               QVBoxLayout, QWidget, QWizard, QWizardPage)

from audiosae.jobs import Progress
from audiosae.workflows.train import RunPlan, grid_names, uses_k
from audiosae.workflows.train_plan import format_duration

from ..curves import FVU_TOOLTIP, LiveCurves
from ...models.wizard import RunModel
from ...workers import JobHandle, JobRunner
from .common import ERROR_STYLE, NOTE_STYLE, OK_STYLE, label

log = logging.getLogger("studio.wizard")


STAGE_TITLES = {
    "build": "Building the corpus: encoding and labelling",
    "SAE input statistics": "Measuring the latent mean and scale",
    "train SAEs": "Training the SAE grid",
    "evaluate SAEs": "Evaluating the SAEs on validation frames",
    "probes": "Training the probes",
    "train probes": "Training the probes",
}
STAGE_STEPS = (("Corpus", ("build",)), ("SAEs", ("SAE input statistics", "train SAEs", "evaluate SAEs")),
               ("Probes", ("probes", "train probes")))


class RunPage(QWizardPage):
    """Builds and trains via ``build_and_train``; Stop cancels, Resume runs the same job again."""

    state_changed = Signal(str)   # "idle", "running", "cancelled", "failed", "done"

    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None,
                 model: RunModel | None = None):
        super().__init__(parent)
        self.model = model if model is not None else RunModel(runner, self)
        self.setTitle("5 \u00b7 Build and train")
        self.setSubTitle("Encoding the corpus, then training the SAE grid and the probes.  You can stop at "
                         "any time and resume later: everything finished is kept on disk.")
        self._started = 0.0
        self._last_log: tuple[str, str] | None = None
        self._probe_message = ""
        self._stage_seen = False

        self.steps_label = QLabel("")
        self.steps_label.setTextFormat(Qt.TextFormat.RichText)
        self.stage_label = QLabel("Waiting to start.")
        font = QFont(self.stage_label.font())
        font.setBold(True)
        self.stage_label.setFont(font)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.detail_label = label("", NOTE_STYLE)
        self.state_label = label("")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop at the next safe point; what is finished stays on disk.")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Run the same job again: it continues from what is on disk.")
        buttons = QHBoxLayout()
        buttons.addWidget(self.state_label, 1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.resume_button)

        self.curves = LiveCurves()
        self.curves.plots["mse"].setToolTip(FVU_TOOLTIP)
        curves_box = QGroupBox("Training curves (per SAE; FVU \u2248 batch MSE, hover for why)")
        curves_box.setToolTip(FVU_TOOLTIP)
        cl = QVBoxLayout(curves_box)
        cl.addWidget(self.curves)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setMaximumHeight(110)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.log_view.setFont(mono)

        layout = QVBoxLayout(self)
        layout.addWidget(self.steps_label)
        layout.addWidget(self.stage_label)
        layout.addWidget(self.bar)
        layout.addWidget(self.detail_label)
        layout.addLayout(buttons)
        layout.addWidget(curves_box, 1)
        layout.addWidget(QLabel("Log"))
        layout.addWidget(self.log_view)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        self.model.started.connect(self._on_started)
        self.model.progress.connect(self._on_progress)
        self.model.state_changed.connect(self._on_state)
        self.setButtonText(QWizard.WizardButton.NextButton, "Results")
        self._set_state("idle")

    # ---- public API ------------------------------------------------------------------------------
    @property
    def job(self) -> JobHandle | None:
        return self.model.job

    @property
    def state(self) -> str:
        return self.model.state

    @property
    def plan(self) -> RunPlan | None:
        return self.model.plan

    @property
    def report(self) -> dict[str, Any] | None:
        return self.model.report

    @property
    def error(self) -> str:
        return self.model.error

    def start(self, plan: RunPlan) -> None:
        """Run ``plan`` (build then train) in a job."""
        if self.model.running:
            return
        if self.plan is None or self.plan.train != plan.train or self.plan.workspace != plan.workspace:
            self.curves.clear()
            self.curves.set_configs(grid_names(plan.train))
        self.model.start(plan)

    def _on_started(self, plan: RunPlan) -> None:
        self._stage_seen = False
        self.stage_label.setText("Starting\u2026")
        self.detail_label.setText("")
        self._started = time.monotonic()
        self._last_log = None
        train = plan.train
        grid = (f"{len(train.expansions)} width(s) \u00d7 {len(train.ks)} k" if uses_k(train.architecture) else
                f"{len(train.expansions)} width(s) \u00d7 {len(train.l1s)} \u03bb")
        budget = (f"{train.epochs} epoch(s)" if train.epochs else
                  f"up to {train.frames:,} frames" if train.frames else "default budget")
        self._log(f"start: workspace {plan.workspace}, backend {plan.backend}, device {plan.device}, "
                  f"{train.architecture}, {grid}, {budget}")

    def stop(self) -> None:
        """Cancel the running job (it stops at its next safe point)."""
        if self.model.stop():
            self.state_label.setText("Stopping at the next safe point\u2026")
            self.stop_button.setEnabled(False)

    def resume(self) -> None:
        """Run the same plan again; both build and training continue from what is on disk."""
        if self.plan is not None and not self.model.running:
            self._log("resume")
            self.start(self.plan)

    def cancel_jobs(self) -> None:
        """Cancel and forget the job (the wizard is closing)."""
        self.model.cancel()

    # ---- wizard hooks ----------------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        wizard = self.wizard()
        wizard.cancel_side_jobs()
        plan = wizard.run_plan()
        if self.state == "done" and self.plan == plan:
            return
        self.start(plan)

    def cleanupPage(self) -> None:  # noqa: N802
        if self.model.running:
            self.stop()

    def isComplete(self) -> bool:  # noqa: N802
        return self.state == "done"

    # ---- internals -------------------------------------------------------------------------------
    def _on_state(self, state: str) -> None:
        if state == "done":
            self._on_finished(self.model.report or {})
        elif state == "failed":
            self._on_failed(self.model.error)
        elif state == "cancelled":
            self._on_cancelled()
        self._set_state(state)

    def _set_state(self, state: str) -> None:
        running = state == "running"
        self.stop_button.setEnabled(running)
        self.resume_button.setEnabled(state in ("cancelled", "failed"))
        self.resume_button.setText("Try again" if state == "failed" else "Resume")
        if state == "cancelled":
            self.state_label.setStyleSheet(NOTE_STYLE)
            self.state_label.setText("Stopped.  Everything finished so far is saved in the workspace; "
                                     "Resume continues from there (now or in a later session).")
        elif state == "failed":
            self.state_label.setStyleSheet(ERROR_STYLE)
            self.state_label.setText(self.error)
        elif state == "done":
            self.state_label.setStyleSheet(OK_STYLE)
            self.state_label.setText(f"Done in {format_duration(time.monotonic() - self._started)}.  "
                                     f"Next shows the results.")
        elif state == "running":
            self.state_label.setStyleSheet("")
            self.state_label.setText("Running\u2026")
        else:
            self.state_label.setText("")
        self.completeChanged.emit()
        wizard = self.wizard()
        if wizard is not None and wizard.currentPage() is self:
            # QWizard re-enables Back on completeChanged; going back mid-run would orphan the job.
            wizard.button(QWizard.WizardButton.BackButton).setEnabled(not running)
        self.state_changed.emit(state)

    def _log(self, text: str) -> None:
        log.info("run: %s", text)  # the app's log file keeps what the page showed
        self.log_view.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    def _show_steps(self, stage: str) -> None:
        parts = []
        current = next((i for i, (_, stages) in enumerate(STAGE_STEPS) if stage in stages), -1)
        for i, (title, _) in enumerate(STAGE_STEPS):
            mark = "\u2713" if i < current else ("\u25b6" if i == current else "\u25cb")
            text = f"{mark} {i + 1}. {title}"
            parts.append(f"<b>{text}</b>" if i == current else f"<span style='color:#777'>{text}</span>")
        self.steps_label.setText("&nbsp;&nbsp;&nbsp;".join(parts))

    def _on_progress(self, event: Progress) -> None:
        self._stage_seen = True
        self._show_steps(event.stage)
        self.stage_label.setText(STAGE_TITLES.get(event.stage, event.stage))
        fraction = event.fraction
        if fraction is None:
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(round(1000 * fraction)))
        message = event.message
        if event.stage == "build" and event.total:
            message = (f"{message} \u2014 {format_duration(event.done)} of {format_duration(event.total)} of audio")
        elif event.stage == "probes":
            self._probe_message = message
        elif event.stage == "train probes":
            message = f"{self._probe_message}: {message}" if self._probe_message else message
        elif event.stage == "train SAEs":
            message = f"{message}, step {int(event.done):,} of {int(event.total or 0):,}"
        self.detail_label.setText(message)
        if event.stage == "train SAEs" and event.metrics:
            self.curves.update_from_metrics(event.metrics)
        # The log keeps stage changes and new messages, not every tick.
        log_key = (event.stage, event.message if event.stage != "train SAEs" else event.message.split(",")[0])
        if log_key != self._last_log and event.stage not in ("train probes",):
            self._last_log = log_key
            self._log(f"{event.stage}: {event.message}" if event.message else event.stage)

    def _on_finished(self, report: dict[str, Any]) -> None:
        self.bar.setRange(0, 1000)
        self.bar.setValue(1000)
        self._show_steps("")
        self.steps_label.setText("\u2713 1. Corpus&nbsp;&nbsp;&nbsp;\u2713 2. SAEs&nbsp;&nbsp;&nbsp;\u2713 3. Probes")
        self.stage_label.setText("Finished")
        self.detail_label.setText(f"{len(report.get('saes', []))} SAE(s) with probes in {report.get('workspace')}")
        self._log("done")

    def _on_failed(self, message: str) -> None:
        self._log(f"error: {message}")
        self.bar.setRange(0, 1000)
        self.stage_label.setText(f"Stopped by an error during: {self.stage_label.text()}"
                                 if self._stage_seen else "Could not start")

    def _on_cancelled(self) -> None:
        self._log("stopped by the user (resumable)")
        self.bar.setRange(0, 1000)
