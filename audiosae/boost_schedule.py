"""When a feature boost is applied over a clip's frames (issue 14, closing the loop for rhythm).

``feature_loop`` boosts a labelled feature by adding a multiple of its decoder row to the
latents.  Added to *every* frame (schedule ``every``, the default), the boost is constant over
time, so it can paint a per-frame quality (a pitch, a level, a timbre) but not an event: an onset
is a change between frames.  The other schedules apply the boost only on some frames:

* ``pulses``: a regular grid, ``bpm`` pulses per minute at the backend's frame rate, pulse ``k``
  starting at frame ``round(k * frame_rate * 60 / bpm)`` and lasting ``width`` frames (at the mel
  backend's 75 frames/s, 120 BPM = one pulse every 37.5 frames);
* ``beats``: the clip's own beats (librosa beat tracking, as the ``beat_phase`` attribute
  measures them on the reference decode), each lasting ``width`` frames.

Timing measures (``onset_timing``, ``beat_timing``) say whether onsets / beats fall at the pulse
starts: the share of onset frames within +-``tolerance`` frames of a pulse start, beside the
chance share (the share of all frames that lie that close to a pulse start).  Nothing here
decodes or imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import defaults as D
from .errors import AudioSAEError

__all__ = ["SCHEDULES", "DEFAULT_SCHEDULE", "DEFAULT_BPM", "DEFAULT_WIDTH", "TOLERANCE_FRAMES",
           "BoostSchedule", "pulse_starts", "starts_mask", "beat_starts", "schedule_mask",
           "near_starts", "onset_timing", "beat_timing"]

SCHEDULES = ("every", "pulses", "beats")
DEFAULT_SCHEDULE = D.BOOST_SCHEDULE
DEFAULT_BPM = D.BOOST_BPM
DEFAULT_WIDTH = D.BOOST_PULSE_FRAMES   # frames per pulse (27 ms at 75 frames/s)
TOLERANCE_FRAMES = 2        # an onset "at" a pulse: within +-2 frames of its start


@dataclass(frozen=True)
class BoostSchedule:
    """Which frames get the boost: ``name`` in ``SCHEDULES``; ``bpm`` (pulses) and ``width``
    (pulses and beats, frames per pulse) are ignored by ``every``."""

    name: str = DEFAULT_SCHEDULE
    bpm: float = DEFAULT_BPM
    width: int = DEFAULT_WIDTH

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise AudioSAEError(f"boost schedule must be one of {', '.join(SCHEDULES)}, got {self.name!r}")
        if not (math.isfinite(self.bpm) and self.bpm > 0):
            raise AudioSAEError(f"pulse rate must be a positive number of BPM, got {self.bpm}")
        if int(self.width) != self.width or self.width < 1:
            raise AudioSAEError(f"pulse width must be a whole number of frames >= 1, got {self.width}")

    def to_json(self) -> dict[str, Any]:
        if self.name == "every":
            return {"name": "every"}
        out: dict[str, Any] = {"name": self.name, "width": int(self.width)}
        if self.name == "pulses":
            out["bpm"] = float(self.bpm)
        return out

    @classmethod
    def from_json(cls, data: Any) -> "BoostSchedule":
        """A document's ``schedule`` (absent in documents written before schedules: ``every``)."""
        if not isinstance(data, dict):
            return cls()
        return cls(name=str(data.get("name", DEFAULT_SCHEDULE)), bpm=float(data.get("bpm", DEFAULT_BPM)),
                   width=int(data.get("width", DEFAULT_WIDTH)))

    @property
    def slug(self) -> str:
        """A file-name part: ``every``, ``pulses-120bpm-w2``, ``beats-w2``."""
        if self.name == "every":
            return "every"
        rate = f"-{self.bpm:g}bpm" if self.name == "pulses" else ""
        return f"{self.name}{rate}-w{int(self.width)}"


def pulse_starts(n_frames: int, frame_rate: float, bpm: float, *, offset: int = 0) -> np.ndarray:
    """First frame of each pulse of a ``bpm`` grid over ``n_frames`` frames (int64, ascending,
    distinct): ``offset + round(k * frame_rate * 60 / bpm)``."""
    if not (frame_rate > 0 and bpm > 0):
        raise AudioSAEError(f"pulse grid needs a positive frame rate and BPM, got {frame_rate}, {bpm}")
    period = float(frame_rate) * 60.0 / float(bpm)
    if n_frames <= offset:
        return np.zeros(0, dtype=np.int64)
    k = np.arange(int(math.floor((n_frames - 1 - offset) / period)) + 1)
    starts = offset + np.floor(k * period + 0.5).astype(np.int64)
    return np.unique(starts[(starts >= 0) & (starts < n_frames)])


