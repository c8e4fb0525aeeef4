"""Running audiosae jobs off the GUI thread, with progress, cancel and errors as Qt signals.

A job is any ``fn(*args, progress=..., cancel=..., **kwargs)`` from ``audiosae`` (the same
functions the CLI drives: ``build_corpus``, ``train_workspace``, ``analyze_wave``...).
``JobRunner.submit`` runs it in its own ``QThread`` and returns a ``JobHandle`` whose
signals arrive in the GUI thread (queued connections, since the handle lives there):

- ``progress(Progress)`` — throttled to ~20 per second, stage changes always pass;
- ``finished(result)`` on success, ``failed(message, traceback)`` on error (an expected
  ``AudioSAEError`` has an empty traceback: show the message, nothing else), ``cancelled()``;
- ``done()`` last, in every case.

``JobRunner.shutdown()`` cancels everything and waits, so the app never quits with a
running QThread (tests check for leaked threads).
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, QTimer, Signal

from audiosae.errors import AudioSAEError, JobCancelled
from audiosae.jobs import CancelToken, Progress, ThrottledProgress

log = logging.getLogger("studio.workers")


class JobHandle(QObject):
    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()
    done = Signal()

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self.cancel_token = CancelToken()
        self.thread: QThread | None = None
        self.last_progress: Progress | None = None
        self.progress.connect(self._remember)

    def _remember(self, event: Progress) -> None:
        self.last_progress = event

    def cancel(self) -> None:
        self.cancel_token.cancel()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def wait(self, msecs: int = 5000) -> bool:
        return True if self.thread is None else self.thread.wait(msecs)


class _JobThread(QThread):
    def __init__(self, handle: JobHandle, fn: Callable[..., Any], args: tuple, kwargs: dict):
        super().__init__()
        self.handle, self.fn, self.args, self.kwargs = handle, fn, args, kwargs
        self.setObjectName(f"job:{handle.name}")

    def run(self) -> None:  # worker thread: only emit signals, never touch widgets
        # Long jobs (training, extraction) run at a lower priority so the GUI thread and the
        # audio render thread win the 2 cores: measured, GUI gaps > 50 ms during training
        # fell from 15-83 per 20 s to 0-8 (benchmarks/bench_studio.py).  Per-thread nice on
        # Linux; elsewhere Qt's thread priority.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            self.setPriority(QThread.Priority.LowPriority)
        handle = self.handle
        sink = ThrottledProgress(handle.progress.emit, interval=0.05)
        try:
            result = self.fn(*self.args, progress=sink, cancel=handle.cancel_token, **self.kwargs)
        except JobCancelled:
            handle.cancelled.emit()
        except AudioSAEError as exc:
            log.warning("job %s failed: %s", handle.name, exc)
            handle.failed.emit(str(exc), "")
        except Exception as exc:  # a bug: log the traceback, show the message
            tb = traceback.format_exc()
            log.error("job %s crashed:\n%s", handle.name, tb)
            handle.failed.emit(f"{exc.__class__.__name__}: {exc}", tb)
        else:
            if handle.cancel_token.cancelled:
                handle.cancelled.emit()
            else:
                handle.finished.emit(result)
        finally:
            handle.done.emit()


class JobRunner(QObject):
    """Owns the job threads of one window (or of the app)."""

    job_started = Signal(object)   # JobHandle
    job_done = Signal(object)      # JobHandle

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._jobs: list[JobHandle] = []

    def submit(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> JobHandle:
        handle = JobHandle(name, self)
        thread = _JobThread(handle, fn, args, kwargs)
        handle.thread = thread
        handle.done.connect(lambda h=handle: self._finish(h))
        self._jobs.append(handle)
        # Start on the next event-loop turn: the caller connects the handle's signals right
        # after submit() returns, and a fast job must not finish before anyone listens.
        QTimer.singleShot(0, lambda: self._start(handle))
        return handle

    def _start(self, handle: JobHandle) -> None:
        if handle in self._jobs and handle.thread is not None and not handle.thread.isRunning():
            handle.thread.start()
            self.job_started.emit(handle)

    def _finish(self, handle: JobHandle) -> None:
        if handle.thread is not None:
            handle.thread.wait()
            handle.thread.deleteLater()
            handle.thread = None
        if handle in self._jobs:
            self._jobs.remove(handle)
        self.job_done.emit(handle)

    @property
    def active(self) -> list[JobHandle]:
        return list(self._jobs)

    def cancel_all(self) -> None:
        for job in self._jobs:
            job.cancel()

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel every job and wait for its thread; True when all stopped in time."""
        self.cancel_all()
        ok = True
        for job in list(self._jobs):
            if job.thread is not None:
                ok = job.thread.wait(timeout_ms) and ok
                job.thread.deleteLater()
                job.thread = None
            self._jobs.remove(job)
        return ok
