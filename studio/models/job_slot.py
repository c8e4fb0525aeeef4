"""``JobSlot``: at most one job of a kind, whose stale results are dropped."""

from __future__ import annotations

from typing import Any, Callable

from audiosae.jobs import CancelToken, Progress, ProgressSink

from ..workers import JobHandle, JobRunner


class JobSlot:
    """At most one job of a kind: starting another cancels and forgets the previous.

    Callbacks fire only for the current job (a cancelled job's late signals are ignored).
    ``JobRunner.submit`` starts the thread on the next event-loop turn, after the callbacks
    here are connected, so even an instant job's result is never lost.
    """

    def __init__(self, runner: JobRunner, name: str):
        self.runner = runner
        self.name = name
        self.handle: JobHandle | None = None

    @property
    def running(self) -> bool:
        return self.handle is not None

    def start(self, fn: Callable[..., Any], *args: Any, on_progress: Callable[[Progress], None] | None = None,
              on_finished: Callable[[Any], None] | None = None, on_failed: Callable[[str], None] | None = None,
              on_cancelled: Callable[[], None] | None = None, **kwargs: Any) -> JobHandle:
        self.cancel()

        def checked(*a: Any, progress: ProgressSink, cancel: CancelToken, **kw: Any) -> Any:
            cancel.raise_if_cancelled()   # cancelled before its thread started
            return fn(*a, progress=progress, cancel=cancel, **kw)

        handle = self.runner.submit(self.name, checked, *args, **kwargs)
        self.handle = handle

        def current() -> bool:
            return self.handle is handle

        def ended(callback: Callable[..., None] | None, *args: Any) -> None:
            # The job is over once it reports its outcome: forget it first, so the callback
            # may start the next one (Resume) before the thread's final ``done`` arrives.
            if current():
                self.handle = None
                if callback is not None:
                    callback(*args)

        if on_progress is not None:
            handle.progress.connect(lambda ev: current() and on_progress(ev))
        handle.finished.connect(lambda result: ended(on_finished, result))
        handle.failed.connect(lambda msg, tb: ended(on_failed, msg))
        handle.cancelled.connect(lambda: ended(on_cancelled))
        handle.done.connect(lambda: self._forget(handle))
        return handle

    def _forget(self, handle: JobHandle) -> None:
        if self.handle is handle:
            self.handle = None

    def cancel(self) -> None:
        """Cancel the current job (if any) and ignore whatever it still reports."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
