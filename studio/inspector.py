"""The feature inspector: everything about one SAE feature, for the heatmap cell that was clicked.

Shown in a dock.  It listens to ``ExplorerState.feature_selected(feature, frame)`` and shows:

* the feature id and its activation at that frame (``f``, ``h``; ``f'`` when steering is on);
* the distribution of ``f_j`` over the corpus (log-spaced bins) and its density, from the
  ``audiosae.feature_index`` index, built in a job the first time it is needed (progress and
  cancel here) and cached next to the SAE; until then the clip's own histogram;
* the corpus frames where the feature is strongest, as a list: click or Enter plays ~1 s
  around the frame (``studio.snippets``), the sounding row is highlighted;
* the feature's probe weights ``W[:, j]`` per class of an attribute and its contributions
  ``c_{j->k} = W_kj f_j`` at the frame for the predicted and the most likely classes;
* "boost": the clip's latents plus ``beta`` x (typical active value) x the decoder direction on a
  ~2 s window, decoded in a job, to hear what the feature does (A/B with the original).

Model work (index, snippets, decoding) runs in ``JobRunner`` jobs; results that arrive after
the models or the selection changed are dropped.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any, Callable

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QPalette
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDoubleSpinBox, QFrame, QHBoxLayout,
                               QHeaderView, QLabel, QProgressBar, QPushButton, QScrollArea, QSizePolicy, QSlider,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from audiosae.feature_index import (FeatureIndex, boost_window, decoder_direction, histogram_counts,
                                    histogram_edges, load_or_build_feature_index, render_boost)
from audiosae.jobs import Progress
from studio.snippets import SnippetPlayer

log = logging.getLogger("studio.inspector")

SNIPPET_SECONDS = 1.0
BOOST_WINDOW_SECONDS = 2.0
BOOST_TIP = (f"Decode a {BOOST_WINDOW_SECONDS:g} s window around the frame with this feature boosted "
             f"(with the workspace's codec) and play it")
BETA_RANGE = 10.0
DEFAULT_BETA = 2.0
TOP_CLASSES = 5          # classes listed in the contributions table
VOTES_SHOWN = 3          # strongest positive / negative probe weights named in the text
HIST_BINS = 40
INDEX_TOP_K = 100        # frames kept per feature: a note lasts ~40 frames, so 32 would cover one or two
DISTINCT_SECONDS = 0.3   # "spread out": top frames of one source at least this far apart
POSITIVE = QColor(38, 166, 154)
NEGATIVE = QColor(229, 93, 74)
CORPUS_BARS = QColor(92, 134, 214)
PLAYING_ROW = QColor(255, 214, 102)


def _gated(gate: threading.Event, fn: Callable[..., Any], *args: Any, progress: Any, cancel: Any,
           **kwargs: Any) -> Any:
    """Run ``fn`` once the GUI thread has connected the handle's signals (``JobRunner.submit``
    starts the thread at once, and a signal emitted before its slots connect is lost)."""
    gate.wait(10.0)
    return fn(*args, progress=progress, cancel=cancel, **kwargs)


def _snippet_job(index: FeatureIndex, workspace: Any, feature: int, rank: int, seconds: float, *,
                 progress: Any, cancel: Any) -> tuple[np.ndarray, int, float]:
    cancel.raise_if_cancelled()
    return index.snippet(workspace, feature, rank, seconds=seconds)


def _section(title: str) -> QLabel:
    label = QLabel(title)
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    label.setContentsMargins(0, 8, 0, 0)
    return label


def _styled_plot(height: int) -> pg.PlotWidget:
    """A compact plot that follows the widget palette (readable on light and dark themes)."""
    plot = pg.PlotWidget()
    palette = plot.palette()
    plot.setBackground(palette.color(QPalette.ColorRole.Base))
    text = palette.color(QPalette.ColorRole.Text)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(pg.mkPen(text))
        axis.setTextPen(pg.mkPen(text))
        axis.enableAutoSIPrefix(False)  # "weight (x0.001)" reads worse than plain decimals
    plot.setMenuEnabled(False)
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    plot.setMinimumHeight(height)
    plot.setMaximumHeight(int(height * 1.6))
    plot.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    return plot


def _item(text: str, align_right: bool = False, data: Any = None) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled)
    if align_right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    if data is not None:
        item.setData(Qt.ItemDataRole.UserRole, data)
    return item


def _table(columns: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.verticalHeader().setVisible(False)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setAlternatingRowColors(True)
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 6)
    header = table.horizontalHeader()
    for c in range(len(columns)):
        header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
    return table


class FeatureInspector(QWidget):
    """Dock contents for one selected feature (see the module docstring)."""

    index_ready = Signal(object)      # FeatureIndex of the current SAE (also for other panes)
    boost_ready = Signal(object)      # BoostedWindow just rendered
    snippet_loaded = Signal(object)   # (feature, rank, wave, sample_rate, start_time)

    def __init__(self, state: Any, runner: Any, settings: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.runner = runner
        self.settings = settings
        self.feature: int | None = None
        self.frame: int | None = None
        self.index: FeatureIndex | None = None
        self._index_failed = ""
        self._generation = 0          # bumped when models change: older job results are dropped
        self._index_job: Any = None
        self._snippet_job: Any = None
        self._boost_job: Any = None
        self._boost: Any = None       # last BoostedWindow
        self._boost_key: tuple | None = None
        self._playing_rank: int | None = None
        self._pending_rank: int | None = None
        self.snippets = SnippetPlayer(device=getattr(settings, "audio_device", None), parent=self)
        self.snippets.started.connect(self._on_snippet_started)
        self.snippets.finished.connect(self._on_snippet_finished)
        self.snippets.message.connect(self._on_snippet_message)
        self._build_ui()

        state.feature_selected.connect(self._on_feature_selected)
        state.models_changed.connect(self._on_models_changed)
        state.workspace_changed.connect(self._on_models_changed)
        state.clip_changed.connect(self._on_clip_changed)
        state.steered_features_changed.connect(self._refresh_frame_views)
        state.steering_changed.connect(lambda _params: self._refresh_frame_views())
        self._refresh_all()

    # ---- layout ------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(8, 6, 8, 8)
        layout.setSpacing(4)
        scroll.setWidget(body)
        outer.addWidget(scroll)
        self.setMinimumWidth(340)

        # Header: which feature, its value at the frame, its corpus summary.
        self.title_label = QLabel()
        font = QFont(self.title_label.font())
        font.setPointSizeF(font.pointSizeF() * 1.35)
        font.setBold(True)
        self.title_label.setFont(font)
        self.value_label = QLabel()
        self.value_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.value_label.setWordWrap(True)
        self.stats_label = QLabel()
        self.stats_label.setWordWrap(True)
        for w in (self.title_label, self.value_label, self.stats_label):
            layout.addWidget(w)

        # Activation histogram (log-x bins) with the clicked value marked.
        layout.addWidget(_section("Activation over the corpus"))
        self.hist_plot = _styled_plot(130)
        self.hist_plot.getAxis("bottom").setLogMode(True)
        self.hist_plot.setLabel("bottom", "f (active frames)")
        self.hist_plot.setLabel("left", "% of active frames")
        self.hist_bars = pg.BarGraphItem(x0=[], x1=[], height=[], brush=pg.mkBrush(CORPUS_BARS), pen=None)
        self.clip_curve = pg.PlotDataItem(stepMode="center", pen=pg.mkPen(PLAYING_ROW.darker(130), width=2))
        self.value_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(NEGATIVE, width=2))
        self.hist_plot.addItem(self.hist_bars)
        self.hist_plot.addItem(self.clip_curve)
        self.hist_plot.addItem(self.value_line)
        self.hist_legend = QLabel()
        self.hist_legend.setWordWrap(True)
        layout.addWidget(self.hist_plot)
        layout.addWidget(self.hist_legend)
        row = QHBoxLayout()
        self.index_progress = QProgressBar()
        self.index_progress.setTextVisible(True)
        self.index_cancel = QPushButton("Cancel")
        self.index_cancel.clicked.connect(self.cancel_index)
        self.index_build = QPushButton("Build corpus statistics")
        self.index_build.clicked.connect(lambda: self.ensure_index(force=True))
        row.addWidget(self.index_progress, 1)
        row.addWidget(self.index_cancel)
        row.addWidget(self.index_build)
        layout.addLayout(row)

        # Top-activating corpus frames.
        head = QHBoxLayout()
        head.addWidget(_section("Strongest corpus frames"))
        head.addStretch(1)
        self.spread_check = QCheckBox(f"spread out (≥ {DISTINCT_SECONDS:g} s apart)")
        self.spread_check.setToolTip("list one frame per moment: skip frames close to a stronger one "
                                     "of the same source")
        self.spread_check.setChecked(True)
        self.spread_check.toggled.connect(lambda _on: self._refresh_top())
        head.addWidget(self.spread_check)
        layout.addLayout(head)
        self.top_table = _table(["#", "f", "source", "time (s)"])
        self.top_table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.top_table.setMinimumHeight(150)
        self.top_table.cellClicked.connect(lambda r, _c: self.play_top(r))
        self.top_table.cellActivated.connect(lambda r, _c: self.play_top(r))
        self.top_status = QLabel("click a row (or press Enter) to hear ~1 s around the frame")
        self.top_status.setWordWrap(True)
        layout.addWidget(self.top_table)
        layout.addWidget(self.top_status)

        # Probe weights of this feature and its contributions at the frame.
        head = QHBoxLayout()
        head.addWidget(_section("Probe weights W[k, j]"))
        head.addStretch(1)
        self.attr_combo = QComboBox()
        self.attr_combo.currentTextChanged.connect(lambda _t: self._refresh_probe_views())
        head.addWidget(self.attr_combo)
        layout.addLayout(head)
        self.weight_plot = _styled_plot(140)
        self.weight_plot.setLabel("left", "weight")
        self.weight_bars = pg.BarGraphItem(x=[], height=[], width=0.8)
        self.weight_plot.addItem(self.weight_bars)
        self.weight_plot.addItem(pg.InfiniteLine(pos=0, angle=0, movable=False,
                                                 pen=pg.mkPen(self.palette().color(QPalette.ColorRole.Mid))))
        layout.addWidget(self.weight_plot)
        self.votes_label = QLabel()
        self.votes_label.setWordWrap(True)
        layout.addWidget(self.votes_label)

        layout.addWidget(_section("Contributions at this frame  c = W[k, j] · f_j"))
        self.contrib_label = QLabel()
        self.contrib_label.setWordWrap(True)
        layout.addWidget(self.contrib_label)
        self.contrib_table = _table(["class", "p", "W[k, j]", "c = W·f", "logit"])
        self.contrib_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.contrib_table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout.addWidget(self.contrib_table)

        # Boost this feature.
        layout.addWidget(_section("Boost this feature"))
        row = QHBoxLayout()
        row.addWidget(QLabel("β"))
        self.beta_slider = QSlider(Qt.Orientation.Horizontal)
        self.beta_slider.setRange(int(-BETA_RANGE * 10), int(BETA_RANGE * 10))
        self.beta_spin = QDoubleSpinBox()
        self.beta_spin.setRange(-BETA_RANGE, BETA_RANGE)
        self.beta_spin.setSingleStep(0.5)
        self.beta_spin.setDecimals(1)
        self.beta_spin.setValue(DEFAULT_BETA)
        self.beta_slider.setValue(int(round(DEFAULT_BETA * 10)))
        self.beta_slider.valueChanged.connect(lambda v: self.beta_spin.setValue(v / 10.0))
        self.beta_spin.valueChanged.connect(self._on_beta_changed)
        row.addWidget(self.beta_slider, 1)
        row.addWidget(self.beta_spin)
        layout.addLayout(row)
        self.beta_label = QLabel()
        self.beta_label.setWordWrap(True)
        layout.addWidget(self.beta_label)
        row = QHBoxLayout()
        self.boost_button = QPushButton("Hear boosted")
        self.boost_button.clicked.connect(self.hear_boosted)
        self.original_button = QPushButton("Hear original")
        self.original_button.clicked.connect(self.hear_original)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.snippets.stop)
        row.addWidget(self.boost_button)
        row.addWidget(self.original_button)
        row.addWidget(self.stop_button)
        layout.addLayout(row)
        self.boost_status = QLabel()
        self.boost_status.setWordWrap(True)
        layout.addWidget(self.boost_status)
        layout.addStretch(1)

    # ---- helpers -----------------------------------------------------------------------------
    def _start_job(self, name: str, fn: Callable[..., Any], *args: Any,
                   slots: dict[str, Callable[..., Any]], **kwargs: Any) -> Any:
        """``runner.submit`` with ``slots`` ({signal name: callable}) connected before the job runs."""
        gate = threading.Event()
        job = self.runner.submit(name, _gated, gate, fn, *args, **kwargs)
        try:
            for signal, slot in slots.items():
                getattr(job, signal).connect(slot)
        finally:
            gate.set()
        return job

    @property
    def models(self) -> Any:
        return self.state.models

    @property
    def analysis(self) -> Any:
        return self.state.analysis

    def _features(self) -> np.ndarray | None:
        """The features the heatmap shows (f' when steering, else f); None without a clip or
        while the clip was analysed with another SAE than the one loaded now."""
        shown = self.state.features_for_display()
        if shown is None or self.models is None or shown.shape[1] != self.models.sae.cfg.d_sae:
            return None
        return shown

    def _steered(self) -> bool:
        return self.state.steered_f is not None

    def _frame_ok(self) -> bool:
        a = self.analysis
        return (a is not None and self.frame is not None and self.feature is not None
                and self._features() is not None and 0 <= self.frame < a.n_frames
                and self.feature < a.f.shape[1])

    def activation_at_frame(self) -> tuple[float, float, float] | None:
        """(displayed f, h, unsteered f) of the selected feature at the selected frame."""
        if not self._frame_ok():
            return None
        j, t = self.feature, self.frame
        shown = self._features()
        return float(shown[t, j]), float(self.analysis.h[t, j]), float(self.analysis.f[t, j])

    def typical_value(self) -> float:
        """The unit of beta: the feature's mean active f over the corpus (the clip's until the
        index exists; 1 when the feature is silent everywhere we know of)."""
        j = self.feature
        if j is None:
            return 1.0
        if self.index is not None and j < self.index.n_features and self.index.mean_active[j] > 0:
            return float(self.index.mean_active[j])
        if self.analysis is not None and j < self.analysis.f.shape[1]:
            col = self.analysis.f[:, j]
            active = col[col > 0]
            if active.size:
                return float(active.mean())
        return 1.0

    # ---- state reactions ---------------------------------------------------------------------
    def _on_feature_selected(self, feature: int, frame: int) -> None:
        changed = feature != self.feature
        self.feature, self.frame = int(feature), int(frame)
        if changed:
            self.snippets.stop()
        self._boost, self._boost_key = None, None
        self._refresh_all()
        self.ensure_index()

    def _on_models_changed(self) -> None:
        self._generation += 1
        for job in (self._index_job, self._snippet_job, self._boost_job):
            if job is not None:
                job.cancel()
        self._index_job = self._snippet_job = self._boost_job = None
        self.snippets.stop()
        self.index = None
        self._index_failed = ""
        self._boost, self._boost_key = None, None
        models = self.models
        if self.feature is not None and (models is None or self.feature >= models.sae.cfg.d_sae):
            self.feature, self.frame = None, None
        names = list(models.probes.attributes) if models is not None else []
        current = self.attr_combo.currentText()
        self.attr_combo.blockSignals(True)
        self.attr_combo.clear()
        self.attr_combo.addItems(names)
        if current in names:
            self.attr_combo.setCurrentText(current)
        self.attr_combo.blockSignals(False)
        self._refresh_all()

    def _on_clip_changed(self) -> None:
        # The feature stays (its corpus facts still hold); the frame belonged to the old clip.
        self.frame = None
        self._boost, self._boost_key = None, None
        self._refresh_all()

    def _on_beta_changed(self, value: float) -> None:
        self.beta_slider.blockSignals(True)
        self.beta_slider.setValue(int(round(value * 10)))
        self.beta_slider.blockSignals(False)
        self._refresh_boost()

    # ---- the corpus index (job) --------------------------------------------------------------
    def ensure_index(self, force: bool = False) -> None:
        """Load or build the corpus index of the current SAE in a job, unless it exists or runs.

        After a cancel or a failure only ``force`` (the "Build corpus statistics" button) starts
        it again, so selecting another feature does not restart what the user stopped."""
        models = self.models
        if models is None or self.index is not None or self._index_job is not None:
            return
        if self._index_failed and not force:
            return
        generation = self._generation
        ws, name = models.workspace, models.sae.cfg.name
        self._index_failed = ""
        self._index_job = self._start_job(
            "feature index", load_or_build_feature_index, ws, name, device=str(models.sae.device),
            hist_bins=HIST_BINS, top_k=INDEX_TOP_K, slots={
                "progress": self._on_index_progress,
                "finished": lambda result, g=generation: self._on_index_finished(result, g),
                "failed": lambda msg, _tb, g=generation: self._on_index_failed(msg, g),
                "cancelled": lambda g=generation: self._on_index_failed("cancelled", g)})
        self.index_progress.setValue(0)
        self._refresh_index_controls()
        self._refresh_stats()

    def cancel_index(self) -> None:
        if self._index_job is not None:
            self._index_job.cancel()

    def _on_index_progress(self, event: Progress) -> None:
        if event.fraction is not None:
            self.index_progress.setValue(int(round(100 * event.fraction)))
        self.index_progress.setFormat(f"corpus statistics: %p %  {event.message}".strip())

    def _on_index_finished(self, index: FeatureIndex, generation: int) -> None:
        if generation != self._generation:
            return
        self._index_job = None
        self.index = index
        self._refresh_all()
        self.index_ready.emit(index)

    def _on_index_failed(self, message: str, generation: int) -> None:
        if generation != self._generation:
            return
        self._index_job = None
        self._index_failed = message
        if message != "cancelled":
            log.warning("feature index failed: %s", message)
        self._refresh_index_controls()
        self._refresh_stats()
        self._refresh_histogram()

    # ---- refresh -----------------------------------------------------------------------------
    def _refresh_all(self) -> None:
        self._refresh_header()
        self._refresh_stats()
        self._refresh_index_controls()
        self._refresh_histogram()
        self._refresh_top()
        self._refresh_probe_views()
        self._refresh_boost()

    def _refresh_frame_views(self) -> None:
        """Steering or f' changed: what depends on the frame's feature values."""
        self._refresh_header()
        self._refresh_histogram()
        self._refresh_contributions()

    def _refresh_header(self) -> None:
        if self.models is None:
            self.title_label.setText("Feature inspector")
            self.value_label.setText("Open a workspace and an SAE, then click a cell of the feature heatmap.")
            return
        if self.feature is None:
            self.title_label.setText("No feature selected")
            self.value_label.setText("Click a cell of the feature heatmap to inspect that feature.")
            return
        self.title_label.setText(f"feature {self.feature}")
        values = self.activation_at_frame()
        if values is None:
            self.value_label.setText("no frame selected in this clip")
            return
        shown, h, f = values
        t = float(self.analysis.times[self.frame])
        text = f"frame {self.frame} · t = {t:.3f} s    f = {f:.3f}    h = {h:.3f}"
        if self._steered():
            text += f"    steered f′ = {shown:.3f}"
        self.value_label.setText(text)

    def _refresh_stats(self) -> None:
        j = self.feature
        if self.models is None or j is None:
            self.stats_label.setText("")
            return
        if self.index is None:
            if self._index_job is not None:
                self.stats_label.setText("corpus statistics: building…")
            elif self._index_failed:
                self.stats_label.setText(f"corpus statistics unavailable ({self._index_failed})")
            else:
                self.stats_label.setText("corpus statistics: not built yet")
            return
        index = self.index
        count = int(index.active_counts()[j])
        top = float(index.top_activation[j, 0])
        self.stats_label.setText(
            f"corpus: active on {100 * float(index.density[j]):.2f} % of {index.n_frames:,} frames "
            f"({count:,}) · mean f when active {float(index.mean_active[j]):.3f} · max {top:.3f}")

    def _refresh_index_controls(self) -> None:
        running = self._index_job is not None
        self.index_progress.setVisible(running)
        self.index_cancel.setVisible(running)
        self.index_build.setVisible(not running and self.index is None and self.models is not None
                                    and bool(self._index_failed))

    def _refresh_histogram(self) -> None:
        j = self.feature
        models = self.models
        if models is None or j is None:
            self.hist_bars.setOpts(x0=[], x1=[], height=[])
            self.clip_curve.setData([], [])
            self.value_line.hide()
            self.hist_legend.setText("")
            return
        edges = self.index.hist_edges if self.index is not None else histogram_edges(models.sae.cfg.d_sae, HIST_BINS)
        log_edges = np.log10(edges.astype(np.float64))
        legend = []
        if self.index is not None:
            counts = self.index.hist[j].astype(np.float64)
            share = 100.0 * counts / counts.sum() if counts.sum() > 0 else counts
            self.hist_bars.setOpts(x0=log_edges[:-1], x1=log_edges[1:], height=share)
            occupied = share >= 0.1  # the view spans bins holding >= 0.1 % of the active frames
            legend.append("bars: corpus")
        else:
            self.hist_bars.setOpts(x0=[], x1=[], height=[])
            occupied = np.zeros(len(edges) - 1, dtype=bool)
        shown = self._features()
        if shown is not None and j < shown.shape[1]:
            clip = histogram_counts(shown[:, j], edges).astype(np.float64)
            n_active = clip.sum()
            occupied |= clip >= max(1.0, 0.001 * n_active)
            if n_active > 0:
                self.clip_curve.setData(log_edges, 100.0 * clip / n_active)
                legend.append(f"line: this clip ({int(n_active)} active frames)")
            else:
                self.clip_curve.setData([], [])
                legend.append("this clip: never active")
        else:
            self.clip_curve.setData([], [])
        values = self.activation_at_frame()
        if values is not None and values[0] > 0:
            self.value_line.setValue(math.log10(max(values[0], float(edges[0]))))
            self.value_line.show()
            legend.append("red: this frame")
        else:
            self.value_line.hide()
        if self.index is None:
            legend.insert(0, "corpus statistics: building…" if self._index_job is not None
                          else "corpus statistics: not available yet")
        # Show the occupied bins (plus one on each side), not the whole possible range.
        if values is not None and values[0] > 0:
            occupied[min(len(occupied) - 1, np.searchsorted(edges[1:-1], values[0], side="right"))] = True
        used = np.flatnonzero(occupied)
        lo, hi = (max(0, used[0] - 1), min(len(occupied), used[-1] + 2)) if used.size else (0, len(occupied))
        self.hist_plot.setXRange(float(log_edges[lo]), float(log_edges[hi]), padding=0.02)
        self.hist_plot.enableAutoRange(axis="y")
        self.hist_legend.setText(" · ".join(legend))

    def _refresh_top(self) -> None:
        table = self.top_table
        table.setRowCount(0)
        j = self.feature
        if self.index is None or j is None or j >= self.index.n_features:
            self.top_status.setText("the list fills once the corpus statistics are ready" if j is not None else "")
            return
        entries = self.top_entries()
        table.setRowCount(len(entries))
        for r, e in enumerate(entries):
            table.setItem(r, 0, _item(str(e["rank"] + 1), True, data=e["rank"]))
            table.setItem(r, 1, _item(f"{e['activation']:.3f}", True))
            source = _item(e["label"])
            source.setToolTip(f"{e['source_id']} · frame {e['frame']}")
            table.setItem(r, 2, source)
            table.setItem(r, 3, _item(f"{e['time']:.2f}", True))
        self._highlight_playing()
        self.top_status.setText("click a row (or press Enter) to hear ~1 s around the frame" if entries
                                else "this feature is never active on the corpus")

    def top_entries(self) -> list[dict[str, Any]]:
        """The rows of the top-frames list (see ``FeatureIndex.top_entries``)."""
        if self.index is None or self.feature is None or self.feature >= self.index.n_features:
            return []
        gap = DISTINCT_SECONDS if self.spread_check.isChecked() else 0.0
        return self.index.top_entries(self.feature, min_gap_seconds=gap)

    def _attribute(self) -> str | None:
        text = self.attr_combo.currentText()
        return text or None

    def _refresh_probe_views(self) -> None:
        self._refresh_weights()
        self._refresh_contributions()

    def probe_weights(self) -> tuple[list[str], np.ndarray] | None:
        """(class names, ``W[:, j]``) of the current attribute's probe for the selected feature."""
        models, j, attr = self.models, self.feature, self._attribute()
        if models is None or j is None or attr is None:
            return None
        w = models.probes.weights[attr][:, j].detach().cpu().numpy().astype(np.float64)
        return list(models.probes.class_names[attr]), w

    def _refresh_weights(self) -> None:
        got = self.probe_weights()
        axis = self.weight_plot.getAxis("bottom")
        if got is None:
            self.weight_bars.setOpts(x=[], height=[])
            self.votes_label.setText("")
            self._tick_names = []
            axis.setTicks(None)
            return
        names, w = got
        k = len(names)
        brushes = [pg.mkBrush(POSITIVE if v >= 0 else NEGATIVE) for v in w]
        pens: list[Any] = [None] * k
        rows = self.contributions()
        if rows:  # outline the class the probe predicts at the clicked frame
            pens[rows[0]["class"]] = pg.mkPen(self.palette().color(QPalette.ColorRole.Text), width=2)
        self.weight_bars.setOpts(x=np.arange(k), height=w, width=0.8, brushes=brushes, pens=pens)
        self._tick_names = names
        self._update_weight_ticks()
        self.weight_plot.setXRange(-0.6, k - 0.4, padding=0)
        self.weight_plot.enableAutoRange(axis="y")
        order = np.argsort(w)
        pos = [f"{names[i]} {w[i]:+.2f}" for i in order[::-1][:VOTES_SHOWN] if w[i] > 0]
        neg = [f"{names[i]} {w[i]:+.2f}" for i in order[:VOTES_SHOWN] if w[i] < 0]
        self.votes_label.setText(f"votes for: {', '.join(pos) or '—'}\nvotes against: {', '.join(neg) or '—'}")

    def _update_weight_ticks(self) -> None:
        """Label every n-th class so the names never overlap at the plot's current width."""
        names = getattr(self, "_tick_names", None)
        axis = self.weight_plot.getAxis("bottom")
        if not names:
            axis.setTicks(None)
            return
        metrics = self.weight_plot.fontMetrics()
        widest = max(metrics.horizontalAdvance(n) for n in names) + 10
        room = max(80, self.weight_plot.width() - 70)  # less the left axis and margins
        step = max(1, int(math.ceil(len(names) * widest / room)))
        axis.setTicks([[(i, names[i]) for i in range(0, len(names), step)], [(i, "") for i in range(len(names))]])

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._update_weight_ticks()

    def contributions(self) -> list[dict[str, Any]]:
        """Rows of the contributions table: the predicted class first, then the most likely ones."""
        models, attr = self.models, self._attribute()
        if models is None or attr is None or not self._frame_ok():
            return []
        j, t = self.feature, self.frame
        probes = models.probes
        shown = self._features()
        row = torch.from_numpy(np.ascontiguousarray(shown[t], dtype=np.float32))
        with torch.no_grad():
            logits = probes.logits(row.to(probes.weights[attr].device), attr).cpu().numpy()
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = [int(k) for k in np.argsort(-probs)[:TOP_CLASSES]]
        names = probes.class_names[attr]
        out = []
        with torch.no_grad():
            for k in order:
                c = float(probes.contributions(row.to(probes.weights[attr].device), attr, k)[j])
                out.append({"class": k, "name": names[k], "p": float(probs[k]),
                            "weight": float(probes.weights[attr][k, j]), "contribution": c,
                            "logit": float(logits[k]), "predicted": k == order[0]})
        return out

    def _refresh_contributions(self) -> None:
        table = self.contrib_table
        rows = self.contributions()
        table.setRowCount(len(rows))
        table.setFixedHeight(table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth() + 2
                             + max(1, len(rows)) * table.verticalHeader().defaultSectionSize())
        if not rows:
            self.contrib_label.setText("click a heatmap cell of this clip to see the contributions at that frame"
                                       if self.feature is not None else "")
            return
        attr = self._attribute()
        measured = ""
        classes = getattr(self.analysis, "measured_classes", {}) or {}
        if attr in classes:
            k = int(classes[attr][self.frame])
            names = self.models.probes.class_names[attr]
            measured = f" · measured: {names[k]}" if 0 <= k < len(names) else ""
        steer = " (of the steered f′)" if self._steered() else ""
        self.contrib_label.setText(f"predicted {attr}: {rows[0]['name']} (p = {rows[0]['p']:.2f}){measured}{steer}")
        for r, e in enumerate(rows):
            name = _item(("★ " if e["predicted"] else "") + e["name"])
            table.setItem(r, 0, name)
            table.setItem(r, 1, _item(f"{e['p']:.3f}", True))
            table.setItem(r, 2, _item(f"{e['weight']:+.3f}", True))
            c = _item(f"{e['contribution']:+.3f}", True)
            c.setForeground(QBrush(POSITIVE.darker(120) if e["contribution"] >= 0 else NEGATIVE.darker(120)))
            table.setItem(r, 3, c)
            table.setItem(r, 4, _item(f"{e['logit']:+.2f}", True))

    def boost_unavailable(self) -> str:
        """Why "Hear boosted" cannot run ("" when it can): it decodes with the codec."""
        reason = getattr(self.models, "codec_unavailable", None)
        return reason('"Hear boosted"') if reason is not None else ""

    def _refresh_boost(self) -> None:
        ok = self.models is not None and self._frame_ok()
        busy = self._boost_job is not None
        unavailable = self.boost_unavailable()
        self.boost_button.setEnabled(ok and not busy and not unavailable)
        self.boost_button.setToolTip(unavailable or BOOST_TIP)
        self.original_button.setEnabled(ok)
        if self.feature is None:
            self.beta_label.setText("")
            return
        unit = self.typical_value()
        source = "corpus mean active f" if self.index is not None else "clip mean active f"
        beta = self.beta_spin.value()
        self.beta_label.setText(f"β in units of the {source} ({unit:.3f}): adds Δf = {beta * unit:+.3f} × "
                                f"decoder row {self.feature} to the latents of a {BOOST_WINDOW_SECONDS:g} s window")

    # ---- top frames: snippets ----------------------------------------------------------------
    def play_top(self, row: int) -> None:
        """Load (job) and play ~1 s around top frame ``row`` of the selected feature."""
        index, j, models = self.index, self.feature, self.models
        if index is None or j is None or models is None:
            return
        item = self.top_table.item(row, 0)
        if item is None:
            return
        rank = int(item.data(Qt.ItemDataRole.UserRole))
        if self._snippet_job is not None:
            if self._pending_rank == rank:
                return  # a double click: already on its way
            self._snippet_job.cancel()
        generation = self._generation
        self._pending_rank = rank
        self.top_status.setText(f"loading #{rank + 1}…")
        holder: list[Any] = []
        self._snippet_job = self._start_job(
            "snippet", _snippet_job, index, models.workspace, j, rank, SNIPPET_SECONDS, slots={
                "finished": lambda result, g=generation, f=j, r=rank: self._on_snippet_loaded(result, g, f, r),
                "failed": lambda msg, _tb, g=generation: self._on_snippet_failed(msg, g),
                "done": lambda: self._clear_snippet_job(holder[0])})
        holder.append(self._snippet_job)

    def _clear_snippet_job(self, job: Any) -> None:
        if self._snippet_job is job:
            self._snippet_job = None
            self._pending_rank = None

    def _on_snippet_loaded(self, result: tuple, generation: int, feature: int, rank: int) -> None:
        if generation != self._generation or feature != self.feature or rank != self._pending_rank:
            return  # superseded by another click or selection
        wave, rate, start = result
        self.snippet_loaded.emit((feature, rank, wave, rate, start))
        entry = next((e for e in self.top_entries() if e["rank"] == rank), None)
        where = f"{entry['label']} at {entry['time']:.2f} s" if entry else ""
        if self.snippets.play(wave, rate, tag=("top", feature, rank)):
            self.top_status.setText(f"playing #{rank + 1}: {where}")

    def _on_snippet_failed(self, message: str, generation: int) -> None:
        if generation == self._generation:
            self.top_status.setText(f"cannot load the snippet: {message}")

    def _on_snippet_started(self, tag: Any) -> None:
        self._playing_rank = tag[2] if isinstance(tag, tuple) and tag[:2] == ("top", self.feature) else None
        self._highlight_playing()

    def _on_snippet_finished(self, tag: Any) -> None:
        if isinstance(tag, tuple) and tag and tag[0] == "top":
            self._playing_rank = None
            self._highlight_playing()
        if isinstance(tag, tuple) and tag and tag[0] in ("boosted", "original"):
            self.boost_status.setText(self.boost_status.text().replace("playing", "played"))

    def _on_snippet_message(self, text: str) -> None:
        self.top_status.setText(text)
        self.boost_status.setText(text)
        self.state.status.emit(text)

    def _highlight_playing(self) -> None:
        table = self.top_table
        for r in range(table.rowCount()):
            item = table.item(r, 0)
            playing = item is not None and item.data(Qt.ItemDataRole.UserRole) == self._playing_rank
            if item is not None:
                rank = int(item.data(Qt.ItemDataRole.UserRole))
                item.setText(f"▶ {rank + 1}" if playing else str(rank + 1))
            for c in range(table.columnCount()):
                cell = table.item(r, c)
                if cell is not None:
                    cell.setBackground(QBrush(PLAYING_ROW) if playing else QBrush())
                    if playing:
                        cell.setForeground(QBrush(QColor(0, 0, 0)))
                    else:
                        cell.setData(Qt.ItemDataRole.ForegroundRole, None)

    @property
    def playing_rank(self) -> int | None:
        """Rank of the top frame sounding now (None when none)."""
        return self._playing_rank

    # ---- boost ---------------------------------------------------------------------------------
    def boost_amount(self) -> float:
        """Δf_j that "Hear boosted" adds: β × the feature's typical active value."""
        return float(self.beta_spin.value()) * self.typical_value()

    def hear_boosted(self) -> None:
        """Render (job) and play the ~2 s window with the feature boosted."""
        models, analysis = self.models, self.analysis
        if models is None or not self._frame_ok() or self._boost_job is not None:
            return
        if models.backend is None:
            self.boost_status.setText(self.boost_unavailable())
            return
        amount = self.boost_amount()
        key = (id(analysis), self.feature, self.frame, round(amount, 9))
        if self._boost is not None and self._boost_key == key:
            self._play_boost("boosted")
            return
        direction = decoder_direction(models.sae, self.feature)
        generation = self._generation
        self.boost_status.setText("rendering the boosted window…")
        holder: list[Any] = []
        self._boost_job = self._start_job(
            "boost", render_boost, models.backend, analysis.latents, analysis.wave, self.frame, direction, amount,
            window_seconds=BOOST_WINDOW_SECONDS, slots={
                "finished": lambda result, g=generation, k=key: self._on_boost_finished(result, g, k),
                "failed": lambda msg, _tb, g=generation: self._on_boost_failed(msg, g),
                "done": lambda: self._clear_boost_job(holder[0])})
        holder.append(self._boost_job)
        self._refresh_boost()

    def _clear_boost_job(self, job: Any) -> None:
        if self._boost_job is job:
            self._boost_job = None
            self._refresh_boost()

    def _on_boost_finished(self, result: Any, generation: int, key: tuple) -> None:
        if generation != self._generation:
            return
        self._boost, self._boost_key = result, key
        self.boost_ready.emit(result)
        self._play_boost("boosted")

    def _on_boost_failed(self, message: str, generation: int) -> None:
        if generation == self._generation:
            log.warning("boost failed: %s", message)
            self.boost_status.setText(f"boost failed: {message}")

    def original_window(self) -> tuple[np.ndarray, int, float] | None:
        """The clip's own audio of the boost window: (wave, sample_rate, start_time)."""
        models, analysis = self.models, self.analysis
        if models is None or not self._frame_ok():
            return None
        a, b = boost_window(analysis.n_frames, self.frame, models.frame_rate, BOOST_WINDOW_SECONDS)
        hop = models.hop_length
        return analysis.wave[:, a * hop:b * hop], analysis.sample_rate, a * hop / analysis.sample_rate

    def hear_original(self) -> None:
        """Play the same window unmodified (the A of the A/B)."""
        window = self.original_window()
        if window is None:
            return
        wave, rate, start = window
        if self.snippets.play(wave, rate, tag=("original", self.feature, self.frame)):
            self.boost_status.setText(f"playing the original {start:.2f}–{start + wave.shape[1] / rate:.2f} s")

    def _play_boost(self, which: str) -> None:
        result = self._boost
        if result is None:
            return
        if self.snippets.play(result.boosted, result.sample_rate, tag=(which, self.feature, self.frame)):
            end = result.start_time + result.boosted.shape[1] / result.sample_rate
            from studio.models.audition import format_level   # the audition dock's level line

            level = format_level({**result.level, "chunks": 1}) if getattr(result, "level", None) else ""
            self.boost_status.setText(f"playing feature {self.feature} boosted by Δf = {result.amount:+.2f}, "
                                      f"{result.start_time:.2f}–{end:.2f} s" + (f"\n{level}" if level else ""))

    # ---- teardown --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel this pane's jobs and release the audio output (call before closing)."""
        self._generation += 1
        for job in (self._index_job, self._snippet_job, self._boost_job):
            if job is not None:
                job.cancel()
        for job in (self._index_job, self._snippet_job, self._boost_job):
            if job is not None:
                job.wait(10000)
        self._index_job = self._snippet_job = self._boost_job = None
        self.snippets.close()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        self.shutdown()
        super().closeEvent(event)
