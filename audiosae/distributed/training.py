"""SAE grids under torchrun: ``GridParallel`` (ranks split the grid) and ``DataParallel``
(ranks split every batch and all-reduce the gradients).  ``sae.trainer.train_sae_grid`` takes
either as ``parallel=``; ``train_workspace`` takes the same object for the probes and the files.

Grid-parallel: rank r trains the configs ``plan.sae_ranks`` gives it, each reading every batch
(the same seeded stream as one process).  The configs of one width that land on one rank are
stacked as in one process, and their row chunks are sized for the whole width's stack
(``chunk_stack``), so every SAE sees exactly the arithmetic of a single-process run: with the
same thread count the weights are bit-equal.  The only messages are the held-out losses (a
few floats every ``eval_every`` steps: the plateau rule looks at the whole grid, as in one
process) and the checkpoint handshakes.

Data-parallel: every rank holds every SAE and reads every global batch; rank r computes the
gradients of rows ``[r B / W, (r + 1) B / W)``, scaled by its share of the batch, and the
gradients are summed over ranks (one all-reduce of a flat buffer per group and step), so the
global batch, the learning rate and the schedule are a single process'.  Sums are taken in
another order than one process', so the weights agree within float32 rounding, not bit for
bit (``tests/core/test_distributed.py`` states the tolerance).  BatchTopK needs its k-th
largest activation over the whole batch and is refused here (train it grid-parallel).

Checkpoints: at held-out steps, when rank 0's clock says one is due, each rank that owns state
writes ``<checkpoint>.rank<r>-of-<W>.step<S>.safetensors`` (data-parallel: rank 0 only, the
state is the same everywhere), then a barrier, then older steps are deleted.  A resume loads
the newest step that every rank holds, so a rank killed mid-write costs one interval, and
every rank restarts from the same step.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..errors import AudioSAEError
from .context import Context
from .plan import probe_ranks, sae_ranks

MODES = ("grid", "data")


class _Parallel:
    mode = ""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.rank, self.world_size = ctx.rank, ctx.world_size

    # ---- checkpoints ------------------------------------------------------------------------
    def _writes_checkpoint(self) -> bool:
        return True

    def _file_rank(self) -> int:
        return self.rank

    def _step_file(self, base: Path, step: int, rank: int | None = None) -> Path:
        r = self._file_rank() if rank is None else rank
        return base.with_name(f"{base.stem}.{self.mode}.rank{r}-of-{self.world_size}.step{step:09d}{base.suffix}")

    def _steps(self, base: Path) -> list[int]:
        pattern = re.compile(re.escape(f"{base.stem}.{self.mode}.rank{self._file_rank()}-of-{self.world_size}.step")
                             + r"(\d+)" + re.escape(base.suffix) + "$")
        if not base.parent.is_dir():
            return []
        return sorted(int(m.group(1)) for p in base.parent.iterdir() if (m := pattern.match(p.name)))

    def fingerprint(self, fingerprint: dict[str, Any]) -> dict[str, Any]:
        return {**fingerprint, "parallel": {"mode": self.mode, "world_size": self.world_size}}

    def checkpoint_to_load(self, base: Path) -> Path | None:
        """The file of the newest step every rank holds (collective); None to start afresh."""
        held = self.ctx.all_gather_object(self._steps(base), "checkpoint steps")
        common = set(held[0]).intersection(*map(set, held[1:])) if held else set()
        return self._step_file(base, max(common)) if common else None

    def save_checkpoint(self, base: Path, step: int, write: Callable[[Path], None]) -> None:
        """Write this rank's state for ``step``, wait for every rank, then drop older steps."""
        if self._writes_checkpoint():
            write(self._step_file(base, step))
        self.ctx.barrier(f"checkpoint at step {step}")
        if self._writes_checkpoint():
            for old in self._steps(base):
                if old != step:
                    self._step_file(base, old).unlink(missing_ok=True)

    def any(self, flag: bool, what: str) -> bool:
        return self.ctx.any(flag, what)

    def barrier(self, what: str) -> None:
        self.ctx.barrier(what)

    # ---- what this rank does after the grid ---------------------------------------------------
    def saves(self, name: str) -> bool:
        raise NotImplementedError

    def probe_names(self, names: Sequence[str], widths: Sequence[int]) -> list[str]:
        """The probe sets this rank trains (both modes split them: a probe set is small)."""
        owner = probe_ranks(widths, self.world_size)
        return [n for n, r in zip(names, owner) if r == self.rank]


