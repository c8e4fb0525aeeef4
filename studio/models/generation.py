"""``GenerationModel``: the state of the DiffRhythm generation view (QtCore only).

It holds the trace shown (or the live states of a run under way), the sampler state chosen, the
display data derived from the trace (the feature stack and its fixed colour levels), the loaded
models and backend, and the decoded states' cache; it starts the view's jobs through
``JobSlot``s.  A run is ``audiosae.workflows.trace.run_trace``, the function ``audiosae trace``
calls, with a ``TraceRequest`` built from the form's values.

While a run is under way each state arrives through ``run_trace``'s ``on_step`` callback, which
runs in the worker thread: it only emits a queued signal, and the GUI thread appends the state
(``state_added``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal

from audiosae.errors import AudioSAEError, WorkspaceError
from audiosae.generation import conditioning as cond
from audiosae.jobs import CancelToken, Progress, ProgressSink, null_progress
from audiosae.workflows import trace as trace_flow

from .job_slot import JobSlot

SOURCE_LABELS = {"x_t": "X_t", "x1": "x̂1"}
DECODE_CACHE_LIMIT = 16   # decoded states kept (95 s of stereo float32 is ~33 MB each)
LATENT_FRAME_RATE = cond.LATENT_SAMPLE_RATE / cond.LATENT_HOP   # before a trace says otherwise
INSTALL_HINT = cond.INSTALL_HINT
DIFFRHYTHM_GITHUB = cond.DIFFRHYTHM_GITHUB


def muq_available() -> bool:
    """Whether MuQ-MuLan (package ``muq``) can be imported: text prompts and style audio need it."""
    return importlib.util.find_spec("muq") is not None


def download_note() -> str:
    """What Run does without a weights file: download the released base model, size first."""
    from audiosae.generation.diffrhythm import RELEASED_CHECKPOINTS

    repo, filename, size = RELEASED_CHECKPOINTS["base"]
    size_text = f"{size / 1e9:.1f} GB" if size else "size unknown"
    return f"empty: downloads {repo}/{filename} ({size_text}) into the Hugging Face cache on the first run"


# ---- jobs (worker thread) ---------------------------------------------------------------------------
def load_trace_job(path: str, *, progress: ProgressSink = null_progress, cancel: CancelToken | None = None) -> Any:
    from audiosae.generation import trace as tr

    progress(Progress("open", 0, 1, f"reading {path}"))
    return tr.load_trace(path)


def save_trace_job(trace: Any, path: str, *, progress: ProgressSink = null_progress,
                   cancel: CancelToken | None = None) -> str:
    from audiosae.generation import trace as tr

    progress(Progress("save", 0, 1, f"writing {path}"))
    return str(tr.save_trace(trace, path))


def decode_job(trace: Any, backend: Any, index: int, which: str, device: str, *,
               progress: ProgressSink = null_progress, cancel: CancelToken | None = None
               ) -> tuple[np.ndarray, int, Any]:
    """Decode state ``index`` (``which`` = "x_t" / "x1"); the backend is loaded from the trace's
    workspace when none is given.  Returns ``(audio [C, N], sample_rate, backend)``."""
    from audiosae.generation import trace as tr

    if backend is None:
        from audiosae.workspace import Workspace

        root = trace.meta.get("workspace") or ""
        if not root or not Path(root).is_dir():
            raise WorkspaceError(f"the trace's workspace {root!r} is not available: open it to decode states")
        progress(Progress("decode", 0, 1, "loading the diffrhythm-vae backend"))
        backend = Workspace.open(root).backend(None if device == "auto" else device)
    cancel = cancel or CancelToken()
    cancel.raise_if_cancelled()
    progress(Progress("decode", 0, 1, f"decoding {SOURCE_LABELS[which]} of state {index}"))
    audio = tr.decode_state(trace, backend, index, which)
    return np.asarray(audio, dtype=np.float32), int(backend.sample_rate), backend


# ---- display data (numpy) ---------------------------------------------------------------------------
def feature_stack(summary: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(values [S, T, R], row feature ids [R])`` to show: the full ``f`` when kept (features
    ordered like ``top_index``: highest per-state mean first, the rest after), else ``top``."""
    if summary.full is not None:
        order = np.argsort(-np.asarray(summary.mean, dtype=np.float64).max(axis=0), kind="stable").astype(np.int64)
        return summary.full[:, :, order], order
    return summary.top, np.asarray(summary.top_index, dtype=np.int64)


