"""The SAE feature heatmap pane and the feature-ordering logic behind it.

Pure numpy parts (no Qt in them, testable alone):

- ``BlockMass``: per-block column sums of the clip's features, so the activation mass in
  any view range costs O(T / block * F) instead of O(T * F);
- ``top_features``: the N highest scores, ties to the lower id; ``order_scores`` maps an
  order key ("mass" / "probe" / "density") to scores;
- ``clip_density``, ``display_levels``;
- ``max_pyramid`` / ``gather_rows`` / ``FeatureRows``: each shown feature's row over time
  as a max pyramid (level ``l`` = max over runs of ``2**l`` frames), cached by feature id.

Why rows are cached: ``f`` is ``[T, F]`` row-major, so reading one feature over a long clip
touches one cache line (and often one page) per frame — gathering 64 features of a
10-minute clip is the most expensive step of a redraw.  After a view change the mass order
mostly keeps the same features, and only new ids are gathered; the image for any zoom is
then a slice of one pyramid level per row (at most two columns per device pixel, and max,
not mean, so a one-frame spike stays visible).  Large gathers run as ``JobRunner`` jobs and
the newest request wins; the image and ``row_features`` (row -> feature id, used to map a
click) always change together.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox, QWidget

from audiosae.jobs import CancelToken, null_progress

from .state import FEATURE_ORDERS
from .waveform import PaneViewBox, start_job

DEFAULT_TOP_N = 64
MAX_TOP_N = 1024
LEVEL_PERCENTILE = 99.5
MASS_BLOCK = 64
LEVEL_SAMPLE_VALUES = 2_000_000   # values sampled (by rows) for the colour levels
GATHER_SYNC_LIMIT = 250_000       # frames x new rows gathered in the GUI thread (~5 ms); more -> a job
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


# ---- widgets -------------------------------------------------------------------------------
class HeatmapHeader(QWidget):
    """The heatmap's header: order chooser, top-N spin box, and a line about the order."""

    def __init__(self, top_n: int, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(QLabel("Features by"))
        self.order = QComboBox()
        for key, text in FEATURE_ORDERS.items():
            self.order.addItem(text, key)
        self.order.setToolTip("how the heatmap's rows are chosen and sorted")
        layout.addWidget(self.order)
        layout.addWidget(QLabel("top"))
        self.top_n = QSpinBox()
        self.top_n.setRange(1, MAX_TOP_N)
        self.top_n.setValue(int(top_n))
        self.top_n.setToolTip("number of features shown")
        layout.addWidget(self.top_n)
        self.detail = QLabel("")
        layout.addWidget(self.detail, 1)

    def set_order(self, key: str) -> None:
        index = self.order.findData(key)
        if index >= 0 and index != self.order.currentIndex():
            self.order.setCurrentIndex(index)


class HeatmapPane(QObject):
    """Time x feature image of the displayed SAE features (f, or f' when steering)."""

    rows_changed = Signal()
    failed = Signal(str)   # a row-gathering job failed (the message)

    def __init__(self, runner: Any = None, axis_width: int = 64):
        super().__init__()
        self.runner = runner
        self.view_box = PaneViewBox()
        self.view_box.invertY(True)   # rank 0 on top
        self.plot = pg.PlotItem(viewBox=self.view_box)
        self.plot.hideButtons()
        self.plot.setLabel("left", "feature")
        self.plot.getAxis("left").setWidth(axis_width)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.colormap = pg.colormap.get(COLOR_MAP)
        self.image.setColorMap(self.colormap)
        self.plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=self.colormap, interactive=False,
                                        width=12, label="f")
        # Says why there is no image (a clip analysed without the codec's encoder has no features).
        self.placeholder = pg.TextItem("", color="#c8c8c8", anchor=(0, 0))
        self.placeholder.setParentItem(self.view_box)   # pixel-positioned, not in data coordinates
        self.placeholder.setPos(8, 6)
        self.placeholder.setZValue(30)
        self.placeholder.hide()
        self.row_features = np.zeros(0, dtype=np.int64)   # row -> feature id of the image shown
        self.levels = (0.0, 1.0)
        self.times = np.zeros(0)
        self.boundaries = np.zeros(0)
        self.x0, self.dt = 0.0, 1.0
        self.mass: BlockMass | None = None              # of the clip's unsteered f
        self.cache: FeatureRows | None = None           # rows of the displayed features
        self.shown: FeatureRows | None = None           # the cache the current image came from
        self._wanted = np.zeros(0, dtype=np.int64)
        self._request = 0
        self._job: Any = None
        self.last_rows_ms = 0.0
        self.last_gather_ms = 0.0
        self.last_draw_ms = 0.0
        self.view_box.sigXRangeChanged.connect(self.redraw)
        self.view_box.sigResized.connect(self._on_resized)

    # -- data ------------------------------------------------------------------------------
    def set_clip(self, times: np.ndarray | None, seconds: float, levels: tuple[float, float] = (0.0, 1.0),
                 mass: BlockMass | None = None) -> None:
        """New clip: frame grid, fixed colour levels, mass sums of the unsteered features."""
        self.cancel_pending()
        self.cache = self.shown = None
        self.mass = mass
        self.row_features = np.zeros(0, dtype=np.int64)
        self._wanted = self.row_features
        self.times = np.zeros(0) if times is None else np.asarray(times, dtype=np.float64)
        self.boundaries = 0.5 * (self.times[1:] + self.times[:-1])
        self.x0, self.dt = frame_grid(self.times, seconds)
        self.levels = (float(levels[0]), float(levels[1]))
        self.colorbar.setLevels(self.levels)
        self.image.clear()
        self._update_ticks()

    def set_features(self, features: np.ndarray | None) -> None:
        """The matrix to show (f or f'); its rows are gathered on the next ``show_rows``."""
        if self.cache is not None and self.cache.features is features:
            return
        self.cache = None if features is None else FeatureRows(features)

    @property
    def features(self) -> np.ndarray | None:
        return None if self.cache is None else self.cache.features

    def set_placeholder(self, text: str) -> None:
        """A short line in place of the image ("" hides it)."""
        self.placeholder.setText(text)
        self.placeholder.setVisible(bool(text))

    def frames_in(self, t0: float, t1: float) -> tuple[int, int]:
        """``[i0, i1)``: the frames whose span ``[x0 + i dt, x0 + (i+1) dt)`` meets ``[t0, t1]``."""
        n = len(self.times)
        i0 = int(np.clip(math.floor((t0 - self.x0) / self.dt), 0, n))
        i1 = int(np.clip(math.ceil((t1 - self.x0) / self.dt), i0, n))
        return i0, i1

    def mass_in_range(self, t0: float, t1: float) -> np.ndarray:
        """Activation mass per feature (of the unsteered clip) over the frames that meet ``[t0, t1]``."""
        if self.mass is None:
            return np.zeros(0)
        return self.mass.in_range(*self.frames_in(t0, t1))

    def show_rows(self, ids: np.ndarray) -> None:
        """Show these features (top row first): now, or when a gather job for them is done."""
        self.cancel_pending()
        self._request += 1
        self._wanted = np.asarray(ids, dtype=np.int64)
        cache = self.cache
        if cache is None or not len(self._wanted):
            self._apply(self._request, cache, {})
            return
        missing = cache.missing(self._wanted)
        if self.runner is None or len(missing) * cache.n_frames <= GATHER_SYNC_LIMIT:
            start = time.perf_counter()
            rows = gather_rows(cache.features, missing)
            self.last_gather_ms = (time.perf_counter() - start) * 1e3
            self._apply(self._request, cache, rows)
            return
        token = (self._request, cache)
        self._job = start_job(self.runner, "heatmap rows", gather_job, token, cache.features, missing,
                              finished=self._on_gathered, failed=self._on_failed)

    def _on_failed(self, message: str, _traceback: str) -> None:
        self._job = None
        self.failed.emit(message)

    def _on_gathered(self, result: tuple[Any, dict[int, list[np.ndarray]]]) -> None:
        (request, cache), rows = result
        self._apply(request, cache, rows)

    def _apply(self, request: int, cache: FeatureRows | None, rows: dict[int, list[np.ndarray]]) -> None:
        if request != self._request or cache is not self.cache:   # superseded meanwhile
            return
        self._job = None
        start = time.perf_counter()
        if cache is not None:
            cache.add(rows, keep=self._wanted)
        self.shown = cache
        self.row_features = self._wanted if cache is not None else np.zeros(0, dtype=np.int64)
        self.view_box.setYRange(0, max(len(self.row_features), 1), padding=0)
        self._update_ticks()
        self.redraw()
        self.last_rows_ms = (time.perf_counter() - start) * 1e3
        self.rows_changed.emit()

    @property
    def pending(self) -> bool:
        return self._job is not None

    def cancel_pending(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self._job = None

    # -- drawing ---------------------------------------------------------------------------
    def pixel_width(self) -> int:
        view = self.view_box.getViewWidget()
        ratio = float(view.devicePixelRatioF()) if view is not None else 1.0
        return max(int(self.view_box.width() * ratio), 64)

    def redraw(self, *_args) -> None:
        """Slice the visible frames out of the row pyramids (a slot; paint does no work)."""
        start = time.perf_counter()
        if self.shown is None or not len(self.row_features) or not len(self.times):
            self.image.clear()
            return
        (t0, t1), _ = self.view_box.viewRange()
        i0, i1 = self.frames_in(t0, t1)
        i0 = min(i0, len(self.times) - 1)
        i1 = max(i1, i0 + 1)
        image, first, pool = self.shown.image(self.row_features, i0, i1, 2 * self.pixel_width())
        self.image.setImage(image, levels=self.levels, autoLevels=False)
        # The clip's last column may hold fewer than ``pool`` frames; it is drawn full width.
        self.image.setRect(self.x0 + first * self.dt, 0.0, image.shape[1] * pool * self.dt,
                           float(len(self.row_features)))
        self.last_draw_ms = (time.perf_counter() - start) * 1e3

    def _on_resized(self, *_args) -> None:
        self._update_ticks()
        self.redraw()

    def _update_ticks(self) -> None:
        n = len(self.row_features)
        axis = self.plot.getAxis("left")
        if not n:
            axis.setTicks([[]])
            return
        step = max(1, int(math.ceil(n * 13.0 / max(self.view_box.height(), 1.0))))  # >= 13 px apart
        axis.setTicks([[(r + 0.5, str(int(self.row_features[r]))) for r in range(0, n, step)], []])

    # -- lookups ---------------------------------------------------------------------------
    def frame_at(self, x: float) -> int:
        """Frame whose centre is nearest ``x`` seconds."""
        return int(np.searchsorted(self.boundaries, x, side="right")) if len(self.times) else 0

    def cell_at(self, x: float, y: float) -> tuple[int, int, int] | None:
        """``(row, feature id, frame)`` under view point ``(x, y)``, or None outside the image."""
        n_rows, n_frames = len(self.row_features), len(self.times)
        if not n_rows or not n_frames or self.shown is None:
            return None
        if not (0.0 <= y < n_rows) or not (self.x0 <= x < self.x0 + n_frames * self.dt):
            return None
        row = int(y)
        return row, int(self.row_features[row]), self.frame_at(x)

    def describe(self, x: float, y: float) -> str | None:
        """Hover text for a view point: ``feature j, t = … s, f = …``."""
        cell = self.cell_at(x, y)
        if cell is None:
            return None
        _, feature, frame = cell
        value = float(self.shown.features[frame, feature])
        return f"feature {feature}, t = {self.times[frame]:.3f} s, f = {value:.3g}"
