"""What the attributes are and how raw measurements become classes: ``AttributeSpec``.

The attributes' names (``ATTRIBUTES``), their class layout, note naming, the raw values a frame
is measured as (``FrameAttributes``), the analysis-window rule and the CREPE pitch band live in
``audiosae.attribute_layout`` and are importable from here too; the spec and its JSON form are
here.  The measuring itself (CREPE, level, spectral centroid; how a label lines up with a latent
frame) is ``audiosae.attribute_measure``; ``audiosae.attributes`` re-exports every name of the
three: import them from there.  Nothing here runs a model; ``AttributeSpec.measure`` calls
``audiosae.attribute_measure.measure_attributes`` when used.  The attribute modules import one
way: layout <- measure <- spec -> registry -> library -> plugins (``attributes`` re-exports).

The paper's three keep this layout.  Every further attribute is a plug-in of
``audiosae.attribute_registry`` (extractor, classes, ordinal or not, what steering toward a class
means): ``AttributeSpec.extra`` holds the params of those a workspace labels (saved under
``extra_attributes``; a spec without any writes exactly the JSON it did before), ``attributes``
lists all of them, and ``n_classes``/``class_names``/``class_value``/``classify``/``parse_target``/
``measure`` answer for them through the registry.  Their raw columns ride in
``FrameAttributes.extra``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

# The layout of the paper's three (constants, note names, measured values, window, band) lives in
# audiosae.attribute_layout, which imports no attribute module; re-exported here.
from .attribute_layout import (ATTRIBUTES, CREPE_BINS, CREPE_CENTS_BIN0, CREPE_CENTS_PER_BIN,  # noqa: F401
                               CREPE_FMAX_HZ, CREPE_FMIN_HZ, CREPE_MODELS, DEFAULT_CREPE_MODEL, DEFAULT_FMAX_HZ,
                               DEFAULT_FMIN_HZ, DEFAULT_LOUDNESS_RANGE_DB, DEFAULT_MIN_WINDOW_S,
                               DEFAULT_PERIODICITY_THRESHOLD, DEFAULT_SILENCE_DB, DEFAULT_TIMBRE_RANGE_HZ,
                               MIDI_MAX, MIDI_MIN, MIN_TIMBRE_SPAN_HZ, N_LOUDNESS_BINS, N_PITCH_CLASSES,
                               N_TIMBRE_BINS, UNVOICED, FrameAttributes, _DECODE_HALF_WIDTH,
                               analysis_window_length, clamp_crepe_band, hz_to_midi, midi_to_hz, midi_to_name,
                               name_to_midi, pitch_class_names)
from .errors import AudioSAEError, WorkspaceError
from .storage import SCHEMA_VERSION, check_schema

if TYPE_CHECKING:
    import torch

    from .jobs import CancelToken, ProgressSink


# ---- classes ---------------------------------------------------------------------------
_VALUE_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Z]*)\s*$")
_INDEX_RE = re.compile(r"^\s*\d+\s*$")
_UNIT_SCALE = {"loudness": {"db": 1.0, "dbfs": 1.0}, "timbre": {"hz": 1.0, "khz": 1000.0}}


def _fmt(x: float) -> str:
    return f"{x:.0f}" if abs(x - round(x)) < 1e-9 or abs(x) >= 100 else f"{x:.1f}"


@dataclass
class AttributeSpec:
    """How raw measurements become classes: CREPE settings, thresholds and bin edges."""

    crepe_model: str = DEFAULT_CREPE_MODEL
    fmin_hz: float = DEFAULT_FMIN_HZ
    fmax_hz: float = DEFAULT_FMAX_HZ
    periodicity_threshold: float = DEFAULT_PERIODICITY_THRESHOLD
    silence_db: float = DEFAULT_SILENCE_DB
    min_window_s: float = DEFAULT_MIN_WINDOW_S
    loudness_min_db: float = DEFAULT_LOUDNESS_RANGE_DB[0]
    loudness_max_db: float = DEFAULT_LOUDNESS_RANGE_DB[1]
    n_loudness_bins: int = N_LOUDNESS_BINS
    timbre_min_hz: float = DEFAULT_TIMBRE_RANGE_HZ[0]
    timbre_max_hz: float = DEFAULT_TIMBRE_RANGE_HZ[1]
    n_timbre_bins: int = N_TIMBRE_BINS
    timbre_range_source: str = "default (not fit on a corpus)"
    # registered attributes beyond the paper's three (``audiosae.attribute_registry``), in order:
    # name -> that attribute's params (JSON-able: bins, k-means centroids, user classes)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.extra = {str(k): dict(v) for k, v in (self.extra or {}).items()}
        self.validate()

    # ---- the attribute list -----------------------------------------------------------
    @property
    def attributes(self) -> tuple[str, ...]:
        """The paper's three, then the registered attributes this spec labels."""
        return (*ATTRIBUTES, *self.extra)

    def registered(self, attr: str) -> Any:
        """The registry's ``Attribute`` of an extra attribute of this spec."""
        from .attribute_registry import get_attribute

        self._check(attr)
        return get_attribute(attr)

    def is_ordinal(self, attr: str) -> bool:
        """Classes in order with values (loudness, timbre, binned extras): within-1 and MAE apply."""
        self._check(attr)
        return attr in ("loudness", "timbre") if attr in ATTRIBUTES else self.registered(attr).ordinal

    def steering_meaning(self, attr: str) -> str:
        """What steering toward a class of ``attr`` means, in a sentence."""
        self._check(attr)
        return _PAPER_STEERING[attr] if attr in ATTRIBUTES else self.registered(attr).steering

    def with_attributes(self, names: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None = None
                        ) -> "AttributeSpec":
        """A copy that also labels the registered attributes ``names`` (default params unless
        given; attributes already in the spec keep theirs unless ``params`` names them)."""
        from .attribute_registry import get_attribute

        extra = {k: dict(v) for k, v in self.extra.items()}
        for name in names:
            if name in ATTRIBUTES:
                continue
            attr = get_attribute(name)
            if name in (params or {}):
                extra[name] = dict(params[name])  # type: ignore[index]
            elif name not in extra:
                extra[name] = dict(attr.default_params())
        return dataclasses.replace(self, extra=extra)

    def fit_extra(self, raw: Mapping[str, np.ndarray]) -> "AttributeSpec":
        """A copy whose fittable attributes (``Attribute.fit``: k-means centroids ...) are refit on
        ``raw`` (the training split's raw columns, core and registered)."""
        extra = {k: dict(v) for k, v in self.extra.items()}
        for name in self.extra:
            attr = self.registered(name)
            if attr.fit is not None and all(c in raw for c in attr.columns):
                try:
                    extra[name] = dict(attr.fit(dict(extra[name]), raw, self))
                except AudioSAEError as exc:   # too few frames: the attribute stays unfit (-1 labels)
                    extra[name] = dict(extra[name], fit_error=str(exc))
        return dataclasses.replace(self, extra=extra)

    def _check(self, attr: str) -> None:
        if attr not in ATTRIBUTES and attr not in self.extra:
            raise AudioSAEError(f"unknown attribute {attr!r}; this workspace labels "
                                f"{', '.join(self.attributes)}")

    def validate(self) -> None:
        """Raise ``AudioSAEError`` on inconsistent settings."""
        if self.crepe_model not in CREPE_MODELS:
            raise AudioSAEError(f"unknown CREPE model {self.crepe_model!r}; choose one of {', '.join(CREPE_MODELS)}")
        clamp_crepe_band(self.fmin_hz, self.fmax_hz)
        if not 0.0 <= float(self.periodicity_threshold) <= 1.0:
            raise AudioSAEError(f"periodicity_threshold must be in 0..1, got {self.periodicity_threshold}")
        if not math.isfinite(float(self.silence_db)):
            raise AudioSAEError(f"silence_db must be finite, got {self.silence_db}")
        if not 0.0 < float(self.min_window_s) <= 1.0:
            raise AudioSAEError(f"min_window_s must be in (0, 1] s, got {self.min_window_s}")
        for name, n in (("n_loudness_bins", self.n_loudness_bins), ("n_timbre_bins", self.n_timbre_bins)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 2:
                raise AudioSAEError(f"{name} must be an integer >= 2, got {n!r}")
        lo, hi = float(self.loudness_min_db), float(self.loudness_max_db)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi - lo >= 0.1 * self.n_loudness_bins):
            raise AudioSAEError(f"loudness range {lo}..{hi} dB is empty or too narrow")
        lo, hi = float(self.timbre_min_hz), float(self.timbre_max_hz)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo >= 0 and hi - lo >= MIN_TIMBRE_SPAN_HZ):
            raise AudioSAEError(f"timbre range {lo}..{hi} Hz must span at least {MIN_TIMBRE_SPAN_HZ:.0f} Hz")
        if self.extra:
            from .attribute_registry import get_attribute

            for name, params in self.extra.items():
                attr = get_attribute(name)
                if attr.check_params is not None:
                    attr.check_params(params)
                if len(attr.class_names(params)) < 2:
                    raise AudioSAEError(f"attribute {name!r} needs at least 2 classes")

    # ---- geometry ------------------------------------------------------------------
    @property
    def loudness_edges(self) -> np.ndarray:
        return np.linspace(self.loudness_min_db, self.loudness_max_db, self.n_loudness_bins + 1)

    @property
    def timbre_edges(self) -> np.ndarray:
        return np.linspace(self.timbre_min_hz, self.timbre_max_hz, self.n_timbre_bins + 1)

    def edges(self, attr: str) -> np.ndarray:
        """Bin edges of ``loudness`` (dB) or ``timbre`` (Hz)."""
        self._check(attr)
        if attr not in ATTRIBUTES:
            raise AudioSAEError(f"{attr} classes are the registry's, not bins of this spec")
        if attr == "pitch":
            raise AudioSAEError("pitch classes are notes, not bins; see class_names('pitch')")
        return self.loudness_edges if attr == "loudness" else self.timbre_edges

    def n_classes(self, attr: str) -> int:
        self._check(attr)
        if attr not in ATTRIBUTES:
            return len(self.class_names(attr))
        return {"pitch": N_PITCH_CLASSES, "loudness": self.n_loudness_bins, "timbre": self.n_timbre_bins}[attr]

    def class_names(self, attr: str) -> list[str]:
        """Display names: notes for pitch, 'lo..hi dB' / 'lo..hi Hz' bins otherwise."""
        self._check(attr)
        if attr not in ATTRIBUTES:
            return [str(c) for c in self.registered(attr).class_names(self.extra[attr])]
        if attr == "pitch":
            return pitch_class_names()
        unit = "dB" if attr == "loudness" else "Hz"
        e = self.edges(attr)
        return [f"{_fmt(e[k])}..{_fmt(e[k + 1])} {unit}" for k in range(len(e) - 1)]

    def class_value(self, attr: str, k: int) -> float:
        """Representative value of class ``k``: MIDI number (NaN for unvoiced) or bin centre."""
        n = self.n_classes(attr)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= int(k) < n:
            raise AudioSAEError(f"{attr} class must be an integer in 0..{n - 1}, got {k!r}")
        k = int(k)
        if attr not in ATTRIBUTES:
            reg = self.registered(attr)
            return float(reg.class_value(self.extra[attr], k)) if reg.class_value is not None else float(k)
        if attr == "pitch":
            return float("nan") if k == 0 else float(MIDI_MIN + k - 1)
        e = self.edges(attr)
        return float(0.5 * (e[k] + e[k + 1]))

    def window_length(self, sample_rate: int, hop_length: int) -> int:
        return analysis_window_length(sample_rate, hop_length, self.min_window_s)

    # ---- labelling -------------------------------------------------------------------
    def classify(self, fa: FrameAttributes) -> dict[str, np.ndarray]:
        """Class indices (int64, length T) for every attribute.

        The spec's voicing rules are applied again here (NaN midi, periodicity below the
        threshold or level below ``silence_db`` -> unvoiced), so a stricter spec works on
        values measured with looser settings.
        """
        midi = np.asarray(fa.midi, dtype=np.float64)
        voiced = np.isfinite(midi) & (np.asarray(fa.periodicity) >= self.periodicity_threshold) & \
            (np.asarray(fa.loudness_db) >= self.silence_db)
        semis = np.clip(np.floor(np.where(voiced, midi, MIDI_MIN) + 0.5), MIDI_MIN, MIDI_MAX)
        pitch = np.where(voiced, semis - MIDI_MIN + 1, 0).astype(np.int64)
        out = {"pitch": pitch,
               "loudness": self._bin(np.asarray(fa.loudness_db, dtype=np.float64), self.loudness_edges),
               "timbre": self._bin(np.asarray(fa.centroid_hz, dtype=np.float64), self.timbre_edges)}
        raw = fa.raw()
        for name, params in self.extra.items():
            attr = self.registered(name)
            if not all(c in raw for c in attr.columns):   # not measured for these frames: no label
                out[name] = np.full(len(fa), -1, dtype=np.int64)
                continue
            k = len(attr.class_names(params))
            y = np.asarray(attr.classify(params, raw, self), dtype=np.int64).reshape(-1)
            # a frame whose raw values are all NaN was not measured (its audio was missing): no label
            unknown = np.ones(len(fa), dtype=bool)
            for c in attr.columns:
                unknown &= np.isnan(raw[c].reshape(len(fa), -1)).all(axis=1)
            out[name] = np.where((y >= 0) & (y < k) & ~unknown, y, -1)
        return out

    @staticmethod
    def _bin(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
        # Interior edges belong to the upper bin; outside values (and NaN) go to the end bins.
        idx = np.searchsorted(edges, np.nan_to_num(values, nan=-np.inf), side="right") - 1
        return np.clip(idx, 0, len(edges) - 2).astype(np.int64)

    def measure(self, wave: np.ndarray, sample_rate: int, frame_times: np.ndarray, *, hop_length: int,
                device: str | torch.device = "cpu", batch_size: int | None = None,
                progress: ProgressSink | None = None, cancel: CancelToken | None = None,
                pitch: bool = True, source: Any = None, extra: bool = True) -> FrameAttributes:
        """``measure_attributes`` with this spec's CREPE model, band, thresholds and window
        (``batch_size`` None: ``audiosae.attributes.DEFAULT_BATCH_SIZE``), plus the raw columns
        of the spec's registered attributes (``extra=False``: only the paper's; ``source``: the
        corpus ``Source``, for attributes with ground truth)."""
        from .attribute_measure import DEFAULT_BATCH_SIZE, measure_attributes

        batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        fa = measure_attributes(wave, sample_rate, frame_times, hop_length=hop_length,
                                crepe_model=self.crepe_model, device=device, batch_size=batch_size,
                                periodicity_threshold=self.periodicity_threshold, silence_db=self.silence_db,
                                fmin_hz=self.fmin_hz, fmax_hz=self.fmax_hz, min_window_s=self.min_window_s,
                                progress=progress, cancel=cancel, pitch=pitch)
        if extra and self.extra:
            fa.extra.update(self.measure_extra(wave, sample_rate, frame_times, hop_length=hop_length,
                                               source=source, cancel=cancel))
        return fa

    def measure_extra(self, wave: np.ndarray, sample_rate: int, frame_times: np.ndarray, *, hop_length: int,
                      names: Sequence[str] | None = None, source: Any = None,
                      cancel: CancelToken | None = None) -> dict[str, np.ndarray]:
        """The raw columns of the registered attributes ``names`` (default: all of the spec's)."""
        from .attribute_registry import ExtractContext, measure_extra, mono_of

        names = list(self.extra) if names is None else list(names)
        for name in names:
            self._check(name)
        ctx = ExtractContext(mono=mono_of(wave), sample_rate=int(sample_rate),
                             frame_times=np.asarray(frame_times, dtype=np.float64).reshape(-1),
                             hop_length=int(hop_length), source=source, cancel=cancel)
        return measure_extra(names, self.extra, ctx)

    def with_timbre_range_from(self, centroids_hz: np.ndarray, *, low_percentile: float = 1.0,
                               high_percentile: float = 99.0) -> "AttributeSpec":
        """A copy whose timbre range is the percentiles of the corpus' non-silent centroids.

        Silent frames (centroid 0) and non-finite values are ignored; percentiles keep a few
        outlier frames (clicks, hiss) from stretching the bins.
        """
        values = np.asarray(centroids_hz, dtype=np.float64).reshape(-1)
        values = values[np.isfinite(values) & (values > 0)]
        if values.size < self.n_timbre_bins:
            raise AudioSAEError(f"cannot fit the timbre range: {values.size} non-silent frames, "
                                f"need at least {self.n_timbre_bins}")
        if not 0.0 <= low_percentile < high_percentile <= 100.0:
            raise AudioSAEError(f"percentiles must satisfy 0 <= low < high <= 100, "
                                f"got {low_percentile}, {high_percentile}")
        lo, hi = (float(v) for v in np.percentile(values, [low_percentile, high_percentile]))
        if hi - lo < MIN_TIMBRE_SPAN_HZ:
            raise AudioSAEError(f"the corpus' spectral centroids span only {lo:.0f}..{hi:.0f} Hz "
                                f"(need {MIN_TIMBRE_SPAN_HZ:.0f} Hz for {self.n_timbre_bins} bins); "
                                f"add more varied audio")
        source = f"corpus: {low_percentile:g}th..{high_percentile:g}th percentile of {values.size} non-silent frames"
        return dataclasses.replace(self, timbre_min_hz=round(lo, 3), timbre_max_hz=round(hi, 3),
                                   timbre_range_source=source)

    def parse_target(self, attr: str, text: str | int) -> int:
        """A user's target class: a note ('A4', 'C#5', 'unvoiced') for pitch; a bin index
        ('7'), a value with its unit ('-12 dB', '1500 Hz', '1.5 kHz') or a class name for
        loudness/timbre.  Values outside the range go to the end bins, as in ``classify``.
        Registered attributes: a class index or a class name (case-insensitive)."""
        self._check(attr)
        raw = str(text).strip()
        if attr not in ATTRIBUTES:
            names = self.class_names(attr)
            if _INDEX_RE.match(raw) and 0 <= int(raw) < len(names):
                return int(raw)
            lowered = [n.lower() for n in names]
            if raw.lower() in lowered:
                return lowered.index(raw.lower())
            raise AudioSAEError(f"{attr} target {raw!r} not understood; use a class index 0..{len(names) - 1} "
                                f"or a class name ({', '.join(names[:6])}{' ...' if len(names) > 6 else ''})")
        if attr == "pitch":
            if raw.lower() == UNVOICED:
                return 0
            try:
                midi = name_to_midi(raw)
            except AudioSAEError:
                raise AudioSAEError(f"pitch target {raw!r} not understood; use a note name from "
                                    f"{midi_to_name(MIDI_MIN)} to {midi_to_name(MIDI_MAX)} (e.g. 'A4', 'C#5') "
                                    f"or '{UNVOICED}'") from None
            if not MIDI_MIN <= midi <= MIDI_MAX:
                raise AudioSAEError(f"pitch target {raw!r} (MIDI {midi}) is outside the pitch classes "
                                    f"{midi_to_name(MIDI_MIN)}..{midi_to_name(MIDI_MAX)}")
            return midi - MIDI_MIN + 1
        n = self.n_classes(attr)
        names = self.class_names(attr)
        unit = "dB" if attr == "loudness" else "Hz"
        example = "'-12 dB'" if attr == "loudness" else "'1500 Hz' or '1.5 kHz'"
        choices = (f"use a bin index 0..{n - 1}, a value such as {example}, or a class name "
                   f"({names[0]!r} .. {names[-1]!r})")
        if _INDEX_RE.match(raw):
            k = int(raw)
            if not 0 <= k < n:
                raise AudioSAEError(f"{attr} bin {k} does not exist; {choices}")
            return k
        if raw in names:
            return names.index(raw)
        match = _VALUE_RE.match(raw)
        if match and match.group(2).lower() in _UNIT_SCALE[attr]:
            value = float(match.group(1)) * _UNIT_SCALE[attr][match.group(2).lower()]
            return int(self._bin(np.array([value]), self.edges(attr))[0])
        raise AudioSAEError(f"{attr} target {raw!r} not understood (unit must be {unit}); {choices}")

    # ---- persistence -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able description, self-describing (every class name and edge included)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "attribute_spec",
            "attributes": list(ATTRIBUTES),
            "pitch": {
                "crepe_model": self.crepe_model,
                "fmin_hz": float(self.fmin_hz),
                "fmax_hz": float(self.fmax_hz),
                "periodicity_threshold": float(self.periodicity_threshold),
                "silence_db": float(self.silence_db),
                "midi_min": MIDI_MIN,
                "midi_max": MIDI_MAX,
                "decoder": f"argmax in band, weighted mean of +-{_DECODE_HALF_WIDTH} bins",
                "classes": self.class_names("pitch"),
            },
            "window": {
                "min_seconds": float(self.min_window_s),
                "rule": "next power of two >= max(2 * hop, min_seconds), Hann, centred on the frame time",
            },
            "loudness": {
                "unit": "dBFS",
                "min_db": float(self.loudness_min_db),
                "max_db": float(self.loudness_max_db),
                "n_bins": int(self.n_loudness_bins),
                "edges": [float(x) for x in self.loudness_edges],
                "classes": self.class_names("loudness"),
            },
            "timbre": {
                "unit": "Hz (spectral centroid)",
                "min_hz": float(self.timbre_min_hz),
                "max_hz": float(self.timbre_max_hz),
                "n_bins": int(self.n_timbre_bins),
                "range_source": self.timbre_range_source,
                "edges": [float(x) for x in self.timbre_edges],
                "classes": self.class_names("timbre"),
            },
        } | ({"extra_attributes": {name: self._extra_block(name) for name in self.extra}} if self.extra else {})

    def _extra_block(self, name: str) -> dict[str, Any]:
        attr = self.registered(name)
        return {"params": _jsonable(self.extra[name]), "classes": self.class_names(name), "ordinal": attr.ordinal,
                "columns": {c: int(w) for c, w in attr.columns.items()}, "description": attr.description,
                "steering": attr.steering}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "attribute spec") -> "AttributeSpec":
        """Rebuild from ``to_dict`` output; a newer schema, a missing field or names/edges that
        do not follow from the settings (hand edits) raise ``WorkspaceError``."""
        if not isinstance(data, Mapping):
            raise WorkspaceError(f"{source}: attribute spec must be a JSON object, got {type(data).__name__}")
        check_schema(data, source, kind="attribute spec")
        try:
            pitch, window, loud, timbre = data["pitch"], data["window"], data["loudness"], data["timbre"]
            spec = cls(
                crepe_model=_typed(pitch["crepe_model"], str, "pitch.crepe_model", source),
                fmin_hz=_num(pitch["fmin_hz"], "pitch.fmin_hz", source),
                fmax_hz=_num(pitch["fmax_hz"], "pitch.fmax_hz", source),
                periodicity_threshold=_num(pitch["periodicity_threshold"], "pitch.periodicity_threshold", source),
                silence_db=_num(pitch["silence_db"], "pitch.silence_db", source),
                min_window_s=_num(window["min_seconds"], "window.min_seconds", source),
                loudness_min_db=_num(loud["min_db"], "loudness.min_db", source),
                loudness_max_db=_num(loud["max_db"], "loudness.max_db", source),
                n_loudness_bins=_typed(loud["n_bins"], int, "loudness.n_bins", source),
                timbre_min_hz=_num(timbre["min_hz"], "timbre.min_hz", source),
                timbre_max_hz=_num(timbre["max_hz"], "timbre.max_hz", source),
                n_timbre_bins=_typed(timbre["n_bins"], int, "timbre.n_bins", source),
                timbre_range_source=_typed(timbre.get("range_source", ""), str, "timbre.range_source", source),
                extra=_extra_params(data.get("extra_attributes"), source),
            )
        except KeyError as exc:
            raise WorkspaceError(f"{source}: attribute spec lacks {exc.args[0]!r}; was it edited by hand?") from None
        except TypeError as exc:
            raise WorkspaceError(f"{source}: attribute spec is malformed ({exc}); was it edited by hand?") from None
        except AudioSAEError as exc:
            if isinstance(exc, WorkspaceError):
                raise
            raise WorkspaceError(f"{source}: invalid attribute spec: {exc}") from None
        # The stored names and edges are what other files (probes, reports) were built on;
        # they must follow from the settings, or the file was edited inconsistently.
        if list(data.get("attributes", [])) != list(ATTRIBUTES):
            raise WorkspaceError(f"{source}: attribute spec lists attributes {data.get('attributes')!r}, "
                                 f"expected {list(ATTRIBUTES)}")
        if (pitch.get("midi_min"), pitch.get("midi_max")) != (MIDI_MIN, MIDI_MAX):
            raise WorkspaceError(f"{source}: attribute spec has pitch range "
                                 f"{pitch.get('midi_min')}..{pitch.get('midi_max')}, "
                                 f"this audiosae supports only {MIDI_MIN}..{MIDI_MAX}")
        expected = spec.to_dict()
        for attr, block in (("pitch", pitch), ("loudness", loud), ("timbre", timbre)):
            if block.get("classes") != expected[attr]["classes"]:
                raise WorkspaceError(f"{source}: attribute spec {attr} class names do not match its settings; "
                                     f"was it edited by hand?")
            if attr != "pitch":
                if not _same_edges(block.get("edges"), expected[attr]["edges"]):
                    raise WorkspaceError(f"{source}: attribute spec {attr} edges do not match its range; "
                                         f"was it edited by hand?")
        for name in spec.extra:
            if data["extra_attributes"][name].get("classes") != spec.class_names(name):
                raise WorkspaceError(f"{source}: attribute spec {name} class names do not match its settings; "
                                     f"was it edited by hand?")
        return spec


