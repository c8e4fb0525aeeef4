"""Exports and imports as workflows: an SAE in the SAELens layout (``audiosae export-sae`` /
``import-sae``) and a clip's per-frame lanes as CSV and Sonic Visualiser layers
(``audiosae export-lanes``).  The Neuronpedia-style export of feature descriptions is
``workflows.describe``.  Nothing here imports Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import AudioSAEError, WorkspaceError
from ..jobs import CancelToken, ProgressSink, null_progress


@dataclass
class ExportSAERequest:
    """``audiosae export-sae WORKSPACE --sae NAME --out FOLDER [--with-probes]``."""

    workspace: Path
    sae: str
    out: Path
    with_probes: bool = False


def run_export_sae(request: ExportSAERequest, *, progress: ProgressSink = null_progress,
                   cancel: CancelToken | None = None) -> dict[str, Any]:
    """The SAE (and optionally its probes) in the SAELens layout; returns what was written."""
    from ..sae.saelens import SAELENS_CFG_FILE, SAELENS_WEIGHTS_FILE, export_saelens
    from ..probes import ProbeSet
    from ..sae.model import SparseAutoencoder
    from ..workspace import Workspace

    ws = Workspace.open(request.workspace)
    name = request.sae
    if name not in ws.sae_names():
        raise WorkspaceError(f"{ws.root}: no SAE named {name!r}; available: {', '.join(ws.sae_names()) or 'none'}")
    sae = SparseAutoencoder.load(ws.sae_dir(name))
    probes = None
    if request.with_probes:
        if not ws.probe_dir(name).is_dir():
            raise WorkspaceError(f"{ws.root}: SAE {name!r} has no probes yet; run `audiosae train` or drop --with-probes")
        probes = ProbeSet.load(ws.probe_dir(name))
    export_saelens(sae, request.out, probes=probes,
                   metadata={"model_name": ws.backend_name, "workspace": str(ws.root), "sae_name": name})
    files = [SAELENS_CFG_FILE, SAELENS_WEIGHTS_FILE] + (["probes.safetensors", "probes.json"] if probes else [])
    return {"sae": name, "out": str(request.out), "files": files, "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae}


@dataclass
class ImportSAERequest:
    """``audiosae import-sae WORKSPACE FOLDER --name NAME``."""

    workspace: Path
    folder: Path
    name: str


def _workspace_latent_dim(ws: Any) -> int:
    """The latent width of the workspace's corpus (or, before a build, of its backend)."""
    from ..codecs import backend_spec

    dim = (ws.meta.get("corpus") or {}).get("latent_dim")
    return int(dim) if dim else int(backend_spec(ws.backend_name).latent_dim)


def run_import_sae(request: ImportSAERequest, *, progress: ProgressSink = null_progress,
                   cancel: CancelToken | None = None) -> dict[str, Any]:
    """A SAELens-layout SAE copied into ``saes/NAME`` (and its exported probes into ``probes/NAME``);
    returns what was imported and the warning to show (or None)."""
    from ..sae.saelens import import_saelens, load_exported_probes, saelens_import_warning
    from ..workspace import Workspace

    ws = Workspace.open(request.workspace)
    name = str(request.name)
    if not name or name in (".", "..") or any(c in name for c in "/\\:") or name.startswith("."):
        raise AudioSAEError(f"invalid SAE name {name!r}: use letters, digits, '-', '_' or '.'")
    if ws.sae_dir(name).exists() or ws.probe_dir(name).exists():
        raise WorkspaceError(f"{ws.root}: an SAE named {name!r} already exists; choose another --name")
    sae = import_saelens(request.folder)
    d_in = _workspace_latent_dim(ws)
    if sae.cfg.d_in != d_in:
        raise WorkspaceError(f"{request.folder}: SAE d_in {sae.cfg.d_in} does not match the latent dim {d_in} of "
                             f"workspace {ws.root} (backend {ws.backend_name})")
    probes = load_exported_probes(request.folder, sae)
    sae.cfg.name = name
    sae.save(ws.sae_dir(name), metrics=sae.metrics, extra={"backend": ws.backend_name})
    if probes is not None:
        probes.save(ws.probe_dir(name))
    return {"sae": name, "folder": str(request.folder), "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae,
            "probes": probes is not None, "warning": saelens_import_warning(sae)}


@dataclass
class LanesRequest:
    """``audiosae export-lanes WORKSPACE AUDIO --out FOLDER``: lanes.csv, activations.csv and
    Sonic Visualiser layers of one clip (one CSV per lane and a session.sv opening them all)."""

    workspace: Path
    audio: Path
    out: Path
    sae: str | None = None
    device: str = "auto"


@dataclass
class LanesResult:
    out: Path
    lanes: Path
    frames: int
    sae: str
    active_features: int
    sonic_visualiser: dict[str, Path] = field(default_factory=dict)
    sv_session: Path | None = None       # the Sonic Visualiser session: the clip with every lane as a layer


def run_export_lanes(request: LanesRequest, *, warn: Callable[[str], None] = lambda line: None,
                     progress: ProgressSink = null_progress, cancel: CancelToken | None = None) -> LanesResult:
    from ..audio import load_audio, probe_audio
    from ..explore.analysis import LoadedModels
    from ..exports import SV_SESSION_FILE, export_activations_csv, export_lanes_csv, export_sonic_visualiser

    probe_audio(request.audio)  # a bad input file fails before any model loads
    models = LoadedModels.load(request.workspace, request.sae, device=request.device)
    backend = models.backend
    wave = load_audio(request.audio, backend.sample_rate, backend.channels, on_warning=warn)
    analysis = models.analyze(wave, source=str(request.audio), progress=progress, cancel=cancel or CancelToken())
    out = Path(request.out)
    lanes = export_lanes_csv(analysis, models.spec, out / "lanes.csv")
    features = export_activations_csv(analysis, out / "activations.csv")
    sv = export_sonic_visualiser(analysis, models.spec, out / "sonic-visualiser", audio=request.audio)
    return LanesResult(out, Path(lanes), analysis.n_frames, models.sae.cfg.name, len(features), dict(sv),
                       out / "sonic-visualiser" / SV_SESSION_FILE)
