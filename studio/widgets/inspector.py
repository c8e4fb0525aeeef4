"""The feature inspector's view: everything about one SAE feature, for the heatmap cell that was clicked.

Shown in a dock.  It draws what ``studio.models.inspector.InspectorModel`` holds and forwards
what the user does:

* the feature id and its activation at that frame (``f``, ``h``; ``f'`` when steering is on);
* what the feature is: its automatic labels best first, the boost check and a search box that
  finds features by label (``studio.widgets.feature_labels``);
* the distribution of ``f_j`` over the corpus (log-spaced bins) and its density, from the
  ``audiosae.feature_index`` index, built in a job the first time it is needed (progress and
  cancel here) and cached next to the SAE; until then the clip's own histogram;
* the corpus frames where the feature is strongest, as a list: click or Enter plays ~1 s
  around the frame (``studio.snippets``), the sounding row is highlighted;
* the feature's probe weights ``W[:, j]`` per class of an attribute and its contributions
  ``c_{j->k} = W_kj f_j`` at the frame for the predicted and the most likely classes;
* "boost": the clip's latents plus ``beta`` x (typical active value) x the decoder direction on a
  ~2 s window, decoded in a job, to hear what the feature does (A/B with the original).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QPalette
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFrame, QHBoxLayout, QHeaderView, QLabel,
                               QProgressBar, QPushButton, QScrollArea, QSlider, QVBoxLayout, QWidget)

from audiosae.jobs import Progress

from ..models.inspector import BETA_RANGE, BOOST_TIP, DEFAULT_BETA, DISTINCT_SECONDS, InspectorModel
from ..settings import StudioSettings
from ..state import ExplorerState
from ..workers import JobRunner
from .feature_labels import FeatureLabelsPanel
from .inspector_parts import CORPUS_BARS, NEGATIVE, PLAYING_ROW, POSITIVE, item, section, styled_plot, table

__all__ = ["FeatureInspector", "PLAYING_ROW", "POSITIVE", "NEGATIVE", "CORPUS_BARS"]


class FeatureInspector(QWidget):
    """Dock contents for one selected feature (see the module docstring).

    ``settings`` gives the audio output (``audio_device``) the snippets play on."""

    index_ready = Signal(object)      # FeatureIndex of the current SAE (also for other panes)
    boost_ready = Signal(object)      # BoostedWindow just rendered
    snippet_loaded = Signal(object)   # (feature, rank, wave, sample_rate, start_time)

    def __init__(self, state: ExplorerState, runner: JobRunner, settings: StudioSettings,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.runner = runner
        self.settings = settings
        self.model = InspectorModel(state, runner, audio_device=getattr(settings, "audio_device", None), parent=self)
        self._tick_names: list[str] = []
        self._build_ui()
        m = self.model
        m.index_ready.connect(self.index_ready)
        m.boost_ready.connect(self.boost_ready)
        m.snippet_loaded.connect(self.snippet_loaded)
        m.changed.connect(self._refresh_all)
        m.frame_values_changed.connect(self._refresh_frame_views)
        m.attributes_changed.connect(self._set_attributes)
        m.index_state_changed.connect(self._on_index_state)
        m.index_progress.connect(self._on_index_progress)
        m.boost_changed.connect(self._refresh_boost)
        m.playing_changed.connect(self._highlight_playing)
        m.top_message.connect(self.top_status.setText)
        m.boost_message.connect(self.boost_status.setText)
        self._refresh_all()

    # ---- what tests and other panes read --------------------------------------------------------
    @property
    def snippets(self) -> Any:
        return self.model.snippets

    @property
    def models(self) -> Any:
        return self.model.models

    @property
    def analysis(self) -> Any:
        return self.model.analysis

    @property
    def index(self) -> Any:
        return self.model.index

    @property
    def feature(self) -> int | None:
        return self.model.feature

    @property
    def frame(self) -> int | None:
        return self.model.frame

    @property
    def playing_rank(self) -> int | None:
        """Rank of the top frame sounding now (None when none)."""
        return self.model.playing_rank

    def contributions(self) -> list[dict[str, Any]]:
        return self.model.contributions()

    def probe_weights(self) -> tuple[list[str], np.ndarray] | None:
        return self.model.probe_weights()

    def top_entries(self) -> list[dict[str, Any]]:
        return self.model.top_entries()

    def activation_at_frame(self) -> tuple[float, float, float] | None:
        return self.model.activation_at_frame()

    def typical_value(self) -> float:
        return self.model.typical_value()

    def boost_amount(self) -> float:
        return self.model.boost_amount()

    def boost_unavailable(self) -> str:
        return self.model.boost_unavailable()

    def ensure_index(self, force: bool = False) -> None:
        self.model.ensure_index(force)

    def cancel_index(self) -> None:
        self.model.cancel_index()

    def hear_boosted(self) -> None:
        self.model.hear_boosted()

    def hear_original(self) -> None:
        self.model.hear_original()

    def original_window(self) -> tuple[np.ndarray, int, float] | None:
        return self.model.original_window()

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
        self.scroll = scroll
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

        # What the feature is: its automatic labels, the boost check, the label search (issue 14).
        self.labels_panel = FeatureLabelsPanel(self.state, self.runner)
        layout.addWidget(self.labels_panel)

        # Activation histogram (log-x bins) with the clicked value marked.
        layout.addWidget(section("Activation over the corpus"))
        self.hist_plot = styled_plot(130)
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
        head.addWidget(section("Strongest corpus frames"))
        head.addStretch(1)
        self.spread_check = QCheckBox(f"spread out (≥ {DISTINCT_SECONDS:g} s apart)")
        self.spread_check.setToolTip("list one frame per moment: skip frames close to a stronger one "
                                     "of the same source")
        self.spread_check.setChecked(self.model.spread)
        self.spread_check.toggled.connect(self._on_spread)
        head.addWidget(self.spread_check)
        layout.addLayout(head)
        self.top_table = table(["#", "f", "source", "time (s)"])
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
        head.addWidget(section("Probe weights W[k, j]"))
        head.addStretch(1)
        self.attr_combo = QComboBox()
        self.attr_combo.currentTextChanged.connect(self._on_attribute)
        head.addWidget(self.attr_combo)
        layout.addLayout(head)
        self.weight_plot = styled_plot(140)
        self.weight_plot.setLabel("left", "weight")
        self.weight_bars = pg.BarGraphItem(x=[], height=[], width=0.8)
        self.weight_plot.addItem(self.weight_bars)
        self.weight_plot.addItem(pg.InfiniteLine(pos=0, angle=0, movable=False,
                                                 pen=pg.mkPen(self.palette().color(QPalette.ColorRole.Mid))))
        layout.addWidget(self.weight_plot)
        self.votes_label = QLabel()
        self.votes_label.setWordWrap(True)
        layout.addWidget(self.votes_label)

        layout.addWidget(section("Contributions at this frame  c = W[k, j] · f_j"))
        self.contrib_label = QLabel()
        self.contrib_label.setWordWrap(True)
        layout.addWidget(self.contrib_label)
        self.contrib_table = table(["class", "p", "W[k, j]", "c = W·f", "logit"])
        self.contrib_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.contrib_table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout.addWidget(self.contrib_table)

        # Boost this feature.
        layout.addWidget(section("Boost this feature"))
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

    # ---- what the user does --------------------------------------------------------------------
    def _on_spread(self, on: bool) -> None:
        self.model.set_spread(on)
        self._refresh_top()

    def _on_attribute(self, text: str) -> None:
        self.model.set_attribute(text)
        self._refresh_probe_views()

    def _set_attributes(self, names: list[str]) -> None:
        self.attr_combo.blockSignals(True)
        self.attr_combo.clear()
        self.attr_combo.addItems(names)
        if self.model.attribute in names:
            self.attr_combo.setCurrentText(self.model.attribute)
        self.attr_combo.blockSignals(False)

    def _on_beta_changed(self, value: float) -> None:
        self.beta_slider.blockSignals(True)
        self.beta_slider.setValue(int(round(value * 10)))
        self.beta_slider.blockSignals(False)
        self.model.set_beta(value)

    def play_top(self, row: int) -> None:
        """Load (job) and play ~1 s around the top frame in table row ``row``."""
        cell = self.top_table.item(row, 0)
        if cell is not None:
            self.model.play_top(int(cell.data(Qt.ItemDataRole.UserRole)))

    # ---- the index job's state -----------------------------------------------------------------
    def _on_index_state(self) -> None:
        if self.model.index_running:
            self.index_progress.setValue(0)
            self._refresh_index_controls()
            self._refresh_stats()
            return
        self._refresh_index_controls()
        self._refresh_stats()
        self._refresh_histogram()

    def _on_index_progress(self, event: Progress) -> None:
        if event.fraction is not None:
            self.index_progress.setValue(int(round(100 * event.fraction)))
        self.index_progress.setFormat(f"corpus statistics: %p %  {event.message}".strip())

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
        title, text = self.model.header()
        self.title_label.setText(title)
        self.value_label.setText(text)

    def _refresh_stats(self) -> None:
        self.stats_label.setText(self.model.stats_text())

    def _refresh_index_controls(self) -> None:
        m = self.model
        running = m.index_running
        self.index_progress.setVisible(running)
        self.index_cancel.setVisible(running)
        self.index_build.setVisible(not running and m.index is None and m.models is not None and bool(m.index_failed))

    def _refresh_histogram(self) -> None:
        hist = self.model.histogram()
        if hist is None:
            self.hist_bars.setOpts(x0=[], x1=[], height=[])
            self.clip_curve.setData([], [])
            self.value_line.hide()
            self.hist_legend.setText("")
            return
        edges = hist.log_edges
        if hist.corpus_share is not None:
            self.hist_bars.setOpts(x0=edges[:-1], x1=edges[1:], height=hist.corpus_share)
        else:
            self.hist_bars.setOpts(x0=[], x1=[], height=[])
        if hist.clip_share is not None:
            self.clip_curve.setData(edges, hist.clip_share)
        else:
            self.clip_curve.setData([], [])
        if hist.value is not None:
            self.value_line.setValue(hist.value)
            self.value_line.show()
        else:
            self.value_line.hide()
        self.hist_plot.setXRange(*hist.x_range, padding=0.02)
        self.hist_plot.enableAutoRange(axis="y")
        self.hist_legend.setText(hist.legend)

    def _refresh_top(self) -> None:
        t = self.top_table
        t.setRowCount(0)
        entries = self.model.top_entries()
        t.setRowCount(len(entries))
        for r, e in enumerate(entries):
            t.setItem(r, 0, item(str(e["rank"] + 1), True, data=e["rank"]))
            t.setItem(r, 1, item(f"{e['activation']:.3f}", True))
            source = item(e["label"])
            source.setToolTip(f"{e['source_id']} · frame {e['frame']}")
            t.setItem(r, 2, source)
            t.setItem(r, 3, item(f"{e['time']:.2f}", True))
        if entries:
            self._highlight_playing()
        self.top_status.setText(self.model.top_hint(len(entries)))

    def _refresh_probe_views(self) -> None:
        self._refresh_weights()
        self._refresh_contributions()

    def _refresh_weights(self) -> None:
        got = self.model.probe_weights()
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
        rows = self.model.contributions()
        if rows:  # outline the class the probe predicts at the clicked frame
            pens[rows[0]["class"]] = pg.mkPen(self.palette().color(QPalette.ColorRole.Text), width=2)
        self.weight_bars.setOpts(x=np.arange(k), height=w, width=0.8, brushes=brushes, pens=pens)
        self._tick_names = names
        self._update_weight_ticks()
        self.weight_plot.setXRange(-0.6, k - 0.4, padding=0)
        self.weight_plot.enableAutoRange(axis="y")
        self.votes_label.setText(self.model.votes_text())

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

    def _refresh_contributions(self) -> None:
        t = self.contrib_table
        rows = self.model.contributions()
        t.setRowCount(len(rows))
        t.setFixedHeight(t.horizontalHeader().sizeHint().height() + 2 * t.frameWidth() + 2
                         + max(1, len(rows)) * t.verticalHeader().defaultSectionSize())
        self.contrib_label.setText(self.model.contributions_text(rows))
        for r, e in enumerate(rows):
            t.setItem(r, 0, item(("★ " if e["predicted"] else "") + e["name"]))
            t.setItem(r, 1, item(f"{e['p']:.3f}", True))
            t.setItem(r, 2, item(f"{e['weight']:+.3f}", True))
            c = item(f"{e['contribution']:+.3f}", True)
            c.setForeground(QBrush(POSITIVE.darker(120) if e["contribution"] >= 0 else NEGATIVE.darker(120)))
            t.setItem(r, 3, c)
            t.setItem(r, 4, item(f"{e['logit']:+.2f}", True))

    def _refresh_boost(self) -> None:
        m = self.model
        ok = m.models is not None and m.frame_ok()
        unavailable = m.boost_unavailable()
        self.boost_button.setEnabled(ok and not m.boost_running and not unavailable)
        self.boost_button.setToolTip(unavailable or BOOST_TIP)
        self.original_button.setEnabled(ok)
        self.beta_label.setText(m.beta_text())

    def _highlight_playing(self) -> None:
        t = self.top_table
        playing_rank = self.model.playing_rank
        for r in range(t.rowCount()):
            cell0 = t.item(r, 0)
            playing = cell0 is not None and cell0.data(Qt.ItemDataRole.UserRole) == playing_rank
            if cell0 is not None:
                rank = int(cell0.data(Qt.ItemDataRole.UserRole))
                cell0.setText(f"▶ {rank + 1}" if playing else str(rank + 1))
            for c in range(t.columnCount()):
                cell = t.item(r, c)
                if cell is not None:
                    cell.setBackground(QBrush(PLAYING_ROW) if playing else QBrush())
                    if playing:
                        cell.setForeground(QBrush(QColor(0, 0, 0)))
                    else:
                        cell.setData(Qt.ItemDataRole.ForegroundRole, None)

    # ---- teardown --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel this pane's jobs and release the audio output (call before closing)."""
        self.model.shutdown()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        self.shutdown()
        super().closeEvent(event)
