"""The one level rule for steered audio: every file the project writes and every sample it
plays goes through ``apply_level_rule`` (or, for audio that is not steered, ``limit_peaks``).

Why: control vectors on real music can decode to +50..+90 dB above the source (float WAV
peaks in the thousands).  A limiter alone would turn that into full-scale noise, so the rule
is two steps:

1. **Loudness match** (unless loudness is the steering target): the steered audio's
   loudness is brought to the source's, block by block (``block_seconds`` windows, half
   overlapping; RMS over the channels, in dB).  Per-block gains are interpolated in dB
   between block centres, so the gain moves smoothly and local dynamics (a quiet bar stays
   quiet) are kept.  A block where the source is silent is matched to a floor
   (``floor_below_db`` under the source's overall loudness, never under ``silence_db``), and
   a block is never raised by more than ``max_boost_db``.
2. **True-peak-safe limiter**: a look-ahead limiter (minimum filter + moving average of
   the needed gain, so the smoothed gain is always at or below what each sample needs)
   against peaks measured on a 4x oversampled signal, to ``ceiling_db`` (-1 dBFS), then a
   final clamp at the ceiling.

3. **A selection is levelled alone** (``region=``, from ``steer_wave(start=, end=)``): steps 1
   and 2 act only on the selected samples and a ``crossfade_seconds`` margin on each side of
   them; the margin cross-fades (raised cosine, from the selection's edge outward) into the
   unsteered audio as written (``unsteered=``: the unsteered path through the same rule over
   the whole clip, i.e. the reconstruction, which with keep-residual is the decode of the
   original latents).  Beyond the cross-fades the output *is* the unsteered audio, sample for
   sample: neither the loudness trim nor the limiter reaches outside the selection.  Both
   sides of a cross-fade are at or under the ceiling, so their convex mix is too.

``LevelRule(match_loudness=False, limit=False)`` (``RAW``) keeps the raw level: only on the
user's explicit request (``audiosae steer --no-limit``; ``limit=False`` in the library).

Loudness here is gated block RMS (BS.1770-style gating: an absolute gate at ``silence_db``
and a relative gate 20 dB under the ungated mean), without K-weighting.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

from ..errors import AudioSAEError

DEFAULT_CEILING_DB = -1.0
_OVERSAMPLE = 4
_RELATIVE_GATE_DB = 20.0
_EPS = 1e-20


@dataclass(frozen=True)
class LevelRule:
    """What ``apply_level_rule`` does to steered audio (see the module docstring)."""

    match_loudness: bool = True     # off when loudness is what is being steered
    limit: bool = True              # the peak limiter (off only on request)
    ceiling_db: float = DEFAULT_CEILING_DB
    block_seconds: float = 0.2      # loudness window (hop: half of it)
    max_boost_db: float = 20.0      # never raise a block by more than this
    silence_db: float = -70.0       # absolute gate: blocks under it are silence
    floor_below_db: float = 40.0    # a silent source block is matched to (source loudness - this)
    limiter_seconds: float = 0.005  # look-ahead / attack of the limiter
    crossfade_seconds: float = 0.05  # a levelled selection fades into the unsteered audio over this

    @property
    def raw(self) -> bool:
        return not (self.match_loudness or self.limit)

    @property
    def ceiling(self) -> float:
        return float(10 ** (self.ceiling_db / 20))


RAW = LevelRule(match_loudness=False, limit=False)


def warm_up() -> None:
    """Import what the rule needs now (scipy.signal takes seconds on a cold start), so that the
    first realtime chunk is not late."""
    import scipy.ndimage  # noqa: F401
    import scipy.signal  # noqa: F401


def rule_for(attribute: str | None, *, limit: bool = True) -> LevelRule:
    """The rule for steering ``attribute``: loudness matched unless loudness is the target;
    ``limit=False`` (``--no-limit``) keeps the raw level."""
    if not limit:
        return RAW
    return LevelRule(match_loudness=attribute != "loudness")


@dataclass
class LevelReport:
    """What the rule did, for side-cars and status lines (dB values; -inf for silence)."""

    rule: str                       # "matched+limited", "limited" or "raw"
    target_attribute: str | None = None
    gain_db: float = 0.0            # the loudness-match gain, averaged over the non-silent blocks
    gain_db_min: float = 0.0
    gain_db_max: float = 0.0
    source_loudness_db: float = -math.inf
    loudness_before_db: float = -math.inf   # the steered audio as decoded
    loudness_after_db: float = -math.inf    # as written / played
    peak_before: float = 0.0        # linear sample peak as decoded
    peak_after: float = 0.0
    ceiling_db: float | None = DEFAULT_CEILING_DB
    limited_samples: int = 0        # samples the limiter turned down (> 0.01 dB)
    limited_fraction: float = 0.0
    samples: int = 0
    non_finite_samples: int = 0     # NaN/inf in the decode, replaced by 0
    levelled: str = "clip"          # "clip": the whole audio; "selection": only region (+ cross-fades)
    region: list[float] | None = None        # [start, end] s of the selection levelled (None: the clip)
    crossfade_seconds: float | None = None   # the fade into the unsteered audio on each side of region
    notes: list[str] = field(default_factory=list)

    @property
    def peak_before_dbfs(self) -> float:
        return _db(self.peak_before)

    @property
    def peak_after_dbfs(self) -> float:
        return _db(self.peak_after)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["peak_before_dbfs"] = self.peak_before_dbfs
        out["peak_after_dbfs"] = self.peak_after_dbfs
        out["loudness_shift_db"] = self.loudness_after_db - self.source_loudness_db \
            if math.isfinite(self.loudness_after_db) and math.isfinite(self.source_loudness_db) else None
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def _db(x: float) -> float:
    return 20 * math.log10(x) if x > 0 else -math.inf


def _as_2d(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        wave = wave[None, :]
    if wave.ndim != 2:
        raise AudioSAEError(f"level: expected audio [channels, N], got shape {list(wave.shape)}")
    return wave


def _blocks(n: int, sample_rate: int, block_seconds: float) -> tuple[int, int, int]:
    """(block length, hop, count) of half-overlapping blocks covering ``n`` samples."""
    size = max(1, min(n, int(round(block_seconds * sample_rate))))
    hop = max(1, size // 2)
    count = 1 + max(0, math.ceil((n - size) / hop))
    return size, hop, count


def block_power(wave: np.ndarray, sample_rate: int, block_seconds: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Mean power of half-overlapping blocks (over the channels) and the block centres (samples)."""
    wave = _as_2d(wave)
    n = wave.shape[1]
    if n == 0:
        return np.zeros(0), np.zeros(0)
    size, hop, count = _blocks(n, sample_rate, block_seconds)
    energy = np.concatenate([[0.0], np.cumsum(np.mean(wave.astype(np.float64) ** 2, axis=0))])
    starts = np.minimum(np.arange(count) * hop, max(0, n - size))
    ends = np.minimum(starts + size, n)
    power = (energy[ends] - energy[starts]) / np.maximum(1, ends - starts)
    return power, (starts + ends) / 2.0


