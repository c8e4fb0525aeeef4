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

Nothing here blocks on model work except ``steer_features`` on the visible frames, which is
a few milliseconds (see ``FULL_HEATMAP_ELEMENTS``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QCompleter, QDoubleSpinBox, QFileDialog,
                               QGridLayout, QHBoxLayout, QLabel, QPushButton, QRadioButton, QSizePolicy,
                               QSlider, QStyle, QToolButton, QVBoxLayout, QWidget)

from audiosae.analysis import ClipAnalysis, LoadedModels
from audiosae.attributes import ATTRIBUTES, MIDI_MAX, MIDI_MIN
from audiosae.errors import AudioSAEError, JobCancelled
from audiosae.jobs import CancelToken, Progress, ProgressSink, null_progress
from audiosae.realtime import RenderWorker, SteeredRenderer, SteeringParams
from audiosae.steering import ALPHA_UNIT, PAPER_ALPHAS, check_alpha, control_vector, frame_mask, steer_features
from studio.playback import Player, list_output_devices

log = logging.getLogger("studio.audition")

ALPHA_MAX = 40.0
ALPHA_STEP = 0.1
_ALPHA_TICKS = int(round(ALPHA_MAX / ALPHA_STEP))
PITCH_DEFAULT_OFFSET = 4        # semitones above the clip's median pitch (a major third: clearly audible)
BIN_DEFAULT_OFFSET = 3          # loudness / timbre bins above the clip's median class
PLAYHEAD_INTERVAL_MS = 33       # ~30 Hz: smooth enough for a line, cheap for the GUI thread
HEATMAP_INTERVAL_MS = 33        # steered features for the heatmap at most ~30 times a second
STATUS_EVERY_TICKS = 6          # the status line (underruns) refreshes ~5 times a second
# Above this many T x F elements the heatmap's f' is computed only for the frames in view
# (plus a margin).  Measured with one torch thread: 4,500 x 512 (a minute at 75 frames/s)
# steers in ~3 ms; 45,000 x 512 (ten minutes) in ~200 ms, far over a 33 ms frame.
FULL_HEATMAP_ELEMENTS = 3_000_000
VIEW_MARGIN = 0.25              # fraction of the visible span also steered on each side
DEFAULT_CHUNK_SECONDS = 0.25
TWO_COLUMN_WIDTH = 760          # px: wider than this, the controls go in two columns
_UNAVAILABLE_PREFIX = "audio output unavailable: "
AUDIO_SUFFIXES = (".wav", ".flac")


class AlphaSpinBox(QDoubleSpinBox):
    """The alpha spin box: it cannot hold a non-finite value (a plain QDoubleSpinBox turns NaN
    and inf into its maximum, 40); ``setValue`` of one keeps the current value.  The range
    (0..40) keeps negative values out; typed "nan"/"inf" never validate."""

    def setValue(self, value: float) -> None:  # noqa: N802 (Qt naming)
        if not math.isfinite(float(value)):
            log.info("audition: refused a non-finite alpha %r", value)
            return
        super().setValue(value)


# ---- headless helpers (no widgets; run in job threads) -------------------------------------
@dataclass
class AuditionSession:
    """The live objects of one clip: renderer, player and (once adopted) the render worker."""

    generation: int
    renderer: SteeredRenderer
    player: Player
    worker: RenderWorker | None = None
    build_seconds: float = 0.0

    def close(self) -> None:
        """Stop the worker, unhook and close the player (idempotent)."""
        if self.worker is not None:
            self.worker.stop()
        self.renderer.remove_audio_listener(self.player.requeue)
        self.player.close()


