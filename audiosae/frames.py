"""Streams of latent frames with their attribute labels, the input of SAE and probe training.

``FrameStore`` is the protocol; the workspace's sharded on-disk corpus implements it (and
streams, so an hour of audio never sits in RAM), ``ArrayFrames`` is the in-memory version
for tests and small jobs.  Batches are dicts of CPU tensors:

- ``latents``: float32 ``[B, D]``
- ``pitch``, ``loudness``, ``timbre``: int64 ``[B]`` class indices (see ``attributes``)
"""

from __future__ import annotations

from typing import Iterator, Literal, Protocol

import numpy as np
import torch

Split = Literal["train", "val"]
LABEL_COLUMNS = ("pitch", "loudness", "timbre")


class FrameStore(Protocol):
    d_in: int

    def n_frames(self, split: Split) -> int: ...

    def iter_batches(self, split: Split, batch_size: int, *, shuffle: bool, seed: int = 0,
                     columns: tuple[str, ...] = ("latents",)) -> Iterator[dict[str, torch.Tensor]]: ...


class ArrayFrames:
    """A ``FrameStore`` over in-memory arrays: ``{"train": {col: array}, "val": {col: array}}``."""

    def __init__(self, splits: dict[str, dict[str, np.ndarray | torch.Tensor]]):
        self._splits = {s: {k: torch.as_tensor(v) for k, v in cols.items()} for s, cols in splits.items()}
        self.d_in = int(self._splits["train"]["latents"].shape[1])

    def n_frames(self, split: Split) -> int:
        cols = self._splits.get(split)
        return 0 if cols is None else int(cols["latents"].shape[0])

    def source_table(self) -> dict[int, tuple[str, str, int]]:
        """``{source: (key, split, n_frames)}`` from an int ``source`` column (empty without one)."""
        out: dict[int, tuple[str, str, int]] = {}
        for split, cols in self._splits.items():
            if "source" not in cols:
                return {}
            ids, counts = torch.unique(cols["source"], return_counts=True)
            for sid, n in zip(ids.tolist(), counts.tolist()):
                out[int(sid)] = (str(int(sid)), split, int(n))
        return out

    def with_splits(self, split_of: dict[int, str]) -> "ArrayFrames":
        """Rows regrouped by their ``source`` column: ``split_of[source]`` is "train", "val" or
        anything else (left out)."""
        names = sorted({c for cols in self._splits.values() for c in cols})
        allcols = {c: torch.cat([cols[c] for cols in self._splits.values()]) for c in names}
        side = [split_of.get(int(s), "-") for s in allcols["source"].tolist()]
        out = {}
        for split in ("train", "val"):
            keep = torch.tensor([x == split for x in side], dtype=torch.bool)
            out[split] = {c: v[keep] for c, v in allcols.items()}
        return ArrayFrames(out)

    def iter_batches(self, split: Split, batch_size: int, *, shuffle: bool, seed: int = 0,
                     columns: tuple[str, ...] = ("latents",)) -> Iterator[dict[str, torch.Tensor]]:
        cols = self._splits[split]
        n = self.n_frames(split)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield {c: (cols[c][idx].float() if c == "latents" else cols[c][idx].long()) for c in columns}
