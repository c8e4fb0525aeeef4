"""The models bundle loaded and a clip analysed, as jobs (``progress``/``cancel`` keywords):
what the studio's window runs when a workspace opens and a clip is chosen."""

from __future__ import annotations

from pathlib import Path

from .analysis import ClipAnalysis, LoadedModels
from ..audio import load_audio
from ..corpus import Source
from ..jobs import CancelToken, Progress, ProgressSink
from ..workspace import Workspace
from .sources import default_clip


def load_models_job(workspace: Workspace, sae_name: str | None, device: str, crepe_model: str | None, *,
                    progress: ProgressSink, cancel: CancelToken) -> LoadedModels:
    """``LoadedModels.load`` as a job, with the CREPE model preference applied."""
    progress(Progress("load", 0, 2, f"loading the {workspace.backend_name} backend, SAE and probes"))
    models = LoadedModels.load(workspace, sae_name, device=device)
    cancel.raise_if_cancelled()
    if crepe_model:
        models.spec.crepe_model = crepe_model
    progress(Progress("load", 2, 2, f"SAE {models.sae.cfg.name} ready on {models.device}"))
    return models


def analyse_clip_job(models: LoadedModels, clip: str | Source | None, *, progress: ProgressSink,
                     cancel: CancelToken) -> tuple[ClipAnalysis, str, str | Source] | None:
    """Load ``clip`` (a file, resampled to the backend's rate, or a corpus source) and analyse it.

    ``clip=None`` picks ``default_clip``; returns None when the workspace has nothing to show.
    Without the codec (``models.backend`` None) a corpus source is analysed from its stored
    latents, other audio shows its waveform and measured lanes only (``LoadedModels.analyze``).
    """
    if clip is None:
        clip = default_clip(models.workspace)
        if clip is None:
            return None
    progress(Progress("analyse", 0, 3, "loading audio"))
    warnings: list[str] = []
    if isinstance(clip, Source):
        wave = clip.load(models.sample_rate, models.channels, on_warning=warnings.append)
        name, as_source = clip.source_id, clip
    else:
        wave = load_audio(clip, models.sample_rate, models.channels, on_warning=warnings.append)
        name = str(clip)
        # a user file: its side-car labels (``--labels``) are matched by path
        as_source = Source(source_id=name, label=Path(name).name, path=name, seconds=0.0, notes=None)
    cancel.raise_if_cancelled()
    stored = models.stored_frames(clip) if models.backend is None else None
    analysis = models.analyze(wave, stored=stored, source=name, progress=progress, cancel=cancel,
                              corpus_source=as_source)
    analysis.warnings = warnings
    return analysis, name, clip
