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
from .probes import L2_GRID, cross_validate_probes, range_warning, train_probes
from . import defaults as D
from .sae import SAEConfig, SparseAutoencoder, evaluate_sae, grid_configs, train_sae_grid
from .sae.config import default_name, parse_architecture
from .sae.trainer import estimate_sae_seconds
from .storage import atomic_write_json, read_json
from .workspace import Workspace, remove_stale_temp_files

RAW_BASELINE = "raw-latent"
DEFAULT_CHECKPOINT_EVERY_S = 30.0
PROBE_METRICS_SCHEMA = 2     # probe metrics.json "format": 1 = val split only; 2 = + cv, warnings, within1/mae


def sae_name(expansion: int, l1: float, architecture: str = D.DEFAULT_ARCHITECTURE, rmsnorm: bool | None = None,
             k: int | None = None) -> str:
    """``x8-l1_0.05`` for the paper's SAE; ``x8-topk32``, ``x8-jumprelu_l0_1`` (``-nonorm``) otherwise."""
    arch, norm = parse_architecture(architecture)
    return default_name(expansion, l1, arch, norm if rmsnorm is None else rmsnorm, k)


@dataclass
class TrainSettings:
    """What ``audiosae train`` and the wizard train; the defaults are ``audiosae.defaults``.

    ``epochs`` (fixed passes) or ``frames`` (a budget) set the SAE training length; with
    neither, the default budget for the corpus with the plateau stop (``sae.trainer``).
    ``l1s`` are the lambdas of relu/jumprelu grids, ``ks`` the k of topk/batchtopk grids.
    """

    expansions: Sequence[int] = D.DEFAULT_EXPANSIONS
    l1s: Sequence[float] = D.DEFAULT_L1S
    epochs: int | None = None
    batch_size: int = D.SAE_BATCH_SIZE
    seed: int = D.SEED
    frames: int | None = None
    architecture: str = D.DEFAULT_ARCHITECTURE
    rmsnorm: bool | None = None            # None: the architecture's default (RMSNorm on)
    ks: Sequence[int] = D.DEFAULT_KS

    def sae_configs(self, d_in: int) -> list[SAEConfig]:
        """The grid: (expansion, lambda) pairs, or (expansion, k) for topk/batchtopk."""
        return grid_configs(d_in, [int(e) for e in self.expansions], [float(v) for v in self.l1s],
                            architecture=self.architecture, rmsnorm=self.rmsnorm, ks=[int(k) for k in self.ks])

    def sae_budget(self, n_train: int) -> dict:
        """``epochs`` / ``frames`` for ``train_sae_grid``: what the user asked for, else the default budget."""
        if self.epochs is not None:
            return {"epochs": int(self.epochs)}
        return {"frames": int(self.frames) if self.frames is not None
                else D.default_sae_frames(n_train, self.batch_size)}
    # probes: cross-validated by source when the corpus has fewer than probe_cv_max_sources
    # sources (probe_folds folds; 0 or 1 = never), L2 chosen from probe_l2 inside training
    probe_folds: int = D.PROBE_FOLDS
    probe_cv_max_sources: int = D.PROBE_CV_MAX_SOURCES
    probe_l2: Sequence[float] = L2_GRID
    probe_class_weight: str | None = D.PROBE_CLASS_WEIGHT
    probe_max_epochs: int = D.PROBE_MAX_EPOCHS
    # the attributes probed (default the paper's three: the time budget of the SAE issue covers
    # them; every registered attribute of the workspace's spec can be added, each ~one more head)
    probe_attributes: Sequence[str] = ATTRIBUTES

    def probe_fingerprint(self, sae_fingerprint: str) -> str:
        weight = self.probe_class_weight
        if weight == "auto" and set(self.probe_attributes) <= set(ATTRIBUTES):
            weight = None   # "auto" weighs the paper's three as before: their probes keep their fingerprints
        items = [sae_fingerprint, PROBE_METRICS_SCHEMA, self.probe_folds, self.probe_cv_max_sources,
                 [float(v) for v in self.probe_l2], weight, D.PROBE_BATCH_SIZE, D.PROBE_LR,
                 self.probe_max_epochs, D.PROBE_PATIENCE, D.PROBE_LR_DECAY, D.PROBE_SELECTION_STRIDE]
        if tuple(self.probe_attributes) != tuple(ATTRIBUTES):  # the paper's three keep their old fingerprints
            items.append(list(self.probe_attributes))
        return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:12]

    def fingerprint(self, d_in: int, corpus_frames: int) -> str:
        blob = [list(self.expansions), list(self.l1s), self.epochs, self.batch_size, self.seed, d_in, corpus_frames]
        arch, norm = parse_architecture(self.architecture)
        if self.epochs is None or (arch, self.rmsnorm if self.rmsnorm is not None else norm) != ("relu", True):
            blob += [self.frames, arch, self.rmsnorm, list(self.ks) if arch in ("topk", "batchtopk") else None, 2]
        blob = json.dumps(blob)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _probe_done(ws: Workspace, name: str, fingerprint: str) -> bool:
    path = ws.probe_dir(name) / "metrics.json"
    if not path.is_file():
        return False
    try:
        return read_json(path).get("fingerprint") == fingerprint
    except AudioSAEError:
        return False


