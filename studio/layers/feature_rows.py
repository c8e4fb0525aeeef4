"""Feature rows of the heatmap: which SAE features are shown, in what order, and their colour scale.

Plain numpy (no Qt, no torch): the heatmap view draws what these give it.

- ``BlockMass``: per-block column sums of the clip's features, so the activation mass in
  any view range costs O(T / block * F) instead of O(T * F);
- ``order_scores`` maps an order key ("mass" / "probe" / "density") to a score per feature;
  ``row_order`` turns scores into the rows shown, top row first (the N highest, ties to the
  lower id; optionally grouped by a label per feature, for ordering and colouring rows by
  automatic feature label); ``label_runs`` gives the runs of equal labels down the rows;
- ``clip_density``, ``display_levels`` (the fixed colour scale of a clip);
- ``max_pyramid`` / ``gather_rows`` / ``FeatureRows``: each shown feature's row over time
  as a max pyramid (level ``l`` = max over runs of ``2**l`` frames), cached by feature id.

Why rows are cached: ``f`` is ``[T, F]`` row-major, so reading one feature over a long clip
touches one cache line (and often one page) per frame: gathering 64 features of a
10-minute clip is the most expensive step of a redraw.  After a view change the mass order
mostly keeps the same features, and only new ids are gathered; the image for any zoom is
then a slice of one pyramid level per row (at most two columns per device pixel, and max,
not mean, so a one-frame spike stays visible).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from audiosae.jobs import CancelToken, null_progress

DEFAULT_TOP_N = 64
MAX_TOP_N = 1024
LEVEL_PERCENTILE = 99.5
MASS_BLOCK = 64
LEVEL_SAMPLE_VALUES = 2_000_000   # values sampled (by rows) for the colour levels
PYRAMID_TOP = 1                   # halve rows down to one column: any zoom is a plain slice
KEEP_EXTRA_ROWS = 256             # cached rows beyond the shown ones, for quick re-sorts
COLOR_MAP = "inferno"


# ---- ordering ------------------------------------------------------------------------------
class BlockMass:
    """Column sums of ``f`` ``[T, F]`` per block of frames, for fast in-range mass."""

    def __init__(self, f: np.ndarray, block: int = MASS_BLOCK):
        self.f = f
        self.block = int(block)
        t, n_feat = f.shape
        n_blocks = t // self.block
        # float64 throughout: float32 block sums of a long clip differ in the 7th digit,
        # enough to swap two features of nearly equal mass.
        sums = f[: n_blocks * self.block].reshape(n_blocks, self.block, n_feat).sum(axis=1, dtype=np.float64)
        # Running total over blocks, so any whole-block span is one subtraction.
        self.cumulative = np.zeros((n_blocks + 1, n_feat))
        np.cumsum(sums, axis=0, out=self.cumulative[1:])
        self.n_blocks = n_blocks

    def in_range(self, i0: int, i1: int) -> np.ndarray:
        """Sum of ``f[i0:i1]`` over frames, per feature (float64 ``[F]``)."""
        i0, i1 = max(int(i0), 0), min(int(i1), self.f.shape[0])
        if i1 <= i0:
            return np.zeros(self.f.shape[1])
        b0 = -(-i0 // self.block)                      # first whole block starting at or after i0
        b1 = min(i1 // self.block, self.n_blocks)      # whole blocks ending at or before i1
        if b1 <= b0:
            return self.f[i0:i1].sum(axis=0, dtype=np.float64)
        total = self.cumulative[b1] - self.cumulative[b0]
        total += self.f[i0: b0 * self.block].sum(axis=0, dtype=np.float64)
        total += self.f[b1 * self.block: i1].sum(axis=0, dtype=np.float64)
        return total


def top_features(scores: np.ndarray, n: int) -> np.ndarray:
    """Ids of the ``n`` highest ``scores``, best first; ties go to the lower id."""
    scores = np.asarray(scores, dtype=np.float64)
    n = max(0, min(int(n), scores.shape[0]))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n < scores.shape[0]:
        # Keep every id tied with the n-th score so the tie-break below is by id.
        kth = np.partition(-scores, n - 1)[n - 1]
        candidates = np.flatnonzero(-scores <= kth)
    else:
        candidates = np.arange(scores.shape[0])
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:n]].astype(np.int64)


def row_order(scores: np.ndarray, n: int, labels: Sequence[Any] | Mapping[int, Any] | np.ndarray | None = None
              ) -> np.ndarray:
    """The heatmap's rows, top row first: feature ids of the ``n`` highest ``scores``.

    Without ``labels`` the rows go by score (ties to the lower id), as ``top_features``.
    With ``labels`` (a label per feature: a sequence indexed by feature id, or a mapping
    feature id -> label; ``None``, ``""`` or a missing id = unlabelled) the same ``n``
    features are shown, grouped by label: the groups in the order of their best row,
    unlabelled rows last, and within a group by score.  Which
    features are shown never depends on the labels, only their order.
    """
    ids = top_features(scores, n)
    if labels is None or not len(ids):
        return ids
    if not isinstance(labels, Mapping) and len(labels) != np.asarray(scores).shape[0]:
        raise ValueError(f"row_order: {len(labels)} labels for {np.asarray(scores).shape[0]} features")
    first_seen: dict[Any, int] = {}
    rank = np.empty(len(ids), dtype=np.int64)
    for r, fid in enumerate(ids):
        label = _label_of(labels, int(fid))
        if label is None:
            rank[r] = len(ids)           # unlabelled: after every labelled group
        else:
            rank[r] = first_seen.setdefault(label, len(first_seen))
    # stable: within a group, rows keep their score order
    return ids[np.argsort(rank, kind="stable")]


def label_runs(ids: Sequence[int] | np.ndarray, labels: Sequence[Any] | Mapping[int, Any] | np.ndarray
               ) -> list[tuple[Any, int, int]]:
    """``[(label, first row, end row), ...]``: runs of equal labels down the rows ``ids``
    (``label`` None for unlabelled rows), e.g. to colour a band beside each group."""
    runs: list[tuple[Any, int, int]] = []
    for r, fid in enumerate(np.asarray(ids, dtype=np.int64)):
        label = _label_of(labels, int(fid))
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1], r + 1)
        else:
            runs.append((label, r, r + 1))
    return runs


def _label_of(labels: Any, fid: int) -> Any:
    label = labels.get(fid) if isinstance(labels, Mapping) else labels[fid]
    if isinstance(label, np.generic):
        label = label.item()
    if label is None or (isinstance(label, str) and not label):
        return None
    if isinstance(label, float) and math.isnan(label):
        return None
    return label


def order_scores(order: str, *, mass: Callable[[], np.ndarray], probe: Callable[[], np.ndarray | None],
                 density: Callable[[], np.ndarray]) -> np.ndarray:
    """Scores for ``order`` ("mass" / "probe" / "density"); the callables compute lazily.

    A missing probe row (no models loaded) falls back to mass, so the pane is never empty.
    """
    if order == "probe":
        row = probe()
        if row is not None:
            return np.asarray(row, dtype=np.float64)
        return mass()
    if order == "density":
        return density()
    return mass()


def clip_density(f: np.ndarray) -> np.ndarray:
    """Fraction of frames on which each feature is active (``f > 0``)."""
    if f.shape[0] == 0:
        return np.zeros(f.shape[1])
    return np.count_nonzero(f > 0, axis=0) / float(f.shape[0])


def display_levels(f: np.ndarray, percentile: float = LEVEL_PERCENTILE) -> tuple[float, float]:
    """Colour levels ``(0, p)``: ``p`` = the percentile of the active values of ``f``.

    Computed once per clip on the unsteered features, so steering shows as a change of
    colour instead of being normalised away.  Large clips are subsampled by rows.
    """
    if f.size == 0:
        return 0.0, 1.0
    step = max(1, int(math.ceil(f.size / LEVEL_SAMPLE_VALUES)))
    sample = f[::step]
    active = sample[sample > 0]
    if active.size == 0:
        return 0.0, 1.0
    hi = float(np.percentile(active, percentile))
    return 0.0, (hi if hi > 0 and math.isfinite(hi) else 1.0)


# ---- rows as max pyramids ------------------------------------------------------------------
def max_pyramid(rows: np.ndarray) -> list[np.ndarray]:
    """Levels of ``rows`` ``[R, T]``: level ``l`` column ``c`` = max over frames ``[c 2^l, (c+1) 2^l)``."""
    levels = [rows]
    while levels[-1].shape[1] > PYRAMID_TOP:
        prev = levels[-1]
        half = prev.shape[1] // 2
        nxt = np.empty((prev.shape[0], half + prev.shape[1] % 2), dtype=np.float32)
        np.maximum(prev[:, 0: 2 * half: 2], prev[:, 1: 2 * half: 2], out=nxt[:, :half])
        if prev.shape[1] % 2:
            nxt[:, half] = prev[:, -1]
        levels.append(nxt)
    return levels


def gather_rows(features: np.ndarray, ids: Sequence[int], cancel: CancelToken | None = None
                ) -> dict[int, list[np.ndarray]]:
    """``{id: pyramid levels of features[:, id]}`` (float32, NaN-free) for the given ids."""
    ids = np.asarray(ids, dtype=np.int64)
    if not len(ids):
        return {}
    rows = np.ascontiguousarray(np.take(features, ids, axis=1).T, dtype=np.float32)
    if cancel is not None:
        cancel.raise_if_cancelled()
    if not np.isfinite(rows.sum()):   # rare: only then pay for the sanitising pass
        np.nan_to_num(rows, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    levels = max_pyramid(rows)
    return {int(fid): [level[r] for level in levels] for r, fid in enumerate(ids)}


def gather_job(token: Any, features: np.ndarray, ids: Sequence[int], *, progress=null_progress,
               cancel: CancelToken | None = None) -> tuple[Any, dict[int, list[np.ndarray]]]:
    """``gather_rows`` as a ``JobRunner`` job; ``token`` comes back with the result."""
    return token, gather_rows(features, ids, cancel=cancel)


class FeatureRows:
    """Cached row pyramids of one features matrix (the displayed f or f')."""

    def __init__(self, features: np.ndarray):
        self.features = features
        self.rows: dict[int, list[np.ndarray]] = {}

    @property
    def n_frames(self) -> int:
        return int(self.features.shape[0])

    def missing(self, ids: Sequence[int]) -> list[int]:
        return [int(i) for i in ids if int(i) not in self.rows]

    def add(self, rows: dict[int, list[np.ndarray]], keep: Sequence[int] = ()) -> None:
        self.rows.update(rows)
        if len(self.rows) > len(keep) + KEEP_EXTRA_ROWS:
            keep_set = {int(i) for i in keep}
            for fid in [f for f in self.rows if f not in keep_set][: len(self.rows) - len(keep) - KEEP_EXTRA_ROWS]:
                del self.rows[fid]

    def image(self, ids: Sequence[int], i0: int, i1: int, max_columns: int) -> tuple[np.ndarray, int, int]:
        """``(image [R, C] float32, first frame, frames per column)`` for frames ``[i0, i1)``.

        The level is the finest whose columns fit ``max_columns``; columns start on that
        level's grid (``first frame`` is a multiple of the pool), so panning never shimmers.
        """
        span = max(int(i1) - int(i0), 1)
        level = max(0, int(math.ceil(math.log2(span / max(int(max_columns), 1)))) if span > max_columns else 0)
        first = self.rows[int(ids[0])]
        level = min(level, len(first) - 1)
        while True:   # aligning to the level's grid can add a column: then go one level up
            pool = 1 << level
            c0, c1 = int(i0) >> level, min(-(-int(i1) // pool), len(first[level]))
            if c1 - c0 <= max(int(max_columns), 1) or level == len(first) - 1:
                break
            level += 1
        image = np.empty((len(ids), max(c1 - c0, 0)), dtype=np.float32)
        for r, fid in enumerate(ids):   # one slice copy per shown feature, never per frame
            image[r] = self.rows[int(fid)][level][c0:c1]
        return image, c0 * pool, pool


def frame_grid(times: np.ndarray, seconds: float) -> tuple[float, float]:
    """``(x0, dt)``: left edge of frame 0 and the frame spacing, from the frame centres."""
    if len(times) >= 2:
        dt = float(times[-1] - times[0]) / (len(times) - 1)
    else:
        dt = float(seconds) if seconds > 0 else 1.0
    x0 = float(times[0]) - 0.5 * dt if len(times) else 0.0
    return x0, dt
