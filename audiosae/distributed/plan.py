"""Who does what: deterministic splits of sources, SAEs and probe sets over ranks.

Every split is a pure function of its inputs and the world size, computed the same way on
every rank (no messages), so a rerun or a resume with the same world size gives every rank the
same work.
"""

from __future__ import annotations

from typing import Any, Sequence


def balance(costs: Sequence[float], world_size: int) -> list[int]:
    """The rank of each item: longest job first onto the least-loaded rank (ties: the lower
    index, the lower rank).  Within 4/3 of the best makespan (Graham's LPT bound)."""
    if world_size < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    load = [0.0] * world_size
    owner = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        r = min(range(world_size), key=lambda r: (load[r], r))
        owner[i] = r
        load[r] += float(costs[i])
    return owner


def source_ranks(source_ids: Sequence[str], world_size: int) -> dict[str, int]:
    """``{source_id: rank}`` for a build: the sources in sorted id order, the i-th to rank
    ``i % world_size`` (the stable order makes a rerun give every rank the same sources)."""
    return {sid: i % world_size for i, sid in enumerate(sorted(source_ids))}


def sae_cost(cfg: Any) -> float:
    """Relative cost of one SAE's training step: its dictionary width (the matmuls are
    d_in x d_sae per frame); the autograd architectures cost about 1.5x the paper's SAE."""
    return float(cfg.d_sae) * (1.0 if getattr(cfg, "is_default_architecture", True) else 1.5)


def sae_ranks(configs: Sequence[Any], world_size: int) -> list[int]:
    """The rank that trains each config of a grid (``balance`` on ``sae_cost``)."""
    return balance([sae_cost(c) for c in configs], world_size)


def probe_ranks(widths: Sequence[int], world_size: int) -> list[int]:
    """The rank that trains each probe set, from the width of its features (d_sae, or d_in
    for the raw-latent baseline)."""
    return balance([float(w) for w in widths], world_size)