def ordinal_class_values(spec: Any, attributes: Sequence[str] = ("loudness", "timbre")) -> dict[str, list[float]]:
    """Class values of the ordinal ones among ``attributes`` (loudness in dB, timbre in Hz, the
    registered binned attributes' bin centres): what within-one-bin and the mean error use."""
    return {a: [spec.class_value(a, k) for k in range(spec.n_classes(a))] for a in attributes
            if spec.is_ordinal(a)}


def probe_attributes(spec: Any, settings: "TrainSettings") -> list[str]:
    """The attributes ``settings`` probes, checked against the workspace's spec."""
    names = list(dict.fromkeys(settings.probe_attributes or ATTRIBUTES))
    missing = [a for a in names if a not in spec.attributes]
    if missing:
        raise AudioSAEError(f"the workspace has no labels for {', '.join(missing)}; add them with "
                            f"`audiosae label WORKSPACE --attributes {','.join(missing)}` (it labels "
                            f"{', '.join(spec.attributes)})")
    return names


def check_labelled(store: Any, attributes: Sequence[str]) -> None:
    """Refuse to probe a registered attribute that no training frame has a label of (the
    instrument of a corpus without ground truth or side-car): one pass over the label columns."""
    if not attributes or not hasattr(store, "manifest"):
        return
    counts = {a: 0 for a in attributes}
    for i, shard in enumerate(store.manifest.shards):
        if shard.get("n_train", 0) > 0:
            rows = store.load_shard(i, "train", columns=tuple(attributes))
            for a in attributes:
                counts[a] += int((rows[a] >= 0).sum())
    empty = [a for a, n in counts.items() if n == 0]
    if empty:
        raise AudioSAEError(f"no training frame has a label of {', '.join(empty)} (the instrument attribute needs "
                            f"the built-in MIDI corpus or a --labels side-car); leave it out of --attributes")


def probe_fit_options(settings: TrainSettings, device: str = "cpu") -> dict[str, Any]:
    """The keyword arguments ``train`` gives ``probes.train_probes`` (and its cross-validation)."""
    return dict(l2=list(settings.probe_l2), class_weight=settings.probe_class_weight, batch_size=D.PROBE_BATCH_SIZE,
                lr=D.PROBE_LR, max_epochs=settings.probe_max_epochs, patience=D.PROBE_PATIENCE, device=device,
                lr_decay=D.PROBE_LR_DECAY, selection_stride=D.PROBE_SELECTION_STRIDE)