def starts_mask(n_frames: int, starts: np.ndarray, width: int) -> np.ndarray:
    """Boolean ``[n_frames]``: True on ``[s, s + width)`` for every start ``s``."""
    mask = np.zeros(int(n_frames), dtype=bool)
    for s in np.asarray(starts, dtype=np.int64).reshape(-1):
        mask[max(0, int(s)):max(0, min(int(n_frames), int(s) + int(width)))] = True
    return mask


def beat_starts(beat_phase: np.ndarray) -> np.ndarray:
    """Frames where a beat interval begins, from the ``beat_phase`` attribute's raw column
    (phase in [0, 1) between the beats around a frame, -1 / NaN outside them): the first frame
    of the tracked span and every frame whose phase wraps round (drops below its predecessor's)."""
    phase = np.nan_to_num(np.asarray(beat_phase, dtype=np.float64).reshape(-1), nan=-1.0)
    inside = phase >= 0
    prev_inside = np.concatenate([[False], inside[:-1]])
    prev = np.concatenate([[np.inf], phase[:-1]])
    start = inside & (~prev_inside | (phase < prev))
    return np.flatnonzero(start).astype(np.int64)


def schedule_mask(schedule: BoostSchedule, n_frames: int, frame_rate: float, *,
                  beat_phase: np.ndarray | None = None) -> np.ndarray:
    """Boolean ``[n_frames]``: the frames ``schedule`` boosts.  ``beats`` needs the clip's
    ``beat_phase`` column (no beats found: no frame is boosted)."""
    if schedule.name == "every":
        return np.ones(int(n_frames), dtype=bool)
    if schedule.name == "pulses":
        return starts_mask(n_frames, pulse_starts(n_frames, frame_rate, schedule.bpm), schedule.width)
    if beat_phase is None:
        raise AudioSAEError("the 'beats' boost schedule needs the clip's beat_phase (a workspace measuring beat_phase)")
    return starts_mask(n_frames, beat_starts(beat_phase), schedule.width)


def near_starts(n_frames: int, starts: np.ndarray, tolerance: int = TOLERANCE_FRAMES) -> np.ndarray:
    """Boolean ``[n_frames]``: frames within +-``tolerance`` frames of any start."""
    s = np.asarray(starts, dtype=np.int64).reshape(-1)
    return starts_mask(n_frames, s - int(tolerance), 2 * int(tolerance) + 1)


def _share(events: np.ndarray, near: np.ndarray) -> float:
    e = np.asarray(events, dtype=bool)
    return float(np.mean(near[e])) if e.any() else math.nan


def onset_timing(onset_before: np.ndarray, onset_after: np.ndarray, starts: np.ndarray,
                 tolerance: int = TOLERANCE_FRAMES) -> dict[str, float]:
    """Where the onsets of a reference and a boosted decode fall against pulse ``starts``.

    ``onset_rate_*``: share of frames labelled onset; ``at_pulses_*``: share of the onset frames
    within +-``tolerance`` frames of a pulse start (NaN: no onset); ``pulses_hit_*``: share of
    the pulses with an onset that close; ``chance``: share of all frames that close to a start
    (what ``at_pulses`` is for onsets placed at random)."""
    b = np.asarray(onset_before, dtype=bool).reshape(-1)
    a = np.asarray(onset_after, dtype=bool).reshape(-1)
    n = len(b)
    near = near_starts(n, starts, tolerance)
    s = np.asarray(starts, dtype=np.int64).reshape(-1)

    def hit(x: np.ndarray) -> float:
        if not len(s):
            return math.nan
        close = near_starts(n, np.flatnonzero(x), tolerance)
        return float(np.mean(close[s]))

    return {"onset_rate_before": float(b.mean()) if n else math.nan,
            "onset_rate_after": float(a.mean()) if n else math.nan,
            "at_pulses_before": _share(b, near), "at_pulses_after": _share(a, near),
            "pulses_hit_before": hit(b), "pulses_hit_after": hit(a),
            "chance": float(near.mean()) if n else math.nan}


def beat_timing(phase_before: np.ndarray, phase_after: np.ndarray, starts: np.ndarray,
                tolerance: int = TOLERANCE_FRAMES) -> dict[str, float]:
    """Whether the tracked beats (``beat_starts`` of each decode's ``beat_phase``) fall at the
    pulse ``starts``: ``beats_*`` beats found, ``beats_at_pulses_*`` share of them within
    +-``tolerance`` frames of a pulse start."""
    n = len(np.asarray(phase_before).reshape(-1))
    near = near_starts(n, starts, tolerance)
    out: dict[str, float] = {}
    for tag, phase in (("before", phase_before), ("after", phase_after)):
        beats = beat_starts(phase)
        out[f"beats_{tag}"] = float(len(beats))
        out[f"beats_at_pulses_{tag}"] = float(np.mean(near[beats])) if len(beats) else math.nan
    return out
