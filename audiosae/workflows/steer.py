"""Steering a clip to a file as a workflow: the one path of ``audiosae steer``, the demo's steered
example and the studio audition's "Export steered audio".

``SteerRequest`` holds what the user chose (the CLI's flags, the audition's controls); its
defaults are ``audiosae.defaults``' (``STEER_ALPHA``, ``DEFAULT_STEER_METHOD``).  ``run_steer``
renders the steered clip and writes it with ``write_steered_audio``, the one writer of a steered
file and its JSON side-car (``STEERED_SIDECAR_SCHEMA``).  Two renderings, one request:

- offline (``audiosae steer``): the workspace's SAE and probes steer the whole file
  (``steering.steer_wave``), and the side-car holds the measured shift of every attribute;
- as heard (the studio, ``live=`` its realtime renderer): a second renderer with the live one's
  chunking, contexts and level rule renders the clip (``render_as_heard``), so the file is what
  the audition played.

Nothing here imports Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import defaults as D
from ..errors import AudioSAEError, WorkspaceError
from ..jobs import CancelToken, Progress, ProgressSink, null_progress

STEERED_SIDECAR_SCHEMA = 2          # 1: the CLI's and the studio's side-cars (two layouts); 2: one layout
STEERED_SIDECAR_KIND = "audiosae.steered_audio"
AUDIO_SUFFIXES = (".wav", ".flac")


def _path(value: Any) -> Path | None:
    return None if value is None or not str(value).strip() else Path(str(value).strip()).expanduser()


@dataclass
class SteerRequest:
    """``audiosae steer WORKSPACE AUDIO --attribute A --target T --out OUT``: one steered file.

    ``target`` is the class as the user names it (a note like ``A4``, a bin name, ``-12 dB``...;
    ``AttributeSpec.parse_target``).  ``sae`` None: the workspace's best SAE for ``attribute``.
    ``limit`` False writes the raw decoded level."""

    workspace: Path
    audio: Path | None
    attribute: str
    target: str
    out: Path
    alpha: float = D.STEER_ALPHA
    method: str = D.DEFAULT_STEER_METHOD
    sae: str | None = None
    start: float | None = None
    end: float | None = None
    keep_residual: bool = False
    limit: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        from ..steering.control import check_alpha
        from ..steering.methods import check_method

        self.workspace = Path(self.workspace).expanduser()
        self.audio = _path(self.audio)
        self.out = Path(self.out).expanduser()
        self.attribute, self.target = str(self.attribute), str(self.target).strip()
        self.alpha = check_alpha(self.alpha)
        self.method = str(self.method or D.DEFAULT_STEER_METHOD)
        check_method(self.method)
        self.start = None if self.start is None else float(self.start)
        self.end = None if self.end is None else float(self.end)
        self.keep_residual, self.limit = bool(self.keep_residual), bool(self.limit)
        self.device = str(self.device or "auto")

    @property
    def scope(self) -> str:
        return "whole clip" if self.start is None and self.end is None else "selection"


def check_output(out: Path | str) -> Path:
    """``out`` if it names a WAV or FLAC file; else an ``AudioSAEError`` saying so."""
    out = Path(out)
    if out.suffix.lower() not in AUDIO_SUFFIXES:
        raise AudioSAEError(f"{out}: output must end in .wav or .flac")
    return out


def write_steered_audio(out: Path | str, wave: Any, sample_rate: int, sidecar: dict[str, Any], *,
                        limit: bool = True) -> Path:
    """The one writer of steered audio: ``out`` (WAV/FLAC) then ``<out>.json``, atomically, with
    the side-car's schema version and kind.  Undefined numbers (NaN shifts of a clip with no voiced
    frame) are written as null."""
    from ..audio import save_audio
    from ..sae.model import _json_safe
    from ..storage import atomic_write_json

    out = check_output(out)
    save_audio(out, wave, sample_rate, limit=limit)
    document = {"schema_version": STEERED_SIDECAR_SCHEMA, "kind": STEERED_SIDECAR_KIND, **sidecar}
    atomic_write_json(out.with_suffix(out.suffix + ".json"), _json_safe(document))
    return out


def _sidecar(request: SteerRequest, *, workspace: Any, sae: str, target_class: int, sample_rate: int,
             seconds: float, report: dict[str, Any], renderer: dict[str, Any] | None) -> dict[str, Any]:
    """The side-car's fields, the same for both renderings (``report``: what the rendering adds:
    method description, level, measured shifts...)."""
    return {"input": "" if request.audio is None else str(request.audio), "output": str(request.out),
            "workspace": str(workspace.root), "sae": sae, "backend": workspace.backend_name,
            "attribute": request.attribute, "target": report.pop("target", request.target),
            "target_class": int(target_class), "alpha": request.alpha, "method": request.method,
            "keep_residual": request.keep_residual, "scope": request.scope, "start": request.start,
            "end": request.end, "sample_rate": int(sample_rate), "seconds": float(seconds),
            "renderer": renderer, **report}


def render_as_heard(live: Any, latents: Any, params: Any, *, progress: ProgressSink = null_progress,
                    cancel: CancelToken | None = None, level_out: dict[str, Any] | None = None) -> Any:
    """The whole steered clip ``[C, N]`` for ``params`` (``realtime.SteeringParams``), rendered
    exactly as the realtime renderer ``live`` plays it (``latents``: the clip's latents, as
    ``live`` was built with).

    A separate renderer with ``live``'s chunking, context, cross-fade, steering contexts and level
    rule, so the file equals what was heard while the user goes on moving controls.
    ``level_out``: filled with what the level rule did (``SteeredRenderer.level_summary``)."""
    from ..steering.realtime import SteeredRenderer

    cancel = cancel or CancelToken()
    renderer = SteeredRenderer(live.backend, live.sae, live.probes, live.wave, params, latents=latents,
                               chunk_seconds=live.chunk_frames * live.hop / live.sample_rate,
                               context_frames=live.context_frames, fade_seconds=live.fade / live.sample_rate,
                               cancel=cancel, limit=live.limit, contexts=live.contexts)
    total = renderer.n_chunks
    for index in range(total):
        cancel.raise_if_cancelled()
        renderer.render_chunk(index)
        progress(Progress("export", index + 1, total, "rendering the steered clip"))
    if level_out is not None:
        level_out.update(renderer.level_summary())
    return renderer.mix(0, renderer.n_samples)


def run_steer(request: SteerRequest, *, live: Any = None, latents: Any = None, workspace: Any = None,
              progress: ProgressSink = null_progress, cancel: CancelToken | None = None) -> dict[str, Any]:
    """Steer ``request.audio`` and write ``request.out`` with its side-car; returns the side-car.

    ``live`` (a realtime ``SteeredRenderer`` with the clip's ``latents``): render as it plays
    (the studio's export); without it, load the workspace's models and steer offline.
    ``workspace``: an open ``Workspace`` (or anything with ``root`` and ``backend_name``) to
    record instead of opening ``request.workspace``."""
    cancel = cancel or CancelToken()
    check_output(request.out)
    if live is not None:
        return _steer_as_heard(request, live, latents, workspace, progress=progress, cancel=cancel)
    return _steer_offline(request, workspace, cancel=cancel)


def _steer_as_heard(request: SteerRequest, live: Any, latents: Any, workspace: Any, *,
                    progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from ..steering.realtime import SteeringParams
    from ..workspace import Workspace

    ws = workspace if workspace is not None else Workspace.open(request.workspace)
    spec = getattr(live, "spec", None) or ws.attribute_spec
    target = spec.parse_target(request.attribute, request.target)
    params = SteeringParams(request.attribute, target, request.alpha, keep_residual=request.keep_residual,
                            start=request.start, end=request.end, method=request.method)
    level: dict[str, Any] = {}
    wave = render_as_heard(live, latents, params, progress=progress, cancel=cancel, level_out=level)
    cancel.raise_if_cancelled()
    report = {"target": request.target, **live.context(params.method, params.attribute).describe(), "level": level}
    renderer = {"chunk_seconds": live.chunk_frames * live.hop / live.sample_rate,
                "context_frames": list(live.context_frames), "fade_seconds": live.fade / live.sample_rate}
    sidecar = _sidecar(request, workspace=ws, sae=request.sae or live.sae.cfg.name, target_class=target,
                       sample_rate=live.sample_rate, seconds=live.duration, report=report, renderer=renderer)
    write_steered_audio(request.out, wave, live.sample_rate, sidecar, limit=live.limit)
    return sidecar


def _steer_offline(request: SteerRequest, workspace: Any, *, cancel: CancelToken) -> dict[str, Any]:
    from ..audio import load_audio, probe_audio
    from ..probes import ProbeSet
    from ..report import best_sae
    from ..sae.model import SparseAutoencoder
    from ..steering.control import steer_wave
    from ..steering.methods import prepare_method
    from ..workspace import Workspace

    if request.audio is None:
        raise AudioSAEError("steering offline needs an audio file")
    probe_audio(request.audio)  # a bad input file fails before any model loads
    ws = workspace if workspace is not None else Workspace.open(request.workspace)
    spec = ws.attribute_spec
    name = request.sae or best_sae(ws, request.attribute)
    if name not in ws.sae_names():
        raise WorkspaceError(f"{ws.root}: no SAE named {name!r}; available: {', '.join(ws.sae_names()) or 'none'}")
    target = spec.parse_target(request.attribute, request.target)
    backend = ws.backend(request.device)
    model = SparseAutoencoder.load(ws.sae_dir(name), device=str(backend.device))
    probes = ProbeSet.load(ws.probe_dir(name))
    warnings: list[str] = []
    wave = load_audio(request.audio, backend.sample_rate, backend.channels, on_warning=warnings.append)
    cancel.raise_if_cancelled()
    context = prepare_method(ws, name, model, probes, request.attribute, request.method, cancel=cancel)
    result = steer_wave(backend, model, probes, spec, wave, request.attribute, target, request.alpha,
                        start=request.start, end=request.end, keep_residual=request.keep_residual,
                        limit=request.limit, context=context)
    report = dict(result.report)
    for key in ("attribute", "alpha", "keep_residual", "start", "end"):
        report.pop(key, None)   # the request's values, written once by _sidecar
    sidecar = _sidecar(request, workspace=ws, sae=name, target_class=target, sample_rate=backend.sample_rate,
                       seconds=wave.shape[1] / backend.sample_rate, report=report, renderer=None)
    sidecar["input_warnings"] = warnings
    write_steered_audio(request.out, result.wave, backend.sample_rate, sidecar, limit=request.limit)
    return sidecar
