"""The generation view's display: the state slider and Play, the SAE features of ``X_t`` as a
time x feature image (colour levels fixed over the whole trace), the probe decode per attribute
with the final state as a grey ghost, and the ``s_t`` curves with their convergence markers
(``TraceDisplay``, a part of ``GenerationView``; it draws what ``GenerationModel`` holds)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSlider,
                               QSplitter, QVBoxLayout, QWidget)

from audiosae import defaults as D

from ...layers.feature_rows import COLOR_MAP, display_levels
from ...layers.lanes import as_steps
from ...models.generation import SOURCE_LABELS
from ..curves import PALETTE
from ..lanes import DECODED_PEN, GHOST_PEN

BACKGROUND = "#141619"
CURSOR_PEN = pg.mkPen("#ff4d4d", width=1.5)
THRESHOLD_PEN = pg.mkPen("#9aa0a6", width=1, style=Qt.PenStyle.DashLine)
LANE_HEIGHT = 96


def class_ticks(attribute: str, names: list[str]) -> list[tuple[float, str]]:
    """Sparse y ticks for a class-index axis: every C for pitch, about six bins otherwise."""
    if attribute == "pitch":
        return [(float(k), n) for k, n in enumerate(names) if k == 0 and n == "unvoiced" or n[:1] == "C" and
                n[1:2].isdigit() or n[:1] == "C" and n[1:2] == "-"]
    every = max(1, len(names) // 5)
    return [(float(k), names[k].split("..")[0] + (" " + names[k].split(" ")[-1] if " " in names[k] else ""))
            for k in range(0, len(names), every)]


class TraceDisplay:
    """The display half of ``GenerationView`` (a mixin: the widgets are the view's attributes)."""

    def _build_display(self) -> QWidget:
        """The right column: the state slider and Play, the feature image, the lanes and the s_t curves."""
        display = QWidget(self)
        column = QVBoxLayout(display)
        column.setContentsMargins(4, 0, 0, 0)
        bar = QHBoxLayout()
        self.slider = QSlider(Qt.Orientation.Horizontal, display, objectName="step_slider")
        self.slider.setRange(0, 0)
        self.slider.setPageStep(4)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(1)
        self.slider.valueChanged.connect(self.set_step)
        self.step_label = QLabel(display, objectName="step_label")
        self.step_label.setMinimumWidth(self.fontMetrics().horizontalAdvance("state 31/31 · t = 1.000 · L0 9999.9"))
        bar.addWidget(QLabel("State"))
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.step_label)
        self.source_combo = QComboBox(display, objectName="play_source")
        for key, label in SOURCE_LABELS.items():
            self.source_combo.addItem(label, key)
        self.source_combo.setToolTip("Play the sampler state X_t or its predicted end point x̂1 = X_t + (1 - t) v")
        self.play_button = QPushButton("Play", display, objectName="play_step")
        self.play_button.setToolTip("Decode this state with the workspace backend and play it")
        self.play_button.clicked.connect(lambda: self.play_step())
        bar.addWidget(self.source_combo)
        bar.addWidget(self.play_button)
        column.addLayout(bar)

        pg.setConfigOptions(antialias=False)
        splitter = QSplitter(Qt.Orientation.Vertical, display)
        self.heatmap_plot = pg.PlotWidget(background=BACKGROUND)
        self.heatmap_plot.setObjectName("heatmap")
        item = self.heatmap_plot.getPlotItem()
        item.setMouseEnabled(x=True, y=False)
        item.setLabel("left", "feature (rank)")
        item.getAxis("left").setWidth(72)
        item.setTitle("SAE features of X_t")
        self.heatmap_plot.getViewBox().invertY(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.colormap = pg.colormap.get(COLOR_MAP)
        self.image.setColorMap(self.colormap)
        item.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=self.colormap, interactive=False,
                                        width=10, label="f")
        self.colorbar.setImageItem(self.image, insert_in=item)
        self.heatmap_note = pg.TextItem("", color="#c8c8c8", anchor=(0.5, 0.5))
        item.addItem(self.heatmap_note)
        splitter.addWidget(self.heatmap_plot)

        self.lanes_box = pg.GraphicsLayoutWidget()
        self.lanes_box.setBackground(BACKGROUND)
        self.lanes_box.setObjectName("lanes")
        self.lanes_box.setMinimumHeight(3 * LANE_HEIGHT // 2)
        self.lane_plots: dict[str, pg.PlotItem] = {}
        self.lane_curves: dict[str, pg.PlotDataItem] = {}
        self.ghost_curves: dict[str, pg.PlotDataItem] = {}
        splitter.addWidget(self.lanes_box)

        self.curves_plot = pg.PlotWidget(background=BACKGROUND)
        self.curves_plot.setObjectName("s_t")
        citem = self.curves_plot.getPlotItem()
        citem.setLabel("left", "s_t")
        citem.setLabel("bottom", "sampler state (0 = noise)")
        citem.getAxis("left").setWidth(72)
        citem.setYRange(-0.02, 1.05)
        citem.setMouseEnabled(x=False, y=False)
        citem.addLegend(offset=(10, 5), labelTextSize="8pt")  # top left: s_t starts at 0 there
        self.cursor = pg.InfiniteLine(0, angle=90, pen=CURSOR_PEN, movable=False)
        citem.addItem(self.cursor)
        self.threshold_line = pg.InfiniteLine(D.TRACE_THRESHOLD, angle=0, pen=THRESHOLD_PEN, movable=False)
        citem.addItem(self.threshold_line)
        self.st_curves: dict[str, pg.PlotDataItem] = {}
        self.markers: dict[str, pg.ScatterPlotItem] = {}
        curves_box = QWidget(display)
        curves_layout = QVBoxLayout(curves_box)
        curves_layout.setContentsMargins(0, 0, 0, 0)
        self.paper_form = QCheckBox("paper form (per-class progress from the start, §6)", curves_box,
                                    objectName="paper_form")
        self.paper_form.toggled.connect(lambda _on: self._draw_curves())
        self.convergence_label = QLabel(curves_box, objectName="convergence", wordWrap=True)
        row = QHBoxLayout()
        row.addWidget(self.paper_form)
        row.addWidget(self.convergence_label, 1)
        curves_layout.addLayout(row)
        curves_layout.addWidget(self.curves_plot, 1)
        splitter.addWidget(curves_box)
        splitter.setSizes([340, 260, 220])
        column.addWidget(splitter, 1)
        display.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        return display

    # ---- the layout of a trace ------------------------------------------------------------------
    def _set_layout(self, attributes: list[str], class_names: dict[str, list[str]], frames: int,
                    frame_rate: float) -> None:
        """(Re)build the lanes and curves for these attributes (only when they change)."""
        seconds = frames / frame_rate
        self._frames, self._frame_rate = frames, frame_rate
        if attributes != self._attributes or class_names != self._class_names:
            self._attributes, self._class_names = list(attributes), {a: list(class_names[a]) for a in attributes}
            self.lanes_box.clear()
            self.lane_plots.clear()
            self.lane_curves.clear()
            self.ghost_curves.clear()
            first = None
            for i, attr in enumerate(attributes):
                plot = self.lanes_box.addPlot(row=i, col=0)
                plot.setMouseEnabled(x=True, y=False)
                plot.hideButtons()
                plot.getAxis("left").setWidth(72)
                plot.setLabel("left", attr)
                names = self._class_names[attr]
                plot.getAxis("left").setTicks([class_ticks(attr, names), []])
                plot.setYRange(-0.5, len(names) - 0.5, padding=0.02)
                plot.showAxis("bottom", i == len(attributes) - 1)
                if i == len(attributes) - 1:
                    plot.setLabel("bottom", "time (s)")
                self.ghost_curves[attr] = plot.plot(pen=GHOST_PEN, connect="finite")
                self.lane_curves[attr] = plot.plot(pen=DECODED_PEN, connect="finite")
                if first is None:
                    first = plot
                    plot.setTitle("<span style='color:#ff9f40'>probe argmax of X_t at state t</span>"
                                  " &nbsp; <span style='color:#9aa0a6'>final state (ghost)</span>", size="9pt")
                else:
                    plot.setXLink(first)
                self.lane_plots[attr] = plot
            if first is not None:
                first.setXLink(self.heatmap_plot.getPlotItem())
            citem = self.curves_plot.getPlotItem()
            for curve in list(self.st_curves.values()) + list(self.markers.values()):
                citem.removeItem(curve)
            if citem.legend is not None:
                citem.legend.clear()
            self.st_curves.clear()
            self.markers.clear()
            for i, attr in enumerate(attributes):
                color = PALETTE[i % len(PALETTE)]
                self.st_curves[attr] = citem.plot(pen=pg.mkPen(color, width=2), name=attr)
                marker = pg.ScatterPlotItem(size=11, symbol="t", pen=pg.mkPen(color), brush=pg.mkBrush(color))
                citem.addItem(marker)
                self.markers[attr] = marker
        self.heatmap_plot.getPlotItem().setXRange(0, seconds, padding=0)

    # ---- showing a trace or the live states -----------------------------------------------------
    def _show_empty(self) -> None:
        self.image.clear()
        self.heatmap_note.setText("Run a generation or open a trace (File ▸ Open trace…)")
        self.heatmap_note.setPos(0.5, 0.5)
        self.heatmap_plot.getPlotItem().setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
        self.step_label.setText("no trace")
        self.play_button.setEnabled(False)

    def _draw_trace(self, trace) -> None:
        """Draw the model's finished (or opened) trace at its last state."""
        self._set_layout(trace.attributes, trace.meta["class_names"], trace.frames,
                         float(trace.meta.get("frame_rate", self._frame_rate)))
        rows = self.model.stack.shape[2]
        flat = np.asarray(self.model.stack, dtype=np.float32).reshape(-1, max(rows, 1))
        self.model.levels = display_levels(flat)   # one pair for every state: change shows as colour
        self.colorbar.setLevels(self.levels)
        self._image_rect = QRectF(0.0, 0.0, trace.frames / self._frame_rate, float(rows))
        self.heatmap_plot.getPlotItem().setRange(xRange=(0, trace.frames / self._frame_rate), yRange=(0, rows),
                                                 padding=0)
        self.heatmap_plot.getPlotItem().setTitle(
            f"SAE features of X_t ({'all' if trace.features['x_t'].full is not None else 'top'} {rows}, "
            f"fixed levels 0–{self.levels[1]:.3g})")
        self.heatmap_note.setText("")
        finals = {a: trace.distributions["x_t"][a][-1] for a in trace.attributes}
        self._draw_ghosts(finals)
        self.slider.blockSignals(True)
        self.slider.setRange(0, trace.steps - 1)
        self.slider.blockSignals(False)
        self.progress_bar.setRange(0, trace.steps)
        self._draw_curves()
        self.play_button.setEnabled(True)
        prompt = trace.meta.get("prompt") or "(no prompt)"
        self._set_status(f"trace: {prompt!r}, seed {trace.meta.get('seed')}, {trace.meta.get('seconds')} s, "
                         f"{trace.steps} states" + (f" — {trace.folder}" if trace.folder else ""))
        self.set_step(trace.steps - 1, force=True)
        self.trace_changed.emit()

    def _draw_ghosts(self, finals: dict[str, np.ndarray] | None) -> None:
        for attr, curve in self.ghost_curves.items():
            if finals is None or attr not in finals:
                curve.setData([], [])
                continue
            x, y = self._lane_xy(attr, np.asarray(finals[attr], dtype=np.float32).argmax(-1))
            curve.setData(x, y)

    def _lane_xy(self, attr: str, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dt = 1.0 / self._frame_rate
        x = (np.arange(classes.shape[0]) + 0.5) * dt
        y = classes.astype(np.float64)
        if attr == "pitch" and self._class_names.get(attr, [""])[0] == "unvoiced":
            y = np.where(classes == 0, np.nan, y)   # unvoiced is a gap, as in the explorer's lanes
        return as_steps(x, y, dt)

    def _draw_curves(self) -> None:
        trace = self.trace
        form = "paper" if self.paper_form.isChecked() else "endpoint"
        texts = []
        for attr in self._attributes:
            curve, marker = self.st_curves.get(attr), self.markers.get(attr)
            if curve is None or marker is None:
                continue
            if trace is None:
                curve.setData([], [])
                marker.setData([], [])
                continue
            s = trace.s_t(attr, "x_t", form)
            curve.setData(np.arange(s.shape[0]), s)
            step = trace.convergence_step(attr, "x_t", form)
            if step < trace.steps - 1:
                marker.setData([step], [float(s[step])])
                texts.append(f"{attr}: step {step}")
            else:
                marker.setData([], [])
                texts.append(f"{attr}: not converged")
        if trace is not None:
            self.curves_plot.getPlotItem().setXRange(0, trace.steps - 1, padding=0.02)
            threshold = float(trace.meta.get("threshold", D.TRACE_THRESHOLD))
            self.threshold_line.setValue(threshold)
            self.convergence_label.setText(f"convergence (s_t ≥ {threshold:g} from then on): " + ", ".join(texts))
        else:
            self.convergence_label.setText("")

