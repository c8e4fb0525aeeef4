"""Input statistics: streaming moments and the normalisation applied before training."""

from __future__ import annotations

import math

import torch

from ..errors import WorkspaceError
from ..frames import FrameStore
from ..jobs import CancelToken
from .config import NORM_SAMPLE_FRAMES


class _MomentAccumulator:
    """Streaming per-dimension mean and total squared deviation (Chan's parallel update, float64)."""

    def __init__(self, d: int):
        self.n = 0
        self.mean = torch.zeros(d, dtype=torch.float64)
        self.m2 = torch.zeros(d, dtype=torch.float64)

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().to("cpu", torch.float64)
        nb = x.shape[0]
        if nb == 0:
            return
        mb = x.mean(0)
        m2b = (x - mb).pow(2).sum(0)
        delta = mb - self.mean
        total = self.n + nb
        self.mean += delta * (nb / total)
        self.m2 += m2b + delta.pow(2) * (self.n * nb / total)
        self.n = total

    @property
    def total_squared_deviation(self) -> float:
        return float(self.m2.sum())


def normalisation_stats(store: FrameStore, *, max_frames: int = NORM_SAMPLE_FRAMES, batch_size: int = 4096,
                        seed: int = 0, cancel: CancelToken | None = None) -> tuple[torch.Tensor, float]:
    """(per-dimension mean [d_in] float64, scale s) with ``E||(x - mean) * s||^2 = d_in``, from a sample."""
    acc = _MomentAccumulator(store.d_in)
    for batch in store.iter_batches("train", batch_size, shuffle=True, seed=seed):
        if cancel is not None:
            cancel.raise_if_cancelled()
        x = batch["latents"]
        acc.add(x[: max_frames - acc.n])
        if acc.n >= max_frames:
            break
    if acc.n == 0:
        raise WorkspaceError("the training split has no frames")
    mean_sq = acc.total_squared_deviation / acc.n
    if not math.isfinite(mean_sq):
        raise WorkspaceError("the training latents contain NaN or inf")
    if mean_sq <= 1e-20:
        raise WorkspaceError("the training latents are constant; an SAE cannot learn anything from them")
    return acc.mean, math.sqrt(store.d_in / mean_sq)