def train_and_evaluate_probes(ws: Workspace, store: Any, name: str, sae: SparseAutoencoder | None,
                              settings: TrainSettings, *,
                              device: str = "cpu", progress: ProgressSink = null_progress,
                              cancel: CancelToken | None = None) -> dict[str, Any]:
    """Train the probes kept in the workspace (on its train split, L2 chosen inside it) and
    measure them: cross-validated by source when the corpus has few sources, else on the
    val split.  Saves the probe set; returns the ``metrics.json`` document (``evaluation`` is
    what the report reads: per attribute the means over folds, ``*_std`` their spread)."""
    spec = ws.attribute_spec
    attrs = probe_attributes(spec, settings)
    n_classes = {a: spec.n_classes(a) for a in attrs}
    class_names = {a: spec.class_names(a) for a in attrs}
    values = ordinal_class_values(spec, attrs)
    kw = probe_fit_options(settings, device)
    probes = train_probes(store, sae=sae, n_classes=n_classes, class_names=class_names, seed=settings.seed,
                          progress=progress, cancel=cancel, **kw)
    holdout = probes.evaluate(store, split="val", sae=sae, cancel=cancel, class_values=values)
    warnings = []
    for a in values:
        line = range_warning(a, probes.metrics["class_counts"][a], holdout[a]["support"], class_names[a],
                             where="val split")
        if line:
            warnings.append(line)
    n_sources = len(store.source_table()) if hasattr(store, "source_table") else 0
    # schema_version is the storage-wide one (older readers refuse newer files); the layout of
    # this document has its own version: 1 = evaluation on the val split only (no "format" key)
    doc: dict[str, Any] = {"schema_version": 1, "format": PROBE_METRICS_SCHEMA, "holdout": holdout,
                           "n_sources": n_sources}
    if settings.probe_folds >= 2 and 2 <= n_sources < settings.probe_cv_max_sources:
        cv = cross_validate_probes(store, sae=sae, n_classes=n_classes, n_folds=settings.probe_folds,
                                   seed=settings.seed, class_values=values, class_names=class_names,
                                   progress=progress, cancel=cancel, **kw)
        doc.update(method=f"cross-validation by source, {cv['n_folds']} folds", evaluation=cv["summary"],
                   cv={"n_folds": cv["n_folds"], "folds": cv["folds"]})
        warnings = cv["warnings"]
    else:
        doc.update(method="val split", evaluation=holdout)
    doc["warnings"] = warnings
    probes.save(ws.probe_dir(name))
    return doc


