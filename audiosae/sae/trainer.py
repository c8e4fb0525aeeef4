"""Grid training: one pass over the data feeds every config; the schedule and the convergence
rule; checkpoints; resume.

Schedule (``Schedule``), in optimizer steps of ``batch_size`` frames:

* a budget of ``total_steps``: ``epochs`` passes over the training frames (the fixed
  schedule of before), or ``frames`` (by default ``defaults.default_sae_frames``);
* the learning rate warms up linearly over ``lr_warmup_steps``, stays constant, and decays
  linearly to 0 over the last ``LR_DECAY_FRACTION`` of the budget;
* lambda (the sparsity coefficient) ramps from 0 over ``l1_warmup_steps``;
* every ``eval_every`` steps the loss of each SAE (lambda at full strength) is measured on
  held-out frames (up to ``defaults.SAE_HELD_OUT_FRAMES`` of the validation split; a fixed
  sample of training frames when there is none).  After the warm-ups, an SAE whose held-out
  loss improved by less than ``tolerance`` (relative to its best) in ``patience`` measurements
  in a row has *converged* (its plateau step is recorded).  With ``stop_on_plateau`` (the
  default unless ``epochs`` is given), once every SAE of the grid has converged the decay
  starts at once, lasting a quarter of the steps done so far (the same 80/20 proportion as a
  budget), and training ends after it.  An SAE that never reached its plateau within the
  budget is reported as ``converged: false``.
"""

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
import audiosae.sae.config as C
from .. import defaults as D
from .config import CHECKPOINT_FILE, CHECKPOINT_KIND, LR_DECAY_FRACTION, METRICS_EVERY, SAEConfig
from .group import _WidthGroup, group_key, make_group
from .model import SparseAutoencoder
from .stats import normalisation_stats


@dataclass
class _RunState:
    epoch: int = 0                  # current epoch
    batch_in_epoch: int = 0         # batches of ``epoch`` already consumed
    step: int = 0                   # optimizer steps done (all epochs)
    frames: int = 0                 # frames seen (all epochs)
    seconds: float = 0.0            # training time before this process
    epoch_sums: dict[str, list[float]] = field(default_factory=dict)   # metric sums of this epoch
    last_epoch: dict[str, dict[str, float]] = field(default_factory=dict)
    end_step: int = 0               # training ends after this step (the budget, or plateau + decay)
    decay_start: int = 0            # the learning rate decays linearly from here to end_step
    best: dict[str, float] = field(default_factory=dict)        # best held-out loss so far
    bad: dict[str, int] = field(default_factory=dict)           # measurements in a row without improvement
    plateau: dict[str, int] = field(default_factory=dict)       # step at which each SAE converged
    held_out: dict[str, float] = field(default_factory=dict)    # last held-out loss
    held_out_history: list[list[float]] = field(default_factory=list)   # [step, loss of each config]
    stopped: str = ""               # "plateau" once the decay was started early
    last_eval: int = -1             # step of the last held-out measurement


@dataclass(frozen=True)
class Schedule:
    """Steps, warm-ups, decay and the convergence rule of one grid run (module docstring)."""

    total_steps: int
    steps_per_epoch: int
    l1_warmup_steps: int
    lr_warmup_steps: int
    decay_steps: int
    eval_every: int
    stop_on_plateau: bool
    patience: int
    tolerance: float

    @property
    def warm_steps(self) -> int:
        """Held-out losses count towards a plateau only after both warm-ups."""
        return max(self.l1_warmup_steps, self.lr_warmup_steps)

    def lr_factor(self, done: int, decay_start: int, end_step: int) -> float:
        """Multiplier of the learning rate for the step after ``done`` steps."""
        decay_len = max(1, end_step - decay_start)
        factor = max(0.0, min(1.0, (end_step - done) / decay_len))
        if self.lr_warmup_steps > 0:
            factor *= min(1.0, (done + 1) / self.lr_warmup_steps)
        return factor

    def lam_factor(self, step: int) -> float:
        return min(1.0, step / self.l1_warmup_steps) if self.l1_warmup_steps > 0 else 1.0


