"""Attribute lanes: probe-decoded attributes over time, with the measured values.

One lane per shown attribute: the paper's pitch, loudness and centroid by default, and any
attribute the workspace labels (onset, chord, instrument...) when the user picks it
(``studio.models.lane_choice``).  A registered attribute's lane draws class values: bin centres
for ordinal attributes, the class index with the class names as ticks for categorical ones.

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
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QMenu, QToolButton

from audiosae.attribute_spec import AttributeSpec

from ..layers.lanes import (DEFAULT_LANES, LaneData, LaneSpec, category_ticks, clip_lanes, lane_spec, lane_y_range,
                            pitch_ticks)
from ..models.steered_lanes import Classes, SteeredLanes
from .pane_view import PaneViewBox

DECODED_PEN = pg.mkPen("#ff9f40", width=2)
MEASURED_PEN = pg.mkPen("#4dd2ff", width=1.4, style=Qt.PenStyle.DashLine)
# Faint by colour, not by alpha: Qt strokes a dense path with a translucent wide pen
# seconds-slow (it must merge the overlapping stroke), an opaque thin one in milliseconds.
GHOST_PEN = pg.mkPen("#70757d", width=1)
TICK_PIXELS = 13   # vertical pixels per class name on a categorical lane's axis
NO_PROBES_TEXT = "probe: no SAE features for this audio"


# ---- one lane ------------------------------------------------------------------------------
class Lane:
    """One attribute plot: decoded (probe) line, measured line, ghost line, legend, hover label."""

    def __init__(self, lane: str | LaneSpec, axis_width: int = 64):
        self.data = LaneData(lane)
        self.spec = self.data.lane
        self.key, self.attribute = self.spec.key, self.spec.attribute
        axis_label, measured_name = self.spec.axis_label, self.spec.measured_name
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
        if self.spec.kind == "categorical":   # as many class names as the lane's height fits
            font = QFont()
            font.setPointSizeF(7.0)
            self.plot.getAxis("left").setTickFont(font)
            self.view_box.sigResized.connect(self.update_ticks)
            self.update_ticks()
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.legend = pg.LegendItem(offset=(-4, 1), colCount=3, labelTextSize="8pt",
                                    brush=pg.mkBrush(20, 22, 25, 215), horSpacing=12)
        self.legend.setParentItem(self.view_box)
        self.legend.setZValue(40)   # above the curves
        self.legend.addItem(self.decoded, self.spec.probe_name)
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

    def update_ticks(self, *_args) -> None:
        """Class names on a categorical lane's axis, thinned to what its height fits."""
        fits = max(2, int(self.view_box.height() // TICK_PIXELS)) if self.view_box.height() > 0 else 6
        self.plot.getAxis("left").setTicks(category_ticks(self.spec.class_names, fits))

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
            self.legend.addItem(self.decoded, self.spec.probe_name)
            self.legend.addItem(self.measured, self.spec.measured_name)

    def show_hover(self, frame: int | None, seconds: float | None = None) -> None:
        if frame is None:
            self.hover.hide()
            return
        text = self.describe(frame)
        if seconds is not None:
            text = f"t = {seconds:.3f} s · " + text
        self.hover.setText(text)
        self.hover.show()


# ---- the lanes ---------------------------------------------------------------------------------
class LanesPane(QObject):
    """The shown attributes' lanes, fed from a ``ClipAnalysis`` and the steered ``f'``."""

    failed = Signal(str)   # a decoding job failed (the message)
    clicked = Signal(float, float, bool)   # a click on any lane: x (s), y, double

    def __init__(self, runner: Any = None, axis_width: int = 64):
        super().__init__()
        self.runner = runner
        self.axis_width = axis_width
        self.lanes: dict[str, Lane] = {}
        self.set_lanes([lane_spec(attr) for attr in DEFAULT_LANES])
        self.times = np.zeros(0)
        self.boundaries = np.zeros(0)
        self.decoder = SteeredLanes(runner, self._apply, on_failed=self.failed.emit)

    def set_lanes(self, specs: list[LaneSpec]) -> bool:
        """Show these lanes (new ``Lane`` objects for new ones, kept ones reused); True when the
        list changed (the caller lays the plots out again and gives the clip again)."""
        keys = [spec.key for spec in specs]
        if keys == list(self.lanes) and all(self.lanes[s.key].spec == s for s in specs):
            return False
        kept = {key: lane for key, lane in self.lanes.items() if key in keys}
        self.lanes = {spec.key: kept[spec.key] if spec.key in kept and kept[spec.key].spec == spec
                      else self._new_lane(spec) for spec in specs}
        return True

    def _new_lane(self, spec: LaneSpec) -> Lane:
        lane = Lane(spec, self.axis_width)
        lane.view_box.sigClicked.connect(self.clicked.emit)
        return lane

    def set_clip(self, analysis: Any, spec: AttributeSpec | None, probes: Any = None) -> None:
        """Measured values, unsteered decode and value tables of a new clip (``None`` clears); a
        lane says why it has no probe line (no SAE features, or no probe for its attribute)."""
        self.decoder.set_probes(probes)
        if analysis is None:
            self.times = np.zeros(0)
            for lane in self.lanes.values():
                lane.set_placeholder("")
                lane.set_clip(None, np.zeros(0), None, None)
            return
        spec = spec or AttributeSpec()
        self.times = np.asarray(analysis.times, dtype=np.float64)
        self.boundaries = 0.5 * (self.times[1:] + self.times[:-1])
        data = clip_lanes(analysis, spec, [lane.spec for lane in self.lanes.values()])
        featureless = not analysis.f.shape[1]
        for key, lane in self.lanes.items():
            table, measured, classes = data[key]
            fixed = lane_y_range(lane.spec, spec, table)
            if fixed is not None:   # before the clip: loudness draws silence on the lane's floor
                lane.set_y_range(*fixed)
            if featureless:
                lane.set_placeholder(NO_PROBES_TEXT)
            elif classes is None:
                lane.set_placeholder(f"probe: this SAE has no {lane.attribute} probe "
                                     f"(audiosae train --attributes … {lane.attribute})")
            else:
                lane.set_placeholder("")
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
        for i, lane in enumerate(self.lanes.values()):   # the time once, on the top lane
            lane.show_hover(frame, float(self.times[frame]) if i == 0 else None)


# ---- the lane chooser ---------------------------------------------------------------------------
class LanesButton(QToolButton):
    """"Lanes ▾": a checkable entry per attribute the workspace labels (``LaneChoice``), and a
    reset to the paper's three.  Only shows and asks; the choice is the view-model's."""

    def __init__(self, choice: Any, parent: Any = None):
        super().__init__(parent)
        self.choice = choice
        self.descriptions: dict[str, str] = {}
        self.setText("Lanes")
        self.setToolTip("which attribute lanes to show under the heatmap")
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.setAutoRaise(True)
        self.setMenu(QMenu(self))
        self.menu().aboutToShow.connect(self.rebuild)
        self.rebuild()

    def set_descriptions(self, descriptions: dict[str, str]) -> None:
        """Tooltips per attribute (the registry's description)."""
        self.descriptions = dict(descriptions)
        self.rebuild()

    def rebuild(self) -> None:
        menu = self.menu()
        menu.clear()
        menu.setToolTipsVisible(True)
        shown = set(self.choice.shown)
        for attr in self.choice.available:
            action = menu.addAction(attr)
            action.setCheckable(True)
            action.setChecked(attr in shown)
            action.setToolTip(self.descriptions.get(attr, ""))
            action.toggled.connect(lambda on, a=attr: self.choice.set_shown(a, on))
        menu.addSeparator()
        menu.addAction("Paper's three (pitch, loudness, centroid)").triggered.connect(self.choice.reset)