def train_workspace(ws: Workspace, settings: TrainSettings, *, device: str = "cpu",
                    progress: ProgressSink = null_progress, cancel: CancelToken | None = None,
                    checkpoint_every_s: float = DEFAULT_CHECKPOINT_EVERY_S, parallel: Any = None) -> dict[str, Any]:
    """Train the SAE grid of ``settings``, then the probes; returns the workspace report.

    ``checkpoint_every_s``: how often the grid's state is saved (a ``kill -9`` loses at most
    this much training; a cancel always saves first).  ``parallel``: this rank's plan under
    torchrun (``audiosae.distributed.training``; None: one process, as always).
    """
    cancel = cancel or CancelToken()
    for e in settings.expansions:
        if e < 1:
            raise AudioSAEError(f"expansion must be >= 1, got {e}")
    for lam in settings.l1s:
        if lam < 0:
            raise AudioSAEError(f"L1 coefficient must be >= 0, got {lam}")
    if settings.epochs is not None and settings.epochs < 1:
        raise AudioSAEError("epochs must be >= 1")
    if settings.frames is not None and settings.frames < 1:
        raise AudioSAEError("the frame budget must be >= 1")
    if int(settings.probe_folds) < 0:
        raise AudioSAEError(f"probe folds must be >= 0 (0 or 1 = no cross-validation), got {settings.probe_folds}")
    if settings.probe_class_weight not in (None, "balanced", "auto"):
        raise AudioSAEError(f"probe class weights must be None, 'balanced' or 'auto', "
                            f"got {settings.probe_class_weight!r}")
    if parallel is None or parallel.rank == 0:
        remove_stale_temp_files(ws.root)  # left by a run that was killed mid-write
    probe_attributes(ws.attribute_spec, settings)  # an attribute the workspace lacks fails before any training
    store = ws.frame_store()
    check_labelled(store, [a for a in probe_attributes(ws.attribute_spec, settings) if a not in ATTRIBUTES])
    if store.n_frames("val") == 0:
        raise AudioSAEError("the corpus has no validation frames (it needs at least two sources)")
    fingerprint = settings.fingerprint(store.d_in, store.n_frames("train"))
    configs = settings.sae_configs(store.d_in)

    # 1. SAEs: skip the grid when every SAE is already saved with these settings.
    def saved(cfg: SAEConfig) -> bool:
        try:
            return read_json(ws.sae_dir(cfg.name) / "metrics.json").get("fingerprint") == fingerprint
        except AudioSAEError:
            return False

    todo = {c.name for c in configs if not saved(c)}
    if parallel is not None:
        parallel.barrier("SAEs to train")   # every rank has looked before any writes
    if todo:
        # Always the whole grid: its checkpoint is keyed by the full config list, so a run killed
        # while saving the SAEs resumes from the finished checkpoint (no training pass) instead
        # of refusing it as "other settings"; only the unsaved SAEs are written.
        budget = settings.sae_budget(store.n_frames("train"))
        results = train_sae_grid(store, configs, **budget, batch_size=settings.batch_size, seed=settings.seed, device=device, progress=progress, cancel=cancel,
                                 checkpoint_dir=ws.root / "checkpoints" / f"grid-{fingerprint}",
                                 checkpoint_every_s=checkpoint_every_s, parallel=parallel)
        results = [(sae, m) for sae, m in results if sae.cfg.name in todo and (parallel is None or parallel.saves(sae.cfg.name))]
        for i, (sae, train_metrics) in enumerate(results):
            cancel.raise_if_cancelled()
            progress(Progress("evaluate SAEs", i, len(results), sae.cfg.name))
            metrics = evaluate_sae(sae, store, "val", cancel=cancel)
            metrics.update(fingerprint=fingerprint, train=train_metrics, epochs=settings.epochs,
                           backend=ws.backend_name, architecture=sae.cfg.label, k=sae.cfg.k,
                           converged=bool(train_metrics.get("converged")), steps=train_metrics.get("steps"),
                           frames=train_metrics.get("frames"), plateau_step=train_metrics.get("plateau_step"),
                           dead_features_train=train_metrics.get("dead_features_train"))
            sae.save(ws.sae_dir(sae.cfg.name), metrics=metrics,
                     extra={"backend": ws.backend_name, "expansion": sae.cfg.d_sae // sae.cfg.d_in})

    # 2. Probes on each SAE's features, then the raw-latent baseline.
    names = [c.name for c in configs] + [RAW_BASELINE]
    probe_fp = settings.probe_fingerprint(fingerprint)
    if parallel is not None:
        parallel.barrier("SAEs saved")
        mine = set(parallel.probe_names(names, [c.d_sae for c in configs] + [store.d_in]))
    for i, name in enumerate(names):
        cancel.raise_if_cancelled()
        if (parallel is not None and name not in mine) or _probe_done(ws, name, probe_fp):
            continue
        progress(Progress("probes", i, len(names), f"training probes on {name}"))
        sae = None if name == RAW_BASELINE else SparseAutoencoder.load(ws.sae_dir(name), device=device)
        metrics = train_and_evaluate_probes(ws, store, name, sae, settings, device=device, progress=progress, cancel=cancel)
        metrics.update(fingerprint=probe_fp, sae=name)
        atomic_write_json(ws.probe_dir(name) / "metrics.json", metrics)
    if parallel is not None:
        parallel.barrier("probes saved")
    progress(Progress("probes", len(names), len(names), "done"))
    from .report import workspace_report

    return workspace_report(ws)


def estimate_train_seconds(settings: TrainSettings, d_in: int, n_train: int, *, device: str = "cpu",
                           seconds_per_frame: float | None = None) -> dict[str, Any]:
    """The SAE grid's budget and an upper bound of its time (``sae.trainer.estimate_sae_seconds``):
    what ``audiosae train`` prints before it starts; the wizard calls it with its own calibration."""
    return estimate_sae_seconds(settings.sae_configs(d_in), n_train, batch_size=settings.batch_size,
                                seconds_per_frame=seconds_per_frame, device=device, **settings.sae_budget(n_train))