def make_schedule(n_train: int, batch_size: int, *, epochs: int | None = None, frames: int | None = None,
                  l1_warmup_fraction: float = 0.05, lr_warmup_fraction: float = 0.0,
                  stop_on_plateau: bool | None = None, patience: int = D.SAE_PLATEAU_PATIENCE,
                  tolerance: float = D.SAE_PLATEAU_TOLERANCE, evals: int = D.SAE_EVALS_PER_BUDGET) -> Schedule:
    """The schedule for ``epochs`` passes (fixed length unless ``stop_on_plateau``) or a budget of
    ``frames`` (default ``defaults.default_sae_frames``; stops on a plateau unless told not to)."""
    if batch_size < 1:
        raise AudioSAEError("batch_size must be >= 1")
    if epochs is not None and frames is not None:
        raise AudioSAEError("give epochs or frames, not both")
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    if epochs is not None:
        if epochs < 1:
            raise AudioSAEError("epochs must be >= 1")
        total = int(epochs) * steps_per_epoch
        plateau_stop = bool(stop_on_plateau) if stop_on_plateau is not None else False
    else:
        if frames is None:
            frames = D.default_sae_frames(n_train, batch_size)
        if frames < 1:
            raise AudioSAEError(f"the frame budget must be >= 1, got {frames}")
        total = max(1, math.ceil(int(frames) / batch_size))
        plateau_stop = True if stop_on_plateau is None else bool(stop_on_plateau)
    for name, value in (("l1_warmup_fraction", l1_warmup_fraction), ("lr_warmup_fraction", lr_warmup_fraction)):
        if not 0 <= value <= 1:
            raise AudioSAEError(f"{name} must be in [0, 1], got {value}")
    if patience < 1 or not tolerance >= 0:
        raise AudioSAEError("patience must be >= 1 and tolerance >= 0")
    return Schedule(total_steps=total, steps_per_epoch=steps_per_epoch,
                    l1_warmup_steps=math.ceil(l1_warmup_fraction * total),
                    lr_warmup_steps=math.ceil(lr_warmup_fraction * total),
                    decay_steps=max(1, int(LR_DECAY_FRACTION * total)),
                    eval_every=max(1, total // max(1, evals)), stop_on_plateau=plateau_stop,
                    patience=int(patience), tolerance=float(tolerance))


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
                             "over, or resume with the same configs, budget, batch size, lr, warm-ups and seed")
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


def _held_out_frames(store: FrameStore, seed: int) -> tuple[torch.Tensor, str]:
    """A fixed sample of validation frames for the convergence rule (training frames if none)."""
    n = min(D.SAE_HELD_OUT_FRAMES, int(store.n_frames("val")))
    if n > 0:
        batch = next(iter(store.iter_batches("val", n, shuffle=True, seed=seed)))
        return batch["latents"][:n], "val"
    n = min(D.SAE_HELD_OUT_FRAMES, int(store.n_frames("train")))
    batch = next(iter(store.iter_batches("train", n, shuffle=True, seed=seed + 1_000_003)))
    return batch["latents"][:n], "train-sample"


def build_groups(configs: Sequence[SAEConfig], d_in: int, seed: int, device: torch.device) -> list[_WidthGroup]:
    """Configs stacked by (width, architecture, RMSNorm, k): the paper's SAEs of one width share a group."""
    by_key: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        by_key.setdefault(group_key(c), []).append(i)
    return [make_group([configs[i] for i in idx], idx, d_in, seed, device) for idx in by_key.values()]


