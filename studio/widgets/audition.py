"""The control-vector audition panel: steer the current clip toward a probe class and hear it.

Controls: attribute and target class, alpha (0-40 in steps of 0.1, the paper's 1/10/20/30 one
click away), keep residual, scope (whole clip / the selection), A/B (original <-> steered),
play/pause, loop, export, the output device, and a status line (latency of the last change,
underruns, the output or why playback is unavailable).

Wiring (all per clip, rebuilt on ``state.clip_changed``):

* ``SteeredRenderer`` over the clip's analysis (its latents are reused), built with a
  ``Player`` in a ``JobRunner`` job: computing the SAE features of a 10-minute clip takes
  ~0.3 s and opening an audio device tens of milliseconds, too long for the GUI thread.
* ``Player(lambda s, n: renderer.mix_tagged(s, n, per_sample=True))``, requeued by the
  renderer's audio listener, and a ``RenderWorker`` rendering ahead of ``player.splice_position``.
* Every control change calls ``renderer.set_params`` at once (cheap, GUI thread) and
  ``state.set_steering``; the steered features for the heatmap, ``f' = RMSNorm(f + alpha w_k)``
  on the steered frames, follow at most ~30 times a second (``state.set_steered_features``).
* A 30 Hz timer, running only while playing, moves ``state.playhead``; a playhead set by
  another pane (click to seek) seeks the player.

The steering method (a combo: ``steering.methods.METHODS``) reaches every path that steers
through one ``SteeringContext`` per (method, attribute): the renderer, the export and the
heatmap; methods that need the class means are prepared in a job (``studio.models.audition``,
the Qt-free half of this dock).  The level label under alpha shows what the level rule did.

Nothing here blocks on model work: the heatmap's f' (``steer_features`` on the steered frames,
only those in view for long clips: ``steered_heatmap.FULL_HEATMAP_ELEMENTS``) is a job of
``studio.models.steered_heatmap``, which also plans it; the GUI thread only swaps its result in.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtWidgets import QStyle, QWidget

from audiosae.errors import AudioSAEError
from audiosae.steering.realtime import RenderWorker, SteeredRenderer, SteeringParams
from audiosae.steering import ALPHA_UNIT, PAPER_ALPHAS, check_alpha, frame_mask
from audiosae.steering.playback import Player
from studio.models.audition import (DEFAULT_CHUNK_SECONDS, STEER_DEFAULT_METHOD, AuditionSession, build_session,
                                    default_target, export_job, format_level, prepare_context, render_export,
                                    steer_request)
from studio.models.job_slot import JobSlot
from studio.models.steered_heatmap import SteeredHeatmap, heat_request
from studio.widgets.audition_actions import AUDIO_SUFFIXES, AuditionActions  # noqa: F401
from studio.widgets.audition_controls import (ALPHA_MAX, ALPHA_STEP, AlphaSpinBox, TargetControls, arrange,
                                             build_controls)

log = logging.getLogger("studio.audition")

PLAYHEAD_INTERVAL_MS = 33       # ~30 Hz: smooth enough for a line, cheap for the GUI thread
HEATMAP_INTERVAL_MS = 33        # steered features for the heatmap at most ~30 times a second
STATUS_EVERY_TICKS = 6          # the status line (underruns) and the level label refresh ~5 times a second
TWO_COLUMN_WIDTH = 760          # px: wider than this, the controls go in two columns


class AuditionPanel(AuditionActions, TargetControls, QWidget):
    """Control-vector audition for the clip in ``state`` (a dock in the main window).

    Public: ``toggle_play()``, ``toggle_loop()``, ``export_steered(path=None)``,
    ``set_output_device(name)``, ``shutdown()``; ``renderer``, ``player``, ``params``.
    """

    session_ready = Signal()           # a renderer + player for the current clip are live
    session_failed = Signal(str)       # building them failed (message)
    export_finished = Signal(str)      # the written audio file
    export_failed = Signal(str)        # message ("cancelled" when cancelled)
    status_changed = Signal(str)       # the status line's text
    _worker_failed = Signal(str)       # from the render worker's thread (queued to the GUI)
    _level_rendered = Signal()         # a chunk was rendered (worker thread): the level label follows

    # How the player reaches the speakers: "auto" (the device, else a silent clock), "virtual"
    # (always the silent clock: benchmarks, tests) or "device".  Class-wide on purpose: set it
    # before the panel (or the window holding it) is built.
    player_output: str = "auto"
    player_options: dict[str, Any] = {}
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    _export_fn = staticmethod(export_job)   # the export job (studio.models.audition)

    def __init__(self, state: Any, runner: Any, settings: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.runner = runner
        self.settings = settings
        self.session: AuditionSession | None = None
        self._generation = 0
        self._built: dict[int, AuditionSession] = {}   # sessions built by jobs, by generation
        self._build_job: Any = None
        self._export_job: Any = None
        self._export_path: str | None = None
        self._shut = False
        self._targets: dict[str, int] = {}              # chosen class per attribute, this clip
        self._contexts: dict[tuple[str, str], Any] = {}  # (method, attribute) -> SteeringContext, these models
        self._method_slot = JobSlot(runner, "prepare steering method")
        self._method_jobs: list[Any] = []               # handles, waited for at shutdown
        self._preparing: tuple[str, str] | None = None
        self._evaluation: Any = None                    # the steering evaluation dialog, once opened
        self._heat = SteeredHeatmap(runner, state.set_steered_features,
                                    on_failed=lambda message: self._set_error(f"heatmap f': {message}"))
        self._setting_playhead = False
        self._looping = False
        self._pending_change: tuple[int, float] | None = None  # (version, monotonic) not heard yet
        self.last_latency_ms: float | None = None
        self._error = ""
        self._export_note = ""
        self._unavailable = ""                          # why the audition cannot run (no codec decoder)
        self._tooltips: dict[QWidget, str] = {}         # the controls' own tooltips, while replaced
        self._ticks = 0

        self._build_ui()
        self._playhead_timer = QTimer(self)
        self._playhead_timer.setInterval(PLAYHEAD_INTERVAL_MS)
        self._playhead_timer.timeout.connect(self._on_tick)
        self._heat_timer = QTimer(self)
        self._heat_timer.setSingleShot(True)
        self._heat_timer.setInterval(HEATMAP_INTERVAL_MS)
        self._heat_timer.timeout.connect(self._update_heatmap)
        self._worker_failed.connect(self._on_worker_failed)
        self._level_rendered.connect(self.refresh_level)   # queued from the render worker's thread

        state.clip_changed.connect(self._on_clip_changed)
        state.models_changed.connect(self._on_models_changed)
        state.workspace_changed.connect(self._on_models_changed)
        state.selection_changed.connect(self._on_selection_changed)
        state.playhead_changed.connect(self._on_playhead_changed)
        state.view_range_changed.connect(self._on_view_range_changed)
        self._refresh_devices()
        self._on_clip_changed()

    # ---- UI ------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        build_controls(self, alpha_unit=ALPHA_UNIT, paper_alphas=tuple(PAPER_ALPHAS))

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
        if reason == self._unavailable:
            return
        self._unavailable = reason
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
        return self._unavailable

    def _set_controls_enabled(self, enabled: bool) -> None:
        enabled = enabled and not self._unavailable
        for widget in (self.attribute_combo, self.target_combo, self.alpha_slider, self.alpha_spin,
                       self.keep_residual_check, self.scope_whole, self.original_button, self.steered_button,
                       *self.preset_buttons):
            widget.setEnabled(enabled)
        self.scope_selection.setEnabled(enabled and self.state.selection is not None)
        ready = enabled and self.session is not None
        self.play_button.setEnabled(ready)
        self.loop_button.setEnabled(ready)
        self.export_button.setEnabled(ready or self._export_job is not None)

    # ---- public --------------------------------------------------------------------------
    @property
    def renderer(self) -> SteeredRenderer | None:
        return self.session.renderer if self.session is not None else None

    @property
    def player(self) -> Player | None:
        return self.session.player if self.session is not None else None

    @property
    def alpha(self) -> float:
        return round(self.alpha_slider.value() * ALPHA_STEP, 6)

    def set_alpha(self, alpha: float) -> None:
        """Set alpha as the slider would (at most 40, steps of 0.1); a non-finite or negative
        alpha is refused (the status line says so, the controls keep their value)."""
        try:
            value = check_alpha(alpha)
        except AudioSAEError as exc:
            self._set_error(str(exc))
            return
        self.alpha_slider.setValue(int(round(min(value, ALPHA_MAX) / ALPHA_STEP)))

    @property
    def params(self) -> SteeringParams | None:
        """The steering the controls describe (None without a clip or attributes)."""
        attribute = self.attribute_combo.currentData()
        if attribute is None or self.state.analysis is None:
            return None
        start = end = None
        if self.scope_selection.isChecked() and self.state.selection is not None:
            start, end = self.state.selection
        return SteeringParams(attribute=attribute, target=int(self._targets.get(attribute, 0)), alpha=self.alpha,
                              keep_residual=self.keep_residual_check.isChecked(), start=start, end=end,
                              method=self.method)

    @property
    def method(self) -> str:
        """The steering method the combo shows (``steering.methods.METHODS``)."""
        return self.method_combo.currentData() or STEER_DEFAULT_METHOD

    def set_method(self, method: str) -> None:
        """Choose the steering method (as the combo would); every path that steers follows."""
        index = self.method_combo.findData(method)
        if index < 0:
            self._set_error(f"unknown steering method {method!r}")
            return
        self.method_combo.setCurrentIndex(index)
        self._apply_params()

    def context(self, method: str | None = None, attribute: str | None = None) -> Any:
        """The prepared ``SteeringContext`` for ``method``/``attribute`` (default: the controls'),
        None while it is being prepared or without models."""
        params = self.params
        method = method or self.method
        attribute = attribute or (params.attribute if params is not None else None)
        key = (method, attribute)
        if key in self._contexts:
            return self._contexts[key]
        renderer = self.renderer
        if renderer is not None and attribute is not None and renderer.has_context(method, attribute):
            try:
                self._contexts[key] = renderer.context(method, attribute)
            except AudioSAEError:
                return None
            return self._contexts[key]
        return None

    def _ensure_context(self, params: SteeringParams) -> bool:
        """True when ``params.method`` is ready to steer; else a job prepares it (class means)."""
        key = (params.method, params.attribute)
        models = self.state.models
        if key in self._contexts or models is None:
            return True
        from studio.models.audition import needs_workspace

        if not needs_workspace(models, params.method) or self.renderer is None:
            return True   # (without a session: the session's build job prepares it)
        if self._preparing == key:
            return False
        self._preparing = key
        generation = self._generation
        handle = self._method_slot.start(
            prepare_context, models, params.method, params.attribute,
            on_progress=lambda ev: self._show_status(f"preparing {params.method}: {ev.message} "
                                                     f"{100 * (ev.fraction or 0):.0f}%"),
            on_finished=lambda ctx, g=generation: self._on_context_ready(ctx, g),
            on_failed=lambda msg, g=generation: self._on_context_failed(msg, g),
            on_cancelled=lambda: setattr(self, "_preparing", None))
        self._method_jobs = [h for h in self._method_jobs if h.running] + [handle]
        self._show_status(f"preparing {params.method} (class means of the training frames)…")
        return False

    def _on_context_ready(self, context: Any, generation: int) -> None:
        self._preparing = None
        if self._shut or generation != self._generation:
            return
        self._contexts[(context.method, context.attribute)] = context
        if self.renderer is not None:
            self.renderer.add_context(context)
        self._apply_params()

    def _on_context_failed(self, message: str, generation: int) -> None:
        self._preparing = None
        if generation == self._generation:
            self._set_error(f"steering method unavailable: {message}")

    @property
    def playing(self) -> bool:
        """Whether the panel is playing (what the user asked for; the player's own state
        follows a few milliseconds later, when its feeder thread has taken the command)."""
        return self._playhead_timer.isActive()

    @property
    def mode(self) -> str:
        return "steered" if self.steered_button.isChecked() else "original"

    def toggle_play(self) -> None:
        """Play or pause (Space)."""
        player = self.player
        if player is None:
            self._show_status()
            return
        if self.playing:
            player.pause()
            self._playhead_timer.stop()
            self._pending_change = None
            self._update_play_button(True)
        else:
            if self._looping:
                self._apply_loop(seek_inside=True)
            player.play()
            if self.session is not None and self.session.worker is not None:
                self.session.worker.poke()
            self._playhead_timer.start()
            self._update_play_button(False)

    def toggle_loop(self) -> None:
        """Loop on/off (L): the selection if there is one, else the whole clip."""
        self._looping = not self._looping
        with QSignalBlocker(self.loop_button):
            self.loop_button.setChecked(self._looping)
        self._apply_loop(seek_inside=True)

    def shutdown(self) -> None:
        """Stop the timers, the render worker, the player and any export/build job (idempotent)."""
        if self._shut:
            return
        self._shut = True
        self._playhead_timer.stop()
        self._heat_timer.stop()
        heat_job = self._heat.slot.handle
        self._heat.reset(emit=False)
        if heat_job is not None:
            heat_job.wait(10_000)
        self._method_slot.cancel()
        for handle in self._method_jobs:
            handle.wait(10_000)
        if self._evaluation is not None:
            self._evaluation.model.shutdown()
        for job in (self._build_job, self._export_job):
            if job is not None:
                job.cancel()
        for job in (self._build_job, self._export_job):
            if job is not None:
                job.wait(10_000)
        self._build_job = self._export_job = None
        self._close_session()
        for session in list(self._built.values()):
            session.close()
        self._built.clear()
        for signal, slot in ((self.state.clip_changed, self._on_clip_changed),
                             (self.state.models_changed, self._on_models_changed),
                             (self.state.workspace_changed, self._on_models_changed),
                             (self.state.selection_changed, self._on_selection_changed),
                             (self.state.playhead_changed, self._on_playhead_changed),
                             (self.state.view_range_changed, self._on_view_range_changed)):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):  # already disconnected
                pass

    # ---- clip / session ------------------------------------------------------------------
    def _submit(self, name: str, fn: Any, *args: Any, connect: Any, **kwargs: Any) -> Any:
        """``runner.submit`` with ``connect(handle)`` called at once: the runner starts the
        thread on the next event-loop turn, so the slots are connected before any result."""
        job = self.runner.submit(name, fn, *args, **kwargs)
        connect(job)
        return job

    def _close_session(self) -> None:
        self._playhead_timer.stop()
        session, self.session = self.session, None
        if session is not None:
            session.renderer.remove_audio_listener(self._on_chunk_rendered)
            self._built.pop(session.generation, None)
            session.close()
        self._pending_change = None
        self._update_play_button(True)

    def _drop_session(self) -> None:
        """Forget the current session (and any build in flight) after the clip or models changed."""
        self._generation += 1
        if self._build_job is not None:
            self._build_job.cancel()
        self._close_session()
        self._reset_heatmap(emit=False)
        self._method_slot.cancel()
        self._preparing = None

    def _codec_reason(self) -> str:
        models = self.state.models
        reason = getattr(models, "codec_unavailable", None)
        return reason("the audition (steered audio)") if reason is not None else ""

    def _on_models_changed(self) -> None:
        if self._shut:
            return
        self._set_unavailable(self._codec_reason())
        self._drop_session()
        self._contexts.clear()   # prepared for the previous SAE
        self._populate_attributes()
        self._set_controls_enabled(False)
        self._show_status()

    def _on_clip_changed(self) -> None:
        if self._shut:
            return
        self._drop_session()
        self._error = ""
        self._targets.clear()
        self.last_latency_ms = None
        with QSignalBlocker(self.scope_whole), QSignalBlocker(self.scope_selection):
            self.scope_whole.setChecked(True)
        self._populate_attributes()
        analysis, models = self.state.analysis, self.state.models
        self._set_unavailable(self._codec_reason())
        if analysis is None or models is None or self.params is None or self._unavailable:
            self._set_controls_enabled(False)
            self._show_status()
            return
        self._set_controls_enabled(True)
        self._apply_params()
        generation = self._generation

        def connect(job: Any) -> None:
            job.finished.connect(self._on_session_built)
            job.failed.connect(lambda message, tb, g=generation: self._on_session_failed(g, message))
            job.done.connect(lambda g=generation: self._on_build_done(g))

        self._build_job = self._submit(
            "prepare audition", build_session, models, analysis, self.params, generation=generation,
            device=getattr(self.settings, "audio_device", None), output=self.player_output,
            chunk_seconds=self.chunk_seconds, player_options=dict(self.player_options), keep=self._built,
            contexts=tuple(self._contexts.values()), connect=connect)
        self._show_status("preparing the audition…")

    def _on_build_done(self, generation: int) -> None:
        if generation == self._generation:
            self._build_job = None
        # A session whose result never reached _on_session_built (cancelled, superseded).
        session = self._built.get(generation)
        if session is not None and (self.session is not session):
            self._built.pop(generation, None)
            session.close()

    def _on_session_failed(self, generation: int, message: str) -> None:
        if generation != self._generation or self._shut:
            return
        self._set_error(f"audition unavailable: {message}")
        self.session_failed.emit(message)

    def _on_session_built(self, session: AuditionSession) -> None:
        if self._shut or session.generation != self._generation:
            self._built.pop(session.generation, None)
            session.close()
            return
        self.session = session
        renderer = session.renderer
        params = self.params
        for context in self._contexts.values():
            renderer.add_context(context)
        for context in renderer.contexts:   # prepared by the build job
            self._contexts.setdefault((context.method, context.attribute), context)
        if params is not None and renderer.has_context(params.method, params.attribute):
            try:  # the controls may have moved while it was built
                renderer.set_params(params)
            except AudioSAEError as exc:
                self._set_error(str(exc))
        elif params is not None:
            self._apply_params()   # a method chosen while building: prepare it now
        renderer.set_mode(self.mode)  # type: ignore[arg-type]
        player = session.player
        worker = RenderWorker(renderer, player.splice_position, loop=lambda: player.loop,
                              on_error=lambda exc: self._worker_failed.emit(f"{exc!r}"))
        session.worker = worker
        worker.start()
        if self._looping:
            self._apply_loop(seek_inside=False)
        if self.state.playhead > 0:
            player.seek(int(self.state.playhead * renderer.sample_rate))
        log.info("audition ready in %.3f s: %d chunks, output %s", session.build_seconds, renderer.n_chunks,
                 player.device_name or player.reason)
        self._set_controls_enabled(True)
        renderer.add_audio_listener(self._on_chunk_rendered)
        self._show_status()
        self.session_ready.emit()

    def _on_worker_failed(self, message: str) -> None:
        self._set_error(f"rendering stopped: {message}")

    # ---- controls ------------------------------------------------------------------------
    def _on_slider(self, value: int) -> None:
        with QSignalBlocker(self.alpha_spin):
            self.alpha_spin.setValue(value * ALPHA_STEP)
        self._apply_params()

    def _on_spin(self, value: float) -> None:
        self.alpha_slider.setValue(int(round(value / ALPHA_STEP)))  # -> _on_slider

    def _on_ab(self, steered: bool) -> None:
        if self.renderer is not None:
            self.renderer.set_mode("steered" if steered else "original")
        self._schedule_heatmap()

    def _apply_params(self) -> None:
        """Push the controls to the renderer (now) and the state; the heatmap follows."""
        if self._shut:
            return
        params = self.params
        if params is None:
            return
        self._error = ""
        if not self._ensure_context(params):
            return
        renderer = self.renderer
        if renderer is not None:
            context = self._contexts.get((params.method, params.attribute))
            if context is not None and not renderer.has_context(params.method, params.attribute):
                renderer.add_context(context)
            try:
                before = renderer.version
                version = renderer.set_params(params)
            except AudioSAEError as exc:
                self._set_error(str(exc))
                return
            if version != before and self.player is not None and self.playing and self.mode == "steered":
                self._pending_change = (version, time.monotonic())
        self.state.set_steering(params)
        self._schedule_heatmap()
        self._show_status()

    # ---- selection, loop, playhead -------------------------------------------------------
    def _on_selection_changed(self, selection: Any) -> None:
        if self._shut:
            return
        has = selection is not None
        self.scope_selection.setEnabled(has and self.state.analysis is not None and not self._unavailable)
        if not has and self.scope_selection.isChecked():
            with QSignalBlocker(self.scope_whole), QSignalBlocker(self.scope_selection):
                self.scope_whole.setChecked(True)
            self._apply_params()
        elif self.scope_selection.isChecked():
            self._apply_params()
        if self._looping:
            self._apply_loop(seek_inside=True)

    def _loop_region(self) -> tuple[int, int] | None:
        renderer = self.renderer
        if renderer is None:
            return None
        if self.state.selection is not None:
            a, b = self.state.selection
            start = min(max(int(round(a * renderer.sample_rate)), 0), renderer.n_samples - 1)
            end = min(max(int(round(b * renderer.sample_rate)), start + 1), renderer.n_samples)
            return start, end
        return 0, renderer.n_samples

    def _apply_loop(self, seek_inside: bool) -> None:
        player = self.player
        if player is None:
            return
        if not self._looping:
            player.set_loop(None)
            return
        region = self._loop_region()
        try:
            player.set_loop(*region)  # type: ignore[misc]
        except AudioSAEError as exc:  # a selection shorter than the loop cross-fades
            self._set_error(f"{exc}; looping the whole clip")
            region = (0, player.total_samples)
            player.set_loop(*region)
        position = player.position()
        if seek_inside and not region[0] <= position < region[1]:
            player.seek(region[0])

    def _on_playhead_changed(self, seconds: float) -> None:
        if self._setting_playhead or self._shut or self.player is None:
            return
        player = self.player
        player.seek(int(round(seconds * player.sample_rate)))
        if self.session is not None and self.session.worker is not None:
            self.session.worker.poke()

    def _on_tick(self) -> None:
        player = self.player
        if player is None:
            self._playhead_timer.stop()
            return
        self._setting_playhead = True
        try:
            self.state.set_playhead(player.position() / player.sample_rate)
        finally:
            self._setting_playhead = False
        if self._pending_change is not None:
            heard = player.heard_tag()
            version, began = self._pending_change
            if heard is not None and heard >= version:
                self.last_latency_ms = 1000.0 * (time.monotonic() - began)
                self._pending_change = None
                self._show_status()
        self._ticks += 1
        if self._ticks % STATUS_EVERY_TICKS == 0:
            self._show_status()
        if player.state == "ended" or player.error is not None:  # the clip end, or a failing source
            if player.error is not None:
                self._set_error(f"playback stopped: {player.error!r}")
            self._playhead_timer.stop()
            self._update_play_button(True)
            self._show_status()

    def _update_play_button(self, show_play: bool) -> None:
        style = self.style()
        if show_play:
            self.play_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
            self.play_button.setText("Play")
        else:
            self.play_button.setIcon(style.standardIcon(QStyle.StandardPixmap.SP_MediaPause))
            self.play_button.setText("Pause")

    # ---- heatmap (steered features) ------------------------------------------------------
    def _schedule_heatmap(self) -> None:
        if not self._shut and not self._heat_timer.isActive():
            self._heat_timer.start()

    def _on_view_range_changed(self, start: float, end: float) -> None:
        if self._heat.buffer is not None and self._heat.shown:
            self._schedule_heatmap()

    def _reset_heatmap(self, emit: bool) -> None:
        self._heat_timer.stop()
        self._heat.reset(emit)

    def _update_heatmap(self) -> None:
        """``state.set_steered_features(f')``: f' on the steered frames, f elsewhere (a job: see
        ``SteeredHeatmap``); None when nothing is steered (alpha 0) or the A/B switch plays the
        original."""
        analysis, models, params = self.state.analysis, self.state.models, self.params
        if self._shut or analysis is None or models is None or params is None:
            return
        if params.alpha == 0.0 or self.mode == "original":
            self._heat.hide(analysis.f)
            return
        context = self.context(params.method, params.attribute)
        if context is None:   # being prepared: the heatmap follows when it is ready
            return
        try:
            request = heat_request(analysis, context, params, self.state.view_range)
        except AudioSAEError as exc:
            self._set_error(str(exc))
            return
        self._heat.request(request)

    def _steer_request(self, path: str, params: SteeringParams, renderer: SteeredRenderer) -> Any:
        """The export's ``SteerRequest``: what ``audiosae steer`` would be given for these choices."""
        models = self.state.models
        return steer_request(path=path, source=self.state.clip_path or (self.state.analysis.source
                                                                         if self.state.analysis else ""),
                             models=models, workspace=self._export_workspace(), params=params,
                             target_name=self._target_name(params), limit=renderer.limit)

    def _export_workspace(self) -> Any:
        return self.state.workspace or self.state.models.workspace

    def _default_target(self, *args: Any) -> int:
        return default_target(*args)

    def _check_scope(self, params: SteeringParams) -> None:
        """Raise ``AudioSAEError`` when ``params``' range holds no frame of the clip."""
        analysis = self.state.analysis
        frame_mask(analysis.n_frames, analysis.times, params.start, params.end)

    def _show_status(self, text: str | None = None) -> None:
        text = text or self.status_text()
        if text != self.status_label.text():
            self.status_label.setText(text)
            self.status_changed.emit(text)
        self.refresh_level()

    def _on_chunk_rendered(self, _start: int, _n: int) -> None:   # render worker's thread
        self._level_rendered.emit()

    def level_summary(self) -> dict[str, Any] | None:
        """What the level rule did to the chunks rendered for the current settings (the core's
        ``LevelReport``s merged by ``SteeredRenderer.level_summary``); None without a session."""
        renderer = self.renderer
        return renderer.level_summary() if renderer is not None else None

    def refresh_level(self) -> None:
        """The level label under alpha: gain applied, limited samples, peak before -> after."""
        text = format_level(self.level_summary())
        if text != self.level_label.text():
            self.level_label.setText(text)

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


__all__ = ["AlphaSpinBox", "AuditionPanel", "AuditionSession", "build_session", "render_export", "default_target",
           "ALPHA_MAX", "ALPHA_STEP"]