def build_session(models: LoadedModels, analysis: ClipAnalysis, params: SteeringParams, *, generation: int,
                  device: str | None, output: str, chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                  player_options: dict[str, Any] | None = None, keep: dict[int, AuditionSession] | None = None,
                  progress: ProgressSink = null_progress, cancel: CancelToken | None = None) -> AuditionSession:
    """Build the renderer (SAE features of the clip, once) and open the player: a job.

    ``keep``: a dict the new session is also stored in under ``generation``, so that the
    owner can close a session whose job result it never receives (a job cancelled at
    shutdown emits no result)."""
    cancel = cancel or CancelToken()
    cancel.raise_if_cancelled()
    began = time.perf_counter()
    progress(Progress("audition", 0, 2, "computing the clip's SAE features"))
    renderer = SteeredRenderer(models.backend, models.sae, models.probes, analysis.wave, params,
                               latents=analysis.latents, chunk_seconds=chunk_seconds, cancel=cancel)
    cancel.raise_if_cancelled()
    progress(Progress("audition", 1, 2, "opening the audio output"))
    player = Player(lambda start, n: renderer.mix_tagged(start, n, per_sample=True), renderer.sample_rate,
                    renderer.n_samples, channels=renderer.channels, device=device, output=output,  # type: ignore[arg-type]
                    **(player_options or {}))
    renderer.add_audio_listener(player.requeue)
    session = AuditionSession(generation, renderer, player, build_seconds=time.perf_counter() - began)
    if keep is not None:
        keep[generation] = session
    if cancel.cancelled:
        if keep is not None:
            keep.pop(generation, None)
        session.close()
        raise JobCancelled("cancelled by the user")
    progress(Progress("audition", 2, 2, "ready"))
    return session


def render_export(live: SteeredRenderer, latents: np.ndarray, params: SteeringParams, *,
                  progress: ProgressSink = null_progress, cancel: CancelToken | None = None,
                  level_out: dict[str, Any] | None = None) -> np.ndarray:
    """The whole steered clip ``[C, N]`` for ``params``, rendered exactly as ``live`` plays it
    (``latents``: the clip's latents, as ``live`` was built with).

    A separate renderer with ``live``'s chunking, context and cross-fade, so the export equals
    the audition's steered audio while the user goes on moving controls (and whatever the
    A/B switch says), with ``live``'s level rule (``live.limit``): loudness matched to the clip
    and peaks limited, per chunk.  ``level_out``: a dict filled with what the rule did
    (``SteeredRenderer.level_summary``), for the side-car."""
    cancel = cancel or CancelToken()
    renderer = SteeredRenderer(live.backend, live.sae, live.probes, live.wave, params,
                               latents=latents,
                               chunk_seconds=live.chunk_frames * live.hop / live.sample_rate,
                               context_frames=live.context_frames, fade_seconds=live.fade / live.sample_rate,
                               cancel=cancel, limit=live.limit)
    total = renderer.n_chunks
    for index in range(total):
        cancel.raise_if_cancelled()
        renderer.render_chunk(index)
        progress(Progress("export", index + 1, total, "rendering the steered clip"))
    if level_out is not None:
        level_out.update(renderer.level_summary())
    return renderer.mix(0, renderer.n_samples)


def default_target(analysis: ClipAnalysis | None, attribute: str, n_classes: int,
                   allowed: list[int] | None = None) -> int:
    """A target class a few steps from where the clip is: its median pitch + a major third
    (down if that leaves the range; A4 when the clip has no pitch), or its median
    loudness/timbre bin + 3 — moved to the nearest class in ``allowed`` (the classes the
    probe saw in training; for pitch not 'unvoiced' when another is allowed)."""
    wanted = _wanted_target(analysis, attribute, n_classes)
    if not allowed or wanted in allowed:
        return wanted
    choices = [c for c in allowed if not (attribute == "pitch" and c == 0)] or list(allowed)
    return min(choices, key=lambda c: (abs(c - wanted), c))


def _wanted_target(analysis: ClipAnalysis | None, attribute: str, n_classes: int) -> int:
    if attribute == "pitch":
        midi = np.asarray(analysis.measured.midi if analysis is not None else [], dtype=np.float64)
        voiced = midi[np.isfinite(midi)]
        if voiced.size == 0:
            return 69 - MIDI_MIN + 1
        note = int(round(float(np.median(voiced)))) + PITCH_DEFAULT_OFFSET
        if note > MIDI_MAX:
            note -= 2 * PITCH_DEFAULT_OFFSET
        return min(max(note, MIDI_MIN), MIDI_MAX) - MIDI_MIN + 1
    classes = analysis.measured_classes.get(attribute) if analysis is not None else None
    if classes is None or len(classes) == 0:
        return n_classes // 2
    k = int(np.median(classes)) + BIN_DEFAULT_OFFSET
    if k >= n_classes:
        k -= 2 * BIN_DEFAULT_OFFSET
    return min(max(k, 0), n_classes - 1)


