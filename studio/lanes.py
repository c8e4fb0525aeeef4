"""Attribute lanes: probe-decoded pitch, loudness and centroid over time, with the measured values.

Each lane draws, per latent frame:

- the probe's decoded class as its representative value (``AttributeSpec.class_value``:
  MIDI note, loudness bin centre in dB, centroid bin centre in Hz; unvoiced = gap);
- the measured value (CREPE pitch, RMS level, spectral centroid) in another colour/style;
- while steering, the decode of the steered features ``f'`` in front and the unsteered
  decode as a faint ghost, so the effect of the control vector shows live.

The pure helpers (``value_table``, ``measured_values``) are numpy only; probe decoding
(``decode_classes``, ``decode_cost``) is the core's, ``audiosae.explore.decoding``.  Decoding ``f'`` is one matrix product per attribute; it runs in the GUI thread when
small and as a ``JobRunner`` job (newest wins) when large.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal

from audiosae.attributes import MIDI_MAX, MIDI_MIN, AttributeSpec, FrameAttributes, midi_to_name
from audiosae.explore.decoding import DECODE_CHUNK_FRAMES, decode_classes, decode_cost  # noqa: F401
from audiosae.jobs import CancelToken, null_progress

from .waveform import PaneViewBox, start_job

# lane key -> (probe attribute, axis label, legend name of the measurement)
LANES: dict[str, tuple[str, str, str]] = {
    "pitch": ("pitch", "pitch", "CREPE"),
    "loudness": ("loudness", "loudness dB", "RMS"),
    "centroid": ("timbre", "centroid Hz", "measured"),
}
SYNC_DECODE_LIMIT = 60_000_000  # multiply-adds; above this the decode runs as a job
DECODED_PEN = pg.mkPen("#ff9f40", width=2)
MEASURED_PEN = pg.mkPen("#4dd2ff", width=1.4, style=Qt.PenStyle.DashLine)
# Faint by colour, not by alpha: Qt strokes a dense path with a translucent wide pen
# seconds-slow (it must merge the overlapping stroke), an opaque thin one in milliseconds.
GHOST_PEN = pg.mkPen("#70757d", width=1)


# ---- pure helpers --------------------------------------------------------------------------
def value_table(spec: AttributeSpec, attribute: str, n_classes: int) -> np.ndarray:
    """Representative value per class (a Python loop over classes, never over frames)."""
    return np.array([spec.class_value(attribute, k) for k in range(n_classes)], dtype=np.float64)


def measured_values(lane: str, measured: FrameAttributes, measured_classes: Mapping[str, np.ndarray]) -> np.ndarray:
    """The measured series for a lane; frames without a meaningful value are NaN (gaps)."""
    if lane == "pitch":
        voiced = np.asarray(measured_classes.get("pitch", np.isfinite(measured.midi)), dtype=bool)
        return np.where(voiced & np.isfinite(measured.midi), measured.midi, np.nan)
    if lane == "loudness":
        return np.asarray(measured.loudness_db, dtype=np.float64)
    centroid = np.asarray(measured.centroid_hz, dtype=np.float64)
    return np.where(centroid > 0, centroid, np.nan)   # 0 Hz marks a silent frame


def decode_job(token: Any, probes: Any, f: np.ndarray, attributes: Sequence[str], *, progress=null_progress,
               cancel: CancelToken | None = None) -> tuple[Any, dict[str, np.ndarray]]:
    """``decode_classes`` as a ``JobRunner`` job; ``token`` comes back with the result."""
    return token, decode_classes(probes, f, attributes, cancel=cancel)


def pitch_ticks(lo: float, hi: float) -> list[list[tuple[float, str]]]:
    """Y ticks for a MIDI axis: every C named; E and G named too when the span is small."""
    named = (0,) if hi - lo > 30 else (0, 4, 7)
    first, last = int(math.ceil(lo)), int(math.floor(hi))
    major = [(float(m), midi_to_name(m)) for m in range(first, last + 1) if m % 12 in named]
    minor = [(float(m), "") for m in range(first, last + 1) if m % 12 not in named]
    return [major, minor]


def visible_minmax(x: np.ndarray, y: np.ndarray, t0: float, t1: float, n_columns: int
                   ) -> tuple[np.ndarray, np.ndarray, bool]:
    """The points of ``(x, y)`` to draw for ``[t0, t1]`` on ``n_columns`` pixel columns.

    Returns ``(x, y, reduced)``.  With more visible points than ``2 * n_columns``, each
    column becomes its min and max (NaN-aware: a column that is all NaN stays a gap), so
    steps and spikes survive; otherwise the visible points themselves (plus one each side).
    """
    i0 = max(int(np.searchsorted(x, t0, side="left")) - 1, 0)
    i1 = min(int(np.searchsorted(x, t1, side="right")) + 1, len(x))
    n_columns = max(int(n_columns), 1)
    if i1 - i0 <= 2 * n_columns:
        return x[i0:i1], y[i0:i1], False
    starts = np.unique(np.linspace(i0, i1, n_columns + 1)[:-1].astype(np.int64)) - i0
    lo = np.fmin.reduceat(y[i0:i1], starts)
    hi = np.fmax.reduceat(y[i0:i1], starts)
    ends = np.append(starts[1:], i1 - i0)
    centres = 0.5 * (x[i0 + starts] + x[i0 + ends - 1])
    ys = np.empty(2 * len(starts))
    ys[0::2], ys[1::2] = lo, hi
    return np.repeat(centres, 2), ys, True


def as_steps(x: np.ndarray, y: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Each value held over its frame ``[x - dt/2, x + dt/2]``: class decodes are steps, not slopes."""
    xs = np.empty(2 * len(x))
    xs[0::2], xs[1::2] = x - 0.5 * dt, x + 0.5 * dt
    return xs, np.repeat(y, 2)


