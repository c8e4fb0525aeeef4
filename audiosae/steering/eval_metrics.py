"""The numbers of one steering-evaluation cell, from per-frame measurements (``control.measure``,
the same extractors as the corpus labels) and the audio itself.  Pure functions: no model.

* ``target_hit``: the fraction of the steered frames in the target class, and the distance.
* ``attribute_shifts``: how far every attribute moved from a reference (the unsteered
  reconstruction or the original): loudness in dB, centroid in %, pitch in semitones, classes.
* ``level_metrics``: peak and clipping of the audio as written / played.
* ``outside_change``: what steering a selection did outside it (which should be nothing).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..attributes import AttributeSpec, FrameAttributes

# Frames quieter than this in the reference are left out of the loudness and centroid shifts
# (the rule: "mean |delta| over frames louder than -50 dB in the source").
LOUD_GATE_DB = -50.0


def _nan_mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else math.nan


def _nan_median(x: np.ndarray) -> float:
    return float(np.median(x)) if x.size else math.nan


def _db(x: float) -> float:
    return 20 * math.log10(x) if x > 0 else -math.inf


def eligible_frames(spec: AttributeSpec, fa: FrameAttributes, attribute: str, target: int) -> np.ndarray:
    """Frames that count for the hit rate of ``attribute``: voiced frames for a pitch note
    (all frames when the target is ``unvoiced``), frames over ``spec.silence_db`` for timbre
    (a silent frame's centroid is 0 by convention), every frame for loudness."""
    classes = spec.classify(fa)
    if attribute == "pitch":
        return np.ones(len(fa), bool) if target == 0 else classes["pitch"] > 0
    if attribute == "timbre":
        return np.asarray(fa.loudness_db) >= spec.silence_db
    return classes[attribute] >= 0   # registered attributes: frames with a label (-1: none)


def target_hit(spec: AttributeSpec, fa: FrameAttributes, attribute: str, target: int,
               mask: np.ndarray) -> dict[str, Any]:
    """Hit rate and distance of ``fa``'s frames (inside ``mask``) to class ``target``.

    ``hit_rate``: fraction of the eligible frames (``eligible_frames``) whose class is the
    target; for pitch the class is a MIDI note, so a hit is the right pitch class *and* octave.
    ``hit_rate_all_frames``: over every frame of the mask (a clip that stops sounding cannot
    score by having one voiced frame).  ``distance``: mean |class - target| over the eligible
    frames (semitones for pitch, bins otherwise)."""
    m = np.asarray(mask, bool)
    cls = spec.classify(fa)[attribute][m]
    ok = eligible_frames(spec, fa, attribute, target)[m]
    hits = cls == target
    return {"hit_rate": float(np.mean(hits[ok])) if ok.any() else math.nan,
            "hit_rate_all_frames": float(np.mean(hits)) if m.any() else math.nan,
            "eligible_fraction": float(np.mean(ok)) if m.any() else math.nan,
            "distance": float(np.mean(np.abs(cls[ok] - target))) if ok.any() else math.nan,
            "distance_unit": "semitones" if attribute == "pitch" else "bins",
            "frames": int(m.sum())}


def attribute_shifts(spec: AttributeSpec, reference: FrameAttributes, steered: FrameAttributes,
                     mask: np.ndarray, *, gate_db: float = LOUD_GATE_DB) -> dict[str, dict[str, Any]]:
    """How every attribute of ``steered`` moved from ``reference`` on the frames of ``mask``.

    * loudness: mean |delta| (and the signed mean) in dB over the frames louder than ``gate_db``
      in the reference;
    * timbre: the median relative change of the spectral centroid, |c' - c| / c in % (and the
      signed median), over the same frames;
    * pitch: mean |delta| in semitones (and the median) over the frames voiced in both, and the
      fraction of frames whose voicing changed;
    * each: ``class_change_rate``, the fraction of the mask's frames whose class changed.
    """
    m = np.asarray(mask, bool)
    ref_cls, new_cls = spec.classify(reference), spec.classify(steered)
    loud = m & (np.asarray(reference.loudness_db) > gate_db)
    d_db = np.asarray(steered.loudness_db)[loud] - np.asarray(reference.loudness_db)[loud]
    c_ref = np.asarray(reference.centroid_hz)
    c_ok = loud & (c_ref > 0)
    rel = (np.asarray(steered.centroid_hz)[c_ok] - c_ref[c_ok]) / c_ref[c_ok] * 100.0
    v_ref, v_new = ref_cls["pitch"] > 0, new_cls["pitch"] > 0
    both = m & v_ref & v_new
    d_st = np.asarray(steered.midi)[both] - np.asarray(reference.midi)[both]

    def changed(attr: str) -> float:
        return float(np.mean(ref_cls[attr][m] != new_cls[attr][m])) if m.any() else math.nan

    return {
        "loudness": {"mean_abs_db": _nan_mean(np.abs(d_db)), "mean_db": _nan_mean(d_db),
                     "max_abs_db": float(np.max(np.abs(d_db))) if d_db.size else math.nan,
                     "frames": int(loud.sum()), "class_change_rate": changed("loudness")},
        "timbre": {"median_abs_pct": _nan_median(np.abs(rel)), "median_pct": _nan_median(rel),
                   "max_abs_pct": float(np.max(np.abs(rel))) if rel.size else math.nan,
                   "frames": int(c_ok.sum()), "class_change_rate": changed("timbre")},
        "pitch": {"mean_abs_semitones": _nan_mean(np.abs(d_st)), "median_abs_semitones": _nan_median(np.abs(d_st)),
                  "max_abs_semitones": float(np.max(np.abs(d_st))) if d_st.size else math.nan,
                  "voiced_in_both": int(both.sum()),
                  "voicing_change_rate": float(np.mean(v_ref[m] != v_new[m])) if m.any() else math.nan,
                  "class_change_rate": changed("pitch")},
    }


def level_metrics(wave: np.ndarray, level: dict[str, Any] | None) -> dict[str, Any]:
    """Peak (dBFS) and the fraction of samples at or over full scale of ``wave`` as written /
    played, with what the level rule did (``LevelReport.to_dict()``)."""
    w = np.asarray(wave, dtype=np.float32)
    finite = w[np.isfinite(w)]
    peak = float(np.max(np.abs(finite))) if finite.size else 0.0
    level = level or {}
    return {"peak_dbfs": _db(peak), "clipped_fraction": float(np.mean(np.abs(w) >= 1.0)) if w.size else 0.0,
            "non_finite_samples": int(w.size - finite.size),
            "rule": level.get("rule"), "gain_db": level.get("gain_db"),
            "raw_peak_dbfs": level.get("peak_before_dbfs"), "limited_fraction": level.get("limited_fraction"),
            "loudness_shift_db": level.get("loudness_shift_db")}


def sample_range(start: float | None, end: float | None, sample_rate: int, n: int) -> tuple[int, int]:
    a = 0 if start is None else int(round(max(0.0, start) * sample_rate))
    b = n if end is None else int(round(end * sample_rate))
    return min(a, n), max(min(b, n), min(a, n))


def outside_change(steered: np.ndarray, reference: np.ndarray, sample_rate: int, span: tuple[int, int],
                   guard_seconds: float) -> dict[str, Any]:
    """Max |steered - reference| over the samples outside ``span`` = (a, b), also beyond a
    ``guard_seconds`` margin around it (decoders smear a change over a window or two)."""
    n = min(steered.shape[-1], reference.shape[-1])
    a, b = span
    diff = np.max(np.abs(np.asarray(steered, np.float64)[..., :n] - np.asarray(reference, np.float64)[..., :n]),
                  axis=0) if n else np.zeros(0)
    idx = np.arange(n)
    outside = (idx < a) | (idx >= b)
    g = int(round(guard_seconds * sample_rate))
    beyond = (idx < a - g) | (idx >= b + g)
    ref_peak = float(np.max(np.abs(reference[..., :n]))) if n else 0.0

    def peak(sel: np.ndarray) -> float:
        return float(np.max(diff[sel])) if sel.any() else math.nan

    out = {"samples": int(outside.sum()), "max_abs_delta": peak(outside), "guard_seconds": float(guard_seconds),
           "max_abs_delta_beyond_guard": peak(beyond), "reference_peak": ref_peak}
    for key in ("max_abs_delta", "max_abs_delta_beyond_guard"):
        value = out[key]
        out[key + "_dbfs"] = _db(value) if math.isfinite(value) else math.nan
    return out


def json_clean(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN/inf as None (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_clean(v) for v in value.tolist()]
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    return value


__all__ = ["LOUD_GATE_DB", "attribute_shifts", "eligible_frames", "json_clean", "level_metrics", "outside_change",
           "sample_range", "target_hit"]
