"""The waveform pane: a min/max peak pyramid built once per clip, drawn at screen resolution.

``PeakPyramid`` is plain numpy (no Qt).  Level ``l`` (``l >= 1``) holds the minimum and the
maximum of every run of ``factor ** l`` consecutive samples; level 0 is the samples
themselves.  For a visible span and a pane width of ``W`` device pixels, ``envelope`` picks
the coarsest level that still has at least ``W`` buckets in view (so at most
``factor * W``), then folds those buckets into exactly ``W`` columns with ``reduceat``.  The
curve therefore always has about ``2 W`` points, whatever the zoom and the clip length.
Zoomed in far enough that the view holds fewer than ``2 W`` samples, it draws the samples.

``WaveformPane`` owns the pane's ``PlotItem``: the curve, the selection region (drag on the
waveform to create it, drag its edges or body to edit it), and it recomputes the envelope in
slots connected to range and resize changes, never inside ``paint``.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal

DEFAULT_FACTOR = 8
MIN_TOP_BUCKETS = 256  # stop building levels once a level would be this short


class PeakPyramid:
    """Min/max peaks of a mono signal at bucket sizes ``factor ** level`` samples."""

    def __init__(self, samples: np.ndarray, sample_rate: int, factor: int = DEFAULT_FACTOR):
        if not 2 <= int(factor) <= 64:
            raise ValueError(f"pyramid factor must be in 2..64, got {factor}")
        self.samples = np.ascontiguousarray(np.asarray(samples, dtype=np.float32).reshape(-1))
        self.sample_rate = int(sample_rate)
        self.factor = int(factor)
        # levels[l] = (mins, maxs); levels[0] aliases the samples (bucket size 1).
        self.levels: list[tuple[np.ndarray, np.ndarray]] = [(self.samples, self.samples)]
        mins, maxs = self.samples, self.samples
        while len(mins) > MIN_TOP_BUCKETS:
            mins, maxs = _fold(mins, np.minimum, self.factor), _fold(maxs, np.maximum, self.factor)
            self.levels.append((mins, maxs))

    @classmethod
    def from_wave(cls, wave: np.ndarray, sample_rate: int, factor: int = DEFAULT_FACTOR) -> "PeakPyramid":
        """Pyramid of the mono mix of a ``[C, N]`` (or ``[N]``) wave."""
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 1:
            mono = wave
        else:
            mono = wave[0] if wave.shape[0] == 1 else wave.mean(axis=0, dtype=np.float32)
        return cls(mono, sample_rate, factor)

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def seconds(self) -> float:
        return self.n_samples / self.sample_rate

    def bucket_size(self, level: int) -> int:
        return self.factor ** int(level)

    def bucket(self, level: int, index: int) -> tuple[float, float]:
        """``(min, max)`` of bucket ``index`` at ``level``: samples ``[index*s, (index+1)*s)``."""
        mins, maxs = self.levels[level]
        return float(mins[index]), float(maxs[index])

    def peak(self) -> float:
        """Largest absolute sample value (from the top level, so O(1))."""
        mins, maxs = self.levels[-1]
        if not len(mins):
            return 0.0
        return float(max(-mins.min(), maxs.max()))

    def level_for(self, samples_per_pixel: float) -> int:
        """The coarsest level whose buckets are no wider than one pixel."""
        if samples_per_pixel < self.factor:
            return 0
        level = int(math.floor(math.log(samples_per_pixel, self.factor) + 1e-9))
        return min(level, len(self.levels) - 1)

    def envelope(self, t0: float, t1: float, n_pixels: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Points to draw for the span ``[t0, t1]`` seconds on ``n_pixels`` columns.

        Returns ``(x_seconds, y, is_envelope)``.  As an envelope the points come in pairs
        (min then max of one column, at the column's centre), ~``2 * n_pixels`` points; when
        zoomed in past ``2`` samples per column they are the raw samples (one per sample).
        """
        n_pixels = max(int(n_pixels), 1)
        n = self.n_samples
        i0 = max(int(math.floor(t0 * self.sample_rate)), 0)
        i1 = min(int(math.ceil(t1 * self.sample_rate)) + 1, n)
        if i1 <= i0:
            return np.zeros(0), np.zeros(0, dtype=np.float32), False
        if i1 - i0 <= 2 * n_pixels:
            x = np.arange(i0, i1, dtype=np.float64) / self.sample_rate
            return x, self.samples[i0:i1], False
        level = self.level_for((i1 - i0) / n_pixels)
        size = self.bucket_size(level)
        mins, maxs = self.levels[level]
        b0, b1 = i0 // size, min(-(-i1 // size), len(mins))
        n_cols = min(n_pixels, b1 - b0)
        starts = np.unique(np.linspace(0, b1 - b0, n_cols + 1)[:-1].astype(np.int64))
        col_min = np.minimum.reduceat(mins[b0:b1], starts)
        col_max = np.maximum.reduceat(maxs[b0:b1], starts)
        ends = np.append(starts[1:], b1 - b0)
        centres = (b0 + 0.5 * (starts + ends)) * (size / self.sample_rate)
        x = np.repeat(centres, 2)
        y = np.empty(2 * len(starts), dtype=np.float32)
        y[0::2], y[1::2] = col_min, col_max
        return x, y, True


