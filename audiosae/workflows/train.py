"""Build and train as workflows: the one path of ``audiosae build``/``train`` and the wizard.

``train_settings`` resolves every training default from ``audiosae.defaults`` (the CLI passes
its parsed options, the wizard its page values; ``None`` means "the default" for both), so
the two produce equal ``TrainSettings`` for the same choices.  ``run_build`` and
``run_train`` are the jobs; ``build_and_train`` is the wizard's run step (both in one job).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .. import defaults as D
from ..errors import AudioSAEError, WorkspaceError
from ..jobs import CancelToken, ProgressSink, null_progress
from .audio_plan import AudioChoice


def _tuple(values: Sequence[Any] | None, default: Sequence[Any], kind: type) -> tuple:
    return tuple(kind(v) for v in (default if values is None else values))


def default_l1s(architecture: str = D.DEFAULT_ARCHITECTURE) -> tuple[float, ...]:
    """The lambda grid an architecture starts from: L0 coefficients for jumprelu, L1 otherwise."""
    return D.DEFAULT_L0S if str(architecture).strip().lower() == "jumprelu" else D.DEFAULT_L1S


def uses_k(architecture: str) -> bool:
    """True for the TopK family, whose grid varies k instead of lambda."""
    return str(architecture).strip().lower() in ("topk", "batchtopk")


def train_settings(*, expansions: Sequence[int] | None = None, l1s: Sequence[float] | None = None,
                   architecture: str | None = None, ks: Sequence[int] | None = None, rmsnorm: bool | None = None,
                   epochs: int | None = None, frames: int | None = None, batch_size: int | None = None,
                   seed: int | None = None, **probe_options: Any):
    """``TrainSettings`` for what the user chose; every ``None`` is ``audiosae.defaults``' value.

    ``epochs`` and ``frames`` are the SAE budget (neither: the default budget with the plateau
    stop); ``rmsnorm`` None keeps the architecture's default (on).  ``probe_options`` go to
    ``TrainSettings`` unchanged (``probe_folds``, ``probe_class_weight``, ...).  Sequences become
    tuples, so equal choices give equal settings whoever made them.
    """
    from ..training import TrainSettings

    arch = D.DEFAULT_ARCHITECTURE if architecture is None else str(architecture)
    if epochs is not None and frames is not None:
        raise AudioSAEError("give the SAE budget in epochs or in frames, not both")
    return TrainSettings(expansions=_tuple(expansions, D.DEFAULT_EXPANSIONS, int),
                         l1s=_tuple(l1s, default_l1s(arch), float),
                         epochs=None if epochs is None else int(epochs),
                         frames=None if frames is None else int(frames),
                         batch_size=D.SAE_BATCH_SIZE if batch_size is None else int(batch_size),
                         seed=D.SEED if seed is None else int(seed),
                         architecture=arch, rmsnorm=rmsnorm, ks=_tuple(ks or None, D.DEFAULT_KS, int),
                         **probe_options)


def grid_names(settings: Any) -> list[str]:
    """The SAE names of ``settings``' grid, widths outermost (as ``TrainSettings.sae_configs``)."""
    from ..training import sae_name

    if uses_k(settings.architecture):
        return [sae_name(e, 0.0, settings.architecture, settings.rmsnorm, k)
                for e in settings.expansions for k in settings.ks]
    return [sae_name(e, lam, settings.architecture, settings.rmsnorm) for e in settings.expansions
            for lam in settings.l1s]


@dataclass
class BuildRequest:
    """``audiosae build``: encode ``sources`` with ``backend`` into the workspace at ``workspace``."""

    workspace: Path
    backend: str
    sources: list[Any]
    backend_options: dict[str, Any] = field(default_factory=dict)
    problems: list[Any] = field(default_factory=list)
    device: str = "auto"
    crepe_model: str | None = None
    seed: int = D.SEED
    shard_frames: int | None = None


def run_build(request: BuildRequest, *, progress: ProgressSink = null_progress,
              cancel: CancelToken | None = None) -> tuple[Any, Any]:
    """Create (or reopen) the workspace and build its corpus; resumable.  Returns
    ``(workspace, BuildSummary)``."""
    from ..codecs import backend_spec
    from ..workspace import Workspace, build_corpus

    backend_spec(request.backend)  # an unknown name fails before any work
    ws = Workspace.create(request.workspace, request.backend, request.backend_options)
    extra = {"shard_frames": request.shard_frames} if request.shard_frames else {}
    summary = build_corpus(ws, request.sources, device=request.device, problems=request.problems,
                           seed=request.seed, crepe_model=request.crepe_model, progress=progress,
                           cancel=cancel or CancelToken(), **extra)
    return ws, summary


@dataclass
class TrainRequest:
    """``audiosae train``: the SAE grid then the probes of ``settings`` on a built workspace."""

    workspace: Path
    settings: Any = None                 # TrainSettings; None = train_settings()
    device: str = "auto"
    checkpoint_every_s: float | None = None


def run_train(request: TrainRequest, *, progress: ProgressSink = null_progress,
              cancel: CancelToken | None = None) -> dict[str, Any]:
    """Train the workspace (resumable); returns its report (``audiosae.report.workspace_report``)."""
    from ..devices import pick_device
    from ..training import train_workspace
    from ..workspace import Workspace

    ws = Workspace.open(request.workspace)
    settings = train_settings() if request.settings is None else request.settings
    extra = {} if request.checkpoint_every_s is None else {"checkpoint_every_s": request.checkpoint_every_s}
    return train_workspace(ws, settings, device=str(pick_device(request.device)), progress=progress,
                           cancel=cancel or CancelToken(), **extra)


@dataclass
class RunPlan:
    """Everything the wizard's run step needs; ``build_and_train`` executes it."""

    workspace: Path
    backend: str
    backend_options: dict[str, Any]
    device: str
    crepe_model: str | None
    audio: AudioChoice
    train: Any                            # TrainSettings


def build_and_train(plan: RunPlan, *, progress: ProgressSink = null_progress,
                    cancel: CancelToken | None = None) -> dict[str, Any]:
    """``audiosae build`` then ``audiosae train``: the same workflows, one job.

    Resumable: sources already encoded and SAEs/probes already saved are kept.  With no audio,
    a workspace whose corpus is complete is trained as it is.  Returns the workspace report.
    """
    from ..codecs import backend_spec
    from ..workspace import Workspace

    cancel = cancel or CancelToken()
    backend_spec(plan.backend)  # an unknown name fails before any work
    sources, problems = plan.audio.sources()
    if plan.audio.files and not sources:
        detail = "; ".join(str(p) for p in problems[:3])
        raise AudioSAEError("none of the chosen audio files is usable" + (f" ({detail})" if detail else ""))
    if sources:
        ws, _ = run_build(BuildRequest(workspace=plan.workspace, backend=plan.backend, sources=sources,
                                       backend_options=plan.backend_options, problems=problems, device=plan.device,
                                       crepe_model=plan.crepe_model), progress=progress, cancel=cancel)
    else:
        ws = Workspace.create(plan.workspace, plan.backend, plan.backend_options)
        if not ws.manifest().complete:
            raise WorkspaceError(f"{ws.root}: the corpus is not complete; add its audio again to resume building it")
    cancel.raise_if_cancelled()
    return run_train(TrainRequest(workspace=ws.root, settings=plan.train, device=plan.device),
                     progress=progress, cancel=cancel)