def _check_configs(store: FrameStore, configs: Sequence[SAEConfig]) -> None:
    if not configs:
        raise AudioSAEError("no SAE configs to train")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise AudioSAEError(f"SAE config names must be unique, got {names}")
    for c in configs:
        if c.d_in != store.d_in:
            raise AudioSAEError(f"SAE {c.name!r} has d_in {c.d_in} but the frames are {store.d_in}-d")


def train_sae_grid(store: FrameStore, configs: list[SAEConfig], *, epochs: int | None = None,
                   frames: int | None = None, batch_size: int = D.SAE_BATCH_SIZE, lr: float = D.SAE_LR,
                   l1_warmup_fraction: float = D.SAE_L1_WARMUP_FRACTION, lr_warmup_fraction: float | None = None,
                   stop_on_plateau: bool | None = None, patience: int = D.SAE_PLATEAU_PATIENCE,
                   tolerance: float = D.SAE_PLATEAU_TOLERANCE, seed: int = 0,
                   device: str | torch.device = "cpu", progress: ProgressSink = null_progress,
                   cancel: CancelToken | None = None, checkpoint_dir: Path | None = None,
                   checkpoint_every_s: float = 30, parallel: Any = None) -> list[tuple[SparseAutoencoder, dict]]:
    """Train every config in one pass over the data per epoch; returns ``[(sae, train_metrics)]`` in order.

    The budget is ``epochs`` passes (a fixed schedule, as before: no learning-rate warm-up
    unless asked, no early stop unless ``stop_on_plateau``) or ``frames`` training frames
    (default ``defaults.default_sae_frames``, with the learning-rate warm-up and the plateau
    stop of the module docstring).  Each batch comes from ``store.iter_batches("train",
    batch_size, shuffle=True, seed=seed + epoch)`` and feeds all configs (equal widths and
    architectures stacked).  With ``checkpoint_dir`` the full state (weights, Adam moments,
    position in the epoch, normalisation, convergence bookkeeping) is written atomically every
    ``checkpoint_every_s`` seconds, at the end and before a cancel takes effect; a later call
    with the same arguments resumes from it and ends with the same weights as an
    uninterrupted run.  ``train_metrics`` are averages over the measured batches of the last
    (possibly partial) epoch in normalised units (``mse`` ~ FVU), the convergence facts
    (``converged``, ``plateau_step``, ``held_out_loss``, ``stopped``), the dead features at the
    end of training (``dead_features_train``: none fired in the last
    ``min(DEAD_WINDOW_FRAMES, n_train)`` frames) and bookkeeping (``steps``, ``frames``).

    ``parallel`` (None: one process) is a ``audiosae.distributed.training`` plan under torchrun:
    it builds this rank's groups, shares the held-out losses (the plateau rule sees the whole
    grid), and makes checkpoints collective (at held-out steps, one file per rank and step);
    only the configs this rank trains are returned.
    """
    _check_configs(store, configs)
    n_train = int(store.n_frames("train"))
    if n_train == 0:
        raise WorkspaceError("the training split has no frames")
    if lr_warmup_fraction is None:
        lr_warmup_fraction = 0.0 if epochs is not None else D.SAE_LR_WARMUP_FRACTION
    sched = make_schedule(n_train, batch_size, epochs=epochs, frames=frames, l1_warmup_fraction=l1_warmup_fraction,
                          lr_warmup_fraction=lr_warmup_fraction, stop_on_plateau=stop_on_plateau,
                          patience=patience, tolerance=tolerance)
    dev = device if isinstance(device, torch.device) else pick_device(str(device))
    d_in = int(store.d_in)
    groups = build_groups(configs, d_in, seed, dev) if parallel is None else parallel.build_groups(configs, d_in, seed, dev)
    window_steps = max(math.ceil(min(n_train, C.DEAD_WINDOW_FRAMES) / batch_size), 2 * METRICS_EVERY)

    settings: dict[str, Any] = dict(batch_size=batch_size, lr=lr, l1_warmup_fraction=l1_warmup_fraction, seed=seed)
    if epochs is not None and lr_warmup_fraction == 0 and not sched.stop_on_plateau:
        settings["epochs"] = epochs       # the fixed schedule of before: the same checkpoint key
    else:
        settings.update(epochs=epochs, total_steps=sched.total_steps, lr_warmup_fraction=lr_warmup_fraction,
                        stop_on_plateau=sched.stop_on_plateau, patience=sched.patience, tolerance=sched.tolerance,
                        eval_every=sched.eval_every)
    fingerprint = _fingerprint(store, configs, **settings)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    if parallel is not None and ckpt_path is not None:
        fingerprint = parallel.fingerprint(fingerprint)
        ckpt_path = parallel.checkpoint_to_load(ckpt_path)    # None: no step that every rank holds

    loaded = _load_checkpoint(ckpt_path, groups, fingerprint) if ckpt_path is not None else None
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    if loaded is None:
        progress(Progress("SAE input statistics", 0, None, "estimating the latent mean and scale"))
        mean, scale = normalisation_stats(store, batch_size=batch_size, seed=seed, cancel=cancel)
        state = _RunState(end_step=sched.total_steps, decay_start=sched.total_steps - sched.decay_steps)
    else:
        mean, scale, state = loaded
    mean_dev = mean.to(dev, torch.float32)
    held: dict[str, Any] = {}       # read when first needed: a finished checkpoint reads no data

    def held_out_x() -> torch.Tensor:
        if "x" not in held:
            raw, held["source"] = _held_out_frames(store, seed)
            held["x"] = (raw.to(dev, torch.float32) - mean_dev).mul_(scale)
        return held["x"]
    last_ckpt = time.monotonic()
    last_report = 0.0
    live: dict[str, dict[str, float]] = {}

    def checkpoint(cancelling: bool = False) -> None:
        nonlocal last_ckpt
        if ckpt_path is not None and not (cancelling and parallel is not None):   # a rank alone cannot commit
            state.seconds += time.monotonic() - last_ckpt
            last_ckpt = time.monotonic()
            if parallel is None:
                _save_checkpoint(ckpt_path, groups, mean, scale, state, fingerprint)
            else:
                parallel.save_checkpoint(ckpt_path, state.step,
                                         lambda path: _save_checkpoint(path, groups, mean, scale, state, fingerprint))

    def report(force: bool = False) -> None:
        nonlocal last_report
        now = time.monotonic()
        if force or now - last_report >= C.PROGRESS_INTERVAL_S:
            last_report = now
            epochs_done = state.frames / n_train
            progress(Progress("train SAEs", state.step, state.end_step,
                              f"step {state.step}/{state.end_step}, {epochs_done:.1f} epochs"
                              + (f" of {epochs}" if epochs is not None else ""),
                              metrics={"epoch": state.epoch, "step": state.step, "frames": state.frames,
                                       "converged": sorted(state.plateau),
                                       "configs": {k: dict(v) for k, v in live.items()}}))

    def evaluate_held_out() -> None:
        held_x = held_out_x()
        for grp in groups:
            sums = grp.held_out(held_x, cancel).tolist()
            for j, (sq_err, l1, active) in enumerate(sums):
                c = grp.configs[j]
                rows = held_x.shape[0]
                loss = sq_err / (rows * d_in) + grp.penalty(j, l1, active, rows)
                state.held_out[c.name] = loss
        if parallel is not None:   # every rank sees the whole grid's losses: the same plateau decisions
            state.held_out.update(parallel.merge_held_out({c.name: state.held_out[c.name]
                                                           for grp in groups for c in grp.configs}))
        losses = [state.held_out[c.name] for c in configs]
        state.held_out_history.append([state.step, *losses])
        if state.step <= sched.warm_steps or state.stopped or state.step > state.decay_start:
            return
        for c in configs:
            loss = state.held_out[c.name]
            best = state.best.get(c.name)
            if best is None or loss < best * (1 - sched.tolerance):
                state.best[c.name], state.bad[c.name] = loss, 0
            else:
                state.bad[c.name] = state.bad.get(c.name, 0) + 1
                if state.bad[c.name] >= sched.patience and c.name not in state.plateau:
                    state.plateau[c.name] = state.step
        if sched.stop_on_plateau and len(state.plateau) == len(configs):
            # Every SAE has converged: cool down now (a quarter of the steps so far), then stop.
            state.stopped = "plateau"
            state.decay_start = state.step
            decay_len = max(1, math.ceil(LR_DECAY_FRACTION / (1 - LR_DECAY_FRACTION) * state.step))
            state.end_step = min(sched.total_steps, state.step + decay_len)

    def held_out_check() -> None:
        try:
            evaluate_held_out()
        except JobCancelled:
            checkpoint(cancelling=True)
            raise
        state.last_eval = state.step

    while state.step < state.end_step:
        batches = store.iter_batches("train", batch_size, shuffle=True, seed=seed + state.epoch)
        seen = 0
        for batch in batches:
            if cancel is not None:
                try:
                    cancel.raise_if_cancelled()
                except JobCancelled:
                    checkpoint(cancelling=True)
                    raise
            if seen < state.batch_in_epoch:      # resume: these batches were consumed before the cut
                seen += 1
                continue
            if state.step % sched.eval_every == 0 and state.last_eval != state.step:
                held_out_check()                 # of the step before: cancellable, redone on resume
            x = (batch["latents"].to(dev, torch.float32) - mean_dev).mul_(scale)
            step = state.step + 1
            lam_scale = sched.lam_factor(step)
            lr_now = lr * sched.lr_factor(state.step, state.decay_start, state.end_step)
            measure = step % METRICS_EVERY == 1 or METRICS_EVERY == 1
            # Every group's gradients first (cancellable), then every update (not): a cancel
            # mid-step must not leave some groups one step ahead of the checkpointed state.
            try:
                for grp in groups:
                    grp.dead_now = grp.dead_mask(state.step, window_steps)
                group_sums = [grp.compute_gradients(x, lam_scale, measure, cancel) for grp in groups]
            except JobCancelled:
                checkpoint(cancelling=True)
                raise
            for grp, sums in zip(groups, group_sums):
                grp.adam_step(step, lr_now)
                grp.mark_fired(step)
                if measure:
                    rows = x.shape[0]
                    values = torch.stack([sums["sq_err"], sums["l1"], sums["active"]], 1).tolist()
                    for j, (sq_err, l1, active) in enumerate(values):
                        c = grp.configs[j]
                        loss = sq_err / d_in + lam_scale * grp.penalty(j, l1, active, rows) * rows
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
            due = ckpt_path is not None and time.monotonic() - last_ckpt >= checkpoint_every_s
            if parallel is not None and ckpt_path is not None:   # collective, at the held-out steps only
                due = state.step % sched.eval_every == 0 and parallel.any(due, "checkpoint due")
            if due:
                checkpoint()
            if state.step >= state.end_step:
                break
        else:
            state.last_epoch = _epoch_summary(state.epoch_sums, configs, d_in)
            state.epoch_sums = {}
            state.epoch += 1
            state.batch_in_epoch = 0
            report(force=True)
            continue
        break
    if state.last_eval != state.step:
        held_out_check()
    report(force=True)
    checkpoint()

    summary = _epoch_summary(state.epoch_sums, configs, d_in) if state.epoch_sums else {}
    results: list[tuple[SparseAutoencoder, dict]] = [None] * len(configs)  # type: ignore[list-item]
    norm_meta = {"mean_norm": float(mean.norm()), "scale": scale, "folded": True}
    for grp in groups:
        dead = grp.dead_mask(state.step, window_steps).sum(dim=1).tolist()
        for j, i in enumerate(grp.indices):
            c = configs[i]
            sae = grp.export(j, mean, scale).to(dev)
            training = {"epochs": epochs, "steps": state.step, "frames": state.frames, "batch_size": batch_size,
                        "budget_steps": sched.total_steps, "budget_frames": sched.total_steps * batch_size,
                        "epochs_seen": round(state.frames / n_train, 3),
                        "lr": lr, "lr_warmup_fraction": lr_warmup_fraction, "l1_warmup_fraction": l1_warmup_fraction,
                        "stop_on_plateau": sched.stop_on_plateau, "seed": seed, "architecture": c.label, "k": c.k,
                        "seconds": round(state.seconds + (time.monotonic() - last_ckpt), 3)}
            sae.metadata.update(normalisation=norm_meta, training=training)
            converged = c.name in state.plateau
            metrics = {**state.last_epoch.get(c.name, {}), **summary.get(c.name, {}), **training,
                       "converged": converged, "plateau_step": state.plateau.get(c.name),
                       "stopped": state.stopped or ("epochs" if epochs is not None else "budget"),
                       "held_out_loss": state.held_out.get(c.name), "held_out": held.get("source", "val" if store.n_frames("val") else "train-sample"),
                       "dead_features_train": int(dead[j]),
                       "units": "normalised latents (E||x||^2 = d_in); mse ~ fraction of variance unexplained"}
            results[i] = (sae, metrics)
    return results if parallel is None else [r for r in results if r is not None]


