"""The training wizard's view-models: what the user chose, and the jobs that follow from it.

``WizardModel`` holds one model per step that has state or jobs: ``AudioModel`` (step 1: files,
header scans, the workspace folder), ``PreviewModel`` (step 3: the attribute preview),
``TrainingModel`` (step 4: the SAE grid, its settings resolved by
``audiosae.workflows.train.train_settings`` exactly as ``audiosae train`` resolves its options,
and the time estimate), ``RunModel`` (step 5: ``build_and_train``, Stop and Resume).  The
backend and CREPE choices of steps 2 and 3 are plain attributes.  Views in
``studio.widgets.wizard`` show these models; no QtWidgets here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import QObject, QTimer, Signal

from audiosae import defaults as D
from audiosae.attribute_spec import ATTRIBUTES
from audiosae.audio import AudioInfo
from audiosae.codecs import BackendSpec
from audiosae.corpus import Source, builtin_sources
from audiosae.errors import AudioInputError, AudioSAEError
from audiosae.workflows import train as train_flow
from audiosae.workflows.audio_plan import (AttributePreview, AudioChoice, ScanOutcome, WorkspaceStatus,
                                           inspect_workspace_folder, preview_attributes, scan_paths)
from audiosae.workflows.train import RunPlan, build_and_train
from audiosae.workflows.train_plan import Calibration, Estimate, calibrate, estimate_run

from ..workers import JobHandle, JobRunner
from .job_slot import JobSlot

WIDTH_CHOICES = (4, 8, 16, 32, 64, 128, 256)     # the paper's expansion range
ARCHITECTURE_CHOICES = D.ARCHITECTURE_CHOICES
SIDE_JOB_DELAY_MS = 400   # settle time before a preview/estimate starts: clicking through or typing
                          # a lambda list does not launch work that is cancelled a moment later
PROBE_KEY = 0             # the probe calibration's slot in the per-width cache


def parse_numbers(text: str, kind: type, what: str, example: str) -> list:
    """``"0.005, 0.02"`` -> ``[0.005, 0.02]`` (commas, semicolons or spaces; duplicates dropped).
    Raises ``ValueError`` with a message for the user."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    if not parts:
        raise ValueError(f"Enter at least one {what} value.")
    values: list = []
    for p in parts:
        try:
            v = kind(p)
        except ValueError:
            raise ValueError(f"'{p.strip()}' is not a {'whole ' if kind is int else ''}number; enter {what} "
                             f"values like {example}") from None
        if not math.isfinite(v) or v < 0 or (kind is int and v < 1):
            raise ValueError(f"{what} must be a number >= {1 if kind is int else 0}, got {p.strip()}")
        if v not in values:
            values.append(v)
    return values


