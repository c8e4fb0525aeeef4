"""The explorer's shared state: one object every pane reads and writes, with change signals.

Panes never talk to each other directly.  The timeline (waveform, heatmap, lanes), the
feature inspector and the audition panel all hold the same ``ExplorerState`` and react to
its signals, the way Sonic Visualiser's ViewManager keeps panes in step.  The heavy objects
(``LoadedModels``, ``ClipAnalysis``) are computed by jobs in worker threads; only the
finished results are set here, in the GUI thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from audiosae.analysis import ClipAnalysis, LoadedModels
from audiosae.steering.realtime import SteeringParams
from audiosae.workspace import Workspace

FEATURE_ORDERS = {
    "mass": "activation mass in view",
    "probe": "weight toward the selected probe class",
    "density": "corpus density",
}


class ExplorerState(QObject):
    workspace_changed = Signal()            # workspace (and so models) replaced or closed
    models_changed = Signal()               # backend / SAE / probes loaded or switched
    clip_changed = Signal()                 # a new ClipAnalysis
    measurements_changed = Signal()         # the clip's registered attributes were measured (analysis.pending)
    steering_changed = Signal(object)       # SteeringParams | None
    steered_features_changed = Signal()     # f' for the heatmap (None = unsteered)
    playhead_changed = Signal(float)        # seconds
    selection_changed = Signal(object)      # (start, end) seconds, or None
    view_range_changed = Signal(float, float)  # visible time span (s), shared by all panes
    feature_selected = Signal(int, int)     # feature id, frame index
    feature_order_changed = Signal(str)     # key of FEATURE_ORDERS
    probe_target_changed = Signal(object)   # (attribute, class) or None, for the "probe" order
    feature_labels_changed = Signal()       # the automatic labels (one per feature) or grouping by them
    status = Signal(str)                    # a one-line message for the status bar

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.workspace: Workspace | None = None
        self.models: LoadedModels | None = None
        self.analysis: ClipAnalysis | None = None
        self.clip_path: str | None = None
        self.steering: SteeringParams | None = None
        self.steered_f: np.ndarray | None = None
        self.playhead: float = 0.0
        self.selection: tuple[float, float] | None = None
        self.view_range: tuple[float, float] = (0.0, 1.0)
        self.selected_feature: tuple[int, int] | None = None
        self.feature_order: str = "mass"
        self.probe_target: tuple[str, int] | None = None   # (attribute, class) for the "probe" order
        # the best automatic label of every feature ("pitch C#4"; "" = none), None before labelling;
        # group_by_label: the heatmap groups (and colours) its rows by them
        self.feature_labels: list[str] | None = None
        self.group_by_label: bool = False

    # ---- setters (GUI thread only) -------------------------------------------------------
    def set_workspace(self, workspace: Workspace | None) -> None:
        self.workspace = workspace
        self.models = None
        self.analysis = None
        self.steered_f = None
        self.selected_feature = None
        self.workspace_changed.emit()

    def set_models(self, models: LoadedModels | None) -> None:
        self.models = models
        self.steered_f = None
        self.models_changed.emit()

    def set_analysis(self, analysis: ClipAnalysis | None, clip_path: str | None = None) -> None:
        self.analysis = analysis
        self.clip_path = clip_path
        self.steered_f = None
        self.selection = None
        self.selected_feature = None
        self.playhead = 0.0
        self.clip_changed.emit()
        if analysis is not None:
            self.set_view_range(0.0, analysis.seconds)

    def complete_measurements(self, analysis: ClipAnalysis, measured: Any, classes: dict[str, np.ndarray]) -> bool:
        """The registered attributes of ``analysis`` (measured after it was shown); False when
        another clip is shown by now (the result is dropped)."""
        if analysis is not self.analysis:
            return False
        analysis.measured, analysis.measured_classes, analysis.pending = measured, classes, ()
        self.measurements_changed.emit()
        return True

    def set_steering(self, params: SteeringParams | None) -> None:
        if params != self.steering:
            self.steering = params
            self.steering_changed.emit(params)

    def set_steered_features(self, f: np.ndarray | None) -> None:
        self.steered_f = f
        self.steered_features_changed.emit()

    def set_playhead(self, seconds: float) -> None:
        self.playhead = float(seconds)
        self.playhead_changed.emit(self.playhead)

    def set_selection(self, selection: tuple[float, float] | None) -> None:
        if selection is not None:
            a, b = sorted(map(float, selection))
            selection = None if b - a <= 0 else (a, b)
        if selection != self.selection:
            self.selection = selection
            self.selection_changed.emit(selection)

    def set_view_range(self, start: float, end: float) -> None:
        if (start, end) != self.view_range and end > start:
            self.view_range = (float(start), float(end))
            self.view_range_changed.emit(*self.view_range)

    def select_feature(self, feature: int, frame: int) -> None:
        self.selected_feature = (int(feature), int(frame))
        self.feature_selected.emit(int(feature), int(frame))

    def set_feature_order(self, order: str) -> None:
        if order not in FEATURE_ORDERS:
            raise ValueError(f"unknown feature order {order!r}")
        if order != self.feature_order:
            self.feature_order = order
            self.feature_order_changed.emit(order)

    def set_feature_labels(self, labels: list[str] | None) -> None:
        self.feature_labels = None if labels is None else list(labels)
        self.feature_labels_changed.emit()

    def set_group_by_label(self, on: bool) -> None:
        if bool(on) != self.group_by_label:
            self.group_by_label = bool(on)
            self.feature_labels_changed.emit()

    def row_labels(self) -> list[str] | None:
        """The labels the heatmap groups its rows by (None: not grouping, or no labels yet)."""
        return self.feature_labels if self.group_by_label else None

    def set_probe_target(self, target: tuple[str, int] | None) -> None:
        if target != self.probe_target:
            self.probe_target = target
            self.probe_target_changed.emit(target)

    # ---- derived -------------------------------------------------------------------------
    def features_for_display(self) -> np.ndarray | None:
        """The features the heatmap shows: the steered f' when steering is on, else f."""
        if self.analysis is None:
            return None
        return self.steered_f if self.steered_f is not None else self.analysis.f

    def describe(self) -> dict[str, Any]:
        return {"workspace": str(self.workspace.root) if self.workspace else None,
                "sae": self.models.sae.cfg.name if self.models else None,
                "clip": self.clip_path, "steering": self.steering}
