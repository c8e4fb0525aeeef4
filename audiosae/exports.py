"""Exports for other tools: per-frame CSV lanes, Sonic Visualiser layers; and (re-exported from
``audiosae.sae.saelens``, where the SAELens IO lives) SAELens-layout SAEs.

Sonic Visualiser: every lane is a headerless ``time,value[,label]`` CSV in seconds, which SV
imports as a time-value layer: open the audio, then File > Import Annotation Layer, choose
the CSV, and in the import dialog set column 1 to "Time", column 2 to "Value" (and column 3,
where present, to "Label"), timing "Explicit, in seconds".  ``sv_lanes`` lists the files of an
analysis: the paper's six (``SV_LANES``), then per registered attribute ``decoded_<attr>`` (the
probe) and ``measured_<attr>`` (its label), whose value is the class value (bin centre of an
ordinal attribute, the class index of a categorical one) and whose label is the class name.
Given the clip's audio file, ``export_sonic_visualiser`` also writes ``session.sv``: opened in
SV (File > Open, or ``sonic-visualiser session.sv``) it loads the clip and every lane at once,
the measured and decoded lane of each attribute in one pane (``audiosae.sv_session``).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .analysis import ClipAnalysis
from .attributes import ATTRIBUTES, AttributeSpec, midi_to_hz, midi_to_name
from .errors import AudioSAEError
from .sae.saelens import (EXPORT_KIND, RMSNORM_WARNING, SAELENS_CFG_FILE, SAELENS_WEIGHTS_FILE,  # noqa: F401
                          export_saelens, import_saelens, load_exported_probes, saelens_import_warning)
from .storage import atomic_write_bytes
from .sv_session import SV_SESSION_FILE, SessionLane, write_sv_session

__all__ = [
    "SAELENS_CFG_FILE", "SAELENS_WEIGHTS_FILE", "EXPORT_KIND", "RMSNORM_WARNING",
    "export_saelens", "import_saelens", "saelens_import_warning", "load_exported_probes",
    "export_lanes_csv", "export_activations_csv", "export_sonic_visualiser", "SV_LANES", "sv_lanes",
    "SV_SESSION_FILE",
]


def _num(value: float) -> str:
    """Shortest exact text for a float; empty for NaN/inf (a gap, not a number)."""
    value = float(value)
    return repr(value) if math.isfinite(value) else ""


def _write_csv(path: str | Path, rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
    return path


def _decoded(analysis: ClipAnalysis, spec: AttributeSpec, attr: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(predicted class [T], class names, class values [T]) of the probe for ``attr``."""
    probs = analysis.probabilities[attr]
    if probs.shape != (analysis.n_frames, spec.n_classes(attr)):
        raise AudioSAEError(f"{attr} probabilities have shape {list(probs.shape)}, expected "
                            f"[{analysis.n_frames}, {spec.n_classes(attr)}] (frames x classes of the spec)")
    classes = analysis.predicted(attr)
    values = np.array([spec.class_value(attr, int(k)) for k in classes], dtype=np.float64)
    return classes, spec.class_names(attr), values


def _lane_attributes(analysis: ClipAnalysis) -> list[str]:
    """The paper's three, then every other probed attribute (the registry's), as the probes hold them."""
    return [a for a in ATTRIBUTES if a in analysis.probabilities] + \
        [a for a in analysis.probabilities if a not in ATTRIBUTES]


def _measured_attributes(analysis: ClipAnalysis) -> list[str]:
    """The registered attributes the analysis holds labels of, in the spec's order."""
    return [a for a in analysis.measured_classes if a not in ATTRIBUTES]


def _measured(analysis: ClipAnalysis, spec: AttributeSpec, attr: str) -> list[int]:
    """The measured classes of a registered ``attr`` per frame, checked; -1 = no label."""
    classes = np.asarray(analysis.measured_classes[attr]).reshape(-1)
    n = spec.n_classes(attr)
    if len(classes) != analysis.n_frames or np.any((classes < -1) | (classes >= n)):
        raise AudioSAEError(f"measured {attr} classes must be {analysis.n_frames} integers in -1..{n - 1}")
    return [int(k) for k in classes]


DECODED_UNITS = {"pitch": "midi", "loudness": "db", "timbre": "hz"}


def decoded_unit(attr: str) -> str:
    """Unit of a lane's decoded value: the paper's three have theirs; a registered attribute's
    value is its class value (bin centre of ordinal ones, the class index otherwise): ""."""
    return DECODED_UNITS.get(attr, "")


