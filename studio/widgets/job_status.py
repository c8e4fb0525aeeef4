"""The status bar's job line: the running job's name, progress and a Cancel button.

Jobs younger than ``PROGRESS_SHOW_AFTER_S`` are not shown (quick ones never flash the bar);
while any job runs, the line is refreshed every ``PROGRESS_POLL_MS``.
"""

from __future__ import annotations

import time
from typing import Callable

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QToolButton

from ..workers import JobHandle, JobRunner

PROGRESS_POLL_MS = 100           # status-bar refresh while a job runs
PROGRESS_SHOW_AFTER_S = 0.25     # jobs shorter than this never flash the progress bar


class JobStatus(QObject):
    """Puts ``job_label``, ``progress_bar`` and ``cancel_button`` in ``bar`` and keeps them current."""

    def __init__(self, runner: JobRunner, bar: QStatusBar, say: Callable[[str], None], parent: QObject | None = None):
        super().__init__(parent)
        self.runner = runner
        self.say = say
        self.closed = False
        self._started_at: dict[int, float] = {}
        self.shown_job: JobHandle | None = None
        self.job_label = QLabel(objectName="job_label")
        self.progress_bar = QProgressBar(objectName="job_progress")
        self.progress_bar.setMaximumWidth(bar.fontMetrics().horizontalAdvance("M") * 14)
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QToolButton(objectName="job_cancel")
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Cancel the running job")
        self.cancel_button.clicked.connect(self.cancel_shown_job)
        for w in (self.job_label, self.progress_bar, self.cancel_button):
            w.setVisible(False)
            bar.addPermanentWidget(w)
        self.timer = QTimer(self)
        self.timer.setInterval(PROGRESS_POLL_MS)
        self.timer.timeout.connect(self.refresh)
        runner.job_started.connect(self._on_job_started)
        runner.job_done.connect(self._on_job_done)

    def _on_job_started(self, job: JobHandle) -> None:
        self._started_at[id(job)] = time.monotonic()
        if not self.timer.isActive() and not self.closed:
            self.timer.start()

    def _on_job_done(self, job: JobHandle) -> None:
        self._started_at.pop(id(job), None)
        self.refresh()

    def refresh(self) -> None:
        jobs = [j for j in self.runner.active if j.running]
        now = time.monotonic()
        shown = [j for j in jobs if now - self._started_at.get(id(j), 0.0) >= PROGRESS_SHOW_AFTER_S]
        if not shown or self.closed:
            self.shown_job = None
            for w in (self.job_label, self.progress_bar, self.cancel_button):
                w.setVisible(False)
            if not jobs or self.closed:
                self.timer.stop()
            return
        job = shown[-1]
        self.shown_job = job
        event = job.last_progress
        fraction = event.fraction if event is not None else None
        if fraction is None:
            self.progress_bar.setRange(0, 0)        # busy indicator
        else:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(fraction * 1000))
        text = job.name if event is None or not event.message else f"{job.name}: {event.message}"
        self.job_label.setText(text if len(jobs) == 1 else f"{text} (+{len(jobs) - 1} more)")
        self.cancel_button.setEnabled(not job.cancel_token.cancelled)
        for w in (self.job_label, self.progress_bar, self.cancel_button):
            w.setVisible(True)

    def cancel_shown_job(self) -> None:
        job = self.shown_job
        if job is not None:
            job.cancel()
            self.cancel_button.setEnabled(False)
            self.say(f"cancelling {job.name}…")

    def close(self) -> None:
        self.closed = True
        self.timer.stop()
