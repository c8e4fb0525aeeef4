"""Live training curves: loss, L0 and FVU against the step, one line per SAE grid config.

``LiveCurves.update_from_metrics`` takes the ``metrics`` dict of a ``Progress`` event of the
"train SAEs" stage (``{"step": int, "configs": {name: {"loss", "mse", "l0", ...}}}``) and
appends one point per config, redrawing only the lines whose data changed.  A legend on the
right names the configs with their colours; unchecking one hides its lines in every plot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

# Okabe-Ito then tab10: distinguishable colours (the first eight are colour-blind safe).
# Okabe-Ito's yellow is left out: it vanishes on a white plot.
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#999999", "#000000",
           "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")

FVU_TOOLTIP = ("Fraction of variance unexplained, approximated by the training batch's mean squared "
               "error per element: the SAE's inputs are normalised to unit variance per dimension, "
               "so MSE \u2248 FVU.  The results table gives the exact FVU on the validation frames.")

# (key in the metrics dict, plot title, y-axis label, tooltip)
METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("loss", "Loss", "MSE + \u03bb\u00b7L1", "Training loss per frame (normalised units), measured on "
                                              "every 10th batch; \u03bb ramps up over the first 5 % of steps."),
    ("l0", "L0", "active features / frame", "Mean number of non-zero features per frame in the batch."),
    ("mse", "FVU (\u2248 batch MSE)", "fraction of variance", FVU_TOOLTIP),
)


def _finite(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return v if np.isfinite(v) else float("nan")


def _same(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or a == b


def config_color(index: int) -> QColor:
    """The colour of the ``index``-th config (stable across plots and runs)."""
    if index < len(PALETTE):
        return QColor(PALETTE[index])
    return pg.intColor(index, hues=max(9, index + 1))


@dataclass
class _Series:
    color: QColor
    steps: list[float] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    lines: dict[str, pg.PlotDataItem] = field(default_factory=dict)
    visible: bool = True


class LiveCurves(QWidget):
    """Three small plots (loss, L0, FVU vs step) that grow as training reports progress."""

    config_toggled = Signal(str, bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._series: dict[str, _Series] = {}
        self.plots: dict[str, pg.PlotWidget] = {}
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        for key, title, ylabel, tip in METRICS:
            plot = pg.PlotWidget(background="w")
            item = plot.getPlotItem()
            item.setTitle(title, size="10pt", color="#333")
            item.setLabel("bottom", "step")
            item.setLabel("left", ylabel)
            item.showGrid(x=True, y=True, alpha=0.25)
            item.setClipToView(True)
            item.setDownsampling(auto=True, mode="peak")
            for axis in ("left", "bottom"):
                item.getAxis(axis).setTextPen("#333")
                item.getAxis(axis).setPen("#888")
            plot.setToolTip(tip)
            plot.setMinimumSize(180, 150)
            row.addWidget(plot, 1)
            self.plots[key] = plot
        side = QVBoxLayout()
        side.setSpacing(2)
        caption = QLabel("SAE (width \u00d7, \u03bb)")
        caption.setStyleSheet("color: #555;")
        side.addWidget(caption)
        self.legend = QListWidget()
        self.legend.setToolTip("Untick a configuration to hide its curves.")
        self.legend.setIconSize(QSize(14, 14))
        self.legend.setMinimumWidth(130)
        self.legend.setMaximumWidth(190)
        self.legend.itemChanged.connect(self._on_legend_item_changed)
        side.addWidget(self.legend, 1)
        row.addLayout(side)

    # ---- data ---------------------------------------------------------------------------
    @property
    def config_names(self) -> list[str]:
        return list(self._series)

    def set_configs(self, names: Iterable[str]) -> None:
        """Pre-create lines for ``names`` in this order, so colours follow the grid's order."""
        for name in names:
            self._ensure(name)

    def clear(self) -> None:
        """Remove every line and the legend."""
        for series in self._series.values():
            for key, line in series.lines.items():
                self.plots[key].getPlotItem().removeItem(line)
        self._series.clear()
        self.legend.clear()

    def series(self, name: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` recorded for config ``name`` and ``metric`` (loss/l0/mse)."""
        s = self._series[name]
        return np.asarray(s.steps, dtype=float), np.asarray(s.values[metric], dtype=float)

    def update_from_metrics(self, metrics: Mapping[str, Any]) -> int:
        """Append the point of every config in ``metrics["configs"]`` at ``metrics["step"]``.

        A step at or before one already recorded (a run restarted from an earlier checkpoint)
        drops the later points first, so a line never folds back.  Returns the number of
        configs updated.
        """
        configs = metrics.get("configs") or {}
        step = metrics.get("step")
        if step is None or not configs:
            return 0
        updated = 0
        for name, values in configs.items():
            if not isinstance(values, Mapping):
                continue
            self.add_point(str(name), float(step), values)
            updated += 1
        return updated

    def add_point(self, name: str, step: float, values: Mapping[str, Any]) -> None:
        """One point of config ``name``; only this config's lines are redrawn.

        Training measures its metrics on every 10th batch and reports the latest values,
        so a report that repeats the previous values adds no point (no staircase).
        """
        series = self._ensure(name)
        new = [_finite(values.get(key)) for key, *_ in METRICS]
        if series.steps and step > series.steps[-1] and all(
                _same(series.values[key][-1], v) for (key, *_), v in zip(METRICS, new)):
            return
        if series.steps and step <= series.steps[-1]:
            keep = int(np.searchsorted(np.asarray(series.steps), step, side="left"))
            del series.steps[keep:]
            for v in series.values.values():
                del v[keep:]
        series.steps.append(step)
        for (key, *_), value in zip(METRICS, new):
            series.values[key].append(value)
        x = np.asarray(series.steps, dtype=float)
        for key, line in series.lines.items():
            line.setData(x, np.asarray(series.values[key], dtype=float), connect="finite")

    # ---- internals ----------------------------------------------------------------------
    def _ensure(self, name: str) -> _Series:
        series = self._series.get(name)
        if series is not None:
            return series
        color = config_color(len(self._series))
        series = _Series(color=color, values={key: [] for key, *_ in METRICS})
        for key, *_ in METRICS:
            line = pg.PlotDataItem(pen=pg.mkPen(color, width=2), name=name)
            self.plots[key].getPlotItem().addItem(line)
            series.lines[key] = line
        self._series[name] = series
        swatch = QPixmap(14, 14)
        swatch.fill(color)
        item = QListWidgetItem(QIcon(swatch), name)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked)
        item.setData(Qt.ItemDataRole.UserRole, name)
        self.legend.addItem(item)
        return series

    def _on_legend_item_changed(self, item: QListWidgetItem) -> None:
        name = item.data(Qt.ItemDataRole.UserRole)
        series = self._series.get(name)
        if series is None:
            return
        visible = item.checkState() == Qt.CheckState.Checked
        if visible != series.visible:
            series.visible = visible
            for line in series.lines.values():
                line.setVisible(visible)
            self.config_toggled.emit(name, visible)
