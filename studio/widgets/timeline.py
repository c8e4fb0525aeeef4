"""The explorer's central view: waveform, feature heatmap and attribute lanes on one time axis.

All panes live in one ``GraphicsLayoutWidget``, in column 0 of its grid, each with the same
fixed left-axis width, so time lines up vertically (the heatmap's colour bar sits alone in
column 1).  Their view boxes are X-linked to the waveform's, which is the one whose range
is mirrored to ``ExplorerState.view_range`` (and follows ``view_range_changed``).

Mouse: wheel zooms time, drag pans (on the waveform a plain drag selects a region and
shift + drag pans), a click seeks (``state.set_playhead``) except on a heatmap cell, where
it selects that feature at that frame (``state.select_feature``); double click on the
waveform or Esc clears the selection.  Each pane has its own playhead ``InfiniteLine``,
moved together on ``playhead_changed``.

The view never calls other panes: it reads the ``ExplorerState`` and listens to its signals.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QSignalBlocker, Qt, QTimer
from PySide6.QtGui import QCursor, QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QToolTip, QVBoxLayout, QWidget

from audiosae.explore.decoding import probe_weight_row

from ..layers.clip import ClipDisplay, prepare_clip_display, prepare_job
from ..layers.feature_rows import DEFAULT_TOP_N, clip_density, order_scores, row_order
from ..layers.lanes import lane_attributes, lane_descriptions, lane_spec
from ..models.job_slot import JobSlot
from ..models.lane_choice import LaneChoice
from ..state import ExplorerState
from .heatmap import HeatmapHeader, HeatmapPane
from .lanes import LanesButton, LanesPane
from .waveform import WaveformPane

log = logging.getLogger("studio.timeline")

AXIS_WIDTH = 64                 # px, identical for every pane so the time axes align
RESORT_DELAY_MS = 150           # debounce of the mass re-sort while the view moves
TOP_N_KEY = "timeline/top_n"
PLAYHEAD_PEN = pg.mkPen("#ff4d4d", width=1.5)
HOVER_PEN = pg.mkPen(255, 255, 255, 70, width=1, style=Qt.PenStyle.DotLine)
BACKGROUND = "#141619"
MIN_VIEW_SECONDS = 0.005
ZOOM_STEP = 1.5                 # the header's zoom buttons (the main window's +/− use the same)
PREPARE_SYNC_LIMIT = 4_000_000  # samples + feature values prepared in the GUI thread; more -> a job
# Shown instead of the heatmap / probe lines for a clip analysed without SAE features (the
# workspace's codec could not load and the clip is not one of its corpus sources).
NO_FEATURES_TEXT = "no SAE features for this audio: it needs the codec's encoder (see the note above)"
PANE_STRETCH = {"waveform": 2, "heatmap": 5}   # rows' shares of the height; a lane's is 2


def _setting(settings: Any, key: str, default: Any) -> Any:
    """Read a value from StudioSettings (or anything with ``value``), else the default."""
    getter = getattr(settings, "value", None)
    if getter is None:
        return default
    try:
        value = getter(key, default)
    except Exception:  # a settings backend problem must not break the view
        return default
    return default if value is None else value


class TimelineView(QWidget):
    """Central time-aligned panes: waveform, SAE feature heatmap, and the chosen attribute lanes."""

    def __init__(self, state: ExplorerState, runner: Any, settings: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.state, self.runner, self.settings = state, runner, settings
        try:
            top_n = int(_setting(settings, TOP_N_KEY, DEFAULT_TOP_N))
        except (TypeError, ValueError):
            top_n = DEFAULT_TOP_N

        # -- widgets ------------------------------------------------------------------
        self.header = HeatmapHeader(top_n)
        self.header.set_order(state.feature_order)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        for text, tip, slot in (("−", "zoom out (−)", lambda: self.zoom(1.0 / ZOOM_STEP)),
                                ("+", "zoom in (+)", lambda: self.zoom(ZOOM_STEP)),
                                ("Fit", "show the whole clip (F)", self.fit)):
            button = QToolButton()
            button.setText(text)
            button.setToolTip(tip)
            button.setAutoRaise(True)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.header, 1)
        self.lane_choice = LaneChoice(settings, self)
        self.lanes_button = LanesButton(self.lane_choice)
        top.addWidget(self.lanes_button)
        top.addLayout(buttons)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(BACKGROUND)
        self.graphics.ci.setContentsMargins(2, 2, 2, 2)
        self.graphics.ci.setSpacing(3)
        self.waveform = WaveformPane(AXIS_WIDTH)
        self.heatmap = HeatmapPane(runner, AXIS_WIDTH)
        self.lanes = LanesPane(runner, AXIS_WIDTH)
        self.panes: dict[str, pg.PlotItem] = {}
        self.playheads: dict[str, pg.InfiniteLine] = {}
        self.hover_lines: dict[str, pg.InfiniteLine] = {}
        self.master = self.waveform.view_box
        self._add_pane("waveform", self.waveform.plot)
        self._add_pane("heatmap", self.heatmap.plot)
        self.graphics.addItem(self.heatmap.colorbar, row=1, col=1)
        self.lanes.set_lanes([lane_spec(a) for a in self.lane_choice.shown])
        self._layout_lanes()

        # What the clip's analysis could not compute (CREPE's weights missing...): what, why and
        # the command that fixes it, above the panes, until a complete analysis replaces it.
        self.missing_banner = QLabel(self)
        self.missing_banner.setObjectName("missing_banner")
        self.missing_banner.setWordWrap(True)
        self.missing_banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.missing_banner.setStyleSheet("QLabel { background: #fff3cd; color: #664d03; padding: 4px; }")
        self.missing_banner.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.missing_banner)
        layout.addWidget(self.graphics, 1)

        # -- internal state ---------------------------------------------------------------
        self._applying_range = False
        self._clip_token = 0
        self._prepare = JobSlot(runner, "prepare timeline")   # long clips; a new clip drops the older
        self.display: ClipDisplay | None = None
        self._clip_density: np.ndarray | None = None
        self._corpus_density: np.ndarray | None = None
        self._corpus_density_loaded = False
        self._probe_rows: dict[tuple[str, int], np.ndarray] = {}
        # A label per feature (sequence by id, or {id: label}): the heatmap's rows are then
        # grouped by label (``row_order``); None = by score alone.
        self.row_labels: Any = None
        self.order_detail = ""
        self._resort_timer = QTimer(self)
        self._resort_timer.setSingleShot(True)
        self._resort_timer.setInterval(RESORT_DELAY_MS)
        self._resort_timer.timeout.connect(self.refresh_rows)

        # -- wiring -----------------------------------------------------------------------
        state.workspace_changed.connect(self._on_workspace_changed)
        state.models_changed.connect(self._on_models_changed)
        state.clip_changed.connect(self._on_clip_changed)
        state.measurements_changed.connect(self._on_measurements)
        state.steering_changed.connect(self._on_steering_changed)
        state.steered_features_changed.connect(self._on_steered_features)
        state.playhead_changed.connect(self._on_playhead)
        state.selection_changed.connect(self.waveform.show_selection)
        state.view_range_changed.connect(self._on_state_range)
        state.feature_order_changed.connect(self._on_order_changed)
        state.probe_target_changed.connect(lambda _t: self.refresh_rows() if state.feature_order == "probe" else None)
        state.feature_labels_changed.connect(self._on_feature_labels)
        self.header.group.toggled.connect(state.set_group_by_label)
        self.master.sigXRangeChanged.connect(self._on_view_moved)
        self.header.order.currentIndexChanged.connect(
            lambda _i: state.set_feature_order(self.header.order.currentData()))
        self.header.top_n.valueChanged.connect(self._on_top_n)
        self.waveform.view_box.sigClicked.connect(self._on_seek_click)
        self.waveform.view_box.sigSelectDrag.connect(self._on_select_drag)
        self.waveform.region.sigRegionChangeFinished.connect(self._on_region_edited)
        self.heatmap.view_box.sigClicked.connect(self._on_heatmap_click)
        self.lane_choice.changed.connect(self._on_lanes_chosen)
        self.lanes.clicked.connect(self._on_seek_click)
        self.heatmap.failed.connect(self._on_job_failed)
        self.lanes.failed.connect(self._on_job_failed)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.graphics.viewport().installEventFilter(self)
        self._escape = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        self._escape.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._escape.activated.connect(self.clear_selection)

        self._update_lane_choice()
        if state.analysis is not None:
            self._on_clip_changed()

    # ---- public API ---------------------------------------------------------------------
    def zoom(self, factor: float) -> None:
        """Zoom time by ``factor`` (> 1 zooms in), about the playhead when visible, else the centre."""
        if factor <= 0 or self.state.analysis is None:
            return
        (a, b), _ = self.waveform.view_box.viewRange()
        centre = self.state.playhead if a <= self.state.playhead <= b else 0.5 * (a + b)
        seconds = self.state.analysis.seconds
        span = min(max((b - a) / factor, MIN_VIEW_SECONDS), seconds)
        start = centre - (centre - a) * span / (b - a)
        start = min(max(start, 0.0), seconds - span)
        self.waveform.view_box.setXRange(start, start + span, padding=0)

    def fit(self) -> None:
        """Show the whole clip."""
        seconds = self.state.analysis.seconds if self.state.analysis is not None else 1.0
        self.waveform.view_box.setXRange(0.0, seconds, padding=0)

    def clear_selection(self) -> None:
        self.state.set_selection(None)

    def view_range(self) -> tuple[float, float]:
        (a, b), _ = self.waveform.view_box.viewRange()
        return float(a), float(b)

    def shutdown(self) -> None:
        """Stop the debounce timer and cancel this view's pending jobs (call before closing)."""
        self._resort_timer.stop()
        self._cancel_prepare()
        self.heatmap.cancel_pending()
        self.lanes.cancel_pending()
        QToolTip.hideText()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        self.shutdown()
        super().closeEvent(event)

    # ---- panes -------------------------------------------------------------------------------
    def _add_pane(self, name: str, plot: pg.PlotItem) -> None:
        """Put ``plot`` in the next row: its stretch, grid, X-link to the waveform, playhead and hover line."""
        row = len(self.panes)
        self.graphics.addItem(plot, row=row, col=0)
        self.graphics.ci.layout.setRowStretchFactor(row, PANE_STRETCH.get(name, 2))
        if name != "heatmap":   # the image hides a grid there; painting it would only cost time
            plot.showGrid(x=True, alpha=0.12)
        view_box = plot.getViewBox()
        analysis = self.state.analysis
        if analysis is not None:
            view_box.setLimits(xMin=0.0, xMax=analysis.seconds, maxXRange=analysis.seconds,
                               minXRange=min(MIN_VIEW_SECONDS, analysis.seconds))
        if view_box is self.master:
            view_box.setXRange(*self.state.view_range, padding=0)
        else:
            plot.setXLink(self.master)
        line = pg.InfiniteLine(pos=self.state.playhead, angle=90, movable=False, pen=PLAYHEAD_PEN)
        line.setZValue(20)
        plot.addItem(line, ignoreBounds=True)
        hover = pg.InfiniteLine(pos=0.0, angle=90, movable=False, pen=HOVER_PEN)
        hover.setZValue(19)
        hover.hide()
        plot.addItem(hover, ignoreBounds=True)
        self.panes[name], self.playheads[name], self.hover_lines[name] = plot, line, hover

    def _remove_pane(self, name: str) -> None:
        plot = self.panes.pop(name)
        plot.removeItem(self.playheads.pop(name))
        plot.removeItem(self.hover_lines.pop(name))
        plot.setXLink(None)   # a hidden lane must not follow (and redraw with) the view
        self.graphics.removeItem(plot)

    def _layout_lanes(self) -> None:
        """The lane rows under the heatmap, one per shown lane; the time axis under the last pane."""
        old_rows = len(self.panes)
        for name in [n for n in self.panes if n.endswith(" lane")]:
            self._remove_pane(name)
        for key, lane in self.lanes.lanes.items():
            self._add_pane(f"{key} lane", lane.plot)
        for row in range(len(self.panes), old_rows):   # rows left empty take no height
            self.graphics.ci.layout.setRowStretchFactor(row, 0)
        names = list(self.panes)
        for name in names:
            axis = self.panes[name].getAxis("bottom")
            axis.setStyle(showValues=name == names[-1])
            axis.showLabel(False)
        self.panes[names[-1]].setLabel("bottom", "time", units="s")

    def _set_lanes(self, shown: list[str]) -> bool:
        """The lanes of ``shown`` (with the open workspace's classes), laid out; True when they changed."""
        models = self.state.models
        spec = models.spec if models is not None else None
        if not self.lanes.set_lanes([lane_spec(attr, spec) for attr in shown]):
            return False
        self._layout_lanes()
        return True

    def _on_lanes_chosen(self, shown: list[str]) -> None:
        """The user picked lanes: the new ones are given the clip shown."""
        if self._set_lanes(shown) and self.display is not None:
            self._give_lanes_clip()

    def _update_lane_choice(self) -> None:
        """What the open workspace labels becomes the lanes one can pick (their classes with it).
        Called on a workspace / models change, which shows the clip again right after: the lanes
        are laid out here, not given the clip twice."""
        models = self.state.models
        spec = models.spec if models is not None else None
        self.lanes_button.set_descriptions(lane_descriptions(spec))
        with QSignalBlocker(self.lane_choice):
            self.lane_choice.set_available(lane_attributes(spec))
        self._set_lanes(self.lane_choice.shown)

    def _on_measurements(self) -> None:
        """The clip's registered attributes arrived (measured after the clip was shown)."""
        if self.display is not None and self.state.analysis is not None:
            self._give_lanes_clip()

    def _give_lanes_clip(self) -> None:
        analysis, models = self.state.analysis, self.state.models
        self.lanes.set_clip(analysis, models.spec if models is not None else None,
                            models.probes if models is not None else None)
        if analysis is not None and self.state.steered_f is not None:
            self.lanes.set_steered_features(self.state.steered_f)

    # ---- rows of the heatmap ----------------------------------------------------------------
    def probe_target(self) -> tuple[tuple[str, int] | None, str]:
        """``((attribute, class), how it was chosen)`` for the "probe" order."""
        state = self.state
        if state.probe_target is not None:
            return (str(state.probe_target[0]), int(state.probe_target[1])), "selected"
        if state.steering is not None:
            return (state.steering.attribute, int(state.steering.target)), "steering target"
        analysis = state.analysis
        if analysis is not None and "pitch" in analysis.probabilities:
            predicted = analysis.predicted("pitch")
            voiced = predicted[predicted > 0]
            counts = np.bincount(voiced if voiced.size else predicted)
            return ("pitch", int(counts.argmax())), "most frequent in clip"
        return None, ""

    def _probe_row(self) -> tuple[np.ndarray | None, str]:
        models = self.state.models
        target, how = self.probe_target()
        if models is None or target is None or target[0] not in models.probes.weights:
            return None, "no probes loaded: by mass instead"
        attr, k = target
        if not 0 <= k < models.probes.n_classes(attr):
            return None, f"class {k} out of range for {attr}: by mass instead"
        row = self._probe_rows.get(target)
        if row is None:
            row = probe_weight_row(models.probes, attr, k)
            self._probe_rows[target] = row
        features = self.heatmap.features
        if features is not None and row.shape[0] != features.shape[1]:
            return None, "probes do not match these features: by mass instead"
        name = models.probes.class_names.get(attr, [])
        label = name[k] if k < len(name) else str(k)
        return row, f"toward {attr} {label} ({how})"

    def _density(self) -> tuple[np.ndarray, str]:
        analysis = self.state.analysis
        corpus = self._load_corpus_density()
        if corpus is not None and analysis is not None and corpus.shape[0] == analysis.f.shape[1]:
            return corpus, "over the corpus"
        if self._clip_density is None:
            self._clip_density = clip_density(analysis.f) if analysis is not None else np.zeros(0)
        return self._clip_density, "over this clip (no corpus feature index)"

    def _load_corpus_density(self) -> np.ndarray | None:
        if self._corpus_density_loaded:
            return self._corpus_density
        self._corpus_density_loaded = True
        models = self.state.models
        if models is None:
            return None
        try:
            from audiosae.feature_index import load_feature_index
        except ImportError:
            return None
        try:
            index = load_feature_index(models.workspace, models.sae.cfg.name)
        except Exception as exc:  # a damaged index must not break the view: fall back to the clip
            log.warning("feature index unavailable: %s", exc)
            index = None
        density = getattr(index, "density", None) if index is not None else None
        self._corpus_density = None if density is None else np.asarray(density, dtype=np.float64)
        return self._corpus_density

    def refresh_rows(self) -> None:
        """Choose and sort the shown features for the current order, then redraw the image."""
        self._resort_timer.stop()
        features = self.heatmap.features
        if features is None:
            self.heatmap.show_rows(np.zeros(0, dtype=np.int64))
            self.header.detail.setText("")
            return
        order = self.state.feature_order
        details: dict[str, str] = {}

        def mass() -> np.ndarray:
            a, b = self.view_range()
            details["mass"] = f"in view {a:.2f}–{b:.2f} s"
            return self.heatmap.mass_in_range(a, b)

        def probe() -> np.ndarray | None:
            row, details["probe"] = self._probe_row()
            return row

        def density() -> np.ndarray:
            values, details["density"] = self._density()
            return values

        scores = order_scores(order, mass=mass, probe=probe, density=density)
        self.heatmap.show_rows(row_order(scores, self.header.top_n.value(), self.row_labels))
        self.order_detail = details.get(order, "")
        self.header.detail.setText(self.order_detail + ("  ·  steered f′" if self.state.steered_f is not None
                                                          else ""))

    # ---- state -> view ----------------------------------------------------------------
    def _on_clip_changed(self) -> None:
        analysis = self.state.analysis
        self._clip_density = None
        self._resort_timer.stop()
        self._cancel_prepare()
        self._clip_token += 1
        self.display = None
        missing = analysis.missing if analysis is not None else []
        self.missing_banner.setText("\n".join(part.line() for part in missing))
        self.missing_banner.setVisible(bool(missing))
        if analysis is None:
            self._show_clip(None)
            return
        seconds = analysis.seconds
        for plot in self.panes.values():
            plot.getViewBox().setLimits(xMin=0.0, xMax=seconds, maxXRange=seconds,
                                        minXRange=min(MIN_VIEW_SECONDS, seconds))
        size = int(analysis.wave.size) + int(analysis.f.size)
        if self.runner is None or size <= PREPARE_SYNC_LIMIT:
            self._show_clip(prepare_clip_display(analysis))
            return
        self._show_clip(None)
        self.header.detail.setText("preparing the timeline…")
        self._prepare.start(prepare_job, (self._clip_token, analysis), analysis, on_finished=self._on_prepared,
                            on_failed=self._on_job_failed)

    def _on_prepared(self, result: tuple[Any, ClipDisplay]) -> None:
        (token, analysis), display = result
        if token == self._clip_token and analysis is self.state.analysis:
            self._show_clip(display)

    def _on_job_failed(self, message: str) -> None:
        log.warning("timeline job failed: %s", message)
        self.state.status.emit(f"timeline: {message}")

    def _cancel_prepare(self) -> None:
        self._prepare.cancel()

    @property
    def ready(self) -> bool:
        """True when every pane shows the current clip (no preparation or row job pending)."""
        return not self._prepare.running and not self.heatmap.pending and not self.lanes.pending

    def _show_clip(self, display: ClipDisplay | None) -> None:
        analysis = self.state.analysis if display is not None else None
        self.display = display
        featureless = analysis is not None and not analysis.f.shape[1]
        self.heatmap.set_placeholder(NO_FEATURES_TEXT if featureless else "")
        if analysis is None:
            self.waveform.set_pyramid(None)
            self.heatmap.set_clip(None, 0.0)
            self.heatmap.set_features(None)
            self.lanes.set_clip(None, None)
            self.refresh_rows()
            self.waveform.show_selection(None)
            return
        self.waveform.set_pyramid(display.pyramid)
        self.heatmap.set_clip(analysis.times, analysis.seconds, display.levels, display.mass)
        self.heatmap.set_features(self._displayed_features())
        self._give_lanes_clip()
        self.fit()
        self.refresh_rows()
        self._on_playhead(self.state.playhead)
        self.waveform.show_selection(self.state.selection)

    def _displayed_features(self) -> np.ndarray | None:
        """``state.features_for_display()``, unless f' does not fit the clip (then f)."""
        features = self.state.features_for_display()
        analysis = self.state.analysis
        if features is not None and analysis is not None and features.shape != analysis.f.shape:
            log.warning("steered features %s do not match the clip's %s; showing f",
                        features.shape, analysis.f.shape)
            return analysis.f
        return features

    def _on_workspace_changed(self) -> None:
        self._update_lane_choice()
        self._probe_rows.clear()
        self._corpus_density, self._corpus_density_loaded = None, False
        self._on_clip_changed()

    def _on_models_changed(self) -> None:
        self._update_lane_choice()
        self._probe_rows.clear()
        self._corpus_density, self._corpus_density_loaded = None, False
        if self.state.analysis is not None:
            self._on_clip_changed()

    def _on_steering_changed(self, _params: Any) -> None:
        if self.state.feature_order == "probe":
            self.refresh_rows()   # the probe target may follow the steering target

    def _on_steered_features(self) -> None:
        if self.state.analysis is None or self.display is None:
            return   # the clip is still being prepared; it will read f' when it is shown
        self.heatmap.set_features(self._displayed_features())
        self.refresh_rows()
        self.lanes.set_steered_features(self.state.steered_f)

    def _on_feature_labels(self) -> None:
        """Automatic labels arrived / were dropped, or grouping by them was switched."""
        labels = self.state.feature_labels
        self.header.group.setEnabled(labels is not None)
        self.header.group.blockSignals(True)
        self.header.group.setChecked(self.state.group_by_label)
        self.header.group.blockSignals(False)
        rows = self.state.row_labels()
        if rows is not None and self.heatmap.features is not None and len(rows) != self.heatmap.features.shape[1]:
            rows = None   # labels of another SAE (a switch in flight)
        self.row_labels = rows
        self.heatmap.set_row_labels(rows)
        self.refresh_rows()

    def _on_order_changed(self, order: str) -> None:
        if order == "density" and self._corpus_density is None:
            self._corpus_density_loaded = False   # an index may have been built since
        self.header.set_order(order)
        self.refresh_rows()

    def _on_top_n(self, value: int) -> None:
        setter = getattr(self.settings, "set_value", None)
        if setter is not None:
            try:
                setter(TOP_N_KEY, int(value))
            except Exception as exc:
                log.warning("could not store %s: %s", TOP_N_KEY, exc)
        self.refresh_rows()

    def _on_playhead(self, seconds: float) -> None:
        previous = self.playheads["waveform"].value()
        for line in self.playheads.values():
            line.setValue(seconds)
        self._follow_playhead(previous, seconds)

    def _follow_playhead(self, previous: float, now: float) -> None:
        """Page the view when a playing playhead runs off its right edge (Sonic Visualiser's page mode)."""
        analysis = self.state.analysis
        if analysis is None:
            return
        a, b = self.view_range()
        span = b - a
        if span >= analysis.seconds * 0.999 or not (a <= previous <= b) or now <= b:
            return
        if now - previous > 0.5 * span:   # a jump, not playback: leave the view alone
            return
        start = min(max(now - 0.05 * span, 0.0), analysis.seconds - span)
        self.waveform.view_box.setXRange(start, start + span, padding=0)

    def _on_state_range(self, start: float, end: float) -> None:
        a, b = self.view_range()
        if abs(a - start) < 1e-9 and abs(b - end) < 1e-9:
            return
        self._applying_range = True
        try:
            self.waveform.view_box.setXRange(start, end, padding=0)
        finally:
            self._applying_range = False

    # ---- view -> state ----------------------------------------------------------------
    def _on_view_moved(self, _vb: Any, x_range: Any) -> None:
        if not self._applying_range:
            self.state.set_view_range(float(x_range[0]), float(x_range[1]))
        if self.state.feature_order == "mass" and self.heatmap.features is not None:
            self._resort_timer.start()

    def _clamp_time(self, x: float) -> float:
        seconds = self.state.analysis.seconds if self.state.analysis is not None else 0.0
        return float(min(max(x, 0.0), seconds))

    def _on_seek_click(self, x: float, _y: float, _double: bool) -> None:
        if self.state.analysis is not None:
            self.state.set_playhead(self._clamp_time(x))


    def _on_heatmap_click(self, x: float, y: float, double: bool) -> None:
        cell = self.heatmap.cell_at(x, y)
        if cell is None:
            self._on_seek_click(x, y, double)
        elif not double:
            _row, feature, frame = cell
            self.state.select_feature(feature, frame)

    def _on_select_drag(self, a: float, b: float, finished: bool) -> None:
        if self.state.analysis is None:
            return
        a, b = sorted((self._clamp_time(a), self._clamp_time(b)))
        self.waveform.show_selection((a, b) if b > a else None)
        if finished:
            self.state.set_selection((a, b) if b > a else None)

    def _on_region_edited(self, region: Any) -> None:
        if self.state.analysis is None or not self.waveform.region.isVisible():
            return
        a, b = (self._clamp_time(v) for v in region.getRegion())
        self.state.set_selection((a, b) if b > a else None)

    # ---- hover ------------------------------------------------------------------------------
    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        for name, plot in self.panes.items():
            vb = plot.getViewBox()
            if vb.sceneBoundingRect().contains(scene_pos):
                point = vb.mapSceneToView(scene_pos)
                self._show_hover(point.x())
                text = self.heatmap.describe(point.x(), point.y()) if name == "heatmap" else None
                if text:
                    QToolTip.showText(QCursor.pos(), text, self.graphics)
                else:
                    QToolTip.hideText()
                return
        self._show_hover(None)

    def _show_hover(self, x: float | None) -> None:
        if self.state.analysis is None:
            x = None
        for line in self.hover_lines.values():
            if x is None:
                line.hide()
            else:
                line.setValue(x)
                line.show()
        self.lanes.show_hover(x)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        kind = event.type()
        if kind == QEvent.Type.Leave:
            self._show_hover(None)
            QToolTip.hideText()
        elif kind == QEvent.Type.MouseButtonDblClick and event.button() == Qt.MouseButton.LeftButton:
            # Watched here rather than through pyqtgraph's click events, which report the
            # press before the double click as the click and drop the double.
            scene_pos = self.graphics.mapToScene(event.position().toPoint())
            if self.waveform.view_box.sceneBoundingRect().contains(scene_pos):
                self.clear_selection()
        return super().eventFilter(watched, event)