def calibrate_seconds_per_frame(configs: Sequence[SAEConfig], *, batch_size: int = D.SAE_BATCH_SIZE,
                                device: str | torch.device = "cpu", repeats: int = 2, seed: int = 0) -> float:
    """Seconds per training frame of the whole grid on this machine, from timed steps on random frames."""
    if not configs:
        return 0.0
    dev = device if isinstance(device, torch.device) else pick_device(str(device))
    d_in = configs[0].d_in
    groups = build_groups(configs, d_in, seed, dev)
    rows = min(batch_size, 1024)
    x = torch.randn(rows, d_in, generator=torch.Generator().manual_seed(seed)).to(dev)
    best = math.inf
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        for grp in groups:
            grp.compute_gradients(x, 1.0, False)
            grp.adam_step(r + 1, 1e-9)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if r > 0:                      # the first is a warm-up (allocation, kernel selection)
            best = min(best, time.perf_counter() - t0)
    return best / rows


def estimate_sae_seconds(configs: Sequence[SAEConfig], n_train: int, *, epochs: int | None = None,
                         frames: int | None = None, batch_size: int = D.SAE_BATCH_SIZE,
                         seconds_per_frame: float | None = None, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The budget and an upper-bound time of ``train_sae_grid`` (it stops earlier on a plateau).

    ``seconds_per_frame`` (the whole grid's, e.g. from the wizard's calibration) is measured
    with ``calibrate_seconds_per_frame`` when not given.  Returns ``steps``, ``frames``,
    ``epochs_equivalent``, ``seconds_per_frame`` and ``seconds`` (training plus held-out checks).
    """
    sched = make_schedule(max(1, n_train), batch_size, epochs=epochs, frames=frames)
    spf = calibrate_seconds_per_frame(configs, batch_size=batch_size, device=device) \
        if seconds_per_frame is None else float(seconds_per_frame)
    budget_frames = sched.total_steps * batch_size
    if epochs is not None:
        budget_frames = min(budget_frames, epochs * n_train)
    evals = sched.total_steps // sched.eval_every + 1
    held = min(D.SAE_HELD_OUT_FRAMES, max(1, n_train))
    seconds = spf * (budget_frames + evals * held / 3)      # a held-out check is a forward pass only
    return {"steps": sched.total_steps, "frames": budget_frames, "epochs_equivalent": budget_frames / max(1, n_train),
            "seconds_per_frame": spf, "seconds": seconds, "stops_on_plateau": sched.stop_on_plateau}