# ---- the panel -----------------------------------------------------------------------------
def _wrap(layout: QHBoxLayout) -> QWidget:
    """A row of controls as one widget (so the grid can move it between columns)."""
    layout.setContentsMargins(0, 0, 0, 0)
    widget = QWidget()
    widget.setLayout(layout)
    return widget


class AuditionPanel(QWidget):
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
        self.session: AuditionSession | None = None
        self._generation = 0
        self._built: dict[int, AuditionSession] = {}   # sessions built by jobs, by generation
        self._build_job: Any = None
        self._export_job: Any = None
        self._export_path: str | None = None
        self._shut = False
        self._targets: dict[str, int] = {}              # chosen class per attribute, this clip
        self._directions: dict[tuple[str, int], torch.Tensor] = {}
        self._heat_buffer: np.ndarray | None = None     # long clips: f with f' written in view
        self._heat_dirty: tuple[int, int] | None = None
        self._heat_shown = False
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
        style = self.style()
        self._grid = grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(6)
        self._rows: list[tuple[QWidget | None, QWidget]] = []   # (label, field), laid out by _arrange
        self._columns = 0

        self.attribute_combo = QComboBox()
        self.attribute_combo.setToolTip("The attribute whose probe gives the control vector")
        self.target_combo = QComboBox()
        self.target_combo.setEditable(True)
        self.target_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.target_combo.setMaxVisibleItems(20)
        self.target_combo.setMinimumContentsLength(10)
        self.target_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        completer = self.target_combo.completer()
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.target_combo.setToolTip("Target class: type to search (e.g. 'A4', 'C#5', '-12 dB', '1500 Hz')")
        self._rows.append((QLabel("Attribute"), self.attribute_combo))
        self._rows.append((QLabel("Target"), self.target_combo))

        self.alpha_slider = QSlider(Qt.Orientation.Horizontal)
        self.alpha_slider.setRange(0, _ALPHA_TICKS)
        self.alpha_slider.setSingleStep(1)
        self.alpha_slider.setPageStep(int(round(1.0 / ALPHA_STEP)))
        self.alpha_slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.alpha_slider.setTickInterval(int(round(10.0 / ALPHA_STEP)))
        self.alpha_slider.setToolTip(f"Steering strength alpha (0-{ALPHA_MAX:g}); one unit adds "
                                     f"{ALPHA_UNIT:g} x the feature vector's length")
        self.alpha_spin = AlphaSpinBox()
        self.alpha_spin.setRange(0.0, ALPHA_MAX)
        self.alpha_spin.setSingleStep(ALPHA_STEP)
        self.alpha_spin.setDecimals(1)
        self.alpha_spin.setKeyboardTracking(False)
        self.alpha_spin.setPrefix("α ")
        alpha = QHBoxLayout()
        alpha.addWidget(self.alpha_slider, 1)
        alpha.addWidget(self.alpha_spin)
        self._rows.append((QLabel("Alpha"), _wrap(alpha)))

        presets = QHBoxLayout()
        presets.setSpacing(4)
        presets.addWidget(QLabel("paper:"))
        self.preset_buttons: list[QToolButton] = []
        for value in (0.0, *PAPER_ALPHAS):
            button = QToolButton()
            button.setText(f"{value:g}")
            button.setToolTip(f"alpha = {value:g}" + (" (off)" if value == 0 else " (a value from the paper)"))
            button.clicked.connect(lambda _=False, v=value: self.set_alpha(v))
            presets.addWidget(button)
            self.preset_buttons.append(button)
        presets.addStretch(1)
        self._rows.append((None, _wrap(presets)))

        self.keep_residual_check = QCheckBox("Keep residual")
        self.keep_residual_check.setToolTip("Add back what the SAE does not reconstruct (x - SAE(x)), so only "
                                            "the steered direction changes")
        self.scope_whole = QRadioButton("Whole clip")
        self.scope_selection = QRadioButton("Selection")
        self.scope_selection.setToolTip("Steer only the selected time range (drag on the waveform)")
        self.scope_whole.setChecked(True)
        self._scope_group = QButtonGroup(self)
        self._scope_group.addButton(self.scope_whole)
        self._scope_group.addButton(self.scope_selection)
        scope = QHBoxLayout()
        scope.setSpacing(8)
        scope.addWidget(self.scope_whole)
        scope.addWidget(self.scope_selection)
        scope.addStretch(1)
        self._rows.append((QLabel("Scope"), _wrap(scope)))
        self._rows.append((None, self.keep_residual_check))

        self.original_button = QToolButton()
        self.original_button.setText("A original")
        self.steered_button = QToolButton()
        self.steered_button.setText("B steered")
        for button in (self.original_button, self.steered_button):
            button.setCheckable(True)
            button.setToolTip("A/B: hear the input clip or the steered audio (rendering goes on in both)")
        self.steered_button.setChecked(True)
        self._ab_group = QButtonGroup(self)
        self._ab_group.setExclusive(True)
        self._ab_group.addButton(self.original_button)
        self._ab_group.addButton(self.steered_button)

        self.play_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), "Play")
        self.play_button.setToolTip("Play / pause (Space)")
        self.loop_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_BrowserReload), "Loop")
        self.loop_button.setCheckable(True)
        self.loop_button.setToolTip("Loop the selection, or the whole clip without one (L)")
        self.export_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton), "Export…")
        self.export_button.setToolTip("Write the whole steered clip to a WAV/FLAC file with its settings (Ctrl+E)")
        listen = QHBoxLayout()
        listen.setSpacing(4)
        listen.addWidget(self.original_button)
        listen.addWidget(self.steered_button)
        listen.addStretch(1)
        self._rows.append((QLabel("Listen"), _wrap(listen)))
        transport = QHBoxLayout()
        transport.setSpacing(4)
        transport.addWidget(self.play_button)
        transport.addWidget(self.loop_button)
        transport.addStretch(1)
        transport.addWidget(self.export_button)

        self.device_combo = QComboBox()
        self.device_combo.setToolTip("Audio output (remembered by name)")
        self.device_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.device_combo.setMinimumContentsLength(12)
        self._rows.append((QLabel("Output"), self.device_combo))

        self.status_label = QLabel("no clip loaded")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        font = self.status_label.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.9))
        self.status_label.setFont(font)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(8)
        layout.addLayout(grid)
        layout.addLayout(transport)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self._arrange(1)

        self.attribute_combo.currentIndexChanged.connect(self._on_attribute_changed)
        self.target_combo.activated.connect(self._on_target_picked)
        self.target_combo.lineEdit().editingFinished.connect(self._on_target_typed)
        self.alpha_slider.valueChanged.connect(self._on_slider)
        self.alpha_spin.valueChanged.connect(self._on_spin)
        self.keep_residual_check.toggled.connect(lambda _: self._apply_params())
        self.scope_selection.toggled.connect(lambda _: self._apply_params())
        self.steered_button.toggled.connect(self._on_ab)
        self.play_button.clicked.connect(self.toggle_play)
        self.loop_button.clicked.connect(lambda _=False: self.toggle_loop())
        self.export_button.clicked.connect(self._on_export_button)
        self.device_combo.activated.connect(self._on_device_picked)

    def _arrange(self, columns: int) -> None:
        """The control rows in one column (a narrow dock) or two side by side (a wide one,
        e.g. docked under the timeline), so the panel stays short."""
        if columns == self._columns:
            return
        self._columns = columns
        grid = self._grid
        for label, field in self._rows:
            if label is not None:
                grid.removeWidget(label)
            grid.removeWidget(field)
        per_column = -(-len(self._rows) // columns)
        split = 4 if columns == 2 else per_column   # attribute, target, alpha, presets | the rest
        for index, (label, field) in enumerate(self._rows):
            column = 0 if index < split else 1
            row = index if column == 0 else index - split
            if label is not None:
                grid.addWidget(label, row, 3 * column)
            grid.addWidget(field, row, 3 * column + 1)
        for column in range(6):
            grid.setColumnStretch(column, 1 if column in (1, 4) and column // 3 < columns else 0)
            grid.setColumnMinimumWidth(column, 16 if column == 2 and columns == 2 else 0)
        self.updateGeometry()

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
                              keep_residual=self.keep_residual_check.isChecked(), start=start, end=end)

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

    def export_steered(self, path: str | None = None) -> str | None:
        """Render the whole steered clip with the current settings and write ``path`` (WAV or
        FLAC, by suffix) plus ``<path>.json`` with the settings.  Runs as a job: returns the
        path at once (None if there is nothing to export or the dialog was cancelled);
        ``export_finished(path)`` / ``export_failed(message)`` follow."""
        renderer, params = self.renderer, self.params
        if renderer is None or params is None:
            self._set_error(self._unavailable or "nothing to export: load a clip first")
            return None
        if self._export_job is not None:
            self._set_error("an export is already running")
            return None
        if path is None:
            path = self._ask_export_path()
            if not path:
                return None
        path = str(path)
        if Path(path).suffix.lower() not in AUDIO_SUFFIXES:
            self._set_error(f"{path}: export as .wav or .flac")
            self.export_failed.emit(f"{path}: export as .wav or .flac")
            return None
        analysis = self.state.analysis
        try:
            frame_mask(analysis.n_frames, analysis.times, params.start, params.end)
        except AudioSAEError as exc:
            self._set_error(str(exc))
            self.export_failed.emit(str(exc))
            return None
        sidecar = self._export_sidecar(path, params, renderer)
        def connect(job: Any) -> None:
            job.progress.connect(self._on_export_progress)
            job.finished.connect(self._on_export_finished)
            job.failed.connect(lambda message, tb: self._on_export_ended(message or "export failed"))
            job.cancelled.connect(lambda: self._on_export_ended("cancelled"))

        job = self._submit("export steered audio", _export_job, renderer, analysis.latents, params, path, sidecar,
                           connect=connect)
        self._export_job, self._export_path = job, path
        self.export_button.setText("Cancel export")
        self._export_note = "exporting… 0%"
        self._show_status()
        return path

    def cancel_export(self) -> None:
        if self._export_job is not None:
            self._export_job.cancel()

    def set_output_device(self, name: str | None) -> bool:
        """Play on the output device called ``name`` (None: the system default) and remember
        it in the settings; True if the player switched."""
        try:
            self.settings.audio_device = name
        except (AttributeError, ValueError):
            pass
        self._refresh_devices()
        player = self.player
        if player is None:
            return True
        ok = player.set_device(name)
        if not ok:
            self._set_error(player.message)
        self._show_status()
        return ok

    def shutdown(self) -> None:
        """Stop the timers, the render worker, the player and any export/build job (idempotent)."""
        if self._shut:
            return
        self._shut = True
        self._playhead_timer.stop()
        self._heat_timer.stop()
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
        """``runner.submit`` whose job body runs only after ``connect(handle)`` connected its
        slots: a queued signal emitted before its slot is connected is lost, so a short job
        must not finish first (whatever the runner's own start policy)."""
        gate = threading.Event()

        def gated(*a: Any, progress: ProgressSink, cancel: CancelToken, **kw: Any) -> Any:
            gate.wait()
            return fn(*a, progress=progress, cancel=cancel, **kw)

        job = self.runner.submit(name, gated, *args, **kwargs)
        try:
            connect(job)
        finally:
            gate.set()
        return job

    def _close_session(self) -> None:
        self._playhead_timer.stop()
        session, self.session = self.session, None
        if session is not None:
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
        self._directions.clear()   # probe rows of the previous models / clip

    def _codec_reason(self) -> str:
        models = self.state.models
        reason = getattr(models, "codec_unavailable", None)
        return reason("the audition (steered audio)") if reason is not None else ""

    def _on_models_changed(self) -> None:
        if self._shut:
            return
        self._set_unavailable(self._codec_reason())
        self._drop_session()
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
            connect=connect)
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
        if params is not None:  # the controls may have moved while it was built
            try:
                renderer.set_params(params)
            except AudioSAEError as exc:
                self._set_error(str(exc))
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
        self._show_status()
        self.session_ready.emit()

    def _on_worker_failed(self, message: str) -> None:
        self._set_error(f"rendering stopped: {message}")

    # ---- controls ------------------------------------------------------------------------
    def _populate_attributes(self) -> None:
        models = self.state.models
        available = [a for a in ATTRIBUTES if models is not None and a in getattr(models.probes, "weights", {})]
        previous = self.attribute_combo.currentData()
        with QSignalBlocker(self.attribute_combo):
            self.attribute_combo.clear()
            for attribute in available:
                self.attribute_combo.addItem(attribute.capitalize() if attribute != "timbre" else "Timbre (centroid)",
                                             attribute)
            if previous in available:
                self.attribute_combo.setCurrentIndex(available.index(previous))
        self._populate_targets()

    def _class_names(self, attribute: str) -> list[str]:
        models = self.state.models
        names = models.spec.class_names(attribute)
        rows = models.probes.weights[attribute].shape[0]
        return names[:rows] if len(names) >= rows else names + [f"class {k}" for k in range(len(names), rows)]

    def _populate_targets(self) -> None:
        attribute = self.attribute_combo.currentData()
        with QSignalBlocker(self.target_combo):
            self.target_combo.clear()
            if attribute is None:
                return
            names = self._class_names(attribute)
            self.target_combo.addItems(names)
            trained = self.state.models.probes.trained_classes(attribute)
            model = self.target_combo.model()
            for k in set(range(len(names))) - set(trained):
                item = model.item(k) if hasattr(model, "item") else None
                if item is not None:  # a class the probe never saw has no direction to steer toward
                    item.setEnabled(False)
                    item.setToolTip("not in the probe's training data")
            if attribute not in self._targets:
                self._targets[attribute] = default_target(self.state.analysis, attribute, len(names), trained)
            self.target_combo.setCurrentIndex(self._targets[attribute])

    def _on_attribute_changed(self, _index: int) -> None:
        self._populate_targets()
        self._apply_params()

    def _on_target_picked(self, index: int) -> None:
        attribute = self.attribute_combo.currentData()
        if attribute is None or index < 0:
            return
        if self._targets.get(attribute) != index:
            self._targets[attribute] = index
            self._apply_params()

    def _on_target_typed(self) -> None:
        """Typed text: a class name, or what ``AttributeSpec.parse_target`` understands."""
        attribute = self.attribute_combo.currentData()
        if attribute is None or self.state.models is None:
            return
        text = self.target_combo.currentText().strip()
        index = self.target_combo.findText(text, Qt.MatchFlag.MatchFixedString)
        if index < 0:
            try:
                index = self.state.models.spec.parse_target(attribute, text)
            except AudioSAEError as exc:
                self._set_error(str(exc))
                index = -1
        if not 0 <= index < self.target_combo.count():
            index = self._targets.get(attribute, 0)
        with QSignalBlocker(self.target_combo):
            self.target_combo.setCurrentIndex(index)
        self._on_target_picked(index)

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
        renderer = self.renderer
        if renderer is not None:
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
        if self._heat_buffer is not None and self._heat_shown:
            self._schedule_heatmap()

    def _reset_heatmap(self, emit: bool) -> None:
        self._heat_timer.stop()
        self._heat_buffer = None
        self._heat_dirty = None
        was_shown, self._heat_shown = self._heat_shown, False
        if emit and was_shown:
            self.state.set_steered_features(None)

    def _direction(self, attribute: str, target: int) -> torch.Tensor:
        key = (attribute, target)
        if key not in self._directions:
            models = self.state.models
            self._directions[key] = control_vector(models.probes, attribute, target).to(models.sae.device)
        return self._directions[key]

    def _update_heatmap(self) -> None:
        """``state.set_steered_features(f')``: f' on the steered frames, f elsewhere; None when
        nothing is steered (alpha 0) or the A/B switch plays the original."""
        analysis, models, params = self.state.analysis, self.state.models, self.params
        if self._shut or analysis is None or models is None or params is None:
            return
        if params.alpha == 0.0 or self.mode == "original":
            if self._heat_shown:
                self._heat_shown = False
                self._restore_heat_rows()
                self.state.set_steered_features(None)
            return
        try:
            direction = self._direction(params.attribute, params.target)
            mask = frame_mask(analysis.n_frames, analysis.times, params.start, params.end).numpy()
        except AudioSAEError as exc:
            self._set_error(str(exc))
            return
        f = analysis.f
        rows = np.flatnonzero(mask)
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        full = f.size <= FULL_HEATMAP_ELEMENTS
        if not full:  # only what is in view (and a margin): long clips
            v0, v1 = self.state.view_range
            margin = VIEW_MARGIN * (v1 - v0)
            first = int(np.searchsorted(analysis.times, v0 - margin, side="left"))
            last = int(np.searchsorted(analysis.times, v1 + margin, side="right"))
            lo, hi = max(lo, first), min(hi, last)
        steered = None
        if hi > lo:
            with torch.inference_mode():
                block = torch.from_numpy(np.ascontiguousarray(f[lo:hi])).to(models.sae.device)
                steered = steer_features(models.sae, block, direction, float(params.alpha),
                                         torch.from_numpy(mask[lo:hi])).cpu().numpy()
        if full:
            out = np.array(f, dtype=np.float32, copy=True)
            if steered is not None:
                out[lo:hi] = steered
        else:
            if self._heat_buffer is None:
                self._heat_buffer = np.array(f, dtype=np.float32, copy=True)
            self._restore_heat_rows()
            out = self._heat_buffer
            if steered is not None:
                out[lo:hi] = steered
                self._heat_dirty = (lo, hi)
        self._heat_shown = True
        self.state.set_steered_features(out)

    def _restore_heat_rows(self) -> None:
        if self._heat_buffer is not None and self._heat_dirty is not None and self.state.analysis is not None:
            lo, hi = self._heat_dirty
            self._heat_buffer[lo:hi] = self.state.analysis.f[lo:hi]
            self._heat_dirty = None

    # ---- export --------------------------------------------------------------------------
    def _on_export_button(self) -> None:
        if self._export_job is not None:
            self.cancel_export()
        else:
            self.export_steered()

    def _ask_export_path(self) -> str | None:
        folder = getattr(self.settings, "last_directory", None) or str(Path.home())
        clip = Path(self.state.clip_path or "clip").stem
        params = self.params
        name = f"{clip}_{params.attribute}-{self._target_name(params)}_a{params.alpha:g}.wav".replace(" ", "")
        name = "".join(c if c.isalnum() or c in "._-#" else "_" for c in name)
        options = QFileDialog.Option(0)
        if QGuiApplication.platformName() in ("offscreen", "minimal"):
            options |= QFileDialog.Option.DontUseNativeDialog
        path, _ = QFileDialog.getSaveFileName(self, "Export steered audio", str(Path(folder) / name),
                                              "Audio (*.wav *.flac)", options=options)
        if path:
            if not Path(path).suffix:
                path += ".wav"
            try:
                self.settings.last_directory = str(Path(path).parent)
            except (AttributeError, ValueError):
                pass
        return path or None

    def _target_name(self, params: SteeringParams) -> str:
        names = self._class_names(params.attribute)
        return names[params.target] if 0 <= params.target < len(names) else str(params.target)

    def _export_sidecar(self, path: str, params: SteeringParams, renderer: SteeredRenderer) -> dict[str, Any]:
        models = self.state.models
        workspace = self.state.workspace or models.workspace
        return {
            "schema_version": 1,
            "input": self.state.clip_path or (self.state.analysis.source if self.state.analysis else ""),
            "output": path,
            "workspace": str(workspace.root),
            "sae": models.sae.cfg.name,
            "backend": workspace.backend_name,
            "attribute": params.attribute,
            "target": self._target_name(params),
            "target_class": int(params.target),
            "alpha": float(params.alpha),
            "alpha_unit": f"{ALPHA_UNIT:g} * sqrt(F) (alpha 10 = one feature-vector length)",
            "keep_residual": bool(params.keep_residual),
            "scope": "whole clip" if params.start is None and params.end is None else "selection",
            "start": params.start,
            "end": params.end,
            "sample_rate": renderer.sample_rate,
            "seconds": renderer.duration,
            "renderer": {"chunk_seconds": renderer.chunk_frames * renderer.hop / renderer.sample_rate,
                         "context_frames": list(renderer.context_frames),
                         "fade_seconds": renderer.fade / renderer.sample_rate},
        }

    def _on_export_progress(self, event: Progress) -> None:
        fraction = event.fraction
        self._export_note = f"exporting… {100 * fraction:.0f}%" if fraction is not None else "exporting…"
        self._show_status()

    def _on_export_finished(self, path: str) -> None:
        self._export_job = None
        self.export_button.setText("Export…")
        self._export_note = f"exported {Path(path).name}"
        self._show_status()
        self.state.status.emit(f"exported steered audio to {path}")
        self.export_finished.emit(path)

    def _on_export_ended(self, message: str) -> None:
        self._export_job = None
        self.export_button.setText("Export…")
        self._export_note = "export cancelled" if message == "cancelled" else ""
        if message != "cancelled":
            self._set_error(f"export failed: {message}")
        self._show_status()
        self.export_failed.emit(message)

    # ---- devices and status --------------------------------------------------------------
    def _refresh_devices(self) -> None:
        remembered = getattr(self.settings, "audio_device", None)
        with QSignalBlocker(self.device_combo):
            self.device_combo.clear()
            self.device_combo.addItem("System default", None)
            for device in list_output_devices():
                self.device_combo.addItem(device.label, device.name)
            index = self.device_combo.findData(remembered) if remembered else 0
            if index < 0:  # remembered but absent now: keep showing it (the player says it fell back)
                self.device_combo.addItem(f"{remembered} (not found)", remembered)
                index = self.device_combo.count() - 1
            self.device_combo.setCurrentIndex(index)

    def _on_device_picked(self, index: int) -> None:
        self.set_output_device(self.device_combo.itemData(index))

    def _set_error(self, message: str) -> None:
        self._error = message
        log.info("audition: %s", message)
        self._show_status()

    def status_text(self) -> str:
        """The status line: last change's latency, underruns, output (or why there is none)."""
        parts = []
        if self._unavailable:
            return self._unavailable
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

    def _show_status(self, text: str | None = None) -> None:
        text = text or self.status_text()
        if text != self.status_label.text():
            self.status_label.setText(text)
            self.status_changed.emit(text)


def _export_job(renderer: SteeredRenderer, latents: np.ndarray, params: SteeringParams, path: str,
                sidecar: dict[str, Any], *,
                progress: ProgressSink = null_progress, cancel: CancelToken | None = None) -> str:
    """Render and write the export (job thread): the audio file, then its JSON side-car."""
    from audiosae.audio import save_audio
    from audiosae.storage import atomic_write_json

    level: dict[str, Any] = {}
    audio = render_export(renderer, latents, params, progress=progress, cancel=cancel, level_out=level)
    if cancel is not None:
        cancel.raise_if_cancelled()
    save_audio(path, audio, renderer.sample_rate, limit=renderer.limit)
    sidecar = {**sidecar, "level": level}  # what the level rule did: gain, peaks, limited samples
    atomic_write_json(Path(path).with_suffix(Path(path).suffix + ".json"), sidecar)
    return path


__all__ = ["AlphaSpinBox", "AuditionPanel", "AuditionSession", "build_session", "render_export", "default_target",
           "ALPHA_MAX", "ALPHA_STEP"]
