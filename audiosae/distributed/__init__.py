"""Build and train under ``torchrun`` / ``torch.distributed`` (gloo on CPUs, NCCL on GPUs).

Nothing here runs without a launcher: ``launched()`` is False when ``RANK``/``WORLD_SIZE`` are
unset, and ``audiosae.workflows.train`` then takes the single-process path it always took.
Under ``torchrun``:

* ``audiosae build``: ranks share the sources, one manifest at the end (``build``);
* ``audiosae train --parallel grid`` (default): ranks split the grid's SAEs, each reading all
  the data, and the probe sets; ``--parallel data``: ranks split every batch and all-reduce
  the gradients (``training``);
* ``context``: the process group, timeouts, and errors that name a dead or stuck rank;
* ``plan``: the deterministic splits (sources, SAEs, probe sets).

Training streams shards as one process does (``workspace.ShardStore``): at most
``buffer_shards`` (2) shards plus one batch of carry-over in memory per rank, whatever the
corpus size, i.e. about 2 x 16384 frames x (4 d_in + ~40) bytes (~17 MB at d_in 128) of
corpus data; the rest of a rank's memory is its SAEs, their Adam state and one chunk of
activations (``sae.config.MAX_CHUNK_ELEMENTS``).
"""

from __future__ import annotations

import os

from .context import Context, DistEnv, DistributedError, current, detect, start, stop

__all__ = ["Context", "DistEnv", "DistributedError", "current", "detect", "launched", "start", "stop",
           "train_plan"]


def launched() -> bool:
    """True in a process that ``torchrun`` (or a launcher like it) started: ``RANK`` and ``WORLD_SIZE``."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def train_plan(mode: str, device: str | None) -> tuple[object, str] | None:
    """``(parallel plan, this rank's device)`` for ``train_workspace`` under torchrun; None otherwise."""
    if not launched():
        return None
    from .training import make_parallel

    ctx = start(device)
    return make_parallel(mode, ctx), ctx.device(device)