def step_image(stack: np.ndarray, step: int) -> np.ndarray:
    """Row-major float32 image ``[R, T]`` (rows = features) of one state, NaN-free."""
    image = np.ascontiguousarray(np.asarray(stack[step], dtype=np.float32).T)
    return np.nan_to_num(image, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


@dataclass
class StepState:
    """What the view draws for one sampler state."""

    index: int
    steps: int                           # states of the run (32)
    t: float
    l0: float
    distributions: dict[str, np.ndarray]  # x_t's probe distributions per attribute [T, K]
    image: np.ndarray | None              # the feature image [R, T] (a finished trace only)

    @property
    def lane_classes(self) -> dict[str, np.ndarray]:
        return {a: np.asarray(d, dtype=np.float32).argmax(-1) for a, d in self.distributions.items()}


class GenerationModel(QObject):
    """A traced generation to run, watch and scrub (see the module docstring)."""

    run_started = Signal(object)        # the TraceRequest (before its job starts)
    state_added = Signal(object)        # a live TraceStep was appended (GUI thread)
    run_ended = Signal(str)             # "finished" | "cancelled" | "failed"
    trace_shown = Signal(object)        # a finished or opened trace is now the model's
    trace_saved = Signal(str)           # folder written
    audio_ready = Signal(object, int, int, str)   # audio [C, N], rate, state index, which
    status = Signal(str, bool)          # text, error
    _live_step = Signal(object)         # worker thread -> GUI thread (queued)

    def __init__(self, state: Any, runner: Any, settings: Any, parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.runner, self.settings = state, runner, settings
        self.trace: Any = None
        self.step = 0
        self.live: list[dict[str, np.ndarray]] = []       # x_t distributions per live state
        self.live_l0: list[float] = []
        self.live_steps = 0
        self.stack: np.ndarray | None = None
        self.row_features = np.zeros(0, dtype=np.int64)
        self.levels = (0.0, 1.0)
        self.models: Any = None
        self.backend: Any = None
        self.decoded: dict[tuple[str, int, str], tuple[np.ndarray, int]] = {}
        self.closed = False
        self.runs = JobSlot(runner, "generation")
        self.opens = JobSlot(runner, "open trace")
        self.saves = JobSlot(runner, "save trace")
        self.decodes = JobSlot(runner, "decode state")
        self._live_step.connect(self._on_live_step, Qt.ConnectionType.QueuedConnection)

    # ---- what is shown --------------------------------------------------------------------------
    @property
    def available_steps(self) -> int:
        """States that can be shown now (all of a trace, or those that arrived so far)."""
        return self.trace.steps if self.trace is not None else len(self.live)

    def clamp(self, index: int) -> int:
        return int(min(max(int(index), 0), self.available_steps - 1))

    def state_at(self, index: int) -> StepState:
        """State ``index`` of the trace (with its feature image) or of the live states."""
        if self.trace is not None:
            trace = self.trace
            dists = {a: trace.distributions["x_t"][a][index] for a in trace.attributes}
            image = step_image(self.stack, index) if self.stack is not None else None
            return StepState(index, trace.steps, float(trace.t_grid[index]),
                             float(np.mean(trace.features["x_t"].l0[index])), dists, image)
        steps = self.live_steps
        return StepState(index, steps, index / max(steps - 1, 1), self.live_l0[index], self.live[index], None)

    def set_trace(self, trace: Any) -> None:
        """Make a finished (or opened) trace the one shown, with its feature stack (the view sets
        ``levels``, one pair for every state, when it draws it)."""
        self.trace = trace
        self.live, self.live_l0, self.live_steps = [], [], 0
        self.decoded = {k: v for k, v in self.decoded.items() if k[0] == trace.meta.get("trace_id")}
        self.stack, self.row_features = feature_stack(trace.features["x_t"])
        self.trace_shown.emit(trace)

    # ---- running ----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.runs.running

    def device(self) -> str:
        return str(getattr(self.settings, "compute_device", "auto") or "auto")

    def models_for_run(self) -> tuple[Any, Any]:
        """``(models, workspace)`` of the explorer: its models when they are a diffrhythm-vae
        workspace's, else ``(None, workspace)``; another backend's workspace is refused."""
        models = getattr(self.state, "models", None)
        workspace = getattr(self.state, "workspace", None)
        backend = getattr(getattr(models, "workspace", None), "backend_name", None)
        if models is not None and backend == trace_flow.REQUIRED_BACKEND:
            return models, models.workspace
        if workspace is not None and getattr(workspace, "backend_name", None) != trace_flow.REQUIRED_BACKEND:
            raise WorkspaceError(f"{workspace.root}: tracing DiffRhythm needs a workspace built with the "
                                 f"diffrhythm-vae backend; this one uses {workspace.backend_name!r}")
        return None, workspace

    def request(self, models: Any, workspace: Any, **values: Any) -> trace_flow.TraceRequest:
        """The ``TraceRequest`` for the form's ``values`` on this workspace (the explorer's SAE
        when its models are used) and the studio's compute device."""
        sae = getattr(getattr(getattr(models, "sae", None), "cfg", None), "name", None) if models is not None else None
        return trace_flow.TraceRequest(workspace=Path(workspace.root), sae=sae, device=self.device(), **values)

    def run(self, **values: Any) -> Any:
        """Start a traced generation (``values``: ``TraceRequest`` fields from the form).  Returns
        the ``JobHandle``, or None when it cannot start (the reason goes to ``status``)."""
        if self.running or self.closed:
            return None
        try:
            models, workspace = self.models_for_run()
            if models is None and workspace is None:
                raise WorkspaceError("open a workspace built with the diffrhythm-vae backend first")
            request = self.request(models, workspace, **values)
        except AudioSAEError as exc:
            self.status.emit(str(exc), True)
            self.run_ended.emit("failed")
            return None
        self.trace = None
        self.live, self.live_l0, self.live_steps = [], [], request.steps
        self.stack = None
        self.run_started.emit(request)
        handle = self.runs.start(trace_flow.run_trace, request, models=models, on_step=self._live_step.emit,
                                 on_progress=self._on_progress, on_finished=self._on_run_finished,
                                 on_failed=self._on_run_failed, on_cancelled=self._on_run_cancelled)
        self.status.emit("starting…", False)
        return handle

    def cancel(self) -> None:
        """Cancel the running generation (it stops after the current state; its outcome is reported)."""
        if self.runs.handle is not None:
            self.runs.handle.cancel()
            self.status.emit("cancelling…", False)

    def live_class_names(self, step: Any, current: dict[str, list[str]]) -> dict[str, list[str]]:
        """Class names for a live run's lanes: the probes', else the current ones when they fit, else indices."""
        names = {a: list(current[a]) if len(current.get(a, [])) == d.shape[-1] else [str(k) for k in range(d.shape[-1])]
                 for a, d in step.distributions["x_t"].items()}
        probes = getattr(getattr(self.state, "models", None), "probes", None)
        if probes is not None:
            try:
                names = {a: list(probes.class_names[a]) for a in names}
            except (KeyError, AttributeError):
                pass
        return names

    def _on_live_step(self, step: Any) -> None:
        if self.runs.handle is None or self.trace is not None:
            return   # a late state of a run that has ended
        self.live_steps = step.steps
        self.live.append({a: np.array(d, dtype=np.float32) for a, d in step.distributions["x_t"].items()})
        self.live_l0.append(float(step.mean_l0.get("x_t", 0.0)))
        self.state_added.emit(step)

    def _on_progress(self, event: Progress) -> None:
        self.status.emit(event.message or event.stage, False)

    def _on_run_finished(self, result: trace_flow.TraceResult) -> None:
        self.models = result.models
        self.backend = getattr(result.models, "backend", None)
        self.set_trace(result.trace)
        notes = result.trace.meta.get("warnings") or []
        if notes:
            self.status.emit("finished; note: " + " ".join(notes), False)
        self.run_ended.emit("finished")

    def _on_run_failed(self, message: str) -> None:
        self.status.emit(message, True)
        self.run_ended.emit("failed")

    def _on_run_cancelled(self) -> None:
        self.status.emit(f"cancelled after {len(self.live)} state(s); the states that arrived stay visible", False)
        self.run_ended.emit("cancelled")

    # ---- files ----------------------------------------------------------------------------------
    def open_trace(self, path: str | Path) -> Any:
        """Read a trace folder in a job and show it; returns the ``JobHandle``."""
        return self.opens.start(load_trace_job, str(path), on_finished=self._on_opened,
                                on_failed=lambda message: self.status.emit(message, True))

    def _on_opened(self, trace: Any) -> None:
        if self.models is not None and str(getattr(self.models.workspace, "root", "")) != trace.meta.get("workspace"):
            self.backend = None   # another workspace's backend would decode another latent space
        self.set_trace(trace)

    def save_trace(self, path: str | Path) -> Any:
        """Write the shown trace to folder ``path`` in a job; returns the ``JobHandle`` (None: no trace)."""
        if self.trace is None:
            self.status.emit("no finished trace to save", True)
            return None
        return self.saves.start(save_trace_job, self.trace, str(path), on_finished=self._on_saved,
                                on_failed=lambda message: self.status.emit(message, True))

    def _on_saved(self, folder: str) -> None:
        self.status.emit(f"saved the trace to {folder}", False)
        self.trace_saved.emit(folder)

    # ---- decoding -------------------------------------------------------------------------------
    def decode(self, index: int, which: str) -> Any:
        """Decode state ``index`` as ``which`` ("x_t" / "x1"); ``audio_ready`` brings it.  A cached
        state is announced at once (returns None); otherwise returns the decode ``JobHandle``."""
        if self.trace is None:
            self.status.emit("playback needs a finished or opened trace", True)
            return None
        key = (str(self.trace.meta.get("trace_id")), int(index), which)
        if key in self.decoded:
            audio, rate = self.decoded[key]
            self.audio_ready.emit(audio, rate, key[1], which)
            return None
        return self.decodes.start(decode_job, self.trace, self.backend, key[1], which, self.device(),
                                  on_progress=self._on_progress,
                                  on_finished=lambda result, key=key: self._on_decoded(key, result),
                                  on_failed=lambda message: self.status.emit(message, True))

    def _on_decoded(self, key: tuple[str, int, str], result: tuple[np.ndarray, int, Any]) -> None:
        audio, rate, backend = result
        self.backend = backend
        if len(self.decoded) >= DECODE_CACHE_LIMIT:
            self.decoded.pop(next(iter(self.decoded)))
        self.decoded[key] = (audio, rate)
        if self.trace is not None and str(self.trace.meta.get("trace_id")) == key[0] and not self.closed:
            self.audio_ready.emit(audio, rate, key[1], key[2])

    # ---- the end --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel the jobs and wait for them (idempotent)."""
        if self.closed:
            return
        self.closed = True
        slots = (self.runs, self.opens, self.saves, self.decodes)
        jobs = [s.handle for s in slots if s.handle is not None]
        for job in jobs:
            job.cancel()
        for job in jobs:
            job.wait(30000)

