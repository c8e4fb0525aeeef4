"""The control-vector audition panel: steer the current clip toward a probe class and hear it.

Controls: attribute and target class, alpha (0-40 in steps of 0.1, the paper's 1/10/20/30 one
click away), keep residual, scope (whole clip / the selection), A/B (original <-> steered),
play/pause, loop, export, the output device, and a status line (latency of the last change,
underruns, the output or why playback is unavailable).

A view: the state lives in its view-model ``studio.models.audition_session.AuditionModel`` (the
steering choices, the session of the clip: renderer + player + render worker built in a job, the
prepared steering methods, play/loop, the heatmap's f', the export job, the status line).  This
widget shows the controls, forwards the user's input to the model (each control change reaches
``renderer.set_params`` at once, on the GUI thread, as before) and displays what the model
signals.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import QStyle, QWidget

from audiosae.steering import ALPHA_UNIT, PAPER_ALPHAS
from audiosae.steering.playback import Player
from audiosae.steering.realtime import SteeredRenderer, SteeringParams
from studio.models.audition import DEFAULT_CHUNK_SECONDS, AuditionSession, build_session, default_target, render_export
from studio.models.audition_session import AuditionModel
from studio.widgets.audition_actions import AUDIO_SUFFIXES, AuditionActions  # noqa: F401
from studio.widgets.audition_controls import (ALPHA_MAX, ALPHA_STEP, AlphaSpinBox, TargetControls, arrange,
                                             build_controls)

log = logging.getLogger("studio.audition")

TWO_COLUMN_WIDTH = 760          # px: wider than this, the controls go in two columns


class AuditionPanel(AuditionActions, TargetControls, QWidget):
    """Control-vector audition for the clip in ``state`` (a dock in the main window).

    Public: ``toggle_play()``, ``toggle_loop()``, ``export_steered(path=None)``,
    ``set_output_device(name)``, ``shutdown()``; ``model`` (the view-model), ``session``,
    ``renderer``, ``player``, ``params``.
    """

    session_ready = Signal()           # a renderer + player for the current clip are live
    session_failed = Signal(str)       # building them failed (message)
    export_finished = Signal(str)      # the written audio file
    export_failed = Signal(str)        # message ("cancelled" when cancelled)
    status_changed = Signal(str)       # the status line's text

    # How the player reaches the speakers: "auto" (the device, else a silent clock), "virtual"
    # (always the silent clock: benchmarks, tests) or "device".  Class-wide on purpose: set it
    # before the panel (or the window holding it) is built.
    player_output: str = "auto"
    player_options: dict[str, Any] = {}
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS

    def __init__(self, state: Any, runner: Any, settings: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.runner = runner
        self.settings = settings
        self.model = model = AuditionModel(state, runner, settings, output=self.player_output,
                                           player_options=self.player_options, chunk_seconds=self.chunk_seconds,
                                           parent=self)
        self._evaluation: Any = None                    # the steering evaluation dialog, once opened
        self._tooltips: dict[QWidget, str] = {}         # the controls' own tooltips, while replaced
        self._shut = False

        self._build_ui()
        model.session_ready.connect(self.session_ready)
        model.session_failed.connect(self.session_failed)
        model.export_finished.connect(self.export_finished)
        model.export_failed.connect(self.export_failed)
        model.status_changed.connect(self._on_status)
        model.level_changed.connect(self.level_label.setText)
        model.playing_changed.connect(lambda playing: self._update_play_button(not playing))
        model.looping_changed.connect(self._on_looping)
        model.exporting_changed.connect(self._on_exporting)
        model.enabled_changed.connect(self._set_controls_enabled)
        model.unavailable_changed.connect(self._set_unavailable)
        model.controls_reset.connect(self._populate_attributes)
        model.scope_changed.connect(self._on_scope_reset)
        model.connect_state()
        state.selection_changed.connect(self._on_selection_changed)
        self._refresh_devices()
        model.clip_changed()

    # ---- UI ------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        build_controls(self, alpha_unit=ALPHA_UNIT, paper_alphas=tuple(PAPER_ALPHAS))
        self.method_combo.currentIndexChanged.connect(self._on_method_shown)
        self.model.method = self.method_combo.currentData() or self.model.method

    def _arrange(self, columns: int) -> None:
        arrange(self, columns)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        width = event.size().width()
        # Hysteresis so that a width near the threshold does not flip the layout back and forth.
        if self._columns == 1 and width >= TWO_COLUMN_WIDTH:
            self._arrange(2)
        elif self._columns == 2 and width < TWO_COLUMN_WIDTH - 60:
            self._arrange(1)

    def _controls(self) -> tuple[QWidget, ...]:
        return (self.attribute_combo, self.target_combo, self.alpha_slider, self.alpha_spin,
                self.keep_residual_check, self.scope_whole, self.scope_selection, self.original_button,
                self.steered_button, *self.preset_buttons, self.play_button, self.loop_button, self.export_button)

    def _set_unavailable(self, reason: str) -> None:
        """Say on the panel and on each control why the audition cannot run ("" restores them)."""
        self.setToolTip(reason)
        for widget in self._controls():
            if reason:
                self._tooltips.setdefault(widget, widget.toolTip())
                widget.setToolTip(reason)
            elif widget in self._tooltips:
                widget.setToolTip(self._tooltips.pop(widget))

    @property
    def unavailable(self) -> str:
        """Why the audition cannot run here ("" when it can)."""
        return self.model.unavailable

    def _set_controls_enabled(self, enabled: bool) -> None:
        enabled = enabled and not self.model.unavailable
        for widget in (self.attribute_combo, self.target_combo, self.alpha_slider, self.alpha_spin,
                       self.keep_residual_check, self.scope_whole, self.original_button, self.steered_button,
                       *self.preset_buttons):
            widget.setEnabled(enabled)
        self.scope_selection.setEnabled(enabled and self.state.selection is not None)
        ready = enabled and self.model.session is not None
        self.play_button.setEnabled(ready)
        self.loop_button.setEnabled(ready)
        self.export_button.setEnabled(ready or self.model.exporting)

    # ---- public --------------------------------------------------------------------------
    @property
    def session(self) -> AuditionSession | None:
        return self.model.session

    @property
    def renderer(self) -> SteeredRenderer | None:
        return self.model.renderer

    @property
    def player(self) -> Player | None:
        return self.model.player

    @property
    def last_latency_ms(self) -> float | None:
        return self.model.last_latency_ms

    @property
    def alpha(self) -> float:
        return self.model.alpha

    def set_alpha(self, alpha: float) -> None:
        """Set alpha as the slider would (at most 40, steps of 0.1); a non-finite or negative
        alpha is refused (the status line says so, the controls keep their value)."""
        value = self.model.checked_alpha(alpha)
        if value is not None:
            self.alpha_slider.setValue(int(round(min(value, ALPHA_MAX) / ALPHA_STEP)))

    @property
    def params(self) -> SteeringParams | None:
        """The steering the controls describe (None without a clip or attributes)."""
        return self.model.params

    @property
    def method(self) -> str:
        """The steering method the combo shows (``steering.methods.METHODS``)."""
        return self.model.method

    def set_method(self, method: str) -> None:
        """Choose the steering method (as the combo would); every path that steers follows."""
        index = self.method_combo.findData(method)
        if index < 0:
            self.model.set_error(f"unknown steering method {method!r}")
            return
        self.method_combo.setCurrentIndex(index)
        self._apply_params()

    def context(self, method: str | None = None, attribute: str | None = None) -> Any:
        """The prepared ``SteeringContext`` for ``method``/``attribute`` (default: the controls'),
        None while it is being prepared or without models."""
        return self.model.context(method, attribute)

    @property
    def playing(self) -> bool:
        """Whether the panel is playing (what the user asked for; the player's own state
        follows a few milliseconds later, when its feeder thread has taken the command)."""
        return self.model.playing

    @property
    def mode(self) -> str:
        return self.model.mode

    def toggle_play(self) -> None:
        """Play or pause (Space)."""
        self.model.toggle_play()

    def toggle_loop(self) -> None:
        """Loop on/off (L): the selection if there is one, else the whole clip."""
        self.model.toggle_loop()

    def shutdown(self) -> None:
        """Stop the timers, the render worker, the player and any export/build job (idempotent)."""
        if self._shut:
            return
        self._shut = True
        if self._evaluation is not None:
            self._evaluation.model.shutdown()
        self.model.shutdown()
        try:
            self.state.selection_changed.disconnect(self._on_selection_changed)
        except (RuntimeError, TypeError):  # already disconnected
            pass

    def status_text(self) -> str:
        """The status line: last change's latency, underruns, output (or why there is none)."""
        return self.model.status_text()

    def level_summary(self) -> dict[str, Any] | None:
        """What the level rule did to the chunks rendered for the current settings; None without a session."""
        return self.model.level_summary()

    def refresh_level(self) -> None:
        """The level label under alpha: gain applied, limited samples, peak before -> after."""
        self.model.refresh_level()

    # ---- controls -> model ---------------------------------------------------------------
    def _on_method_shown(self, _index: int) -> None:
        self.model.method = self.method_combo.currentData() or self.model.method

    def _on_slider(self, value: int) -> None:
        with QSignalBlocker(self.alpha_spin):
            self.alpha_spin.setValue(value * ALPHA_STEP)
        self.model.alpha = round(value * ALPHA_STEP, 6)
        self._apply_params()

    def _on_spin(self, value: float) -> None:
        self.alpha_slider.setValue(int(round(value / ALPHA_STEP)))  # -> _on_slider

    def _on_keep_residual(self, checked: bool) -> None:
        self.model.keep_residual = bool(checked)
        self._apply_params()

    def _on_scope(self, selection: bool) -> None:
        self.model.scope_selection = bool(selection)
        self._apply_params()

    def _on_ab(self, steered: bool) -> None:
        self.model.set_mode("steered" if steered else "original")

    def _apply_params(self) -> None:
        self.model.apply_params()

    # ---- model -> view -------------------------------------------------------------------
    def _on_status(self, text: str) -> None:
        self.status_label.setText(text)
        self.status_changed.emit(text)

    def _on_looping(self, looping: bool) -> None:
        with QSignalBlocker(self.loop_button):
            self.loop_button.setChecked(looping)

    def _on_exporting(self, exporting: bool) -> None:
        self.export_button.setText("Cancel export" if exporting else "Export…")

    def _on_scope_reset(self, selection: bool) -> None:
        with QSignalBlocker(self.scope_whole), QSignalBlocker(self.scope_selection):
            (self.scope_selection if selection else self.scope_whole).setChecked(True)

    def _on_selection_changed(self, selection: Any) -> None:
        has = selection is not None
        self.scope_selection.setEnabled(has and self.state.analysis is not None and not self.model.unavailable)

    def _update_play_button(self, show_play: bool) -> None:
        style = self.style()
        if show_play:
            self.play_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
            self.play_button.setText("Play")
        else:
            self.play_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaPause))
            self.play_button.setText("Pause")

    # ---- steering evaluation -------------------------------------------------------------
    def show_evaluation(self) -> Any:
        """Open (or raise) the steering evaluation view for the current clip and SAE."""
        from studio.models.steer_eval import EvaluationModel
        from studio.widgets.steer_eval import SteeringEvaluationDialog

        if self._evaluation is None:
            model = EvaluationModel(self.state, self.runner, output=self.player_output,
                                    device=getattr(self.settings, "audio_device", None), parent=self)
            self._evaluation = SteeringEvaluationDialog(model, self)
        params = self.params
        if params is not None:
            self._evaluation.model.set_target(params.attribute, params.target)
        self._evaluation.show()
        self._evaluation.raise_()
        return self._evaluation


__all__ = ["AlphaSpinBox", "AuditionModel", "AuditionPanel", "AuditionSession", "build_session", "render_export",
           "default_target", "ALPHA_MAX", "ALPHA_STEP"]
