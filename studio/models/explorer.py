"""The explorer's session: the open workspace's models and the clip shown, loaded in jobs.

``ExplorerSession`` opens a workspace into ``ExplorerState``, loads its models bundle
(``audiosae.explore.clips.load_models_job``) and analyses a clip (``analyse_clip_job``: a file,
a corpus source, or the workspace's first clip).  A clip asked for while the models load waits
for them; a result of a job that another open superseded is dropped.  The window shows what
the signals say (status line, models label, error dialogs); no widgets here.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from audiosae.corpus import Source
from audiosae.errors import printable
from audiosae.explore.analysis import ClipAnalysis, LoadedModels
from audiosae.explore.clips import analyse_clip_job, load_models_job, measure_extra_job, warm_up_job
from audiosae.workspace import Workspace

from ..state import ExplorerState
from ..workers import JobHandle, JobRunner


class ExplorerSession(QObject):
    """Models and clip of the open workspace (see the module docstring)."""

    models_loaded = Signal(object)      # LoadedModels, already in the state
    models_failed = Signal(str, str, bool)  # message, traceback, whether it was the current load
    load_cancelled = Signal()
    clip_analysed = Signal(object, str)  # ClipAnalysis (already in the state), its name
    clip_empty = Signal()               # the workspace has no clip to show yet
    clip_failed = Signal(str, str)      # message, traceback
    clip_cancelled = Signal()

    def __init__(self, state: ExplorerState, runner: JobRunner, parent: QObject | None = None):
        super().__init__(parent)
        self.state = state
        self.runner = runner
        self.closed = False
        self.load_job: JobHandle | None = None
        self.clip_job: JobHandle | None = None
        self.measure_job: JobHandle | None = None   # the shown clip's registered attributes
        self.pending_clip: str | Source | None = None   # analysed once the models are loaded
        self.current_clip: str | Source | None = None

    @property
    def loading(self) -> bool:
        return self.load_job is not None

    def open(self, workspace: Workspace, sae_name: str | None, clip: str | None, *, device: str,
             crepe_model: str | None) -> None:
        """Show ``workspace``: its models load in a job, then ``clip`` (None: its first clip)."""
        for job in (self.load_job, self.clip_job, self.measure_job):
            if job is not None:
                job.cancel()
        self.load_job = self.clip_job = self.measure_job = None
        self.pending_clip = str(Path(clip).expanduser().resolve()) if clip else None
        self.current_clip = None
        self.state.set_workspace(workspace)
        self.load_models(workspace, sae_name, device=device, crepe_model=crepe_model)
        if workspace.attribute_spec.extra:   # librosa's first import, beside the model loading
            self.runner.submit("preparing the attribute extractors", warm_up_job, workspace.attribute_spec)

    def load_models(self, workspace: Workspace, sae_name: str | None, *, device: str,
                    crepe_model: str | None) -> JobHandle:
        # JobRunner.submit starts the thread on the next event-loop turn: connected first.
        job = self.runner.submit(f"loading {workspace.root.name}", load_models_job, workspace, sae_name,
                                 device, crepe_model)
        self.load_job = job
        job.finished.connect(lambda models, j=job: self._models_loaded(j, models))
        job.failed.connect(lambda message, tb, j=job: self._models_failed(j, message, tb))
        job.cancelled.connect(self.load_cancelled.emit)
        return job

    def reload(self, *, device: str, crepe_model: str | None) -> None:
        """Load the open workspace's SAE again (new device / CREPE model), keeping the clip."""
        if self.state.workspace is None:
            return
        sae = self.state.models.sae.cfg.name if self.state.models is not None else None
        self.pending_clip = self.current_clip
        self.load_models(self.state.workspace, sae, device=device, crepe_model=crepe_model)

    def _models_loaded(self, job: JobHandle, models: LoadedModels) -> None:
        if self.closed or job is not self.load_job:
            return  # superseded by another open, or the window is closing
        self.load_job = None
        self.state.set_models(models)
        self.models_loaded.emit(models)
        clip, self.pending_clip = self.pending_clip, None
        self.analyse(clip)

    def _models_failed(self, job: JobHandle, message: str, tb: str) -> None:
        current = job is self.load_job
        if current:
            self.load_job = None
        self.models_failed.emit(message, tb, current)

    def wait_for_models(self, clip: str) -> bool:
        """Analyse ``clip`` once the loading models are ready; False when none are loading."""
        if self.load_job is None:
            return False
        self.pending_clip = clip
        return True

    def analyse(self, clip: str | Source | None = None) -> JobHandle | None:
        """Analyse ``clip`` (None: the workspace's default clip) in a job; the result goes to the state."""
        models = self.state.models
        if models is None:
            return None
        for old in (self.clip_job, self.measure_job):
            if old is not None:
                old.cancel()
        self.measure_job = None
        label = printable(Path(clip).name) if isinstance(clip, str) else (clip.source_id if clip is not None
                                                                           else "the first clip")
        # the paper's attributes first: the clip shows without waiting for librosa's first import
        job = self.runner.submit(f"analysing {label}", analyse_clip_job, models, clip, extra=False)
        self.clip_job = job   # connected before the thread starts (next event-loop turn)
        job.finished.connect(lambda result, j=job: self._clip_analysed(j, result))
        job.failed.connect(lambda message, tb, j=job: self._clip_failed(j, message, tb))
        job.cancelled.connect(self.clip_cancelled.emit)
        return job

    def _clip_analysed(self, job: JobHandle, result: tuple[ClipAnalysis, str, str | Source] | None) -> None:
        if self.closed or job is not self.clip_job:
            return
        self.clip_job = None
        if result is None:
            self.clip_empty.emit()
            return
        analysis, name, clip = result
        self.current_clip = clip
        self.state.set_analysis(analysis, name)
        self.clip_analysed.emit(analysis, name)
        if analysis.pending and self.state.models is not None:
            self._measure_extra(self.state.models, analysis, clip)

    def _measure_extra(self, models: LoadedModels, analysis: ClipAnalysis, clip: str | Source) -> None:
        """The registered attributes of the shown clip, in a second job (lanes fill in when done)."""
        job = self.runner.submit(f"measuring {', '.join(analysis.pending)}", measure_extra_job, models, analysis, clip)
        self.measure_job = job
        job.finished.connect(lambda result, j=job: self._measured(j, analysis, result))
        job.failed.connect(lambda message, tb, j=job: self._measure_failed(j, message))

    def _measured(self, job: JobHandle, analysis: ClipAnalysis, result: tuple) -> None:
        if job is self.measure_job:
            self.measure_job = None
        if not self.closed:
            self.state.complete_measurements(analysis, *result)

    def _measure_failed(self, job: JobHandle, message: str) -> None:
        if job is self.measure_job:
            self.measure_job = None
        self.state.status.emit(f"measuring the clip's attributes failed: {message}")

    def _clip_failed(self, job: JobHandle, message: str, tb: str) -> None:
        if job is self.clip_job:
            self.clip_job = None
        self.clip_failed.emit(message, tb)

    def close(self) -> None:
        self.closed = True
