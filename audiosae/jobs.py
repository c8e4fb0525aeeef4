"""Long work as cancellable jobs with progress, driven the same way by the CLI and the GUI.

A job is a plain function ``job(..., progress: ProgressSink, cancel: CancelToken)``.  It
reports ``Progress`` events to the sink and calls ``cancel.raise_if_cancelled()`` at safe
points (between batches, files, epochs).  The CLI passes a tqdm-backed sink; the studio
passes one that emits Qt signals from its worker thread.  Nothing here knows about either.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .errors import JobCancelled


@dataclass
class Progress:
    """One progress report: ``done`` of ``total`` units of ``stage`` (total None = unknown)."""

    stage: str
    done: float = 0
    total: float | None = None
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))


class ProgressSink(Protocol):
    def __call__(self, event: Progress) -> None: ...


def null_progress(event: Progress) -> None:
    """A sink that ignores every report (library calls that nobody watches)."""


class CancelToken:
    """Thread-safe cancel flag.  ``cancel()`` from any thread; the job polls it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelled("cancelled by the user")


class ThrottledProgress:
    """Wraps a sink so that reports arrive at most every ``interval`` seconds.

    Stage changes and completions always pass, so a GUI never misses the end of a stage
    while a tight loop cannot flood it with events.
    """

    def __init__(self, sink: ProgressSink, interval: float = 0.1):
        self._sink = sink
        self._interval = interval
        self._last = 0.0
        self._stage: str | None = None

    def __call__(self, event: Progress) -> None:
        now = time.monotonic()
        finished = event.total is not None and event.done >= event.total
        if event.stage != self._stage or finished or now - self._last >= self._interval:
            self._stage = event.stage
            self._last = now
            self._sink(event)


Job = Callable[..., Any]