def csv(values: Sequence[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


# ---- step 1 ------------------------------------------------------------------------------------
class AudioModel(QObject):
    """The audio to learn from (the user's files or a built-in corpus) and the workspace folder."""

    changed = Signal()              # files, problems, the builtin choice or the folder changed
    scan_progress = Signal(object)  # Progress of the header scan
    scan_done = Signal()

    def __init__(self, runner: JobRunner, parent: QObject | None = None):
        super().__init__(parent)
        self._scan = JobSlot(runner, "wizard: scan audio")
        self._queue: list[str] = []
        self.files: dict[str, AudioInfo] = {}
        self.problems: dict[str, AudioInputError] = {}
        self.scan_error = ""
        self.version = 0                # counts changes of ``files`` / ``problems``
        self._scanning = False
        self.builtin: str | None = None
        self.minutes = D.WIZARD_BUILTIN_MINUTES
        self.workspace_text = ""
        self.workspace_status = WorkspaceStatus("empty", "")

    @property
    def scanning(self) -> bool:
        """True while headers are being read (``scan_done`` fires when it ends)."""
        return self._scanning or bool(self._queue)

    def set_builtin(self, name: str | None, minutes: float) -> None:
        self.builtin, self.minutes = name, float(minutes)
        self.changed.emit()

    def set_workspace(self, text: str) -> None:
        self.workspace_text = text
        self.workspace_status = inspect_workspace_folder(text)
        self.changed.emit()

    def add_paths(self, paths: Sequence[str | Path]) -> None:
        self._queue.extend(str(p) for p in paths)
        if not self._scanning:
            self._start_scan()
        self.changed.emit()

    def clear(self) -> None:
        self._scan.cancel()
        self._scanning = False
        self._queue.clear()
        self.files.clear()
        self.problems.clear()
        self.scan_error = ""
        self.version += 1
        self.changed.emit()

    def remove(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.files.pop(key, None)
        self.version += 1
        self.changed.emit()

    def usable_files(self) -> list[str]:
        return [info.path for info in self.files.values()]

    def skipped_problems(self) -> list[str]:
        """One line per skipped file or folder: the path and its problem."""
        return [str(p) for p in self.problems.values()]

    def builtin_sources(self, name: str | None = None) -> list[Source]:
        try:
            return builtin_sources(name or self.builtin, minutes=self.minutes)
        except AudioSAEError:
            return []

    def audio_choice(self) -> AudioChoice:
        if self.builtin:
            sources = self.builtin_sources()
            return AudioChoice(builtin=self.builtin, minutes=self.minutes,
                               seconds=sum(s.seconds for s in sources), n_sources=len(sources))
        files = list(self.files.values())
        return AudioChoice(files=[f.path for f in files], problems=list(self.problems.values()),
                           seconds=sum(f.seconds for f in files), n_sources=len(files))

    def problem(self, midi_reason: str = "") -> str:
        """Why Next is disabled ("" when the step is complete)."""
        ws = self.workspace_status
        if ws.kind in ("empty", "invalid"):
            return ws.message
        if self.builtin:
            if self.builtin == "midi" and midi_reason:
                return midi_reason
            if len(self.builtin_sources()) < 2:
                return "Choose a longer corpus: at least two sources are needed (one goes to validation)."
            return ""
        if self.scanning:
            return "Reading audio headers\u2026"
        n = len(self.files)
        if n == 0 and ws.kind == "existing" and ws.corpus_complete:
            return ""  # train on the workspace's own corpus
        if n == 0:
            return self.scan_error or "Add audio files or folders, or choose a built-in corpus."
        if n < 2 and not (ws.kind == "existing" and ws.sources_built >= 1):
            return "Add at least two audio files: whole files are split between training and validation."
        return ""

    def cancel_jobs(self) -> None:
        if self._scanning:
            self._scan.cancel()
            self._scanning = False
            self._queue.clear()
            self.changed.emit()

    def _start_scan(self) -> None:
        paths, self._queue = self._queue, []
        self._scanning = True
        self._scan.start(scan_paths, paths, on_progress=self.scan_progress.emit, on_finished=self._on_finished,
                         on_failed=self._on_failed, on_cancelled=self._after_scan)

    def _on_finished(self, outcome: ScanOutcome) -> None:
        for info in outcome.files:
            key = str(Path(info.path).resolve())
            self.files.setdefault(key, info)
            self.problems.pop(str(info.path), None)
        for problem in outcome.problems:
            self.problems[str(getattr(problem, "path", problem))] = problem
        self.scan_error = "" if outcome.files else "No usable audio found in what was added."
        self.version += 1
        self._after_scan()

    def _on_failed(self, message: str) -> None:
        self.scan_error = message
        self._after_scan()

    def _after_scan(self) -> None:
        self._scanning = False
        if self._queue:
            self._start_scan()
            return
        self.changed.emit()
        self.scan_done.emit()


# ---- step 3 ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreviewRequest:
    audio: AudioChoice
    sample_rate: int
    hop_length: int
    crepe_model: str
    device: str
    workspace: str | None

    def key(self) -> tuple:
        return (self.audio.key(), self.sample_rate, self.hop_length, self.crepe_model, self.device, self.workspace)


class PreviewModel(QObject):
    """The attribute preview of step 3: one job at a time, after a settle delay."""

    started = Signal()
    progress = Signal(object)
    ready = Signal(object)        # AttributePreview
    failed = Signal(str)
    stopped = Signal()            # cancelled, or nothing to preview
    due = Signal()                # the settle delay is over: the view answers with ``start(request)``

    def __init__(self, runner: JobRunner, parent: QObject | None = None):
        super().__init__(parent)
        self._job = JobSlot(runner, "wizard: attribute preview")
        self._delay = QTimer(self)
        self._delay.setSingleShot(True)
        self._delay.setInterval(SIDE_JOB_DELAY_MS)
        self._delay.timeout.connect(self.due.emit)
        self._key: tuple | None = None
        self.preview: AttributePreview | None = None

    def schedule(self) -> None:
        self._delay.start()

    def start(self, request: PreviewRequest) -> str:
        """Start the preview unless the same one is done or running: "started", "same" or "empty"."""
        key = request.key()
        if key == self._key and (self.preview is not None or self._job.running):
            return "same"
        self._key = key
        if request.audio.empty and not request.workspace:
            return "empty"
        self.started.emit()
        self._job.start(preview_attributes, request.audio, request.sample_rate, request.hop_length,
                        request.crepe_model, request.device, request.workspace, on_progress=self.progress.emit,
                        on_finished=self._on_finished, on_failed=self._on_failed, on_cancelled=self.stopped.emit)
        return "started"

    def cancel(self) -> None:
        self._delay.stop()
        self._job.cancel()
        self.stopped.emit()

    def _on_failed(self, message: str) -> None:
        self._key = None
        self.failed.emit(message)

    def _on_finished(self, preview: AttributePreview) -> None:
        self.preview = preview
        self.ready.emit(preview)


# ---- step 4 ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EstimateContext:
    """What the estimate depends on besides the grid (from steps 1-3)."""

    audio: AudioChoice
    spec: BackendSpec
    options: tuple                     # sorted backend option items
    device: str
    crepe_model: str
    status: WorkspaceStatus

    def extraction_key(self) -> tuple:
        first = self.audio.files[:1] if self.audio.files else (self.audio.builtin,)
        return (self.spec.name, self.options, self.device, self.crepe_model, tuple(first))

    @property
    def may_load_backend(self) -> bool:
        """Timing may build the backend only when that downloads nothing."""
        return (self.spec.download_bytes is None or bool(dict(self.options).get("weights"))
                or (self.status.kind == "existing" and self.status.sources_built > 0))

    @property
    def corpus(self) -> tuple[float, float, bool]:
        """(seconds of audio, frame rate, whether extraction is still to do)."""
        seconds, needs_extraction = self.audio.seconds, not self.audio.empty
        if self.audio.empty and self.status.kind == "existing":
            seconds = self.status.corpus_seconds
        rate = self.status.frame_rate if self.status.kind == "existing" and self.status.frame_rate \
            else self.spec.frame_rate
        return float(seconds), float(rate), needs_extraction


class TrainingModel(QObject):
    """The SAE grid and its budget (step 4) and the time estimate of the run.

    Every value starts at ``audiosae train``'s default and ``train_settings()`` resolves them
    with the CLI's function, so the same choices give equal ``TrainSettings``.
    """

    changed = Signal()
    estimate_started = Signal()
    estimate_ready = Signal(object)    # Estimate
    estimate_failed = Signal(str)
    estimate_due = Signal()            # the settle delay is over: the view answers with ``request_estimate``

    def __init__(self, runner: JobRunner, parent: QObject | None = None):
        super().__init__(parent)
        self.widths: list[int] = list(D.DEFAULT_EXPANSIONS)
        self.architecture = D.DEFAULT_ARCHITECTURE
        self.l1_text = csv(train_flow.default_l1s(self.architecture))
        self.k_text = csv(D.DEFAULT_KS)
        self.rmsnorm = True                # off = ``--no-rmsnorm``
        self.epochs = 0                    # 0 = the default budget (``--epochs`` not given)
        self.frames = 0                    # 0 = the default budget (``--frames`` not given)
        self.batch_size = D.SAE_BATCH_SIZE
        self.extra_probes: list[str] = []  # registered attributes probed besides the paper's three
        self._job = JobSlot(runner, "wizard: time estimate")
        self._delay = QTimer(self)
        self._delay.setSingleShot(True)
        self._delay.setInterval(SIDE_JOB_DELAY_MS)
        self._delay.timeout.connect(self.estimate_due.emit)
        self._extraction_cache: dict[tuple, Calibration] = {}
        self._sae_cache: dict[tuple, dict[int, float]] = {}
        self._dirty: EstimateContext | None = None
        self.estimate: Estimate | None = None
        self.context: EstimateContext | None = None

    # ---- the grid ------------------------------------------------------------------------------
    def update(self, **values: Any) -> None:
        """Set any of the grid's values (``widths``, ``l1_text``, ``architecture``, ...)."""
        arch = values.get("architecture")
        if arch is not None and arch != self.architecture and "l1_text" not in values:
            # the lambda list follows the architecture's default until the user edits it
            if self.l1_text.strip() == csv(train_flow.default_l1s(self.architecture)):
                values["l1_text"] = csv(train_flow.default_l1s(arch))
        for name, value in values.items():
            if not hasattr(self, name) or name.startswith("_"):
                raise AttributeError(name)
            setattr(self, name, list(value) if name in ("widths", "extra_probes") else value)
        self.changed.emit()

    @property
    def uses_k(self) -> bool:
        return train_flow.uses_k(self.architecture)

    def l1s(self) -> list[float]:
        """The parsed λ list (raises ``ValueError`` with a message when it cannot be read)."""
        return parse_numbers(self.l1_text, float, "\u03bb", "0.005, 0.02")

    def ks(self) -> list[int]:
        return parse_numbers(self.k_text, int, "k", "8, 16, 32")

    def problem(self) -> str:
        if not self.widths:
            return "Tick at least one width."
        try:
            self.ks() if self.uses_k else self.l1s()
        except ValueError as exc:
            return str(exc)
        return ""

    def n_configs(self) -> int:
        return len(self.widths) * (len(self.ks()) if self.uses_k else len(self.l1s()))

    def train_settings(self) -> Any:
        """``TrainSettings`` through the CLI's own resolution (``workflows.train.train_settings``)."""
        return train_flow.train_settings(
            expansions=self.widths, l1s=None if self.uses_k else self.l1s(), architecture=self.architecture,
            ks=self.ks() if self.uses_k else None, rmsnorm=None if self.rmsnorm else False,
            epochs=self.epochs or None, frames=None if self.epochs else (self.frames or None),
            batch_size=self.batch_size, **self.probe_options())

    def probe_options(self) -> dict[str, Any]:
        """As ``audiosae train --attributes pitch,loudness,timbre,<extra>``; none: train's default."""
        if not self.extra_probes:
            return {}
        return {"probe_attributes": tuple(dict.fromkeys((*ATTRIBUTES, *self.extra_probes)))}

    # ---- the estimate --------------------------------------------------------------------------
    def schedule_estimate(self) -> None:
        self._delay.start()

    def _sae_key(self, context: EstimateContext) -> tuple:
        k = self.ks()[0] if self.uses_k else None
        return (context.spec.latent_dim, context.device, self.architecture, self.rmsnorm, k)

    def request_estimate(self, context: EstimateContext) -> None:
        """Show the estimate for ``context``: from the caches, or after a calibration job."""
        if self.problem():
            return
        self.context = context
        ext_key, sae_key = context.extraction_key(), self._sae_key(context)
        extraction = self._extraction_cache.get(ext_key)
        cached = self._sae_cache.get(sae_key, {})
        if extraction is not None and all(w in cached for w in (*self.widths, PROBE_KEY)):
            self._show(context, extraction, cached)
            return
        if self._job.running:
            self._dirty = context  # recompute when the running calibration ends
            return
        if extraction is not None:
            extraction = replace(extraction, sae_per_frame={w: v for w, v in cached.items() if w != PROBE_KEY},
                                 probe_per_frame=cached.get(PROBE_KEY))
        self.estimate_started.emit()
        self._job.start(calibrate, context.audio, context.spec.name, dict(context.options), context.device,
                        context.crepe_model, list(self.widths), extraction=extraction,
                        may_load_backend=context.may_load_backend, architecture=self.architecture,
                        rmsnorm=None if self.rmsnorm else False, k=sae_key[-1],
                        on_finished=lambda cal: self._on_calibrated(context, ext_key, sae_key, cal),
                        on_failed=self._on_failed, on_cancelled=lambda: None)

    def cancel_jobs(self) -> None:
        self._delay.stop()
        self._job.cancel()
        self._dirty = None

    def _on_calibrated(self, context: EstimateContext, ext_key: tuple, sae_key: tuple, cal: Calibration) -> None:
        self._extraction_cache[ext_key] = Calibration(cal.extraction_per_second, cal.encode_timed, cal.note,
                                                      cal.d_in)
        self._sae_cache.setdefault(sae_key, {}).update(cal.sae_per_frame)
        if cal.probe_per_frame is not None:
            self._sae_cache[sae_key][PROBE_KEY] = cal.probe_per_frame
        if self._dirty is not None:
            context, self._dirty = self._dirty, None
            self.request_estimate(context)
            return
        self._show(context, self._extraction_cache[ext_key], self._sae_cache[sae_key])

    def _on_failed(self, message: str) -> None:
        self._dirty = None
        self.estimate = None
        self.estimate_failed.emit(message)

    def _show(self, context: EstimateContext, extraction: Calibration, per_width: dict[int, float]) -> None:
        seconds, rate, needs_extraction = context.corpus
        cal = Calibration(extraction.extraction_per_second, extraction.encode_timed, extraction.note,
                          extraction.d_in, {w: v for w, v in per_width.items() if w != PROBE_KEY},
                          per_width.get(PROBE_KEY))
        try:
            self.estimate = estimate_run(cal, seconds, rate, self.train_settings(), extraction_needed=needs_extraction)
        except AudioSAEError as exc:   # e.g. a k larger than a width's features
            self._on_failed(str(exc))
            return
        self.estimate_ready.emit(self.estimate)


# ---- step 5 ------------------------------------------------------------------------------------
class RunModel(QObject):
    """Build and train (``build_and_train``) in a job; Stop cancels, Resume runs the same plan again."""

    state_changed = Signal(str)   # "idle", "running", "cancelled", "failed", "done"
    progress = Signal(object)     # Progress
    started = Signal(object)      # RunPlan

    def __init__(self, runner: JobRunner, parent: QObject | None = None):
        super().__init__(parent)
        self._job = JobSlot(runner, "wizard: build and train")
        self.state = "idle"
        self.plan: RunPlan | None = None
        self.report: dict[str, Any] | None = None
        self.error = ""

    @property
    def job(self) -> JobHandle | None:
        return self._job.handle

    @property
    def running(self) -> bool:
        return self._job.running

    def start(self, plan: RunPlan) -> None:
        if self._job.running:
            return
        self.plan = plan
        self.report = None
        self.error = ""
        self.started.emit(plan)
        self._set_state("running")
        self._job.start(build_and_train, plan, on_progress=self.progress.emit, on_finished=self._on_finished,
                        on_failed=self._on_failed, on_cancelled=lambda: self._set_state("cancelled"))

    def stop(self) -> bool:
        """Ask the running job to stop at its next safe point (True if one was running)."""
        handle = self._job.handle
        if handle is None:
            return False
        handle.cancel()
        return True

    def resume(self) -> bool:
        if self.plan is None or self._job.running:
            return False
        self.start(self.plan)
        return True

    def cancel(self) -> None:
        """Cancel and forget the job (the wizard is closing)."""
        if self._job.running:
            self._job.cancel()
            self._set_state("cancelled")

    def _on_finished(self, report: dict[str, Any]) -> None:
        self.report = report
        self._set_state("done")

    def _on_failed(self, message: str) -> None:
        self.error = message
        self._set_state("failed")

    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_changed.emit(state)


# ---- the whole wizard --------------------------------------------------------------------------
class WizardModel(QObject):
    """The wizard's state: one model per step, plus the backend and CREPE choices."""

    def __init__(self, runner: JobRunner, parent: QObject | None = None):
        super().__init__(parent)
        self.runner = runner
        self.audio = AudioModel(runner, self)
        self.preview = PreviewModel(runner, self)
        self.training = TrainingModel(runner, self)
        self.run = RunModel(runner, self)
        self.backend = D.DEFAULT_BACKEND
        self.backend_options: dict[str, Any] = {}
        self.device = "auto"
        self.crepe_model: str | None = None     # None keeps an existing workspace's own

    def run_plan(self) -> RunPlan:
        """The run described by the choices (what step 5 executes)."""
        return RunPlan(workspace=Path(self.audio.workspace_text.strip()).expanduser(), backend=self.backend,
                       backend_options=dict(self.backend_options), device=self.device,
                       crepe_model=self.crepe_model, audio=self.audio.audio_choice(),
                       train=self.training.train_settings())

    def cancel_side_jobs(self) -> None:
        """Stop the scan / preview / estimate jobs (the run needs the CPU)."""
        self.audio.cancel_jobs()
        self.preview.cancel()
        self.training.cancel_jobs()

    def cancel_all_jobs(self) -> None:
        self.cancel_side_jobs()
        self.run.cancel()