_PAPER_STEERING = {
    "pitch": "toward a note: move the frame's fundamental to that semitone ('unvoiced': remove the pitch)",
    "loudness": "toward a bin: make the frame that loud (dBFS)",
    "timbre": "toward a bin: move the spectral centroid into that range (brighter or darker)",
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _extra_params(data: Any, source: str) -> dict[str, dict[str, Any]]:
    """``extra_attributes`` of a spec's JSON -> ``{name: params}`` (absent: none, as before issue 14)."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise WorkspaceError(f"{source}: attribute spec 'extra_attributes' must be a JSON object")
    from .attribute_registry import registered_names

    out = {}
    for name, block in data.items():
        if name not in registered_names():
            raise WorkspaceError(f"{source}: the workspace labels attribute {name!r}, which this audiosae does "
                                 f"not know (registered: {', '.join(registered_names())}); load the plug-in "
                                 f"that registers it")
        if not isinstance(block, Mapping) or not isinstance(block.get("params", {}), Mapping):
            raise WorkspaceError(f"{source}: attribute spec {name} must hold a 'params' object")
        out[str(name)] = dict(block.get("params") or {})
    return out


def _same_edges(stored: Any, expected: list[float]) -> bool:
    if not isinstance(stored, list) or len(stored) != len(expected):
        return False
    try:
        return bool(np.allclose(np.asarray(stored, dtype=np.float64), expected, rtol=0, atol=1e-6))
    except (TypeError, ValueError):
        return False


def _typed(value: Any, kind: type, name: str, source: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise WorkspaceError(f"{source}: attribute spec field {name} must be {kind.__name__}, got {value!r}")
    return value


def _num(value: Any, name: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise WorkspaceError(f"{source}: attribute spec field {name} must be a finite number, got {value!r}")
    return float(value)
