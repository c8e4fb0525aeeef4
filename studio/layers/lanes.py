"""Attribute lanes as data: probe-decoded classes and measurements per frame -> the curves a lane draws.

Per latent frame a lane shows:

- the probe's decoded class as its representative value (``AttributeSpec.class_value``:
  MIDI note, loudness bin centre in dB, centroid bin centre in Hz; unvoiced = gap);
- the measured value (CREPE pitch, RMS level, spectral centroid);
- while steering, the decode of the steered features ``f'`` in front and the unsteered
  decode as a faint ghost.

Plain numpy here (no Qt, no torch).  Probe decoding itself is the core's
(``audiosae.explore.decoding.decode_classes``), scheduled by the view-model
``studio.models.steered_lanes``; ``LaneData`` turns classes into values per frame and the
visible part of each series into at most a min/max pair per device pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from audiosae.attribute_spec import MIDI_MAX, MIDI_MIN, AttributeSpec, FrameAttributes, midi_to_name

# The paper's lanes: lane key -> (probe attribute, axis label, legend name of the measurement)
LANES: dict[str, tuple[str, str, str]] = {
    "pitch": ("pitch", "pitch", "CREPE"),
    "loudness": ("loudness", "loudness dB", "RMS"),
    "centroid": ("timbre", "centroid Hz", "measured"),
}
PAPER_KEYS = {attr: key for key, (attr, _axis, _name) in LANES.items()}   # attribute -> lane key
DEFAULT_LANES = ("pitch", "loudness", "timbre")   # attributes shown until the user picks others
AXIS_CHARS = 9                                    # a registered lane's axis label is cut to this
TICK_CHARS = 7                                    # axis tick labels are cut to this; hover names in full
SERIES = ("ghost", "decoded", "measured")   # drawing order, back to front


@dataclass(frozen=True)
class LaneSpec:
    """What one lane shows: its attribute, how its axis reads, and the attribute's classes.

    ``kind``: the paper's ``pitch`` / ``loudness`` / ``centroid`` lanes (measured values in
    their units), or a registered attribute's ``ordinal`` (class values: bin centres) or
    ``categorical`` lane (class index on the axis, class names as ticks).
    """

    key: str                        # lane key: "pitch" / "loudness" / "centroid", else the attribute
    attribute: str
    axis_label: str
    measured_name: str              # the measurement's legend name
    kind: str
    class_names: tuple[str, ...] = ()

    @property
    def paper(self) -> bool:
        return self.key in LANES

    @property
    def probe_name(self) -> str:
        """The probe's legend name: the paper's lanes say "probe"; a registered attribute's lane
        names its attribute there in full (its axis label may be cut to fit the lane)."""
        return "probe" if self.paper else f"{self.attribute} probe"


def lane_spec(attribute: str, spec: AttributeSpec | None = None) -> LaneSpec:
    """The lane of ``attribute`` (one of the paper's three, or one the spec labels)."""
    spec = spec or AttributeSpec()
    if attribute in PAPER_KEYS:
        key = PAPER_KEYS[attribute]
        _attr, axis, name = LANES[key]
        return LaneSpec(key, attribute, axis, name, key, tuple(spec.class_names(attribute)))
    registered = spec.registered(attribute)
    return LaneSpec(attribute, attribute, short_name(attribute.replace("_", " "), AXIS_CHARS),
                    "measured" if registered.from_audio else "labels",
                    "ordinal" if registered.ordinal else "categorical", tuple(spec.class_names(attribute)))


def lane_attributes(spec: AttributeSpec | None) -> list[str]:
    """Every attribute a lane can show for a workspace: the paper's three, then those its spec labels."""
    return list((spec or AttributeSpec()).attributes)


PAPER_DESCRIPTIONS = {"pitch": "CREPE pitch: 65 notes + unvoiced (the paper's)",
                      "loudness": "RMS level in dB bins (the paper's)",
                      "timbre": "spectral centroid in Hz bins (the paper's timbre)"}


def lane_descriptions(spec: AttributeSpec | None) -> dict[str, str]:
    """A line per lane attribute: the paper's, or the registry's description, with its class count."""
    spec = spec or AttributeSpec()
    out = {}
    for attr in spec.attributes:
        text = PAPER_DESCRIPTIONS.get(attr) or spec.registered(attr).description
        out[attr] = f"{text}; {spec.n_classes(attr)} classes"
    return out


def shown_attributes(chosen: Sequence[str], available: Sequence[str]) -> list[str]:
    """The chosen attributes that are available, in the available order (paper first, then the registry's)."""
    wanted = set(chosen)
    return [a for a in available if a in wanted]


def short_name(name: str, limit: int = TICK_CHARS) -> str:
    return name if len(name) <= limit else name[:limit - 1] + "…"


def category_ticks(names: Sequence[str], max_labels: int) -> list[list[tuple[float, str]]]:
    """Y ticks of a categorical lane: a class name at each class index, every ``stride``-th one
    named so that at most ``max_labels`` labels fit; the others are unlabelled minor ticks."""
    n = len(names)
    stride = max(1, math.ceil(n / max(1, int(max_labels))))
    major = [(float(k), short_name(names[k])) for k in range(0, n, stride)]
    minor = [(float(k), "") for k in range(n) if k % stride]
    return [major, minor]


def value_table(spec: AttributeSpec, attribute: str, n_classes: int) -> np.ndarray:
    """Representative value per class (a Python loop over classes, never over frames)."""
    return np.array([spec.class_value(attribute, k) for k in range(n_classes)], dtype=np.float64)


def measured_values(lane: LaneSpec, measured: FrameAttributes, measured_classes: Mapping[str, np.ndarray],
                    table: np.ndarray | None = None) -> np.ndarray:
    """The measured series for a lane; frames without a meaningful value are NaN (gaps).

    The paper's lanes show the measurement itself; a registered attribute's lane shows its
    measured class as the class's value (``table``), unlabelled frames (-1) as gaps."""
    key = lane.key
    if key == "pitch":
        voiced = np.asarray(measured_classes.get("pitch", np.isfinite(measured.midi)), dtype=bool)
        return np.where(voiced & np.isfinite(measured.midi), measured.midi, np.nan)
    if key == "loudness":
        return np.asarray(measured.loudness_db, dtype=np.float64)
    if key == "centroid":
        centroid = np.asarray(measured.centroid_hz, dtype=np.float64)
        return np.where(centroid > 0, centroid, np.nan)   # 0 Hz marks a silent frame
    classes = measured_classes.get(key)
    if classes is None or table is None or not len(table):
        return np.full(len(measured), np.nan)
    classes = np.asarray(classes, dtype=np.int64)
    known = (classes >= 0) & (classes < len(table))
    return np.where(known, np.asarray(table, dtype=np.float64)[np.where(known, classes, 0)], np.nan)


def pitch_ticks(lo: float, hi: float) -> list[list[tuple[float, str]]]:
    """Y ticks for a MIDI axis: every C named; E and G named too when the span is small."""
    named = (0,) if hi - lo > 30 else (0, 4, 7)
    first, last = int(math.ceil(lo)), int(math.floor(hi))
    major = [(float(m), midi_to_name(m)) for m in range(first, last + 1) if m % 12 in named]
    minor = [(float(m), "") for m in range(first, last + 1) if m % 12 not in named]
    return [major, minor]


def visible_minmax(x: np.ndarray, y: np.ndarray, t0: float, t1: float, n_columns: int
                   ) -> tuple[np.ndarray, np.ndarray, bool]:
    """The points of ``(x, y)`` to draw for ``[t0, t1]`` on ``n_columns`` pixel columns.

    Returns ``(x, y, reduced)``.  With more visible points than ``2 * n_columns``, each
    column becomes its min and max (NaN-aware: a column that is all NaN stays a gap), so
    steps and spikes survive; otherwise the visible points themselves (plus one each side).
    """
    i0 = max(int(np.searchsorted(x, t0, side="left")) - 1, 0)
    i1 = min(int(np.searchsorted(x, t1, side="right")) + 1, len(x))
    n_columns = max(int(n_columns), 1)
    if i1 - i0 <= 2 * n_columns:
        return x[i0:i1], y[i0:i1], False
    starts = np.unique(np.linspace(i0, i1, n_columns + 1)[:-1].astype(np.int64)) - i0
    lo = np.fmin.reduceat(y[i0:i1], starts)
    hi = np.fmax.reduceat(y[i0:i1], starts)
    ends = np.append(starts[1:], i1 - i0)
    centres = 0.5 * (x[i0 + starts] + x[i0 + ends - 1])
    ys = np.empty(2 * len(starts))
    ys[0::2], ys[1::2] = lo, hi
    return np.repeat(centres, 2), ys, True


def as_steps(x: np.ndarray, y: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Each value held over its frame ``[x - dt/2, x + dt/2]``: class decodes are steps, not slopes."""
    xs = np.empty(2 * len(x))
    xs[0::2], xs[1::2] = x - 0.5 * dt, x + 0.5 * dt
    return xs, np.repeat(y, 2)


def drop_flat_runs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep only the first and last point of each run of equal values (a step series draws the same)."""
    if len(y) < 3:
        return x, y
    keep = np.ones(len(y), dtype=bool)
    keep[1:-1] = ~((y[1:-1] == y[:-2]) & (y[1:-1] == y[2:]))
    return x[keep], y[keep]


def lane_y_range(lane: LaneSpec, spec: AttributeSpec, table: np.ndarray | None = None
                 ) -> tuple[float, float] | None:
    """The fixed y range of a lane (pitch fits its notes: None).

    Loudness and centroid: the spec's bins; a categorical lane: its class indices; an ordinal
    one: its class values (``table``) with half a bin each side."""
    key = lane.key
    if key == "loudness":
        edges = spec.edges("loudness")
        return float(edges[0]) - 3.0, float(edges[-1]) + 3.0
    if key == "centroid":
        edges = spec.edges("timbre")
        pad = 0.05 * (edges[-1] - edges[0])
        return max(float(edges[0] - pad), 0.0), float(edges[-1] + pad)
    if key == "pitch":
        return None
    if lane.kind == "categorical":
        return -0.6, len(lane.class_names) - 0.4
    values = np.asarray(table if table is not None else [], dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return -0.6, max(len(lane.class_names), 1) - 0.4
    lo, hi = float(values.min()), float(values.max())
    half = 0.5 * (hi - lo) / max(len(values) - 1, 1) if hi > lo else 0.5
    return lo - 1.2 * half, hi + 1.2 * half


def pitch_range(values: Sequence[np.ndarray]) -> tuple[float, float]:
    """A MIDI range that fits the notes present (at least one octave, within the probe's range)."""
    finite = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in values]) if values else np.zeros(0)
    finite = finite[np.isfinite(finite)]
    if finite.size:
        lo, hi = float(finite.min()) - 2.0, float(finite.max()) + 2.0
    else:
        lo, hi = 48.0, 72.0
    if hi - lo < 12.0:
        mid = 0.5 * (lo + hi)
        lo, hi = mid - 6.0, mid + 6.0
    return max(lo, MIDI_MIN - 2.0), min(hi, MIDI_MAX + 2.0)


class LaneData:
    """One lane's series per frame: measured, decoded (of f or f'), and the unsteered ghost."""

    def __init__(self, lane: str | LaneSpec):
        self.lane = lane if isinstance(lane, LaneSpec) else lane_spec(LANES[lane][0])
        self.key = self.lane.key
        self.attribute = self.lane.attribute
        self.times = np.zeros(0)
        self.table = np.zeros(0)
        self.measured_y = np.zeros(0)
        self.base_classes = np.zeros(0, dtype=np.int64)
        self.classes = np.zeros(0, dtype=np.int64)
        self.steered = False
        self.series: dict[str, np.ndarray | None] = {}
        self.y_range = (0.0, 1.0)

    def set_clip(self, times: np.ndarray | None, table: np.ndarray, measured: np.ndarray | None,
                 classes: np.ndarray | None) -> bool:
        """A new clip; False when cleared (``times`` None).  Call ``set_classes`` after."""
        if times is None:
            self.times = np.zeros(0)
            self.series = {}
            return False
        self.times = np.asarray(times, dtype=np.float64)
        self.table = np.asarray(table, dtype=np.float64)
        self.measured_y = np.asarray(measured, dtype=np.float64) if measured is not None \
            else np.full(len(self.times), np.nan)
        self.base_classes = np.asarray(classes, dtype=np.int64) if classes is not None \
            else np.zeros(0, dtype=np.int64)
        self.series["measured"] = self.displayable(self.measured_y)
        return True

    def set_classes(self, steered: np.ndarray | None) -> None:
        """The decode of ``f'`` (``steered``) with the unsteered one as the ghost, or the plain decode."""
        self.steered = steered is not None
        self.classes = np.asarray(steered, dtype=np.int64) if steered is not None else self.base_classes
        self.series["decoded"] = self.decoded_values() if len(self.classes) == len(self.times) else None
        self.series["ghost"] = self.table[self.base_classes] if self.steered and len(self.base_classes) else None

    def decoded_values(self) -> np.ndarray:
        """Representative value per frame of the shown decode (NaN = gap)."""
        if not len(self.classes) or not len(self.table):
            return np.zeros(0)
        return self.table[self.classes]

    def displayable(self, values: np.ndarray) -> np.ndarray:
        if self.key == "loudness":  # digital silence reads -120 dB: draw it on the lane's floor
            return np.maximum(values, self.y_range[0])
        return values

    def fitted_y_range(self) -> tuple[float, float] | None:
        """Pitch: a range that fits the notes present (>= one octave); others: None (fixed)."""
        if self.key != "pitch":
            return None
        ghost = self.table[self.base_classes] if len(self.base_classes) else np.zeros(0)
        return pitch_range([self.measured_y, self.decoded_values(), ghost])

    def curve(self, name: str, t0: float, t1: float, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
        """The points of series ``name`` to draw for ``[t0, t1]`` on ``n_columns`` device pixels."""
        values = self.series.get(name)
        if values is None or not len(self.times):
            return np.zeros(0), np.zeros(0)
        x, y, reduced = visible_minmax(self.times, values, t0, t1, n_columns)
        if name != "measured":   # decoded classes are steps: only their corners matter
            if not reduced and len(self.times) > 1:
                x, y = as_steps(x, y, float(self.times[1] - self.times[0]))
            x, y = drop_flat_runs(x, y)
        return x, y

    def describe(self, frame: int) -> str:
        """Values at ``frame``: decoded (and unsteered when steering) and measured."""
        if not 0 <= frame < len(self.times):
            return ""
        parts = []
        if len(self.classes):   # no probe decode without SAE features: the measurement alone
            text = f"probe {self.format(self.table[self.classes[frame]])}"
            if self.steered and len(self.base_classes):
                text += f" (was {self.format(self.table[self.base_classes[frame]])})"
            parts.append(text)
        measured = self.measured_y[frame] if frame < len(self.measured_y) else np.nan
        label = self.lane.measured_name
        if self.key == "pitch" and np.isfinite(measured):
            nearest = int(round(measured))
            cents = int(round(100 * (measured - nearest)))
            parts.append(f"{label} {midi_to_name(nearest)} {cents:+d} c")
        else:
            parts.append(f"{label} {self.format(measured)}")
        return " · ".join(parts)

    def format(self, value: float) -> str:
        if not np.isfinite(value):
            return "unvoiced" if self.key == "pitch" else "—"
        if not self.lane.paper:   # a registered attribute: the name of the class with this value
            names = self.lane.class_names
            if not len(self.table) or not names:
                return f"{value:g}"
            k = int(np.nanargmin(np.abs(self.table - value)))
            return names[k] if k < len(names) else f"{value:g}"
        if self.key == "pitch":
            return midi_to_name(int(round(value)))
        if self.key == "loudness":
            return f"{value:.1f} dB"
        return f"{value / 1000:.2f} kHz" if value >= 1000 else f"{value:.0f} Hz"


def clip_lanes(analysis: Any, spec: AttributeSpec, lanes: Sequence[LaneSpec] | None = None
               ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Per lane key: ``(value table, measured series, unsteered classes or None)`` of a ``ClipAnalysis``
    (default lanes: the paper's three)."""
    lanes = lanes if lanes is not None else [lane_spec(attr, spec) for attr in DEFAULT_LANES]
    out = {}
    for lane in lanes:
        attr = lane.attribute
        probs = analysis.probabilities.get(attr)
        n_classes = probs.shape[1] if probs is not None else spec.n_classes(attr)
        classes = probs.argmax(axis=1) if probs is not None else None
        table = value_table(spec, attr, n_classes)
        out[lane.key] = (table, measured_values(lane, analysis.measured, analysis.measured_classes, table), classes)
    return out