def _fold(values: np.ndarray, reduce: np.ufunc, factor: int) -> np.ndarray:
    """Reduce runs of ``factor`` values (the last run may be shorter).

    ``factor`` strided element-wise passes: numpy reduces a short last axis (the obvious
    ``reshape(-1, factor).min(axis=1)``) several times slower.
    """
    full = len(values) // factor
    out = np.empty(full + (len(values) > full * factor), dtype=np.float32)
    head = out[:full]
    head[:] = values[0: full * factor: factor]
    for offset in range(1, factor):
        reduce(head, values[offset: full * factor: factor], out=head)
    if len(out) > full:
        out[full] = reduce.reduce(values[full * factor:])
    return out


# ---- shared by the timeline's panes ----------------------------------------------------------
def start_job(runner: Any, name: str, fn: Callable[..., Any], *args: Any, finished: Callable[[Any], None],
              failed: Callable[[str, str], None] | None = None) -> Any:
    """``runner.submit`` whose job waits until ``finished``/``failed`` are connected.

    A short job can otherwise finish, and emit into the void, before ``submit`` returns.
    ``finished`` / ``failed`` must be methods of QObjects living in the GUI thread, so the
    results arrive there (queued).
    """
    gate = threading.Event()

    def gated(*a: Any, progress: Any = None, cancel: Any = None, **kw: Any) -> Any:
        gate.wait()
        return fn(*a, progress=progress, cancel=cancel, **kw)

    job = runner.submit(name, gated, *args)
    try:
        job.finished.connect(finished)
        if failed is not None:
            job.failed.connect(failed)
    finally:
        gate.set()
    return job


class PaneViewBox(pg.ViewBox):
    """A time pane's view box: x-only mouse, clicks reported in view coordinates.

    With ``select_drag`` (the waveform), a plain left drag reports a selection drag
    instead of panning; shift + left drag still pans.
    """

    sigClicked = Signal(float, float, bool)          # x, y (view coords), double click
    sigSelectDrag = Signal(float, float, bool)       # start x, current x, finished

    def __init__(self, select_drag: bool = False, **kw):
        super().__init__(**kw)
        self.select_drag = select_drag
        self.setMouseEnabled(x=True, y=False)
        self.setMenuEnabled(False)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 (Qt naming)
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            self.sigClicked.emit(p.x(), p.y(), bool(ev.double()))
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802
        if (self.select_drag and ev.button() == Qt.MouseButton.LeftButton
                and not ev.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            ev.accept()
            a = self.mapSceneToView(ev.buttonDownScenePos()).x()
            b = self.mapSceneToView(ev.scenePos()).x()
            self.sigSelectDrag.emit(a, b, bool(ev.isFinish()))
        else:
            super().mouseDragEvent(ev, axis)


class WaveformPane:
    """The waveform plot: envelope curve + editable selection region.

    The timeline owns the state wiring; this class only draws and reports user gestures
    through ``view_box.sigSelectDrag`` / ``region.sigRegionChangeFinished``.
    """

    def __init__(self, axis_width: int = 64):
        self.view_box = PaneViewBox(select_drag=True)
        self.plot = pg.PlotItem(viewBox=self.view_box)
        self.plot.hideButtons()
        self.plot.setLabel("left", "wave")
        self.plot.getAxis("left").setWidth(axis_width)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.curve = pg.PlotCurveItem(pen=pg.mkPen("#7fb8e6", width=1), antialias=False)
        self.curve.setZValue(1)
        self.plot.addItem(self.curve)
        self.region = pg.LinearRegionItem(values=(0, 0), brush=pg.mkBrush(255, 210, 80, 45),
                                          pen=pg.mkPen("#ffd250", width=1), swapMode="sort")
        self.region.setZValue(5)
        self.region.hide()
        self.plot.addItem(self.region, ignoreBounds=True)
        self.pyramid: PeakPyramid | None = None
        self.last_update_ms = 0.0
        self.view_box.sigXRangeChanged.connect(self.refresh)
        self.view_box.sigResized.connect(self.refresh)

    def set_wave(self, wave: np.ndarray | None, sample_rate: int = 1) -> None:
        """Build the pyramid for a new clip now (``None`` clears the pane)."""
        self.set_pyramid(None if wave is None else PeakPyramid.from_wave(wave, sample_rate))

    def set_pyramid(self, pyramid: PeakPyramid | None) -> None:
        """Show a clip from its (already built) pyramid; ``None`` clears the pane."""
        self.pyramid = pyramid
        if pyramid is None:
            self.curve.setData([], [])
            return
        peak = max(self.pyramid.peak(), 1e-3) * 1.05
        self.view_box.setYRange(-peak, peak, padding=0)
        self.refresh()

    def pixel_width(self) -> int:
        ratio = 1.0
        view = self.view_box.getViewWidget()
        if view is not None:
            ratio = float(view.devicePixelRatioF())
        return max(int(self.view_box.width() * ratio), 64)

    def refresh(self, *_args) -> None:
        """Recompute the drawn points for the current x range and pane width."""
        if self.pyramid is None:
            return
        start = time.perf_counter()
        (t0, t1), _ = self.view_box.viewRange()
        x, y, _ = self.pyramid.envelope(t0, t1, self.pixel_width())
        self.curve.setData(x, y, connect="all")
        self.last_update_ms = (time.perf_counter() - start) * 1e3

    def show_selection(self, selection: tuple[float, float] | None) -> None:
        if selection is None:
            self.region.hide()
            return
        if tuple(self.region.getRegion()) != tuple(selection):
            self.region.blockSignals(True)
            self.region.setRegion(selection)
            self.region.blockSignals(False)
        self.region.show()
