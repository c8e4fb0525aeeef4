"""The audition's Qt-free part: the live session of one clip (renderer + player), the jobs the
audition dock starts (build the session, prepare a steering method, render an export) and the
numbers it shows (the level rule's report, the steered features of the heatmap).

Every path that steers goes through the core with one ``SteeringContext`` per (method,
attribute): the realtime renderer (what the dock plays), the export and the heatmap's f' (the
context's ``steer_features``).  The export is the workflow ``audiosae steer`` runs
(``workflows.steer.run_steer``: the same request, the same side-car writer), given the live
renderer so that a second renderer built from it renders the file as it was heard.  Methods
that need the workspace's class means are prepared in a job (``prepare_context``:
``steering.methods.prepare_method``, cached by the core in ``WORKSPACE/steer/``).  No
QtWidgets here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiosae.analysis import ClipAnalysis, LoadedModels
from audiosae.attributes import MIDI_MAX, MIDI_MIN
from audiosae.errors import AudioSAEError, JobCancelled
from audiosae.jobs import CancelToken, Progress, ProgressSink, null_progress
from audiosae.steering.realtime import RenderWorker, SteeredRenderer, SteeringParams
from audiosae.steering.methods import DEFAULT_METHOD, METHODS, SteeringContext, prepare_method
from audiosae.workflows import steer as steer_flow
from audiosae.workflows.steer import SteerRequest, render_as_heard
from audiosae.steering.playback import Player

PITCH_DEFAULT_OFFSET = 4        # semitones above the clip's median pitch (a major third: clearly audible)
BIN_DEFAULT_OFFSET = 3          # loudness / timbre bins above the clip's median class
DEFAULT_CHUNK_SECONDS = 0.25
STEER_METHODS = tuple(METHODS)  # the method combo's entries, the core's list
STEER_DEFAULT_METHOD = DEFAULT_METHOD


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
                  contexts: Any = (), progress: ProgressSink = null_progress,
                  cancel: CancelToken | None = None) -> AuditionSession:
    """Build the renderer (SAE features of the clip, once) and open the player: a job.

    ``keep``: a dict the new session is also stored in under ``generation``, so that the
    owner can close a session whose job result it never receives (a job cancelled at
    shutdown emits no result).  ``contexts``: steering contexts already prepared."""
    cancel = cancel or CancelToken()
    cancel.raise_if_cancelled()
    began = time.perf_counter()
    ready = {(c.method, c.attribute) for c in contexts}
    if (params.method, params.attribute) not in ready and needs_workspace(models, params.method):
        contexts = (*contexts, prepare_context(models, params.method, params.attribute, progress=progress,
                                               cancel=cancel))
    progress(Progress("audition", 0, 2, "computing the clip's SAE features"))
    renderer = SteeredRenderer(models.backend, models.sae, models.probes, analysis.wave, params,
                               latents=analysis.latents, chunk_seconds=chunk_seconds, cancel=cancel,
                               contexts=contexts)
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


def needs_workspace(models: LoadedModels, method: str) -> bool:
    """Whether ``method`` needs the class means of the workspace (a job) for these models."""
    from audiosae.steering.methods import CORPUS_METHODS, split_method

    return split_method(method)[0] in CORPUS_METHODS or not models.sae.cfg.rmsnorm


def prepare_context(models: LoadedModels, method: str, attribute: str, *, progress: ProgressSink = null_progress,
                    cancel: CancelToken | None = None) -> SteeringContext:
    """``steering.methods.prepare_method`` for the studio's models (a job: the class means of
    the SAE features over the training frames are computed once, then cached by the core)."""
    progress(Progress("steering method", 0, 1, f"preparing {method} for {attribute} (class means)"))
    context = prepare_method(models.workspace, models.sae.cfg.name, models.sae, models.probes, attribute, method,
                             cancel=cancel)
    progress(Progress("steering method", 1, 1, "ready"))
    return context


render_export = render_as_heard   # the export's rendering: the core's (``workflows.steer``)


def steer_request(*, path: str, source: str | None, models: LoadedModels, workspace: Any, params: SteeringParams,
                  target_name: str, limit: bool = True) -> SteerRequest:
    """The audition's choices as the ``SteerRequest`` ``audiosae steer`` builds from its flags:
    the target by its class name (the index when the name does not read back as that class),
    the SAE and device the models were loaded with."""
    spec = models.spec
    try:
        target = target_name if spec.parse_target(params.attribute, target_name) == int(params.target) \
            else str(int(params.target))
    except AudioSAEError:
        target = str(int(params.target))
    backend = models.backend
    return SteerRequest(workspace=Path(workspace.root), audio=source or None, attribute=params.attribute,
                        target=target, out=Path(path), alpha=float(params.alpha), method=params.method,
                        sae=models.sae.cfg.name, start=params.start, end=params.end,
                        keep_residual=bool(params.keep_residual), limit=bool(limit),
                        device=str(backend.device) if backend is not None else "auto")


def export_job(request: SteerRequest, renderer: SteeredRenderer, latents: np.ndarray, workspace: Any = None, *,
               progress: ProgressSink = null_progress, cancel: CancelToken | None = None) -> str:
    """Render and write the export (job thread) through the workflow ``audiosae steer`` runs
    (``workflows.steer.run_steer``), rendered as ``renderer`` plays it; returns the path."""
    steer_flow.run_steer(request, live=renderer, latents=latents, workspace=workspace, progress=progress,
                         cancel=cancel)
    return str(request.out)


def steered_rows(context: SteeringContext, f: np.ndarray, target: int, alpha: float, mask: np.ndarray) -> np.ndarray:
    """The heatmap's f' for rows ``f`` [n, F] (``mask``: which of them are steered), through the
    method's ``steer_features``: what the renderer decodes."""
    device = next(context.sae.parameters()).device
    with torch.inference_mode():
        block = torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)).to(device)
        return context.steer_features(block, int(target), float(alpha),
                                      torch.from_numpy(np.asarray(mask, bool))).cpu().numpy()


def format_level(summary: dict[str, Any] | None) -> str:
    """One line for the level label under alpha, from the renderer's ``level_summary`` (the
    core's ``LevelReport``s merged over the chunks rendered for the current settings)."""
    if not summary or not summary.get("chunks"):
        return "level: —"
    if summary.get("rule") == "raw":
        head = "level: raw (no limit)"
    else:
        gain = summary.get("gain_db")
        head = "level: gain " + (f"{gain:+.1f} dB" if gain is not None and math.isfinite(gain) else "—")

    def dbfs(value: Any) -> str:
        return "−∞" if value is None else f"{value:+.1f}"

    limited = int(summary.get("limited_samples") or 0)
    fraction = float(summary.get("limited_fraction") or 0.0)
    # Two lines on purpose: a narrow dock would otherwise wrap "dBFS" alone onto the second.
    return (f"{head} · peak {dbfs(summary.get('peak_before_dbfs'))} → {dbfs(summary.get('peak_after_dbfs'))} dBFS\n"
            f"limited {limited} samples ({100 * fraction:.2f} %)")


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


__all__ = ["AuditionSession", "DEFAULT_CHUNK_SECONDS", "STEER_DEFAULT_METHOD", "STEER_METHODS", "build_session",
           "default_target", "export_job", "format_level", "needs_workspace", "prepare_context", "render_export",
           "steer_request", "steered_rows"]
