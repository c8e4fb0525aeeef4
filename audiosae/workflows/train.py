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
    # registered attributes labelled besides the paper's three (None: default_build_attributes());
    # labels: a side-car (file,start,end,label CSV/JSON) whose labels become instrument classes
    attributes: Sequence[str] | None = None
    labels: Path | None = None


def default_build_attributes() -> tuple[str, ...]:
    """What ``audiosae build`` (and the wizard) label beyond the paper's three by default: every
    registered attribute.  Measured on 1 min of 24 kHz audio at 75 Hz frames (CPU, shared):
    all of them together 0.7 s against ~29 s for the paper's three (CREPE tiny), plus ~6 s once
    per process (librosa import, numba compiling onset peak picking and beat tracking)."""
    from ..attribute_registry import registered_names

    return tuple(registered_names())


def probe_choices() -> tuple[str, ...]:
    """The registered attributes a user may add to the probes of any audio: every one that is
    measured from the sound (not ``instrument``, whose labels need ground truth).  ``train``
    probes the paper's three unless asked; the wizard offers these as extra probes."""
    from ..attribute_registry import measurable_from_audio

    return tuple(n for n in default_build_attributes() if measurable_from_audio(n))


def attribute_choice(attributes: Sequence[str] | None, labels: Path | str | None = None
                     ) -> tuple[list[str], dict[str, dict]]:
    """``(registered attribute names, their params)`` for a build or a labelling: the paper's
    three are dropped (always labelled), unknown names raise, a labels side-car makes the
    instrument attribute's classes (and adds it when not named)."""
    from ..attribute_library import instrument_params, load_label_sidecar
    from ..attribute_registry import PAPER_ATTRIBUTES, get_attribute

    names = list(default_build_attributes() if attributes is None else attributes)
    names = [n for n in dict.fromkeys(n.strip() for n in names) if n and n not in PAPER_ATTRIBUTES]
    for n in names:
        get_attribute(n)
    params: dict[str, dict] = {}
    if labels is not None:
        params["instrument"] = instrument_params(load_label_sidecar(labels))
        if "instrument" not in names:
            names.append("instrument")
    return names, params


def run_build(request: BuildRequest, *, progress: ProgressSink = null_progress,
              cancel: CancelToken | None = None) -> tuple[Any, Any]:
    """Create (or reopen) the workspace and build its corpus; resumable.  Returns
    ``(workspace, BuildSummary)``."""
    from ..codecs import backend_spec
    from ..workspace import Workspace, build_corpus

    backend_spec(request.backend)  # an unknown name fails before any work
    names, params = attribute_choice(request.attributes, request.labels)
    from ..distributed import launched
    if launched():  # under torchrun: ranks share the sources (audiosae.distributed.build)
        from ..distributed import start
        from ..distributed.build import build_corpus_distributed
        return build_corpus_distributed(start(request.device), request.workspace, request.backend, request.backend_options,
                                        request.sources, problems=request.problems, device=request.device,
                                        seed=request.seed, crepe_model=request.crepe_model, attributes=names,
                                        attribute_params=params, shard_frames=request.shard_frames,
                                        progress=progress, cancel=cancel)
    ws = Workspace.create(request.workspace, request.backend, request.backend_options)
    extra = {"shard_frames": request.shard_frames} if request.shard_frames else {}
    summary = build_corpus(ws, request.sources, device=request.device, problems=request.problems,
                           seed=request.seed, crepe_model=request.crepe_model, attributes=names,
                           attribute_params=params, progress=progress, cancel=cancel or CancelToken(), **extra)
    return ws, summary


@dataclass
class LabelRequest:
    """``audiosae label``: add registered attributes to a built workspace without re-encoding."""

    workspace: Path
    attributes: Sequence[str]
    labels: Path | None = None
    relabel: bool = False


def run_label(request: LabelRequest, *, progress: ProgressSink = null_progress,
              cancel: CancelToken | None = None) -> tuple[Any, Any]:
    """Label the workspace's corpus with more attributes; returns ``(workspace, LabelSummary)``."""
    from ..labelling import label_workspace
    from ..workspace import Workspace

    ws = Workspace.open(request.workspace)
    names, params = attribute_choice(request.attributes, request.labels)
    if not names:
        raise AudioSAEError("name at least one attribute to add (the paper's three are always labelled)")
    summary = label_workspace(ws, names, params=params, progress=progress, cancel=cancel or CancelToken(),
                              relabel=request.relabel)
    return ws, summary


@dataclass
class TrainRequest:
    """``audiosae train``: the SAE grid then the probes of ``settings`` on a built workspace."""

    workspace: Path
    settings: Any = None                 # TrainSettings; None = train_settings()
    device: str = "auto"
    checkpoint_every_s: float | None = None
    parallel: str = "grid"               # under torchrun: "grid" (ranks split the SAEs) or "data" (the batches)


def run_train(request: TrainRequest, *, progress: ProgressSink = null_progress,
              cancel: CancelToken | None = None) -> dict[str, Any]:
    """Train the workspace (resumable); returns its report (``audiosae.report.workspace_report``)."""
    from ..devices import pick_device
    from ..training import train_workspace
    from ..workspace import Workspace

    ws = Workspace.open(request.workspace)
    settings = train_settings() if request.settings is None else request.settings
    extra = {} if request.checkpoint_every_s is None else {"checkpoint_every_s": request.checkpoint_every_s}
    from ..distributed import train_plan
    if (plan := train_plan(request.parallel, request.device)) is not None:  # None without torchrun
        extra["parallel"], device = plan
        return train_workspace(ws, settings, device=device, progress=progress, cancel=cancel or CancelToken(), **extra)
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


def run_report(workspace: Path | str) -> dict[str, Any]:
    """``audiosae report``: the workspace's table, every file checked (a damaged one fails here,
    not as garbage in the table)."""
    from ..report import workspace_report
    from ..workspace import Workspace

    ws = Workspace.open(workspace)
    if not ws.sae_names():
        raise WorkspaceError(f"{ws.root}: no trained SAE yet; run `audiosae train {ws.root}`")
    return workspace_report(ws, verify=True)
