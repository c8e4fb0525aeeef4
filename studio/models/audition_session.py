"""``AuditionModel``: the audition dock's view-model (a QObject, no QtWidgets).

It owns what the dock used to hold in its widget: the steering choices (attribute, the target per
attribute, alpha, keep residual, scope, method, A/B mode), the live session of the clip (renderer
+ player + render worker, built in a job, rebuilt on ``state.clip_changed``; a generation counter
drops a superseded build), the prepared ``SteeringContext`` per (method, attribute) (a
``JobSlot`` prepares those that need the class means), play/pause/loop and the playhead timer,
the steer -> audible latency of the last change, the heatmap's f' (``SteeredHeatmap``), the export
job and the status line.  The view (``studio.widgets.audition.AuditionPanel``) shows controls,
forwards the user's input here and follows the signals below.

Every control change calls ``renderer.set_params`` at once (cheap, GUI thread) and
``state.set_steering``; the heatmap's f' follows at most ~30 times a second (a job).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from audiosae.attribute_spec import ATTRIBUTES
from audiosae.errors import AudioSAEError
from audiosae.steering import check_alpha, frame_mask
from audiosae.steering.playback import Player
from audiosae.steering.realtime import RenderWorker, SteeredRenderer, SteeringParams

from .audition import (DEFAULT_CHUNK_SECONDS, STEER_DEFAULT_METHOD, AuditionSession, build_session, default_target,
                       export_job, format_level, needs_workspace, prepare_context, steer_request)
from .job_slot import JobSlot
from .steered_heatmap import SteeredHeatmap, heat_request

log = logging.getLogger("studio.audition")

PLAYHEAD_INTERVAL_MS = 33       # ~30 Hz: smooth enough for a line, cheap for the GUI thread
HEATMAP_INTERVAL_MS = 33        # steered features for the heatmap at most ~30 times a second
STATUS_EVERY_TICKS = 6          # the status line (underruns) and the level label refresh ~5 times a second
AUDIO_SUFFIXES = (".wav", ".flac")
_UNAVAILABLE_PREFIX = "audio output unavailable: "


class AuditionModel(QObject):
    """The audition of the clip in ``state`` (see the module docstring)."""

    session_ready = Signal()            # a renderer + player for the current clip are live
    session_failed = Signal(str)        # building them failed (message)
    export_finished = Signal(str)       # the written audio file
    export_failed = Signal(str)         # message ("cancelled" when cancelled)
    status_changed = Signal(str)        # the status line's text
    level_changed = Signal(str)         # the level label's text
    playing_changed = Signal(bool)      # play (True) / pause or stop (False)
    looping_changed = Signal(bool)
    exporting_changed = Signal(bool)    # an export job started (True) / ended (False)
    enabled_changed = Signal(bool)      # the controls are usable (a clip with models) or not
    unavailable_changed = Signal(str)   # why the audition cannot run ("" when it can)
    controls_reset = Signal()           # clip or models changed: the view shows the attributes and targets anew
    scope_changed = Signal(bool)        # the scope went back to the whole clip (False) without the user
    _worker_failed = Signal(str)        # from the render worker's thread (queued to the GUI)
    _level_rendered = Signal()          # a chunk was rendered (worker thread): the level label follows

    export_fn = staticmethod(export_job)   # the export job (studio.models.audition)

    def __init__(self, state: Any, runner: Any, settings: Any, *, output: str = "auto",
                 player_options: dict[str, Any] | None = None, chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.runner, self.settings = state, runner, settings
        self.player_output, self.player_options, self.chunk_seconds = output, dict(player_options or {}), chunk_seconds
        # The steering choices (the view's controls show them).
        self.attribute: str | None = None
        self.targets: dict[str, int] = {}               # chosen class per attribute, this clip
        self.alpha = 0.0
        self.keep_residual = False
        self.scope_selection = False
        self.method = STEER_DEFAULT_METHOD
        self.mode = "steered"
        # The session and its jobs.
        self.session: AuditionSession | None = None
        self._generation = 0
        self._built: dict[int, AuditionSession] = {}   # sessions built by jobs, by generation
        self._build_job: Any = None
        self._export_job: Any = None
        self._export_path: str | None = None
        self._shut = False
        self._contexts: dict[tuple[str, str], Any] = {}  # (method, attribute) -> SteeringContext, these models
        self._method_slot = JobSlot(runner, "prepare steering method")
        self._method_jobs: list[Any] = []               # handles, waited for at shutdown
        self._preparing: tuple[str, str] | None = None
        self._heat = SteeredHeatmap(runner, state.set_steered_features,
                                    on_failed=lambda message: self.set_error(f"heatmap f': {message}"))
        self._setting_playhead = False
        self.looping = False
        self._pending_change: tuple[int, float] | None = None  # (version, monotonic) not heard yet
        self.last_latency_ms: float | None = None
        self._error = ""
        self._export_note = ""
        self.unavailable = ""                            # why the audition cannot run (no codec decoder)
        self._status = "no clip loaded"                 # what the view shows before the first change
        self._level = format_level(None)
        self._ticks = 0

        self._playhead_timer = QTimer(self)
        self._playhead_timer.setInterval(PLAYHEAD_INTERVAL_MS)
        self._playhead_timer.timeout.connect(self._on_tick)
        self._heat_timer = QTimer(self)
        self._heat_timer.setSingleShot(True)
        self._heat_timer.setInterval(HEATMAP_INTERVAL_MS)
        self._heat_timer.timeout.connect(self._update_heatmap)
        self._worker_failed.connect(lambda message: self.set_error(f"rendering stopped: {message}"))
        self._level_rendered.connect(self.refresh_level)   # queued from the render worker's thread
        self._state_slots = ((state.clip_changed, self.clip_changed), (state.models_changed, self.models_changed),
                             (state.workspace_changed, self.models_changed),
                             (state.selection_changed, self._on_selection_changed),
                             (state.playhead_changed, self._on_playhead_changed),
                             (state.view_range_changed, self._on_view_range_changed))

    def connect_state(self) -> None:
        """Follow the explorer state (the view calls this once its controls exist)."""
        for signal, slot in self._state_slots:
            signal.connect(slot)

    # ---- the choices ---------------------------------------------------------------------
    @property
    def renderer(self) -> SteeredRenderer | None:
        return self.session.renderer if self.session is not None else None

    @property
    def player(self) -> Player | None:
        return self.session.player if self.session is not None else None

    @property
    def params(self) -> SteeringParams | None:
        """The steering chosen (None without a clip or attributes)."""
        attribute = self.attribute
        if attribute is None or self.state.analysis is None:
            return None
        start = end = None
        if self.scope_selection and self.state.selection is not None:
            start, end = self.state.selection
        return SteeringParams(attribute=attribute, target=int(self.targets.get(attribute, 0)), alpha=self.alpha,
                              keep_residual=self.keep_residual, start=start, end=end, method=self.method)

    def checked_alpha(self, alpha: float) -> float | None:
        """``alpha`` if it may be used (``check_alpha``), else None (the status line says why)."""
        try:
            return check_alpha(alpha)
        except AudioSAEError as exc:
            self.set_error(str(exc))
            return None

    def attributes(self) -> list[str]:
        """The attributes the probes can steer: the paper's three, then every registered one the
        workspace labels and the SAE has a probe for (onset, chord ...), in the spec's order."""
        models = self.state.models
        if models is None:
            return []
        probed = getattr(models.probes, "weights", {})
        return [a for a in getattr(models.spec, "attributes", ATTRIBUTES) if a in probed]

    def steering_meaning(self, attribute: str) -> str:
        """What steering toward a class of ``attribute`` means (the registry's sentence), or ""."""
        models = self.state.models
        try:
            return models.spec.steering_meaning(attribute) if models is not None else ""
        except AudioSAEError:
            return ""

    def _choose_attribute(self) -> None:
        """Keep the attribute if the probes still steer it, else the first they do (None: none)."""
        available = self.attributes()
        self.set_attribute(self.attribute if self.attribute in available else (available[0] if available else None))

    def set_attribute(self, attribute: str | None) -> None:
        """Steer ``attribute`` (its target: the one chosen before, else a default: ``target``)."""
        self.attribute = attribute
        if attribute is not None:
            self.target(attribute)

    def class_names(self, attribute: str) -> list[str]:
        models = self.state.models
        names = models.spec.class_names(attribute)
        rows = models.probes.weights[attribute].shape[0]
        return names[:rows] if len(names) >= rows else names + [f"class {k}" for k in range(len(names), rows)]

    def trained_classes(self, attribute: str) -> list[int]:
        return list(self.state.models.probes.trained_classes(attribute))

    def target(self, attribute: str) -> int:
        """The chosen class for ``attribute`` (first asked: a few steps from where the clip is)."""
        if attribute not in self.targets:
            self.targets[attribute] = default_target(self.state.analysis, attribute, len(self.class_names(attribute)),
                                                     self.trained_classes(attribute))
        return self.targets[attribute]

    def parse_target(self, attribute: str, text: str) -> int:
        """A typed target (``AttributeSpec.parse_target``); -1 (and the reason on the status line) if not one."""
        try:
            return self.state.models.spec.parse_target(attribute, text)
        except AudioSAEError as exc:
            self.set_error(str(exc))
            return -1

    def target_name(self, params: SteeringParams) -> str:
        names = self.class_names(params.attribute)
        return names[params.target] if 0 <= params.target < len(names) else str(params.target)

    def set_mode(self, mode: str) -> None:
        """A/B: "steered" or "original" (rendering goes on in both)."""
        self.mode = mode
        if self.renderer is not None:
            self.renderer.set_mode(mode)  # type: ignore[arg-type]
        self._schedule_heatmap()

    def context(self, method: str | None = None, attribute: str | None = None) -> Any:
        """The prepared ``SteeringContext`` for ``method``/``attribute`` (default: the chosen ones),
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
        if not needs_workspace(models, params.method) or self.renderer is None:
            return True   # (without a session: the session's build job prepares it)
        if self._preparing == key:
            return False
        self._preparing = key
        generation = self._generation
        handle = self._method_slot.start(
            prepare_context, models, params.method, params.attribute,
            on_progress=lambda ev: self.show_status(f"preparing {params.method}: {ev.message} "
                                                    f"{100 * (ev.fraction or 0):.0f}%"),
            on_finished=lambda ctx, g=generation: self._on_context_ready(ctx, g),
            on_failed=lambda msg, g=generation: self._on_context_failed(msg, g),
            on_cancelled=lambda: setattr(self, "_preparing", None))
        self._method_jobs = [h for h in self._method_jobs if h.running] + [handle]
        self.show_status(f"preparing {params.method} (class means of the training frames)…")
        return False

    def _on_context_ready(self, context: Any, generation: int) -> None:
        self._preparing = None
        if self._shut or generation != self._generation:
            return
        self._contexts[(context.method, context.attribute)] = context
        if self.renderer is not None:
            self.renderer.add_context(context)
        self.apply_params()

    def _on_context_failed(self, message: str, generation: int) -> None:
        self._preparing = None
        if generation == self._generation:
            self.set_error(f"steering method unavailable: {message}")

    def apply_params(self) -> None:
        """Push the choices to the renderer (now) and the state; the heatmap follows."""
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
                self.set_error(str(exc))
                return
            if version != before and self.player is not None and self.playing and self.mode == "steered":
                self._pending_change = (version, time.monotonic())
        self.state.set_steering(params)
        self._schedule_heatmap()
        self.show_status()

    # ---- play, loop, playhead ------------------------------------------------------------
    @property
    def playing(self) -> bool:
        """Whether the audition is playing (what the user asked for; the player's own state
        follows a few milliseconds later, when its feeder thread has taken the command)."""
        return self._playhead_timer.isActive()

    def toggle_play(self) -> None:
        player = self.player
        if player is None:
            self.show_status()
            return
        if self.playing:
            player.pause()
            self._playhead_timer.stop()
            self._pending_change = None
            self.playing_changed.emit(False)
        else:
            if self.looping:
                self._apply_loop(seek_inside=True)
            player.play()
            if self.session is not None and self.session.worker is not None:
                self.session.worker.poke()
            self._playhead_timer.start()
            self.playing_changed.emit(True)

    def toggle_loop(self) -> None:
        self.looping = not self.looping
        self.looping_changed.emit(self.looping)
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
        if not self.looping:
            player.set_loop(None)
            return
        region = self._loop_region()
        try:
            player.set_loop(*region)  # type: ignore[misc]
        except AudioSAEError as exc:  # a selection shorter than the loop cross-fades
            self.set_error(f"{exc}; looping the whole clip")
            region = (0, player.total_samples)
            player.set_loop(*region)
        position = player.position()
        if seek_inside and not region[0] <= position < region[1]:
            player.seek(region[0])

    def _on_selection_changed(self, selection: Any) -> None:
        if self._shut:
            return
        if selection is None and self.scope_selection:
            self.scope_selection = False
            self.scope_changed.emit(False)
            self.apply_params()
        elif self.scope_selection:
            self.apply_params()
        if self.looping:
            self._apply_loop(seek_inside=True)

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
                self.show_status()
        self._ticks += 1
        if self._ticks % STATUS_EVERY_TICKS == 0:
            self.show_status()
        if player.state == "ended" or player.error is not None:  # the clip end, or a failing source
            if player.error is not None:
                self.set_error(f"playback stopped: {player.error!r}")
            self._playhead_timer.stop()
            self.playing_changed.emit(False)
            self.show_status()

    def set_output_device(self, name: str | None) -> bool:
        """Remember ``name`` in the settings and play on it; True if the player switched."""
        try:
            self.settings.audio_device = name
        except (AttributeError, ValueError):
            pass
        player = self.player
        if player is None:
            return True
        ok = player.set_device(name)
        if not ok:
            self.set_error(player.message)
        self.show_status()
        return ok

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
        self.playing_changed.emit(False)

    def _drop_session(self) -> None:
        """Forget the current session (and any build in flight) after the clip or models changed."""
        self._generation += 1
        if self._build_job is not None:
            self._build_job.cancel()
        self._close_session()
        self._heat_timer.stop()
        self._heat.reset(False)
        self._method_slot.cancel()
        self._preparing = None

    def _set_unavailable(self, reason: str) -> None:
        if reason != self.unavailable:
            self.unavailable = reason
            self.unavailable_changed.emit(reason)

    def _codec_reason(self) -> str:
        reason = getattr(self.state.models, "codec_unavailable", None)
        return reason("the audition (steered audio)") if reason is not None else ""

    def models_changed(self) -> None:
        if self._shut:
            return
        self._set_unavailable(self._codec_reason())
        self._drop_session()
        self._contexts.clear()   # prepared for the previous SAE
        self._choose_attribute()
        self.controls_reset.emit()
        self.enabled_changed.emit(False)
        self.show_status()

    def clip_changed(self) -> None:
        if self._shut:
            return
        self._drop_session()
        self._error = ""
        self.targets.clear()
        self.last_latency_ms = None
        self.scope_selection = False
        self.scope_changed.emit(False)
        self._choose_attribute()
        self.controls_reset.emit()
        analysis, models = self.state.analysis, self.state.models
        self._set_unavailable(self._codec_reason())
        if analysis is None or models is None or self.params is None or self.unavailable:
            self.enabled_changed.emit(False)
            self.show_status()
            return
        self.enabled_changed.emit(True)
        self.apply_params()
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
        self.show_status("preparing the audition…")

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
        self.set_error(f"audition unavailable: {message}")
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
            try:  # the choices may have moved while it was built
                renderer.set_params(params)
            except AudioSAEError as exc:
                self.set_error(str(exc))
        elif params is not None:
            self.apply_params()   # a method chosen while building: prepare it now
        renderer.set_mode(self.mode)  # type: ignore[arg-type]
        player = session.player
        worker = RenderWorker(renderer, player.splice_position, loop=lambda: player.loop,
                              on_error=lambda exc: self._worker_failed.emit(f"{exc!r}"))
        session.worker = worker
        worker.start()
        if self.looping:
            self._apply_loop(seek_inside=False)
        if self.state.playhead > 0:
            player.seek(int(self.state.playhead * renderer.sample_rate))
        log.info("audition ready in %.3f s: %d chunks, output %s", session.build_seconds, renderer.n_chunks,
                 player.device_name or player.reason)
        self.enabled_changed.emit(True)
        renderer.add_audio_listener(self._on_chunk_rendered)
        self.show_status()
        self.session_ready.emit()

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
        for signal, slot in self._state_slots:
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):  # already disconnected
                pass

    # ---- heatmap (steered features) ------------------------------------------------------
    def _schedule_heatmap(self) -> None:
        if not self._shut and not self._heat_timer.isActive():
            self._heat_timer.start()

    def _on_view_range_changed(self, start: float, end: float) -> None:
        if self._heat.buffer is not None and self._heat.shown:
            self._schedule_heatmap()

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
            self.set_error(str(exc))
            return
        self._heat.request(request)

    # ---- export --------------------------------------------------------------------------
    @property
    def exporting(self) -> bool:
        return self._export_job is not None

    def export(self, path: str) -> str | None:
        """Start the export job to ``path`` (WAV or FLAC): the workflow ``audiosae steer`` runs;
        ``export_finished(path)`` / ``export_failed(message)`` follow.  None if refused."""
        renderer, params = self.renderer, self.params
        if renderer is None or params is None:
            self.set_error(self.unavailable or "nothing to export: load a clip first")
            return None
        if self._export_job is not None:
            self.set_error("an export is already running")
            return None
        if Path(path).suffix.lower() not in AUDIO_SUFFIXES:
            self.set_error(f"{path}: export as .wav or .flac")
            self.export_failed.emit(f"{path}: export as .wav or .flac")
            return None
        analysis = self.state.analysis
        try:
            frame_mask(analysis.n_frames, analysis.times, params.start, params.end)   # a range with frames
        except AudioSAEError as exc:
            self.set_error(str(exc))
            self.export_failed.emit(str(exc))
            return None
        workspace = self.state.workspace or self.state.models.workspace
        request = steer_request(path=path, source=self.state.clip_path or analysis.source, models=self.state.models,
                                workspace=workspace, params=params, target_name=self.target_name(params),
                                limit=renderer.limit)

        def connect(job: Any) -> None:
            job.progress.connect(self._on_export_progress)
            job.finished.connect(self._on_export_finished)
            job.failed.connect(lambda message, tb: self._on_export_ended(message or "export failed"))
            job.cancelled.connect(lambda: self._on_export_ended("cancelled"))

        job = self._submit("export steered audio", self.export_fn, request, renderer, analysis.latents, workspace,
                           connect=connect)
        self._export_job, self._export_path = job, path
        self.exporting_changed.emit(True)
        self._export_note = "exporting… 0%"
        self.show_status()
        return path

    def cancel_export(self) -> None:
        if self._export_job is not None:
            self._export_job.cancel()

    def _on_export_progress(self, event: Any) -> None:
        fraction = event.fraction
        self._export_note = f"exporting… {100 * fraction:.0f}%" if fraction is not None else "exporting…"
        self.show_status()

    def _on_export_finished(self, path: str) -> None:
        self._export_job = None
        self.exporting_changed.emit(False)
        self._export_note = f"exported {Path(path).name}"
        self.show_status()
        self.state.status.emit(f"exported steered audio to {path}")
        self.export_finished.emit(path)

    def _on_export_ended(self, message: str) -> None:
        self._export_job = None
        self.exporting_changed.emit(False)
        self._export_note = "export cancelled" if message == "cancelled" else ""
        if message != "cancelled":
            self.set_error(f"export failed: {message}")
        self.show_status()
        self.export_failed.emit(message)

    # ---- status line and level -----------------------------------------------------------
    def set_error(self, message: str) -> None:
        self._error = message
        log.info("audition: %s", message)
        self.show_status()

    def status_text(self) -> str:
        """The status line: last change's latency, underruns, output (or why there is none)."""
        parts = []
        if self.unavailable:
            return self.unavailable
        if self._error:
            parts.append(self._error)
        if self._export_note:
            parts.append(self._export_note)
        player = self.player
        if player is None:
            if self.state.analysis is None:
                parts.append("no clip loaded")
            elif self._build_job is not None:
                parts.append("preparing the audition…")
            return " · ".join(parts)
        latency = "—" if self.last_latency_ms is None else f"{self.last_latency_ms:.0f} ms"
        parts.append(f"latency {latency}")
        under = player.underruns
        parts.append(f"underruns: device {under['device_underflows']}, ring {under['ring_dry']}")
        if player.available:
            parts.append(f"output: {player.device_name}" + (f" ({player.message})" if player.message else ""))
        else:
            reason = player.reason
            if reason.startswith(_UNAVAILABLE_PREFIX):
                reason = reason[len(_UNAVAILABLE_PREFIX):]
            parts.append(f"playback unavailable: {reason}")
        return " · ".join(parts)

    def show_status(self, text: str | None = None) -> None:
        """``status_changed`` when the line's text changed; the level label follows."""
        text = text or self.status_text()
        if text != self._status:
            self._status = text
            self.status_changed.emit(text)
        self.refresh_level()

    def _on_chunk_rendered(self, _start: int, _n: int) -> None:   # render worker's thread
        try:
            self._level_rendered.emit()
        except RuntimeError:   # the model was deleted under a still-running render thread (abrupt exit)
            pass

    def level_summary(self) -> dict[str, Any] | None:
        """What the level rule did to the chunks rendered for the current settings (the core's
        ``LevelReport``s merged by ``SteeredRenderer.level_summary``); None without a session."""
        renderer = self.renderer
        return renderer.level_summary() if renderer is not None else None

    def refresh_level(self) -> None:
        """``level_changed``: gain applied, limited samples, peak before -> after."""
        text = format_level(self.level_summary())
        if text != self._level:
            self._level = text
            self.level_changed.emit(text)


__all__ = ["AUDIO_SUFFIXES", "AuditionModel", "HEATMAP_INTERVAL_MS", "PLAYHEAD_INTERVAL_MS"]