def gated_loudness_db(power: np.ndarray, silence_db: float = -70.0) -> float:
    """Gated loudness (dB) of block powers: absolute gate, then a relative gate 20 dB down."""
    power = np.asarray(power, dtype=np.float64)
    loud = power[10 * np.log10(power + _EPS) > silence_db]
    if loud.size == 0:
        return -math.inf
    gate = 10 * math.log10(float(np.mean(loud)) + _EPS) - _RELATIVE_GATE_DB
    kept = loud[10 * np.log10(loud + _EPS) > gate]
    return 10 * math.log10(float(np.mean(kept)) + _EPS)


def loudness_db(wave: np.ndarray, sample_rate: int, *, block_seconds: float = 0.2, silence_db: float = -70.0) -> float:
    """Gated loudness of ``wave`` [C, N] in dB (RMS over non-silent blocks; -inf for silence)."""
    power, _ = block_power(wave, sample_rate, block_seconds)
    return gated_loudness_db(power, silence_db)


def true_peak_envelope(wave: np.ndarray) -> np.ndarray:
    """Per-sample peak [N] over the channels, including the inter-sample peaks a 4x oversampled
    reconstruction shows around each sample."""
    wave = _as_2d(wave)
    peak = np.max(np.abs(wave), axis=0)
    n = wave.shape[1]
    if n < 8:
        return peak
    from scipy.signal import resample_poly

    up = np.abs(resample_poly(wave.astype(np.float64), _OVERSAMPLE, 1, axis=1))
    up = np.max(up, axis=0)[:n * _OVERSAMPLE]
    # The oversampled values between sample i-1 and i+1 count for sample i.
    groups = up.reshape(n, _OVERSAMPLE).max(axis=1)
    around = np.maximum(groups, np.concatenate([[0.0], groups[:-1]]))
    return np.maximum(peak, around).astype(np.float32)