class GridParallel(_Parallel):
    mode = "grid"

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.owned: set[str] = set()

    def build_groups(self, configs: Sequence[Any], d_in: int, seed: int, device: torch.device) -> list:
        from ..sae.group import group_key, make_group

        owner = sae_ranks(configs, self.world_size)
        by_key: dict[tuple, list[int]] = {}
        for i, c in enumerate(configs):
            by_key.setdefault(group_key(c), []).append(i)
        groups = []
        for idx in by_key.values():
            mine = [i for i in idx if owner[i] == self.rank]
            if mine:
                grp = make_group([configs[i] for i in mine], mine, d_in, seed, device)
                grp.chunk_stack = len(idx)     # the whole width's chunking: the arithmetic of one process
                groups.append(grp)
        self.owned = {configs[i].name for i in range(len(configs)) if owner[i] == self.rank}
        return groups

    def merge_held_out(self, local: dict[str, float]) -> dict[str, float]:
        merged: dict[str, float] = {}
        for part in self.ctx.all_gather_object(local, "held-out losses"):
            merged.update(part)
        return merged

    def saves(self, name: str) -> bool:
        return name in self.owned


class DataParallel(_Parallel):
    mode = "data"

    def _writes_checkpoint(self) -> bool:
        return self.rank == 0

    def _file_rank(self) -> int:
        return 0

    def checkpoint_to_load(self, base: Path) -> Path | None:
        steps = self.ctx.broadcast_object(self._steps(base), "checkpoint steps")
        return self._step_file(base, max(steps)) if steps else None

    def build_groups(self, configs: Sequence[Any], d_in: int, seed: int, device: torch.device) -> list:
        from ..sae.trainer import build_groups

        if any(c.architecture == "batchtopk" for c in configs):
            raise AudioSAEError("BatchTopK picks its threshold over the whole batch, which data-parallel "
                                "training splits; train it with --parallel grid")
        groups = build_groups(configs, d_in, seed, device)
        for grp in groups:
            grp.compute_gradients = self._sliced(grp, grp.compute_gradients)
        return groups

    def _sliced(self, grp: Any, inner: Callable) -> Callable:
        ctx, rank, world = self.ctx, self.rank, self.world_size
        default = bool(grp.configs[0].is_default_architecture)

        def compute_gradients(x: torch.Tensor, lam_scale: float, measure: bool, cancel: Any = None):
            batch = x.shape[0]
            lo, hi = rank * batch // world, (rank + 1) * batch // world
            if hi > lo:
                sums = inner(x[lo:hi], lam_scale, measure, cancel)
            else:                                    # a last short batch with fewer rows than ranks
                for g in grp.grads.values():
                    g.zero_()
                grp._fired = None
                sums = {k: torch.zeros(grp.G, dtype=torch.float64, device=grp.device)
                        for k in ("sq_err", "l1", "active")} if measure else None
            names = sorted(grp.grads)
            flat = torch.cat([grp.grads[k].reshape(-1) for k in names]).mul_((hi - lo) / batch)
            tensors = [flat]
            if measure:
                tensors.append(torch.stack([sums["sq_err"], sums["l1"], sums["active"]]))
            if measure or not default:
                fired = grp._fired if grp._fired is not None else \
                    torch.zeros(grp.G, grp.d_sae, dtype=torch.bool, device=grp.device)
                tensors.append(fired.to(torch.float32))
            ctx.all_reduce(tensors, f"gradients of {grp.key}")
            offset = 0
            for k in names:
                n = grp.grads[k].numel()
                grp.grads[k].copy_(flat[offset:offset + n].view_as(grp.grads[k]))
                offset += n
            if measure:
                sums = {"sq_err": tensors[1][0], "l1": tensors[1][1], "active": tensors[1][2]}
            if measure or not default:
                grp._fired = tensors[-1] > 0
            return sums

        return compute_gradients

    def merge_held_out(self, local: dict[str, float]) -> dict[str, float]:
        # every rank computed the same losses on the same weights; rank 0's are the record
        return self.ctx.broadcast_object(local, "held-out losses")

    def saves(self, name: str) -> bool:
        return self.rank == 0


def make_parallel(mode: str, ctx: Context) -> _Parallel:
    if mode not in MODES:
        raise AudioSAEError(f"unknown parallel mode {mode!r}; choose grid or data")
    return GridParallel(ctx) if mode == "grid" else DataParallel(ctx)
