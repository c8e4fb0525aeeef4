"""Grid training: one pass over the data feeds every config; checkpoints; resume."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..devices import pick_device
from ..errors import AudioSAEError, JobCancelled, WorkspaceError
from ..frames import FrameStore
from ..jobs import CancelToken, Progress, ProgressSink, null_progress
from ..storage import check_schema, load_tensors, load_tensors_metadata, save_tensors
from . import config as C
from .config import CHECKPOINT_FILE, CHECKPOINT_KIND, LR_DECAY_FRACTION, METRICS_EVERY, SAEConfig
from .group import _WidthGroup
from .model import SparseAutoencoder
from .stats import normalisation_stats


@dataclass
class _RunState:
    epoch: int = 0                  # current epoch (== epochs when finished)
    batch_in_epoch: int = 0         # batches of ``epoch`` already consumed
    step: int = 0                   # optimizer steps done (all epochs)
    frames: int = 0                 # frames seen (all epochs)
    seconds: float = 0.0            # training time before this process
    epoch_sums: dict[str, list[float]] = field(default_factory=dict)   # metric sums of this epoch
    last_epoch: dict[str, dict[str, float]] = field(default_factory=dict)


def _fingerprint(store: FrameStore, configs: Sequence[SAEConfig], **settings: Any) -> dict[str, Any]:
    return {"configs": [c.to_dict() for c in configs], "d_in": int(store.d_in),
            "n_train": int(store.n_frames("train")), **settings}


def _save_checkpoint(path: Path, groups: list[_WidthGroup], mean: torch.Tensor, scale: float, state: _RunState,
                     fingerprint: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {"norm.mean": mean}
    for grp in groups:
        tensors.update(grp.state_tensors())
    meta = {"kind": CHECKPOINT_KIND, "fingerprint": fingerprint, "norm_scale": scale,
            "state": asdict(state)}
    save_tensors(path, tensors, metadata=meta)


def _load_checkpoint(path: Path, groups: list[_WidthGroup], fingerprint: dict[str, Any]
                     ) -> tuple[torch.Tensor, float, _RunState] | None:
    if not path.is_file():
        return None
    meta = load_tensors_metadata(path, kind="SAE training checkpoint")
    check_schema(meta, path, kind="SAE training checkpoint")
    if meta.get("kind") != CHECKPOINT_KIND:
        raise WorkspaceError(f"{path}: not an SAE grid checkpoint")
    if meta.get("fingerprint") != fingerprint:
        raise WorkspaceError(f"{path}: checkpoint was made with other settings or data; delete it to start "
                             "over, or resume with the same configs, epochs, batch size, lr, warm-up and seed")
    tensors = load_tensors(path, kind="SAE training checkpoint")
    for grp in groups:
        grp.load_state_tensors(tensors, path)
    try:
        state = _RunState(**meta["state"])
        scale = float(meta["norm_scale"])
        mean = tensors["norm.mean"].double()
    except (KeyError, TypeError, ValueError) as exc:
        raise WorkspaceError(f"{path}: checkpoint state is incomplete ({exc})") from None
    return mean, scale, state


def _epoch_summary(sums: dict[str, list[float]], configs: Sequence[SAEConfig],
                   d_in: int) -> dict[str, dict[str, float]]:
    out = {}
    for c in configs:
        s = sums.get(c.name)
        if not s or s[4] == 0:
            continue
        sq_err, l1, active, loss, frames = s
        out[c.name] = {"loss": loss / frames, "mse": sq_err / (frames * d_in), "l1": l1 / frames,
                       "l0": active / frames, "sparsity": 1.0 - active / (frames * c.d_sae)}
    return out


def train_sae_grid(store: FrameStore, configs: list[SAEConfig], *, epochs: int, batch_size: int = 4096,
                   lr: float = 1e-3, l1_warmup_fraction: float = 0.05, seed: int = 0,
                   device: str | torch.device = "cpu", progress: ProgressSink = null_progress,
                   cancel: CancelToken | None = None, checkpoint_dir: Path | None = None,
                   checkpoint_every_s: float = 30) -> list[tuple[SparseAutoencoder, dict]]:
    """Train every config in one pass over the data per epoch; returns ``[(sae, train_metrics)]`` in order.

    Each batch comes from ``store.iter_batches("train", batch_size, shuffle=True, seed=seed + epoch)``
    and feeds all configs (equal widths stacked).  With ``checkpoint_dir`` the full state
    (weights, Adam moments, position in the epoch, normalisation) is written atomically every
    ``checkpoint_every_s`` seconds, at the end and before a cancel takes effect; a later call
    with the same arguments resumes from it and ends with the same weights as an
    uninterrupted run.  ``train_metrics`` are averages over the measured batches of the last
    epoch, in normalised units (``mse`` ~ FVU), plus bookkeeping.
    """
    if not configs:
        raise AudioSAEError("no SAE configs to train")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise AudioSAEError(f"SAE config names must be unique, got {names}")
    for c in configs:
        if c.d_in != store.d_in:
            raise AudioSAEError(f"SAE {c.name!r} has d_in {c.d_in} but the frames are {store.d_in}-d")
    if epochs < 1 or batch_size < 1:
        raise AudioSAEError("epochs and batch_size must be >= 1")
    if not 0 <= l1_warmup_fraction <= 1:
        raise AudioSAEError(f"l1_warmup_fraction must be in [0, 1], got {l1_warmup_fraction}")
    n_train = int(store.n_frames("train"))
    if n_train == 0:
        raise WorkspaceError("the training split has no frames")
    dev = device if isinstance(device, torch.device) else pick_device(str(device))
    d_in = int(store.d_in)

    by_width: dict[int, list[int]] = {}
    for i, c in enumerate(configs):
        by_width.setdefault(c.d_sae, []).append(i)
    groups = [_WidthGroup([configs[i] for i in idx], idx, d_in, seed, dev) for idx in by_width.values()]

    steps_per_epoch = math.ceil(n_train / batch_size)
    total_steps = epochs * steps_per_epoch
    warmup_steps = math.ceil(l1_warmup_fraction * total_steps)
    decay_steps = max(1, int(LR_DECAY_FRACTION * total_steps))
    fingerprint = _fingerprint(store, configs, epochs=epochs, batch_size=batch_size, lr=lr,
                               l1_warmup_fraction=l1_warmup_fraction, seed=seed)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None

    loaded = _load_checkpoint(ckpt_path, groups, fingerprint) if ckpt_path is not None else None
    if loaded is None:
        progress(Progress("SAE input statistics", 0, None, "estimating the latent mean and scale"))
        mean, scale = normalisation_stats(store, batch_size=batch_size, seed=seed, cancel=cancel)
        state = _RunState()
    else:
        mean, scale, state = loaded
    mean_dev = mean.to(dev, torch.float32)
    last_ckpt = time.monotonic()
    last_report = 0.0
    live: dict[str, dict[str, float]] = {}

    def checkpoint() -> None:
        nonlocal last_ckpt
        if ckpt_path is not None:
            state.seconds += time.monotonic() - last_ckpt
            last_ckpt = time.monotonic()
            _save_checkpoint(ckpt_path, groups, mean, scale, state, fingerprint)

    def report(force: bool = False) -> None:
        nonlocal last_report
        now = time.monotonic()
        if force or now - last_report >= C.PROGRESS_INTERVAL_S:
            last_report = now
            progress(Progress("train SAEs", state.step, total_steps,
                              f"epoch {min(state.epoch + 1, epochs)}/{epochs}",
                              metrics={"epoch": state.epoch, "step": state.step,
                                       "configs": {k: dict(v) for k, v in live.items()}}))

    while state.epoch < epochs:
        batches = store.iter_batches("train", batch_size, shuffle=True, seed=seed + state.epoch)
        seen = 0
        for batch in batches:
            if cancel is not None:
                try:
                    cancel.raise_if_cancelled()
                except JobCancelled:
                    checkpoint()
                    raise
            if seen < state.batch_in_epoch:      # resume: these batches were consumed before the cut
                seen += 1
                continue
            x = (batch["latents"].to(dev, torch.float32) - mean_dev).mul_(scale)
            step = state.step + 1
            lam_scale = min(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0
            lr_now = lr * max(0.0, min(1.0, (total_steps - state.step) / decay_steps))
            measure = step % METRICS_EVERY == 1 or METRICS_EVERY == 1
            # Every group's gradients first (cancellable), then every update (not): a cancel
            # mid-step must not leave some groups one step ahead of the checkpointed state.
            try:
                group_sums = [grp.compute_gradients(x, lam_scale, measure, cancel) for grp in groups]
            except JobCancelled:
                checkpoint()
                raise
            for grp, sums in zip(groups, group_sums):
                grp.adam_step(step, lr_now)
                if measure:
                    rows = x.shape[0]
                    values = torch.stack([sums["sq_err"], sums["l1"], sums["active"]], 1).tolist()
                    for j, (sq_err, l1, active) in enumerate(values):
                        c = grp.configs[j]
                        loss = sq_err / d_in + lam_scale * c.l1_coefficient * l1 / math.sqrt(d_in)
                        acc = state.epoch_sums.setdefault(c.name, [0.0] * 5)
                        for k, v in enumerate((sq_err, l1, active, loss, rows)):
                            acc[k] += v
                        live[c.name] = {"loss": loss / rows, "mse": sq_err / (rows * d_in), "l1": l1 / rows,
                                        "l0": active / rows, "sparsity": 1.0 - active / (rows * c.d_sae),
                                        "l1_coefficient": lam_scale * c.l1_coefficient}
            if not math.isfinite(sum(v["loss"] for v in live.values())):
                raise AudioSAEError("SAE training diverged (loss is NaN or inf); lower the learning rate")
            state.step = step
            state.batch_in_epoch = seen = seen + 1
            state.frames += x.shape[0]
            report(force=state.step == 1)
            if ckpt_path is not None and time.monotonic() - last_ckpt >= checkpoint_every_s:
                checkpoint()
        state.last_epoch = _epoch_summary(state.epoch_sums, configs, d_in)
        state.epoch_sums = {}
        state.epoch += 1
        state.batch_in_epoch = 0
        report(force=True)
    checkpoint()

    results: list[tuple[SparseAutoencoder, dict]] = [None] * len(configs)  # type: ignore[list-item]
    norm_meta = {"mean_norm": float(mean.norm()), "scale": scale, "folded": True}
    for grp in groups:
        for j, i in enumerate(grp.indices):
            sae = grp.export(j, mean, scale).to(dev)
            training = {"epochs": epochs, "steps": state.step, "frames": state.frames, "batch_size": batch_size,
                        "lr": lr, "l1_warmup_fraction": l1_warmup_fraction, "seed": seed,
                        "seconds": round(state.seconds + (time.monotonic() - last_ckpt), 3)}
            sae.metadata.update(normalisation=norm_meta, training=training)
            metrics = {**state.last_epoch.get(configs[i].name, {}), **training,
                       "units": "normalised latents (E||x||^2 = d_in); mse ~ fraction of variance unexplained"}
            results[i] = (sae, metrics)
    return results


