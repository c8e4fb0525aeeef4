"""Train a workspace: the SAE grid in one pass, then probes on every SAE and on the raw latent.

This is the job behind ``audiosae train`` and the wizard's "run" step.  It is resumable at
every level: the grid resumes from its checkpoint, SAEs already saved with the same
settings are not retrained, and probes already saved for an SAE are kept.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

from .attributes import ATTRIBUTES
from .errors import AudioSAEError
from .jobs import CancelToken, Progress, ProgressSink, null_progress
from .probes import train_probes
from .sae import SAEConfig, SparseAutoencoder, evaluate_sae, train_sae_grid
from .storage import atomic_write_json, read_json
from .workspace import Workspace, remove_stale_temp_files

RAW_BASELINE = "raw-latent"
DEFAULT_CHECKPOINT_EVERY_S = 30.0


def sae_name(expansion: int, l1: float) -> str:
    return f"x{expansion}-l1_{l1:g}"


@dataclass
class TrainSettings:
    expansions: Sequence[int]
    l1s: Sequence[float]
    epochs: int = 10
    batch_size: int = 4096
    seed: int = 0

    def fingerprint(self, d_in: int, corpus_frames: int) -> str:
        blob = json.dumps([list(self.expansions), list(self.l1s), self.epochs, self.batch_size, self.seed,
                           d_in, corpus_frames])
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _probe_done(ws: Workspace, name: str, fingerprint: str) -> bool:
    path = ws.probe_dir(name) / "metrics.json"
    if not path.is_file():
        return False
    try:
        return read_json(path).get("fingerprint") == fingerprint
    except AudioSAEError:
        return False


def train_workspace(ws: Workspace, settings: TrainSettings, *, device: str = "cpu",
                    progress: ProgressSink = null_progress, cancel: CancelToken | None = None,
                    checkpoint_every_s: float = DEFAULT_CHECKPOINT_EVERY_S) -> dict[str, Any]:
    """Train the SAE grid of ``settings``, then the probes; returns the workspace report.

    ``checkpoint_every_s``: how often the grid's state is saved (a ``kill -9`` loses at most
    this much training; a cancel always saves first).
    """
    cancel = cancel or CancelToken()
    for e in settings.expansions:
        if e < 1:
            raise AudioSAEError(f"expansion must be >= 1, got {e}")
    for lam in settings.l1s:
        if lam < 0:
            raise AudioSAEError(f"L1 coefficient must be >= 0, got {lam}")
    if settings.epochs < 1:
        raise AudioSAEError("epochs must be >= 1")
    remove_stale_temp_files(ws.root)  # left by a run that was killed mid-write
    store = ws.frame_store()
    if store.n_frames("val") == 0:
        raise AudioSAEError("the corpus has no validation frames (it needs at least two sources)")
    spec = ws.attribute_spec
    n_classes = {a: spec.n_classes(a) for a in ATTRIBUTES}
    class_names = {a: spec.class_names(a) for a in ATTRIBUTES}
    fingerprint = settings.fingerprint(store.d_in, store.n_frames("train"))
    configs = [SAEConfig(d_in=store.d_in, d_sae=store.d_in * e, l1_coefficient=lam, name=sae_name(e, lam))
               for e in settings.expansions for lam in settings.l1s]

    # 1. SAEs: skip the grid when every SAE is already saved with these settings.
    def saved(cfg: SAEConfig) -> bool:
        try:
            return read_json(ws.sae_dir(cfg.name) / "metrics.json").get("fingerprint") == fingerprint
        except AudioSAEError:
            return False

    todo = {c.name for c in configs if not saved(c)}
    if todo:
        # Always the whole grid: its checkpoint is keyed by the full config list, so a run killed
        # while saving the SAEs resumes from the finished checkpoint (no training pass) instead
        # of refusing it as "other settings"; only the unsaved SAEs are written.
        results = train_sae_grid(store, configs, epochs=settings.epochs, batch_size=settings.batch_size,
                                 seed=settings.seed, device=device, progress=progress, cancel=cancel,
                                 checkpoint_dir=ws.root / "checkpoints" / f"grid-{fingerprint}",
                                 checkpoint_every_s=checkpoint_every_s)
        results = [(sae, m) for sae, m in results if sae.cfg.name in todo]
        for i, (sae, train_metrics) in enumerate(results):
            cancel.raise_if_cancelled()
            progress(Progress("evaluate SAEs", i, len(results), sae.cfg.name))
            metrics = evaluate_sae(sae, store, "val", cancel=cancel)
            metrics.update(fingerprint=fingerprint, train=train_metrics, epochs=settings.epochs,
                           backend=ws.backend_name)
            sae.save(ws.sae_dir(sae.cfg.name), metrics=metrics,
                     extra={"backend": ws.backend_name, "expansion": sae.cfg.d_sae // sae.cfg.d_in})

    # 2. Probes on each SAE's features, then the raw-latent baseline.
    names = [c.name for c in configs] + [RAW_BASELINE]
    for i, name in enumerate(names):
        cancel.raise_if_cancelled()
        if _probe_done(ws, name, fingerprint):
            continue
        progress(Progress("probes", i, len(names), f"training probes on {name}"))
        sae = None if name == RAW_BASELINE else SparseAutoencoder.load(ws.sae_dir(name), device=device)
        probes = train_probes(store, sae=sae, n_classes=n_classes, class_names=class_names, seed=settings.seed,
                              batch_size=settings.batch_size, device=device, progress=progress, cancel=cancel)
        evaluation = probes.evaluate(store, split="val", sae=sae, cancel=cancel)
        probes.save(ws.probe_dir(name))
        atomic_write_json(ws.probe_dir(name) / "metrics.json",
                          {"schema_version": 1, "fingerprint": fingerprint, "sae": name, "evaluation": evaluation})
    progress(Progress("probes", len(names), len(names), "done"))
    from .report import workspace_report

    return workspace_report(ws)