def export_lanes_csv(analysis: ClipAnalysis, spec: AttributeSpec, path: str | Path) -> Path:
    """One row per frame: ``time_s``; per attribute the probe's class name, its value and probability;
    then the measured ``midi`` (empty when unvoiced), ``loudness_db`` and ``centroid_hz``; then
    ``measured_<attr>_class`` per registered attribute the spec labels (the class name of the
    frame's label, empty where it has none).

    Decoded values: pitch as the class's MIDI number (empty for 'unvoiced'), loudness as the
    dB bin centre, timbre as the centroid bin centre in Hz, a registered attribute's class value.
    """
    attrs = _lane_attributes(analysis)
    n = analysis.n_frames
    if len(analysis.times) != n or len(analysis.measured) != n:
        raise AudioSAEError(f"analysis has {n} frames but {len(analysis.times)} times and "
                            f"{len(analysis.measured)} measurements")
    header = ["time_s"]
    columns: list[list[str]] = [[_num(t) for t in analysis.times]]
    for attr in attrs:
        classes, names, values = _decoded(analysis, spec, attr)
        confidence = analysis.probabilities[attr][np.arange(n), classes]
        unit = decoded_unit(attr)
        header += [f"{attr}_class", f"{attr}_value" + (f"_{unit}" if unit else ""), f"{attr}_probability"]
        columns += [[names[int(k)] for k in classes], [_num(v) for v in values], [_num(p) for p in confidence]]
    m = analysis.measured
    header += ["measured_midi", "measured_loudness_db", "measured_centroid_hz"]
    columns += [[_num(v) for v in m.midi], [_num(v) for v in m.loudness_db], [_num(v) for v in m.centroid_hz]]
    for attr in _measured_attributes(analysis):
        names = spec.class_names(attr)
        header.append(f"measured_{attr}_class")
        columns.append([names[k] if k >= 0 else "" for k in _measured(analysis, spec, attr)])
    return _write_csv(path, zip(*columns), header)


def export_activations_csv(analysis: ClipAnalysis, path: str | Path,
                           features: Sequence[int] | None = None) -> list[int]:
    """``time_s`` + one column ``f<j>`` (the SAE features f = RMSNorm(h)) per feature; returns the indices.

    Default ``features``: every feature that is non-zero in at least one frame of the clip.
    """
    f = np.asarray(analysis.f)
    if features is None:
        chosen = np.flatnonzero((f > 0).any(axis=0)).tolist() if f.size else []
    else:
        chosen = [int(j) for j in features]
        bad = [j for j in chosen if not 0 <= j < f.shape[1]]
        if bad:
            raise AudioSAEError(f"feature(s) {bad[:5]} out of range 0..{f.shape[1] - 1}")
    header = ["time_s", *[f"f{j}" for j in chosen]]
    rows = ([_num(t), *[_num(v) for v in f[i, chosen]]] for i, t in enumerate(analysis.times))
    _write_csv(path, rows, header)
    return chosen


# The paper's lane files -> what they hold (unit).  Rows with no value (unvoiced pitch) are
# left out, which SV draws as a gap.  ``sv_lanes`` adds the registered attributes' lanes.
SV_LANES = {
    "measured_pitch_hz": "measured pitch (CREPE), Hz, label = nearest note",
    "measured_loudness_db": "measured loudness, dBFS",
    "measured_centroid_hz": "measured spectral centroid, Hz",
    "decoded_pitch_hz": "probe-decoded pitch class, Hz of the note, label = class name",
    "decoded_loudness_db": "probe-decoded loudness bin centre, dB, label = bin",
    "decoded_timbre_hz": "probe-decoded centroid bin centre, Hz, label = bin",
}
_PAPER_DECODED = {"pitch": "decoded_pitch_hz", "loudness": "decoded_loudness_db", "timbre": "decoded_timbre_hz"}


def _registered_lane(kind: str, attr: str) -> str:
    """``decoded_<attr>`` / ``measured_<attr>``; ``..._class`` where that is a paper lane's name
    (an attribute called ``pitch_hz``)."""
    name = f"{kind}_{attr}"
    return f"{name}_class" if name in SV_LANES else name


def _lane_value_meaning(spec: AttributeSpec, attr: str) -> str:
    return "class value (bin centre)" if spec.is_ordinal(attr) else "class index"


def sv_lanes(analysis: ClipAnalysis, spec: AttributeSpec) -> dict[str, str]:
    """The Sonic Visualiser lane files of ``analysis`` (name -> what it holds), in the order
    ``export_sonic_visualiser`` writes them: the three measured lanes of the paper, its decoded
    lanes the probes have, then per registered attribute ``decoded_<attr>`` (when probed) and
    ``measured_<attr>`` (when at least one frame is labelled)."""
    lanes = {k: v for k, v in SV_LANES.items() if k.startswith("measured_")}
    lanes.update({lane: SV_LANES[lane] for attr, lane in _PAPER_DECODED.items() if attr in analysis.probabilities})
    measured = set(_measured_attributes(analysis))
    for attr in dict.fromkeys([*(a for a in analysis.probabilities if a not in ATTRIBUTES),
                               *_measured_attributes(analysis)]):
        meaning = _lane_value_meaning(spec, attr)
        if attr in analysis.probabilities:
            lanes[_registered_lane("decoded", attr)] = f"probe-decoded {attr}, {meaning}, label = class name"
        if attr in measured and any(k >= 0 for k in _measured(analysis, spec, attr)):
            lanes[_registered_lane("measured", attr)] = (f"measured {attr} label, {meaning}, label = class name; "
                                                         "frames without a label left out")
    return lanes


