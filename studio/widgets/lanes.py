"""Attribute lanes: probe-decoded pitch, loudness and centroid over time, with the measured values.

The lanes' data (values per frame, the visible curves, hover text) is ``studio.layers.lanes``;
these views draw it.  Decoding ``f'`` (the core's ``decode_classes``, at once when small, as a
job when large, newest wins) is the view-model's, ``studio.models.steered_lanes``: the lanes are
given classes per attribute.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal

from audiosae.attribute_spec import AttributeSpec

from ..layers.lanes import LANES, LaneData, clip_lanes, lane_y_range, pitch_ticks
from ..models.steered_lanes import Classes, SteeredLanes
from .pane_view import PaneViewBox

DECODED_PEN = pg.mkPen("#ff9f40", width=2)
MEASURED_PEN = pg.mkPen("#4dd2ff", width=1.4, style=Qt.PenStyle.DashLine)
# Faint by colour, not by alpha: Qt strokes a dense path with a translucent wide pen
# seconds-slow (it must merge the overlapping stroke), an opaque thin one in milliseconds.
GHOST_PEN = pg.mkPen("#70757d", width=1)


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
        self.data = LaneData(key)

    # -- data (the layer's) ------------------------------------------------------------------
    @property
    def times(self) -> np.ndarray:
        return self.data.times

    @property
    def classes(self) -> np.ndarray:
        return self.data.classes

    @property
    def base_classes(self) -> np.ndarray:
        return self.data.base_classes

    @property
    def table(self) -> np.ndarray:
        return self.data.table

    @property
    def steered(self) -> bool:
        return self.data.steered

    @property
    def _series(self) -> dict[str, np.ndarray | None]:
        return self.data.series

    def decoded_values(self) -> np.ndarray:
        return self.data.decoded_values()

    def describe(self, frame: int) -> str:
        return self.data.describe(frame)

    def set_clip(self, times: np.ndarray | None, table: np.ndarray, measured: np.ndarray | None,
                 classes: np.ndarray | None) -> None:
        if not self.data.set_clip(times, table, measured, classes):
            self.redraw()
            return
        self.set_classes(None)

    def set_classes(self, steered: np.ndarray | None) -> None:
        """Show the decode of ``f'`` (``steered``) with the unsteered one as a ghost, or the plain decode."""
        self.data.set_classes(steered)
        if self.data.series.get("ghost") is not None:
            if self.legend.getLabel(self.ghost) is None:
                self.legend.addItem(self.ghost, "unsteered")
        else:
            self.legend.removeItem(self.ghost)
        fitted = self.data.fitted_y_range()
        if fitted is not None:
            self.set_y_range(*fitted)
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
            item.setData(*self.data.curve(name, t0, t1, width))

    def set_y_range(self, lo: float, hi: float) -> None:
        self.data.y_range = (float(lo), float(hi))
        self.view_box.setYRange(lo, hi, padding=0)
        if self.key == "pitch":
            self.plot.getAxis("left").setTicks(pitch_ticks(lo, hi))

    # -- hover -----------------------------------------------------------------------------
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
        self.decoder = SteeredLanes(runner, self._apply, on_failed=self.failed.emit)

    def set_clip(self, analysis: Any, spec: AttributeSpec | None, probes: Any = None) -> None:
        """Measured values, unsteered decode and value tables of a new clip (``None`` clears)."""
        self.decoder.set_probes(probes)
        if analysis is None:
            self.times = np.zeros(0)
            for lane in self.lanes.values():
                lane.set_clip(None, np.zeros(0), None, None)
            return
        spec = spec or AttributeSpec()
        self.times = np.asarray(analysis.times, dtype=np.float64)
        self.boundaries = 0.5 * (self.times[1:] + self.times[:-1])
        data = clip_lanes(analysis, spec)
        for key, lane in self.lanes.items():
            fixed = lane_y_range(key, spec)
            if fixed is not None:   # before the clip: loudness draws silence on the lane's floor
                lane.set_y_range(*fixed)
            table, measured, classes = data[key]
            lane.set_clip(self.times, table, measured, classes)

    def set_steered_features(self, f: np.ndarray | None) -> None:
        """Show the probes' decode of ``f'`` (or the unsteered decode when ``None``), when the view-model has it."""
        self.decoder.request(f, [lane.attribute for lane in self.lanes.values()], len(self.times))

    @property
    def pending(self) -> bool:
        return self.decoder.pending

    def _apply(self, classes: Classes | None) -> None:
        for lane in self.lanes.values():
            lane.set_classes(None if classes is None else classes.get(lane.attribute))

    def cancel_pending(self) -> None:
        self.decoder.cancel()

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
