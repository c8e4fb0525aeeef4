"""The DiffRhythm generation view: run a traced generation and scrub through its 32 sampler states.

Left, the form (``form.GenerationForm``) whose Run asks ``GenerationModel`` for a run (the same
``audiosae.workflows.trace.run_trace`` as ``audiosae trace``).  Right, at the state ``t`` chosen
on the slider (``display.TraceDisplay``): the SAE features of ``X_t``, the probe decode per
attribute with the final state's as a grey ghost, the ``s_t`` curves, and playback of ``X_t`` or
``x̂1`` decoded by the workspace backend (a job; cached per state).  The state (trace, live
states, chosen step, models, decoded cache, jobs) is the model's; this class draws it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QWidget

from ...models.generation import LATENT_FRAME_RATE, SOURCE_LABELS, GenerationModel
from ...models.snippets import SnippetPlayer
from .display import TraceDisplay
from .form import GenerationForm


class GenerationView(GenerationForm, TraceDisplay, QWidget):
    """Run, watch and scrub a traced DiffRhythm generation (see the module docstring)."""

    step_received = Signal(int)      # a live state was added to the display (its index)
    trace_changed = Signal()         # a finished or opened trace is shown
    run_finished = Signal(str)       # "finished" | "cancelled" | "failed"
    trace_saved = Signal(str)        # folder written
    playback_requested = Signal(int, str)   # state index, which: decoded audio handed to the player

    def __init__(self, state: Any, runner: Any, settings: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("generation_view")
        self.state, self.runner, self.settings = state, runner, settings
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.model = GenerationModel(state, runner, settings, parent=self)
        self.lane_classes: dict[str, np.ndarray] = {}
        self._image_rect = QRectF(0.0, 0.0, 1.0, 1.0)
        self._attributes: list[str] = []
        self._class_names: dict[str, list[str]] = {}
        self._frame_rate = LATENT_FRAME_RATE
        self._frames = 0
        self.snippets = SnippetPlayer(getattr(settings, "audio_device", None), parent=self)
        self.snippets.message.connect(self._set_status)
        scroll = self._build_form()
        display = self._build_display()
        outer = QHBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(scroll)
        outer.addWidget(display, 1)
        m = self.model
        m.status.connect(self._set_status)
        m.run_started.connect(self._on_run_started)
        m.state_added.connect(self._on_state_added)
        m.run_ended.connect(self._on_run_ended)
        m.trace_shown.connect(self._draw_trace)
        m.trace_saved.connect(self.trace_saved)
        m.audio_ready.connect(self._play)
        self._show_empty()

    # ---- the model's state, as the view's ---------------------------------------------------------
    @property
    def trace(self) -> Any:
        return self.model.trace

    @property
    def step(self) -> int:
        return self.model.step

    @property
    def levels(self) -> tuple[float, float]:
        return self.model.levels

    @property
    def row_features(self) -> np.ndarray:
        return self.model.row_features

    @property
    def available_steps(self) -> int:
        """States that can be shown now (all of a trace, or those that arrived so far)."""
        return self.model.available_steps

    @property
    def running(self) -> bool:
        return self.model.running

    def show_trace(self, trace: Any) -> None:
        """Show a finished (or opened) trace at its last state."""
        self.model.set_trace(trace)

    # ---- stepping -------------------------------------------------------------------------------
    def set_step(self, index: int, force: bool = False) -> None:
        """Show sampler state ``index`` (clamped to the states available)."""
        if self.available_steps == 0:
            return
        index = self.model.clamp(index)
        if index == self.step and not force and self.slider.value() == index:
            return
        self.model.step = index
        if self.slider.value() != index:
            self.slider.blockSignals(True)
            self.slider.setValue(index)
            self.slider.blockSignals(False)
        shown = self.model.state_at(index)
        if shown.image is not None:
            self.image.setImage(shown.image, levels=self.levels, autoLevels=False)
            self.image.setRect(self._image_rect)   # after setImage: the rect scales the image's own size
        self.lane_classes = shown.lane_classes
        for attr, classes in self.lane_classes.items():
            if attr in self.lane_curves:
                self.lane_curves[attr].setData(*self._lane_xy(attr, classes))
        self.cursor.setValue(index)
        self.step_label.setText(f"state {index}/{shown.steps - 1} · t = {shown.t:.3f} · L0 {shown.l0:.1f}")

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt naming)
        key = event.key()
        moves = {Qt.Key.Key_Left: self.step - 1, Qt.Key.Key_Right: self.step + 1,
                 Qt.Key.Key_Home: 0, Qt.Key.Key_End: self.available_steps - 1}
        if key in moves and self.available_steps:
            self.set_step(moves[key])
            event.accept()
            return
        super().keyPressEvent(event)

    # ---- running -------------------------------------------------------------------------------
    def request(self, **overrides: Any) -> Any:
        """The form's values as the ``TraceRequest`` a run would make now (keyword arguments
        override fields)."""
        models, workspace = self.model.models_for_run()
        return self.model.request(models, workspace, **self.form_values(**overrides))

    def run(self, **overrides: Any) -> Any:
        """Start a traced generation from the form (``overrides``: ``TraceRequest`` fields, e.g.
        ``style=`` an embedding).  Returns the ``JobHandle``, or None when it cannot start."""
        return self.model.run(**self.form_values(**overrides))

    def cancel(self) -> None:
        """Cancel the running generation (it stops after the current state)."""
        self.model.cancel()

    def _on_run_started(self, request: Any) -> None:
        self.image.clear()
        seconds = request.seconds
        self.heatmap_note.setText("SAE features appear when the run finishes\n(live states carry the probe outputs)")
        self.heatmap_note.setPos(seconds / 2, 0.5)
        self.heatmap_plot.getPlotItem().setRange(xRange=(0, seconds), yRange=(0, 1), padding=0)
        self.curves_plot.getPlotItem().setXRange(0, request.steps - 1, padding=0.02)
        self._draw_curves()
        self.convergence_label.setText("s_t and convergence need the final state: shown when the run finishes")
        self._draw_ghosts(None)
        self.slider.blockSignals(True)
        self.slider.setRange(0, 0)
        self.slider.blockSignals(False)
        self.progress_bar.setRange(0, request.steps)
        self.progress_bar.setValue(0)
        self.play_button.setEnabled(False)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)

    def _on_state_added(self, step: Any) -> None:
        live = len(self.model.live)
        if live == 1:
            frames = next(iter(step.distributions["x_t"].values())).shape[0]
            self._set_layout(list(step.distributions["x_t"]), self.model.live_class_names(step, self._class_names),
                             frames, self._frame_rate)
        follow = self.step >= live - 2
        self.slider.blockSignals(True)
        self.slider.setRange(0, live - 1)
        self.slider.blockSignals(False)
        self.progress_bar.setValue(live)
        if follow:
            self.set_step(live - 1, force=True)
        self.step_received.emit(step.index)

    def _on_run_ended(self, outcome: str) -> None:
        self.run_button.setEnabled(not self.model.closed)
        self.cancel_button.setEnabled(False)
        self.run_finished.emit(outcome)

    # ---- files ---------------------------------------------------------------------------------
    def open_trace(self, path: str | Path) -> Any:
        """Read a trace folder in a job and show it; returns the ``JobHandle``."""
        return self.model.open_trace(path)

    def save_trace(self, path: str | Path) -> Any:
        """Write the shown trace to folder ``path`` in a job; returns the ``JobHandle`` (None: no trace)."""
        return self.model.save_trace(path)

    def choose_and_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open trace folder")
        if folder:
            self.open_trace(folder)

    def choose_and_save(self) -> None:
        if self.trace is None:
            self._set_status("no finished trace to save", error=True)
            return
        folder = QFileDialog.getExistingDirectory(self, "Save the trace into a new or trace folder")
        if folder:
            self.save_trace(folder)

    # ---- playback ------------------------------------------------------------------------------
    @property
    def play_source(self) -> str:
        return str(self.source_combo.currentData())

    def set_play_source(self, which: str) -> None:
        self.source_combo.setCurrentIndex(list(SOURCE_LABELS).index(which))

    def play_step(self, index: int | None = None, which: str | None = None) -> Any:
        """Decode state ``index`` (default: the shown one) as ``which`` ("x_t" / "x1"; default: the
        toggle) and play it.  Decoded states are cached.  Returns the decode ``JobHandle`` or None."""
        return self.model.decode(self.step if index is None else int(index), which or self.play_source)

    def _play(self, audio: np.ndarray, rate: int, index: int, which: str) -> None:
        if self.snippets.play(audio, rate, tag=(index, which)):
            self._set_status(f"playing {SOURCE_LABELS[which]} of state {index}")
        self.playback_requested.emit(index, which)

    # ---- misc ------------------------------------------------------------------------------------
    def _set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setStyleSheet("color: #ff6b6b;" if error else "")
        self.status_label.setText(text)
        emit = getattr(getattr(self.state, "status", None), "emit", None)
        if emit is not None and error:
            emit(text)

    def shutdown(self) -> None:
        """Cancel this view's jobs, wait for them, and release the audio output (idempotent)."""
        if self.model.closed:
            return
        self.model.shutdown()
        self.snippets.close()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        self.shutdown()
        super().closeEvent(event)