def drop_flat_runs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep only the first and last point of each run of equal values (a step series draws the same)."""
    if len(y) < 3:
        return x, y
    keep = np.ones(len(y), dtype=bool)
    keep[1:-1] = ~((y[1:-1] == y[:-2]) & (y[1:-1] == y[2:]))
    return x[keep], y[keep]


# ---- one lane ------------------------------------------------------------------------------
class Lane:
    """One attribute plot: decoded (probe) line, measured line, ghost line, legend, hover label."""

    def __init__(self, key: str, axis_width: int = 64):
        self.key = key
        self.attribute, axis_label, measured_name = LANES[key]
        self.view_box = PaneViewBox()
        self.plot = pg.PlotItem(viewBox=self.view_box)
        self.plot.hideButtons()
        self.plot.setLabel("left", axis_label)
        self.plot.getAxis("left").setWidth(axis_width)
        self.ghost = pg.PlotDataItem(pen=GHOST_PEN, connect="finite")
        self.measured = pg.PlotDataItem(pen=MEASURED_PEN, connect="finite")
        self.decoded = pg.PlotDataItem(pen=DECODED_PEN, connect="finite")
        # The measurement goes on top: where the probe is right the two coincide, and a
        # dashed line over a solid one still shows both.
        for z, item in enumerate((self.ghost, self.decoded, self.measured)):
            item.setZValue(z)
            self.plot.addItem(item)
        # The curves hold only what is visible, at most a min/max pair per device pixel,
        # recomputed when the range or the size changes (never in paint).
        self.view_box.sigXRangeChanged.connect(self.redraw)
        self.view_box.sigResized.connect(self.redraw)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.legend = pg.LegendItem(offset=(-4, 1), colCount=3, labelTextSize="8pt",
                                    brush=pg.mkBrush(20, 22, 25, 215), horSpacing=12)
        self.legend.setParentItem(self.view_box)
        self.legend.setZValue(40)   # above the curves
        self.legend.addItem(self.decoded, "probe")
        self.legend.addItem(self.measured, measured_name)
        self.hover = pg.TextItem("", color="#e8e8e8", anchor=(0, 0), fill=pg.mkBrush(20, 20, 20, 170))
        self.hover.setParentItem(self.view_box)   # pixel-positioned, not in data coordinates
        self.hover.setPos(4, 2)
        self.hover.setZValue(40)
        self.hover.hide()
        # Says why there is no probe line (a clip analysed without SAE features).
        self.placeholder = pg.TextItem("", color="#9aa0a6", anchor=(0, 0))
        self.placeholder.setParentItem(self.view_box)
        self.placeholder.setPos(4, 2)
        self.placeholder.setZValue(39)   # under the hover label
        self.placeholder.hide()
        self.times = np.zeros(0)
        self.table = np.zeros(0)
        self.measured_y = np.zeros(0)
        self.base_classes = np.zeros(0, dtype=np.int64)
        self.classes = np.zeros(0, dtype=np.int64)
        self.steered = False
        self._series: dict[str, np.ndarray | None] = {}
        self._y_range = (0.0, 1.0)

    # -- data ------------------------------------------------------------------------------
    def set_clip(self, times: np.ndarray | None, table: np.ndarray, measured: np.ndarray | None,
                 classes: np.ndarray | None) -> None:
        if times is None:
            self.times = np.zeros(0)
            self._series = {}
            self.redraw()
            return
        self.times = np.asarray(times, dtype=np.float64)
        self.table = np.asarray(table, dtype=np.float64)
        self.measured_y = np.asarray(measured, dtype=np.float64) if measured is not None \
            else np.full(len(self.times), np.nan)
        self.base_classes = np.asarray(classes, dtype=np.int64) if classes is not None \
            else np.zeros(0, dtype=np.int64)
        self._series["measured"] = self._displayable(self.measured_y)
        self.set_classes(None)

    def set_classes(self, steered: np.ndarray | None) -> None:
        """Show the decode of ``f'`` (``steered``) with the unsteered one as a ghost, or the plain decode."""
        self.steered = steered is not None
        self.classes = np.asarray(steered, dtype=np.int64) if steered is not None else self.base_classes
        self._series["decoded"] = self.decoded_values() if len(self.classes) == len(self.times) else None
        if self.steered and len(self.base_classes):
            self._series["ghost"] = self.table[self.base_classes]
            if self.legend.getLabel(self.ghost) is None:
                self.legend.addItem(self.ghost, "unsteered")
        else:
            self._series["ghost"] = None
            self.legend.removeItem(self.ghost)
        self._fit_y()
        self.redraw()

    def pixel_width(self) -> int:
        view = self.view_box.getViewWidget()
        ratio = float(view.devicePixelRatioF()) if view is not None else 1.0
        return max(int(self.view_box.width() * ratio), 64)

    def redraw(self, *_args) -> None:
        """Put the visible part of each series into its curve (a slot, not paint)."""
        (t0, t1), _ = self.view_box.viewRange()
        width = self.pixel_width()
        for name, item in (("ghost", self.ghost), ("decoded", self.decoded), ("measured", self.measured)):
            values = self._series.get(name)
            if values is None or not len(self.times):
                item.setData([], [])
            else:
                x, y, reduced = visible_minmax(self.times, values, t0, t1, width)
                if name != "measured":   # decoded classes are steps: only their corners matter
                    if not reduced and len(self.times) > 1:
                        x, y = as_steps(x, y, float(self.times[1] - self.times[0]))
                    x, y = drop_flat_runs(x, y)
                item.setData(x, y)

    def decoded_values(self) -> np.ndarray:
        """Representative value per frame of the shown decode (NaN = gap)."""
        if not len(self.classes) or not len(self.table):
            return np.zeros(0)
        return self.table[self.classes]

    def _displayable(self, values: np.ndarray) -> np.ndarray:
        if self.key == "loudness":  # digital silence reads -120 dB: draw it on the lane's floor
            return np.maximum(values, self._y_range[0])
        return values

    def set_y_range(self, lo: float, hi: float) -> None:
        self._y_range = (float(lo), float(hi))
        self.view_box.setYRange(lo, hi, padding=0)
        if self.key == "pitch":
            self.plot.getAxis("left").setTicks(pitch_ticks(lo, hi))

    def _fit_y(self) -> None:
        """Pitch: fit the notes present (>= one octave); others: the spec's fixed range."""
        if self.key != "pitch":
            return
        values = np.concatenate([self.measured_y, self.decoded_values(),
                                 self.table[self.base_classes] if len(self.base_classes) else np.zeros(0)])
        values = values[np.isfinite(values)]
        if values.size:
            lo, hi = float(values.min()) - 2.0, float(values.max()) + 2.0
        else:
            lo, hi = 48.0, 72.0
        if hi - lo < 12.0:
            mid = 0.5 * (lo + hi)
            lo, hi = mid - 6.0, mid + 6.0
        self.set_y_range(max(lo, MIDI_MIN - 2.0), min(hi, MIDI_MAX + 2.0))

    # -- hover -----------------------------------------------------------------------------
    def describe(self, frame: int) -> str:
        """Values at ``frame``: decoded (and unsteered when steering) and measured."""
        if not 0 <= frame < len(self.times):
            return ""
        parts = []
        if len(self.classes):   # no probe decode without SAE features: the measurement alone
            text = f"probe {self._format(self.table[self.classes[frame]])}"
            if self.steered and len(self.base_classes):
                text += f" (was {self._format(self.table[self.base_classes[frame]])})"
            parts.append(text)
        measured = self.measured_y[frame] if frame < len(self.measured_y) else np.nan
        label = LANES[self.key][2]
        if self.key == "pitch" and np.isfinite(measured):
            nearest = int(round(measured))
            cents = int(round(100 * (measured - nearest)))
            parts.append(f"{label} {midi_to_name(nearest)} {cents:+d} c")
        else:
            parts.append(f"{label} {self._format(measured)}")
        return " · ".join(parts)

    def set_placeholder(self, text: str) -> None:
        """A short line where the probe's decode would be ("" hides it); the legend names the
        probe only when there is one."""
        self.placeholder.setText(text)
        self.placeholder.setVisible(bool(text))
        listed = self.legend.getLabel(self.decoded) is not None
        if text and listed:
            self.legend.removeItem(self.decoded)
        elif not text and not listed:   # back in its place, before the measurement
            self.legend.removeItem(self.measured)
            self.legend.addItem(self.decoded, "probe")
            self.legend.addItem(self.measured, LANES[self.key][2])

    def _format(self, value: float) -> str:
        if not np.isfinite(value):
            return "unvoiced" if self.key == "pitch" else "—"
        if self.key == "pitch":
            return midi_to_name(int(round(value)))
        if self.key == "loudness":
            return f"{value:.1f} dB"
        return f"{value / 1000:.2f} kHz" if value >= 1000 else f"{value:.0f} Hz"

    def show_hover(self, frame: int | None, seconds: float | None = None) -> None:
        if frame is None:
            self.hover.hide()
            return
        text = self.describe(frame)
        if seconds is not None and self.key == "pitch":
            text = f"t = {seconds:.3f} s · " + text
        self.hover.setText(text)
        self.hover.show()


