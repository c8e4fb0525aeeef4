"""``SteeredHeatmap``: the heatmap's f' while auditioning, computed off the GUI thread.

``f' = steer_features(f)`` on the steered frames (the method's, what the renderer decodes)
costs ~3-15 ms of torch for a 15 s clip, and more on a loaded machine: on the GUI thread,
after every alpha move, it was the largest piece of the studio benchmark's GUI stalls.  Here it
runs as a job; the GUI thread only swaps the result in (a slice copy for long clips).

One job at a time: a request made while one runs waits, and only the newest waiting request
runs next (a slider drag never queues a backlog, and never starves: every finished job is
shown).  ``reset`` drops whatever is in flight (clip, models, alpha 0, A/B on the original).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from audiosae.jobs import CancelToken, null_progress
from audiosae.steering import frame_mask

from .audition import steered_rows
from .job_slot import JobSlot


@dataclass(frozen=True)
class HeatRequest:
    """What to steer: frames ``[lo, hi)`` of ``f`` (``mask``: which are steered) with ``context``.

    ``full``: the result is a whole copy of ``f``; otherwise only rows ``[lo, hi)`` are
    written into the long clip's reused buffer (the rest is ``f``)."""

    f: np.ndarray
    context: Any
    target: int
    alpha: float
    mask: np.ndarray
    lo: int
    hi: int
    full: bool


# Above this many T x F elements the heatmap's f' is computed only for the frames in view
# (plus a margin).  Measured with one torch thread: 4,500 x 512 (a minute at 75 frames/s)
# steers in ~3 ms; 45,000 x 512 (ten minutes) in ~200 ms, far over a 33 ms frame.
FULL_HEATMAP_ELEMENTS = 3_000_000
VIEW_MARGIN = 0.25              # fraction of the visible span also steered on each side


def heat_request(analysis: Any, context: Any, params: Any, view_range: tuple[float, float]) -> HeatRequest:
    """What to steer for ``params`` (a ``SteeringParams``) on the clip ``analysis``: its steered
    frames, only those in view (plus ``VIEW_MARGIN``) above ``FULL_HEATMAP_ELEMENTS``.
    Raises ``AudioSAEError`` when the range holds no frame."""
    mask = frame_mask(analysis.n_frames, analysis.times, params.start, params.end).numpy()
    f = analysis.f
    rows = np.flatnonzero(mask)
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    full = f.size <= FULL_HEATMAP_ELEMENTS
    if not full:  # only what is in view (and a margin): long clips
        v0, v1 = view_range
        margin = VIEW_MARGIN * (v1 - v0)
        first = int(np.searchsorted(analysis.times, v0 - margin, side="left"))
        last = int(np.searchsorted(analysis.times, v1 + margin, side="right"))
        lo, hi = max(lo, first), min(hi, last)
    return HeatRequest(f, context, int(params.target), float(params.alpha), mask, lo, hi, full)


def steer_heat_rows(request: HeatRequest, *, progress=null_progress, cancel: CancelToken | None = None
                    ) -> tuple[HeatRequest, np.ndarray | None]:
    """The job: f' of rows ``[lo, hi)`` (``None`` when empty); a whole copy of f with them when ``full``."""
    r = request
    steered = None
    if r.hi > r.lo:
        steered = steered_rows(r.context, r.f[r.lo:r.hi], r.target, r.alpha, r.mask[r.lo:r.hi])
    if cancel is not None:
        cancel.raise_if_cancelled()
    if not r.full:
        return r, steered
    out = np.array(r.f, dtype=np.float32, copy=True)
    if steered is not None:
        out[r.lo:r.hi] = steered
    return r, out


class SteeredHeatmap:
    """f' for the heatmap, published with ``publish(array or None)`` on the GUI thread."""

    def __init__(self, runner: Any, publish: Callable[[np.ndarray | None], None],
                 on_failed: Callable[[str], None] | None = None):
        self.slot = JobSlot(runner, "heatmap f'")
        self.publish = publish
        self.on_failed = on_failed
        self.buffer: np.ndarray | None = None       # long clips: f with f' written in view
        self.dirty: tuple[int, int] | None = None
        self.shown = False
        self._waiting: HeatRequest | None = None

    @property
    def busy(self) -> bool:
        return self.slot.running or self._waiting is not None

    def request(self, request: HeatRequest) -> None:
        """Compute f' for ``request`` (now, or after the job in flight: the newest wins)."""
        if self.slot.running:
            self._waiting = request
            return
        self._waiting = None
        self.slot.start(steer_heat_rows, request, on_finished=self._on_done, on_failed=self._on_failed)

    def _on_done(self, result: tuple[HeatRequest, np.ndarray | None]) -> None:
        request, rows = result
        if request.full:
            out = rows
        else:
            if self.buffer is None or self.buffer.shape != request.f.shape:
                self.buffer = np.array(request.f, dtype=np.float32, copy=True)
            self.restore(request.f)
            out = self.buffer
            if rows is not None:
                out[request.lo:request.hi] = rows
                self.dirty = (request.lo, request.hi)
        self.shown = True
        self.publish(out)
        self._next()

    def _on_failed(self, message: str) -> None:
        if self.on_failed is not None:
            self.on_failed(message)
        self._next()

    def _next(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            self.request(waiting)

    def restore(self, f: np.ndarray | None) -> None:
        """Put f back into the buffer rows written last (long clips)."""
        if self.buffer is not None and self.dirty is not None and f is not None:
            lo, hi = self.dirty
            self.buffer[lo:hi] = f[lo:hi]
            self.dirty = None

    def hide(self, f: np.ndarray | None) -> None:
        """Back to f (alpha 0, the original playing): drop jobs; publish None if f' was shown."""
        self.slot.cancel()
        self._waiting = None
        if self.shown:
            self.shown = False
            self.restore(f)
            self.publish(None)

    def reset(self, emit: bool) -> None:
        """A new clip or models: drop jobs and the buffer; ``emit``: publish None if f' was shown."""
        self.slot.cancel()
        self._waiting = None
        self.buffer = None
        self.dirty = None
        was_shown, self.shown = self.shown, False
        if emit and was_shown:
            self.publish(None)
