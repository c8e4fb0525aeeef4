"""The waveform pane: draws the envelope of ``studio.layers.peaks.PeakPyramid`` at screen resolution.

``WaveformPane`` owns the pane's ``PlotItem``: the curve, the selection region (drag on the
waveform to create it, drag its edges or body to edit it), and it asks the pyramid for the
envelope in slots connected to range and resize changes, never inside ``paint``.
"""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg

from ..layers.peaks import PeakPyramid
from .pane_view import PaneViewBox


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
