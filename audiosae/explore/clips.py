"""The models bundle loaded and a clip analysed, as jobs (``progress``/``cancel`` keywords):
what the studio's window runs when a workspace opens and a clip is chosen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .analysis import ClipAnalysis, LoadedModels, measure_clip_extra
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


def clip_source(clip: str | Source) -> Source:
    """``clip`` as a ``Source``: a corpus source as it is; a user's file by its path (its side-car
    labels, ``--labels``, are matched by path)."""
    if isinstance(clip, Source):
        return clip
    return Source(source_id=str(clip), label=Path(str(clip)).name, path=str(clip), seconds=0.0, notes=None)


def analyse_clip_job(models: LoadedModels, clip: str | Source | None, *, progress: ProgressSink,
                     cancel: CancelToken, extra: bool = True) -> tuple[ClipAnalysis, str, str | Source] | None:
    """Load ``clip`` (a file, resampled to the backend's rate, or a corpus source) and analyse it.

    ``clip=None`` picks ``default_clip``; returns None when the workspace has nothing to show.
    Without the codec (``models.backend`` None) a corpus source is analysed from its stored
    latents, other audio shows its waveform and measured lanes only (``LoadedModels.analyze``).
    ``extra=False`` leaves the registered attributes to ``measure_extra_job`` (``analysis.pending``).
    """
    if clip is None:
        clip = default_clip(models.workspace)
        if clip is None:
            return None
    progress(Progress("analyse", 0, 3, "loading audio"))
    warnings: list[str] = []
    if isinstance(clip, Source):
        wave = clip.load(models.sample_rate, models.channels, on_warning=warnings.append)
        name = clip.source_id
    else:
        wave = load_audio(clip, models.sample_rate, models.channels, on_warning=warnings.append)
        name = str(clip)
    cancel.raise_if_cancelled()
    stored = models.stored_frames(clip) if models.backend is None else None
    analysis = models.analyze(wave, stored=stored, source=name, progress=progress, cancel=cancel,
                              corpus_source=clip_source(clip), extra=extra)
    analysis.warnings = warnings
    return analysis, name, clip


def measure_extra_job(models: LoadedModels, analysis: ClipAnalysis, clip: str | Source, *, progress: ProgressSink,
                      cancel: CancelToken) -> tuple[Any, dict[str, Any]]:
    """The registered attributes of a clip analysed with ``extra=False`` (``measure_clip_extra``):
    ``(measured, measured_classes)`` for the caller to swap in.  The first call in a process pays
    librosa's import (a few seconds), which is why the clip is shown before it."""
    progress(Progress("measure", 0, 1, f"measuring {', '.join(analysis.pending) or 'nothing'}"))
    result = measure_clip_extra(models.spec, analysis, hop_length=models.hop_length,
                                corpus_source=clip_source(clip), cancel=cancel)
    progress(Progress("measure", 1, 1, "done"))
    return result


def warm_up_job(spec: Any, *, progress: ProgressSink, cancel: CancelToken) -> None:
    """Run the spec's registered extractors once on a second of silence: librosa's first use in a
    process imports its modules and compiles numba kernels (about 3 s holding the interpreter
    much of the time).  The studio runs this while a workspace's models load, before anything
    can play, so the clip's own measuring (``measure_extra_job``) is quick and never stalls
    playback."""
    if not getattr(spec, "extra", None):
        return
    progress(Progress("warm up", 0, 1, "preparing the attribute extractors"))
    sr, hop = 16000, 160
    spec.measure_extra(np.zeros((1, sr), np.float32), sr, (np.arange(sr // hop) + 0.5) * hop / sr,
                       hop_length=hop, cancel=cancel)
    progress(Progress("warm up", 1, 1, "done"))
