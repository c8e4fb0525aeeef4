"""The SAE feature heatmap pane: draws the rows that ``studio.layers.feature_rows`` chooses.

Which features are shown, their order and colour scale, and the cached row pyramids are
the layer's (plain numpy); this view puts the visible slice of them into a ``pg.ImageItem``.
Large row gathers run as ``JobRunner`` jobs and the newest request wins; the image and
``row_features`` (row -> feature id, used to map a click) always change together.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QSpinBox, QWidget

from ..layers.feature_rows import (COLOR_MAP, MAX_TOP_N, BlockMass, FeatureRows, frame_grid, gather_job, gather_rows,
                                   label_runs)
from ..state import FEATURE_ORDERS
from ..models.job_slot import JobSlot
from .pane_view import PaneViewBox

GATHER_SYNC_LIMIT = 250_000       # frames x new rows gathered in the GUI thread (~5 ms); more -> a job
_STALE = object()
# one colour per attribute of a label group (the band and tag beside the rows)
LABEL_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#bab0ac", "#17becf")
LABEL_BAND = 0.012                # the strip's width as a share of the visible time span
TAG_MIN_PIXELS = 15               # a run's tag shows where the run is at least this tall


def label_colour(label: str) -> QColor:
    """The colour of a label group: by its attribute (the first word), stable across runs."""
    attribute = str(label).split(" ", 1)[0]
    return QColor(LABEL_COLOURS[sum(map(ord, attribute)) % len(LABEL_COLOURS)])

# ---- widgets -------------------------------------------------------------------------------
class HeatmapHeader(QWidget):
    """The heatmap's header: order chooser, top-N spin box, and a line about the order."""

    def __init__(self, top_n: int, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(QLabel("Features by"))
        self.order = QComboBox()
        for key, text in FEATURE_ORDERS.items():
            self.order.addItem(text, key)
        self.order.setToolTip("how the heatmap's rows are chosen and sorted")
        layout.addWidget(self.order)
        layout.addWidget(QLabel("top"))
        self.top_n = QSpinBox()
        self.top_n.setRange(1, MAX_TOP_N)
        self.top_n.setValue(int(top_n))
        self.top_n.setToolTip("number of features shown")
        layout.addWidget(self.top_n)
        self.group = QCheckBox("group by label")
        self.group.setToolTip("group and colour the rows by each feature's best automatic label "
                              "(label the features in the inspector first)")
        self.group.setEnabled(False)
        layout.addWidget(self.group)
        self.detail = QLabel("")
        layout.addWidget(self.detail, 1)

    def set_order(self, key: str) -> None:
        index = self.order.findData(key)
        if index >= 0 and index != self.order.currentIndex():
            self.order.setCurrentIndex(index)


class HeatmapPane(QObject):
    """Time x feature image of the displayed SAE features (f, or f' when steering)."""

    rows_changed = Signal()
    failed = Signal(str)   # a row-gathering job failed (the message)

    def __init__(self, runner: Any = None, axis_width: int = 64):
        super().__init__()
        self.runner = runner
        self.view_box = PaneViewBox()
        self.view_box.invertY(True)   # rank 0 on top
        self.plot = pg.PlotItem(viewBox=self.view_box)
        self.plot.hideButtons()
        self.plot.setLabel("left", "feature")
        self.plot.getAxis("left").setWidth(axis_width)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.colormap = pg.colormap.get(COLOR_MAP)
        self.image.setColorMap(self.colormap)
        self.plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=self.colormap, interactive=False,
                                        width=12, label="f")
        # Says why there is no image (a clip analysed without the codec's encoder has no features).
        self.placeholder = pg.TextItem("", color="#c8c8c8", anchor=(0, 0))
        self.placeholder.setParentItem(self.view_box)   # pixel-positioned, not in data coordinates
        self.placeholder.setPos(8, 6)
        self.placeholder.setZValue(30)
        self.placeholder.hide()
        self.row_features = np.zeros(0, dtype=np.int64)   # row -> feature id of the image shown
        self.row_labels: Any = None                        # label per feature id (None: not grouped)
        self._marked_labels: Any = _STALE                  # the row_labels the marks were drawn for
        self.label_runs: list[tuple[Any, int, int]] = []   # (label, first row, end row) down the rows
        self._label_items: list[Any] = []
        self._strip: Any = None
        self.levels = (0.0, 1.0)
        self.times = np.zeros(0)
        self.boundaries = np.zeros(0)
        self.x0, self.dt = 0.0, 1.0
        self.mass: BlockMass | None = None              # of the clip's unsteered f
        self.cache: FeatureRows | None = None           # rows of the displayed features
        self.shown: FeatureRows | None = None           # the cache the current image came from
        self._wanted = np.zeros(0, dtype=np.int64)
        self._request = 0
        self._slot = JobSlot(self.runner, "heatmap rows")   # large gathers; a newer request drops the older
        self.last_rows_ms = 0.0
        self.last_gather_ms = 0.0
        self.last_draw_ms = 0.0
        self.view_box.sigXRangeChanged.connect(self.redraw)
        self.view_box.sigResized.connect(self._on_resized)

    # -- data ------------------------------------------------------------------------------
    def set_clip(self, times: np.ndarray | None, seconds: float, levels: tuple[float, float] = (0.0, 1.0),
                 mass: BlockMass | None = None) -> None:
        """New clip: frame grid, fixed colour levels, mass sums of the unsteered features."""
        self.cancel_pending()
        self.cache = self.shown = None
        self.mass = mass
        self.row_features = np.zeros(0, dtype=np.int64)
        self._wanted = self.row_features
        self._marked_labels = _STALE   # the next rows redo the range, ticks and marks
        self.times = np.zeros(0) if times is None else np.asarray(times, dtype=np.float64)
        self.boundaries = 0.5 * (self.times[1:] + self.times[:-1])
        self.x0, self.dt = frame_grid(self.times, seconds)
        self.levels = (float(levels[0]), float(levels[1]))
        self.colorbar.setLevels(self.levels)
        self.image.clear()
        self._update_ticks()

    def set_features(self, features: np.ndarray | None) -> None:
        """The matrix to show (f or f'); its rows are gathered on the next ``show_rows``."""
        if self.cache is not None and self.cache.features is features:
            return
        self.cache = None if features is None else FeatureRows(features)

    @property
    def features(self) -> np.ndarray | None:
        return None if self.cache is None else self.cache.features

    def set_placeholder(self, text: str) -> None:
        """A short line in place of the image ("" hides it)."""
        self.placeholder.setText(text)
        self.placeholder.setVisible(bool(text))

    def frames_in(self, t0: float, t1: float) -> tuple[int, int]:
        """``[i0, i1)``: the frames whose span ``[x0 + i dt, x0 + (i+1) dt)`` meets ``[t0, t1]``."""
        n = len(self.times)
        i0 = int(np.clip(math.floor((t0 - self.x0) / self.dt), 0, n))
        i1 = int(np.clip(math.ceil((t1 - self.x0) / self.dt), i0, n))
        return i0, i1

    def mass_in_range(self, t0: float, t1: float) -> np.ndarray:
        """Activation mass per feature (of the unsteered clip) over the frames that meet ``[t0, t1]``."""
        if self.mass is None:
            return np.zeros(0)
        return self.mass.in_range(*self.frames_in(t0, t1))

    def show_rows(self, ids: np.ndarray) -> None:
        """Show these features (top row first): now, or when a gather job for them is done."""
        self.cancel_pending()
        self._request += 1
        self._wanted = np.asarray(ids, dtype=np.int64)
        cache = self.cache
        if cache is None or not len(self._wanted):
            self._apply(self._request, cache, {})
            return
        missing = cache.missing(self._wanted)
        if self.runner is None or len(missing) * cache.n_frames <= GATHER_SYNC_LIMIT:
            start = time.perf_counter()
            rows = gather_rows(cache.features, missing)
            self.last_gather_ms = (time.perf_counter() - start) * 1e3
            self._apply(self._request, cache, rows)
            return
        token = (self._request, cache)
        self._slot.start(gather_job, token, cache.features, missing, on_finished=self._on_gathered,
                         on_failed=self.failed.emit)

    def _on_gathered(self, result: tuple[Any, dict[int, list[np.ndarray]]]) -> None:
        (request, cache), rows = result
        self._apply(request, cache, rows)

    def _apply(self, request: int, cache: FeatureRows | None, rows: dict[int, list[np.ndarray]]) -> None:
        if request != self._request or cache is not self.cache:   # superseded meanwhile
            return
        start = time.perf_counter()
        if cache is not None:
            cache.add(rows, keep=self._wanted)
        self.shown = cache
        rows = self._wanted if cache is not None else np.zeros(0, dtype=np.int64)
        # While steering, every alpha move brings new f' but (ordered by the unsteered mass) the
        # same rows: then only the image changes; the range, ticks and label marks stay (redoing
        # them re-laid the axis on every move, measured among the GUI stalls of bench_studio).
        same = np.array_equal(rows, self.row_features) and self._marked_labels is self.row_labels
        self.row_features = rows
        if not same:
            self.view_box.setYRange(0, max(len(self.row_features), 1), padding=0)
            self._update_ticks()
            self._update_label_marks()
            self._marked_labels = self.row_labels
        self.redraw()
        self.last_rows_ms = (time.perf_counter() - start) * 1e3
        self.rows_changed.emit()

    @property
    def pending(self) -> bool:
        return self._slot.running

    def cancel_pending(self) -> None:
        self._slot.cancel()

    # -- drawing ---------------------------------------------------------------------------
    def pixel_width(self) -> int:
        view = self.view_box.getViewWidget()
        ratio = float(view.devicePixelRatioF()) if view is not None else 1.0
        return max(int(self.view_box.width() * ratio), 64)

    def redraw(self, *_args) -> None:
        """Slice the visible frames out of the row pyramids (a slot; paint does no work)."""
        start = time.perf_counter()
        if self._label_items:
            self._place_tags()
        if self.shown is None or not len(self.row_features) or not len(self.times):
            self.image.clear()
            return
        (t0, t1), _ = self.view_box.viewRange()
        i0, i1 = self.frames_in(t0, t1)
        i0 = min(i0, len(self.times) - 1)
        i1 = max(i1, i0 + 1)
        image, first, pool = self.shown.image(self.row_features, i0, i1, 2 * self.pixel_width())
        self.image.setImage(image, levels=self.levels, autoLevels=False)
        # The clip's last column may hold fewer than ``pool`` frames; it is drawn full width.
        self.image.setRect(self.x0 + first * self.dt, 0.0, image.shape[1] * pool * self.dt,
                           float(len(self.row_features)))
        self.last_draw_ms = (time.perf_counter() - start) * 1e3

    def set_row_labels(self, labels: Any) -> None:
        """Labels per feature id to mark the row groups with (None: no marks); the order itself is
        ``row_order``'s, chosen by the timeline."""
        self.row_labels = labels
        self._update_label_marks()

    def _update_label_marks(self) -> None:
        """A colour strip at the left edge beside each run of equally labelled rows (one colour per
        attribute) and a tag naming the run where it is tall enough to read."""
        for item in self._label_items:
            self.view_box.removeItem(item)
        self._label_items = []
        self._strip = None
        self.label_runs = [] if self.row_labels is None or not len(self.row_features) else \
            label_runs(self.row_features, self.row_labels)
        runs = [(label, r0, r1) for label, r0, r1 in self.label_runs if label]
        if not runs:
            return
        colours = [label_colour(label) for label, _, _ in runs]
        self._strip = pg.BarGraphItem(x0=[0.0] * len(runs), x1=[1.0] * len(runs), y0=[r0 for _, r0, _ in runs],
                                      y1=[r1 for _, _, r1 in runs], brushes=[pg.mkBrush(c) for c in colours],
                                      pens=[pg.mkPen(QColor(0, 0, 0), width=1)] * len(runs))
        self._strip.setZValue(15)
        self.view_box.addItem(self._strip, ignoreBounds=True)
        self._label_items.append(self._strip)
        for (label, r0, r1), colour in zip(runs, colours):
            tag = pg.TextItem(f"{label} ×{r1 - r0}", color="#ffffff", fill=pg.mkBrush(colour), anchor=(0, 0.5))
            tag.setZValue(20)
            tag.run_rows = (r0, r1)
            self.view_box.addItem(tag, ignoreBounds=True)
            self._label_items.append(tag)
        self._place_tags()

    def _place_tags(self) -> None:
        """Keep the strip at the visible left edge; show a tag only where its run spans >= one line."""
        (x0, x1), (y0, y1) = self.view_box.viewRange()
        width = LABEL_BAND * (x1 - x0)
        if self._strip is not None:
            n = len(self._strip.opts["y0"])
            self._strip.setOpts(x0=[x0] * n, x1=[x0 + width] * n)
        row_px = self.view_box.height() / max(y1 - y0, 1e-9)
        for item in self._label_items:
            if isinstance(item, pg.TextItem):
                r0, r1 = item.run_rows
                item.setVisible((r1 - r0) * row_px >= TAG_MIN_PIXELS)
                item.setPos(x0 + width, 0.5 * (r0 + r1))

    def _on_resized(self, *_args) -> None:
        self._update_ticks()
        if self._label_items:
            self._place_tags()
        self.redraw()

    def _update_ticks(self) -> None:
        n = len(self.row_features)
        axis = self.plot.getAxis("left")
        if not n:
            axis.setTicks([[]])
            return
        step = max(1, int(math.ceil(n * 13.0 / max(self.view_box.height(), 1.0))))  # >= 13 px apart
        axis.setTicks([[(r + 0.5, str(int(self.row_features[r]))) for r in range(0, n, step)], []])

    # -- lookups ---------------------------------------------------------------------------
    def frame_at(self, x: float) -> int:
        """Frame whose centre is nearest ``x`` seconds."""
        return int(np.searchsorted(self.boundaries, x, side="right")) if len(self.times) else 0

    def cell_at(self, x: float, y: float) -> tuple[int, int, int] | None:
        """``(row, feature id, frame)`` under view point ``(x, y)``, or None outside the image."""
        n_rows, n_frames = len(self.row_features), len(self.times)
        if not n_rows or not n_frames or self.shown is None:
            return None
        if not (0.0 <= y < n_rows) or not (self.x0 <= x < self.x0 + n_frames * self.dt):
            return None
        row = int(y)
        return row, int(self.row_features[row]), self.frame_at(x)

    def describe(self, x: float, y: float) -> str | None:
        """Hover text for a view point: ``feature j, t = … s, f = …``."""
        cell = self.cell_at(x, y)
        if cell is None:
            return None
        _, feature, frame = cell
        value = float(self.shown.features[frame, feature])
        label = self._label_of(feature)
        return f"feature {feature}{f' ({label})' if label else ''}, t = {self.times[frame]:.3f} s, f = {value:.3g}"

    def _label_of(self, feature: int) -> str:
        labels = self.row_labels
        if labels is None:
            return ""
        if isinstance(labels, dict):
            return str(labels.get(feature) or "")
        return str(labels[feature]) if 0 <= feature < len(labels) and labels[feature] else ""