def export_sonic_visualiser(analysis: ClipAnalysis, spec: AttributeSpec, folder: str | Path, *,
                            audio: str | Path | None = None) -> dict[str, Path]:
    """Write one headerless ``time,value[,label]`` CSV per lane (``sv_lanes(analysis, spec)``)
    into ``folder``; returns lane name -> file.  With ``audio`` (the analysed clip's file) also
    ``folder/session.sv`` (``SV_SESSION_FILE``), a Sonic Visualiser session with the clip and
    every lane as a layer, measured and decoded lanes of an attribute in one pane.

    Times are frame centres in seconds, increasing.  In Sonic Visualiser: open ``session.sv``;
    or open the clip, then File > Import Annotation Layer, pick a CSV, and map the columns as
    Time / Value / Label with timing "Explicit, in seconds"; each file becomes a time-value layer.
    """
    folder = Path(folder)
    lanes = _sv_rows(analysis, spec)
    folder.mkdir(parents=True, exist_ok=True)
    files = {lane: _write_csv(folder / f"{lane}.csv", body) for lane, body in lanes.items()}
    if audio is not None:
        groups = _sv_groups(spec)
        session = [SessionLane(lane, body, *groups[lane], measured=lane.startswith("measured_"))
                   for lane, body in lanes.items()]
        write_sv_session(folder / SV_SESSION_FILE, audio, session)
    return files


_PAPER_GROUPS = {"measured_pitch_hz": ("pitch", "Hz"), "decoded_pitch_hz": ("pitch", "Hz"),
                 "measured_loudness_db": ("loudness", "dB"), "decoded_loudness_db": ("loudness", "dB"),
                 "measured_centroid_hz": ("timbre", "Hz"), "decoded_timbre_hz": ("timbre", "Hz")}


def _sv_groups(spec: AttributeSpec) -> dict[str, tuple[str, str]]:
    """Lane name -> (the attribute whose pane shows it, the units on that pane's scale)."""
    groups = dict(_PAPER_GROUPS)
    for attr in spec.extra:
        units = "" if spec.is_ordinal(attr) else "class"
        groups[_registered_lane("decoded", attr)] = groups[_registered_lane("measured", attr)] = (attr, units)
    return groups


def _sv_rows(analysis: ClipAnalysis, spec: AttributeSpec) -> dict[str, list[tuple[str, ...]]]:
    """Lane name -> its CSV rows, in ``sv_lanes`` order."""
    times = np.asarray(analysis.times, dtype=np.float64)
    if np.any(np.diff(times) <= 0):
        raise AudioSAEError("analysis frame times are not strictly increasing")
    m = analysis.measured
    wanted = sv_lanes(analysis, spec)
    lanes: dict[str, list[tuple[str, ...]]] = {}

    def rows(values: np.ndarray, labels: Sequence[str] | None = None) -> list[tuple[str, ...]]:
        out = []
        for i, v in enumerate(np.asarray(values, dtype=np.float64)):
            if math.isfinite(v):
                out.append((_num(times[i]), _num(v)) + ((labels[i],) if labels is not None else ()))
        return out

    midi = np.asarray(m.midi, dtype=np.float64)
    voiced = np.isfinite(midi)
    note_labels = [midi_to_name(int(round(v))) if ok else "" for v, ok in zip(midi, voiced)]
    lanes["measured_pitch_hz"] = rows(np.where(voiced, midi_to_hz(np.where(voiced, midi, 69.0)), np.nan),
                                      note_labels)
    lanes["measured_loudness_db"] = rows(m.loudness_db)
    lanes["measured_centroid_hz"] = rows(m.centroid_hz)
    for attr, lane in _PAPER_DECODED.items():
        if lane not in wanted:
            continue
        classes, names, values = _decoded(analysis, spec, attr)
        if attr == "pitch":
            values = np.where(np.isfinite(values), midi_to_hz(np.nan_to_num(values, nan=69.0)), np.nan)
        lanes[lane] = rows(values, [names[int(k)] for k in classes])
    for attr in dict.fromkeys([*analysis.probabilities, *analysis.measured_classes]):
        if attr in ATTRIBUTES:
            continue
        decoded, measured = _registered_lane("decoded", attr), _registered_lane("measured", attr)
        if decoded in wanted:
            classes, names, values = _decoded(analysis, spec, attr)
            lanes[decoded] = rows(values, [names[int(k)] for k in classes])
        if measured in wanted:
            names = spec.class_names(attr)
            labels = _measured(analysis, spec, attr)
            values = np.array([spec.class_value(attr, k) if k >= 0 else np.nan for k in labels], dtype=np.float64)
            lanes[measured] = rows(values, [names[k] if k >= 0 else "" for k in labels])
    return {lane: lanes[lane] for lane in wanted}