def limit_peaks(wave: np.ndarray, sample_rate: int, *, ceiling_db: float = DEFAULT_CEILING_DB,
                window_seconds: float = 0.005) -> tuple[np.ndarray, int]:
    """Look-ahead limiter: ``wave`` [C, N] with every (true) peak at or under ``ceiling_db``.

    The gain each sample needs, ``min(1, ceiling / peak)``, goes through a minimum filter of
    ``2L - 1`` samples and a centred moving average of ``L`` (``L`` ~ ``window_seconds``): every
    average then only mixes values at or below what its own sample needs, so the smoothed
    gain never lets a peak through, and it ramps over ~``L`` samples instead of stepping.
    Returns the limited audio and how many samples were turned down (by more than 0.01 dB).
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    wave = _as_2d(wave)
    ceiling = float(10 ** (ceiling_db / 20))
    if wave.shape[1] == 0:
        return wave.copy(), 0
    envelope = true_peak_envelope(wave)
    if float(envelope.max()) <= ceiling:
        return wave.copy(), 0
    need = np.minimum(1.0, ceiling / np.maximum(envelope.astype(np.float64), _EPS))
    length = max(1, int(round(window_seconds * sample_rate)) | 1)  # odd
    smooth = uniform_filter1d(minimum_filter1d(need, 2 * length - 1, mode="nearest"), length, mode="nearest")
    gain = np.minimum(smooth, need)  # float rounding in the average: never above what is needed
    out = (wave * gain[None, :]).astype(np.float32)
    np.clip(out, -ceiling, ceiling, out=out)
    return out, int(np.count_nonzero(gain < 10 ** (-0.01 / 20)))


def matching_gain(steered: np.ndarray, source: np.ndarray, sample_rate: int, rule: LevelRule,
                  *, source_loudness_db: float | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """Per-sample linear gain [N] that brings ``steered``'s block loudness to ``source``'s.

    ``source_loudness_db``: the whole clip's source loudness when ``source`` is only a piece of
    it (a realtime chunk), for the floor that silent source blocks are matched to.
    """
    steered, source = _as_2d(steered), _as_2d(source)
    n = steered.shape[1]
    p_st, centres = block_power(steered, sample_rate, rule.block_seconds)
    p_src, _ = block_power(source[:, :n] if source.shape[1] >= n else
                           np.pad(source, ((0, 0), (0, n - source.shape[1]))), sample_rate, rule.block_seconds)
    overall = gated_loudness_db(p_src, rule.silence_db) if source_loudness_db is None else source_loudness_db
    floor = rule.silence_db if not math.isfinite(overall) else max(rule.silence_db, overall - rule.floor_below_db)
    ref_db = np.maximum(10 * np.log10(p_src + _EPS), floor)
    st_db = 10 * np.log10(p_st + _EPS)
    gain_db = np.minimum(ref_db - st_db, rule.max_boost_db)
    loud = st_db > rule.silence_db
    gain_db = np.where(loud, gain_db, np.minimum(gain_db, 0.0))  # silence is not raised
    # A constant trim so that the whole span's gated loudness lands on the source's: block gains
    # interpolated across a steep step, or capped boosts, leave it a dB or two off otherwise.
    matched = gated_loudness_db(p_st * 10 ** (gain_db / 10), rule.silence_db)
    wanted = gated_loudness_db(np.maximum(p_src, 10 ** (floor / 10)), rule.silence_db)
    if math.isfinite(matched) and math.isfinite(wanted):
        gain_db = np.where(loud, np.minimum(gain_db + (wanted - matched), rule.max_boost_db), gain_db)
    curve = np.interp(np.arange(n) + 0.5, centres, gain_db) if len(centres) > 1 else np.full(n, gain_db[0])
    weights = p_st * loud
    mean = float(np.sum(gain_db * weights) / np.sum(weights)) if weights.sum() > 0 else 0.0
    stats = {"gain_db": mean, "gain_db_min": float(gain_db.min()), "gain_db_max": float(gain_db.max())}
    return (10 ** (curve / 20)).astype(np.float32), stats


def crossfade_weights(n: int, region: tuple[int, int], fade: int) -> tuple[int, int, np.ndarray]:
    """``(a0, b0, w)``: the span ``[a0, b0)`` = ``region`` widened by ``fade`` samples on each side
    (within ``[0, n)``) and the weight ``w`` [b0 - a0] of the levelled selection in it: 1 on
    ``region``, a raised cosine down to 0 over the ``fade`` samples outside each edge."""
    a, b = int(region[0]), int(region[1])
    a0, b0 = max(0, a - fade), min(n, b + fade)
    w = np.ones(b0 - a0, dtype=np.float64)
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(1, fade + 1) / (fade + 1)))   # (0, 1), rising
        left = a - a0
        if left:
            w[:left] = ramp[fade - left:]
        right = b0 - b
        if right:
            w[b - a0:] = ramp[::-1][:right]
    return a0, b0, w


def apply_level_rule(steered: np.ndarray, source: np.ndarray | None, sample_rate: int,
                     rule: LevelRule = LevelRule(), *, target_attribute: str | None = None,
                     source_loudness_db: float | None = None, region: tuple[int, int] | None = None,
                     unsteered: np.ndarray | None = None) -> tuple[np.ndarray, LevelReport]:
    """Steered audio [C, N] -> audio safe to write or play, and what was done (``LevelReport``).

    ``source``: the audio it was steered from, the same span (needed to match loudness;
    None: limiter only).  ``source_loudness_db``: see ``matching_gain``.  Non-finite samples
    (a decoder that blew up) become 0 unless the rule is ``RAW``.

    ``region`` = ``(a, b)`` samples, with ``unsteered`` [C, N] (the unsteered audio already
    through the rule): only the selection is levelled, cross-faded into ``unsteered`` over
    ``rule.crossfade_seconds`` outside each edge; elsewhere the result is ``unsteered`` (module
    docstring, step 3).  The report's loudness and peaks are then the selection's.  ``RAW``
    ignores the region (the raw decode everywhere).
    """
    wave = _as_2d(steered)
    n = wave.shape[1]
    if region is not None and not rule.raw and (int(region[0]) > 0 or int(region[1]) < n):
        if unsteered is None:
            raise AudioSAEError("level: levelling a selection needs the unsteered audio to fade into")
        return _level_region(wave, source, sample_rate, rule, target_attribute, source_loudness_db,
                             (max(0, int(region[0])), min(n, int(region[1]))), _as_2d(unsteered))
    n = wave.shape[1]
    label = "raw" if rule.raw else "+".join(s for s, on in (("matched", rule.match_loudness and source is not None),
                                                            ("limited", rule.limit)) if on)
    report = LevelReport(rule=label, target_attribute=target_attribute, samples=int(n),
                         ceiling_db=rule.ceiling_db if rule.limit else None)
    bad = ~np.isfinite(wave)
    report.non_finite_samples = int(bad.sum())
    if report.non_finite_samples and not rule.raw:
        wave = np.where(bad, 0.0, wave).astype(np.float32)
        report.notes.append(f"{report.non_finite_samples} non-finite sample(s) set to 0")
    finite = wave[np.isfinite(wave)]
    report.peak_before = float(np.max(np.abs(finite))) if finite.size else 0.0
    report.loudness_before_db = loudness_db(wave, sample_rate, block_seconds=rule.block_seconds,
                                            silence_db=rule.silence_db) if finite.size == wave.size else math.nan
    if source is not None:
        source = _as_2d(source)
        report.source_loudness_db = loudness_db(source[:, :n], sample_rate, block_seconds=rule.block_seconds,
                                                silence_db=rule.silence_db)
    out = wave
    if rule.match_loudness and source is not None and n:
        gain, stats = matching_gain(wave, source, sample_rate, rule, source_loudness_db=source_loudness_db)
        out = (out * gain[None, :]).astype(np.float32)
        report.gain_db, report.gain_db_min, report.gain_db_max = stats["gain_db"], stats["gain_db_min"], \
            stats["gain_db_max"]
    if rule.limit:
        out, report.limited_samples = limit_peaks(out, sample_rate, ceiling_db=rule.ceiling_db,
                                                  window_seconds=rule.limiter_seconds)
    else:
        out = np.array(out, dtype=np.float32, copy=True)
    report.limited_fraction = report.limited_samples / n if n else 0.0
    finite = out[np.isfinite(out)]
    report.peak_after = float(np.max(np.abs(finite))) if finite.size else 0.0
    report.loudness_after_db = loudness_db(out, sample_rate, block_seconds=rule.block_seconds,
                                           silence_db=rule.silence_db) if finite.size == out.size else math.nan
    return out, report


def _level_region(wave: np.ndarray, source: np.ndarray | None, sample_rate: int, rule: LevelRule,
                  target_attribute: str | None, source_loudness_db: float | None, region: tuple[int, int],
                  unsteered: np.ndarray) -> tuple[np.ndarray, LevelReport]:
    n = wave.shape[1]
    if unsteered.shape != wave.shape:
        raise AudioSAEError(f"level: unsteered audio {list(unsteered.shape)} differs from the steered "
                            f"{list(wave.shape)}")
    fade = max(0, int(round(rule.crossfade_seconds * sample_rate)))
    a0, b0, w = crossfade_weights(n, region, fade)
    src = None
    if source is not None:
        source = _as_2d(source)
        if source_loudness_db is None:   # the floor of silent blocks: the whole clip's loudness
            source_loudness_db = loudness_db(source[:, :n], sample_rate, block_seconds=rule.block_seconds,
                                             silence_db=rule.silence_db)
        src = source[:, a0:b0]
    piece, report = apply_level_rule(wave[:, a0:b0], src, sample_rate, rule, target_attribute=target_attribute,
                                     source_loudness_db=source_loudness_db)
    out = np.array(unsteered, dtype=np.float32, copy=True)
    mixed = w[None, :] * piece.astype(np.float64) + (1.0 - w[None, :]) * unsteered[:, a0:b0].astype(np.float64)
    if rule.limit:   # both sides are under the ceiling; the clamp only absorbs float rounding
        np.clip(mixed, -rule.ceiling, rule.ceiling, out=mixed)
    out[:, a0:b0] = mixed.astype(np.float32)
    report.levelled = "selection"
    report.region = [region[0] / sample_rate, region[1] / sample_rate]
    report.crossfade_seconds = fade / sample_rate
    report.notes.append(f"levelled only {region[0] / sample_rate:.3f}-{region[1] / sample_rate:.3f} s "
                        f"(+{fade / sample_rate:.3f} s cross-fades); the rest is the unsteered audio")
    return out, report


def merge_reports(reports: Iterable[LevelReport]) -> dict[str, Any]:
    """One summary of several reports (the chunks of a realtime render), for a side-car."""
    reports = [r for r in reports if r is not None]
    if not reports:
        return {"rule": None, "chunks": 0}
    samples = sum(r.samples for r in reports)
    limited = sum(r.limited_samples for r in reports)
    gains = [r.gain_db for r in reports]
    out = {
        "rule": reports[0].rule, "target_attribute": reports[0].target_attribute, "chunks": len(reports),
        "gain_db": float(np.mean(gains)), "gain_db_min": float(min(r.gain_db_min for r in reports)),
        "gain_db_max": float(max(r.gain_db_max for r in reports)),
        "peak_before": max(r.peak_before for r in reports), "peak_after": max(r.peak_after for r in reports),
        "ceiling_db": reports[0].ceiling_db, "limited_samples": int(limited),
        "limited_fraction": limited / samples if samples else 0.0,
        "limited_chunks": sum(1 for r in reports if r.limited_samples),
        "non_finite_samples": sum(r.non_finite_samples for r in reports),
    }
    out["peak_before_dbfs"] = _db(out["peak_before"])
    out["peak_after_dbfs"] = _db(out["peak_after"])
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


__all__ = ["warm_up", "crossfade_weights", "DEFAULT_CEILING_DB", "LevelReport", "LevelRule", "RAW", "apply_level_rule", "block_power",
           "gated_loudness_db", "limit_peaks", "loudness_db", "matching_gain", "merge_reports", "rule_for",
           "true_peak_envelope"]