# ---- the three lanes -------------------------------------------------------------------------
class LanesPane(QObject):
    """Pitch, loudness and centroid lanes, fed from a ``ClipAnalysis`` and the steered ``f'``."""

    failed = Signal(str)   # a decoding job failed (the message)

    def __init__(self, runner: Any = None, axis_width: int = 64):
        super().__init__()
        self.runner = runner
        self.lanes = {key: Lane(key, axis_width) for key in LANES}
        self.times = np.zeros(0)
        self.boundaries = np.zeros(0)
        self._probes: Any = None
        self._version = 0
        self._job: Any = None

    def set_clip(self, analysis: Any, spec: AttributeSpec | None, probes: Any = None) -> None:
        """Measured values, unsteered decode and value tables of a new clip (``None`` clears)."""
        self.cancel_pending()
        self._probes = probes
        if analysis is None:
            self.times = np.zeros(0)
            for lane in self.lanes.values():
                lane.set_clip(None, np.zeros(0), None, None)
            return
        spec = spec or AttributeSpec()
        self.times = np.asarray(analysis.times, dtype=np.float64)
        self.boundaries = 0.5 * (self.times[1:] + self.times[:-1])
        for key, lane in self.lanes.items():
            attr = lane.attribute
            probs = analysis.probabilities.get(attr)
            n_classes = probs.shape[1] if probs is not None else spec.n_classes(attr)
            table = value_table(spec, attr, n_classes)
            if key == "loudness":
                lo, hi = spec.edges("loudness")[0], spec.edges("loudness")[-1]
                lane.set_y_range(lo - 3.0, hi + 3.0)
            elif key == "centroid":
                edges = spec.edges("timbre")
                pad = 0.05 * (edges[-1] - edges[0])
                lane.set_y_range(max(edges[0] - pad, 0.0), edges[-1] + pad)
            classes = probs.argmax(axis=1) if probs is not None else None
            lane.set_clip(self.times, table, measured_values(key, analysis.measured, analysis.measured_classes),
                          classes)

    def set_steered_features(self, f: np.ndarray | None) -> None:
        """Decode ``f'`` with the probes (or go back to the unsteered decode when ``None``)."""
        self.cancel_pending()
        self._version += 1
        if (f is None or self._probes is None or not len(self.times) or f.shape[0] != len(self.times)
                or f.shape[1] != self._probes.d_features):
            for lane in self.lanes.values():
                lane.set_classes(None)
            return
        attributes = [lane.attribute for lane in self.lanes.values() if lane.attribute in self._probes.weights]
        cost = decode_cost(f, [self._probes.n_classes(a) for a in attributes])
        if self.runner is None or cost <= SYNC_DECODE_LIMIT:
            self._apply(self._version, decode_classes(self._probes, f, attributes))
            return
        self._job = start_job(self.runner, "decode steered probes", decode_job, self._version, self._probes, f,
                              attributes, finished=self._on_decoded, failed=self._on_failed)

    def _on_failed(self, message: str, _traceback: str) -> None:
        self._job = None
        self.failed.emit(message)

    def _on_decoded(self, result: tuple[int, dict[str, np.ndarray]]) -> None:
        self._apply(*result)

    @property
    def pending(self) -> bool:
        return self._job is not None

    def _apply(self, version: int, classes: dict[str, np.ndarray]) -> None:
        if version != self._version:   # a newer f' arrived meanwhile
            return
        self._job = None
        for lane in self.lanes.values():
            lane.set_classes(classes.get(lane.attribute))

    def cancel_pending(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self._job = None

    def frame_at(self, x: float) -> int:
        return int(np.searchsorted(self.boundaries, x, side="right")) if len(self.times) else 0

    def show_hover(self, x: float | None) -> None:
        """Crosshair labels in every lane at time ``x`` (``None`` hides them)."""
        if x is None or not len(self.times):
            for lane in self.lanes.values():
                lane.show_hover(None)
            return
        frame = self.frame_at(x)
        for lane in self.lanes.values():
            lane.show_hover(frame, float(self.times[frame]))
