"""The waveform's min/max peak pyramid: built once per clip, read at screen resolution (numpy only).

Level ``l`` (``l >= 1``) holds the minimum and the maximum of every run of ``factor ** l``
consecutive samples; level 0 is the samples themselves.  For a visible span and a pane width
of ``W`` device pixels, ``envelope`` picks the coarsest level that still has at least ``W``
buckets in view (so at most ``factor * W``), then folds those buckets into exactly ``W``
columns with ``reduceat``.  The curve therefore always has about ``2 W`` points, whatever the
zoom and the clip length.  Zoomed in far enough that the view holds fewer than ``2 W``
samples, it gives the samples.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_FACTOR = 8
MIN_TOP_BUCKETS = 256  # stop building levels once a level would be this short


class PeakPyramid:
    """Min/max peaks of a mono signal at bucket sizes ``factor ** level`` samples."""

    def __init__(self, samples: np.ndarray, sample_rate: int, factor: int = DEFAULT_FACTOR):
        if not 2 <= int(factor) <= 64:
            raise ValueError(f"pyramid factor must be in 2..64, got {factor}")
        self.samples = np.ascontiguousarray(np.asarray(samples, dtype=np.float32).reshape(-1))
        self.sample_rate = int(sample_rate)
        self.factor = int(factor)
        # levels[l] = (mins, maxs); levels[0] aliases the samples (bucket size 1).
        self.levels: list[tuple[np.ndarray, np.ndarray]] = [(self.samples, self.samples)]
        mins, maxs = self.samples, self.samples
        while len(mins) > MIN_TOP_BUCKETS:
            mins, maxs = _fold(mins, np.minimum, self.factor), _fold(maxs, np.maximum, self.factor)
            self.levels.append((mins, maxs))

    @classmethod
    def from_wave(cls, wave: np.ndarray, sample_rate: int, factor: int = DEFAULT_FACTOR) -> "PeakPyramid":
        """Pyramid of the mono mix of a ``[C, N]`` (or ``[N]``) wave."""
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 1:
            mono = wave
        else:
            mono = wave[0] if wave.shape[0] == 1 else wave.mean(axis=0, dtype=np.float32)
        return cls(mono, sample_rate, factor)

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def seconds(self) -> float:
        return self.n_samples / self.sample_rate

    def bucket_size(self, level: int) -> int:
        return self.factor ** int(level)

    def bucket(self, level: int, index: int) -> tuple[float, float]:
        """``(min, max)`` of bucket ``index`` at ``level``: samples ``[index*s, (index+1)*s)``."""
        mins, maxs = self.levels[level]
        return float(mins[index]), float(maxs[index])

    def peak(self) -> float:
        """Largest absolute sample value (from the top level, so O(1))."""
        mins, maxs = self.levels[-1]
        if not len(mins):
            return 0.0
        return float(max(-mins.min(), maxs.max()))

    def level_for(self, samples_per_pixel: float) -> int:
        """The coarsest level whose buckets are no wider than one pixel."""
        if samples_per_pixel < self.factor:
            return 0
        level = int(math.floor(math.log(samples_per_pixel, self.factor) + 1e-9))
        return min(level, len(self.levels) - 1)

    def envelope(self, t0: float, t1: float, n_pixels: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Points to draw for the span ``[t0, t1]`` seconds on ``n_pixels`` columns.

        Returns ``(x_seconds, y, is_envelope)``.  As an envelope the points come in pairs
        (min then max of one column, at the column's centre), ~``2 * n_pixels`` points; when
        zoomed in past ``2`` samples per column they are the raw samples (one per sample).
        """
        n_pixels = max(int(n_pixels), 1)
        n = self.n_samples
        i0 = max(int(math.floor(t0 * self.sample_rate)), 0)
        i1 = min(int(math.ceil(t1 * self.sample_rate)) + 1, n)
        if i1 <= i0:
            return np.zeros(0), np.zeros(0, dtype=np.float32), False
        if i1 - i0 <= 2 * n_pixels:
            x = np.arange(i0, i1, dtype=np.float64) / self.sample_rate
            return x, self.samples[i0:i1], False
        level = self.level_for((i1 - i0) / n_pixels)
        size = self.bucket_size(level)
        mins, maxs = self.levels[level]
        b0, b1 = i0 // size, min(-(-i1 // size), len(mins))
        n_cols = min(n_pixels, b1 - b0)
        starts = np.unique(np.linspace(0, b1 - b0, n_cols + 1)[:-1].astype(np.int64))
        col_min = np.minimum.reduceat(mins[b0:b1], starts)
        col_max = np.maximum.reduceat(maxs[b0:b1], starts)
        ends = np.append(starts[1:], b1 - b0)
        centres = (b0 + 0.5 * (starts + ends)) * (size / self.sample_rate)
        x = np.repeat(centres, 2)
        y = np.empty(2 * len(starts), dtype=np.float32)
        y[0::2], y[1::2] = col_min, col_max
        return x, y, True


def _fold(values: np.ndarray, reduce: np.ufunc, factor: int) -> np.ndarray:
    """Reduce runs of ``factor`` values (the last run may be shorter).

    ``factor`` strided element-wise passes: numpy reduces a short last axis (the obvious
    ``reshape(-1, factor).min(axis=1)``) several times slower.
    """
    full = len(values) // factor
    out = np.empty(full + (len(values) > full * factor), dtype=np.float32)
    head = out[:full]
    head[:] = values[0: full * factor: factor]
    for offset in range(1, factor):
        reduce(head, values[offset: full * factor: factor], out=head)
    if len(out) > full:
        out[full] = reduce.reduce(values[full * factor:])
    return out
