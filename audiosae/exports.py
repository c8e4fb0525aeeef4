"""Exports for other tools: per-frame CSV lanes, Sonic Visualiser layers; and (re-exported from
``audiosae.sae.saelens``, where the SAELens IO lives) SAELens-layout SAEs.

Sonic Visualiser: every lane is a headerless ``time,value[,label]`` CSV in seconds, which SV
imports as a time-value layer: open the audio, then File > Import Annotation Layer, choose
the CSV, and in the import dialog set column 1 to "Time", column 2 to "Value" (and column 3,
where present, to "Label"), timing "Explicit, in seconds".
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

__all__ = [
    "SAELENS_CFG_FILE", "SAELENS_WEIGHTS_FILE", "EXPORT_KIND", "RMSNORM_WARNING",
    "export_saelens", "import_saelens", "saelens_import_warning", "load_exported_probes",
    "export_lanes_csv", "export_activations_csv", "export_sonic_visualiser", "SV_LANES",
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


DECODED_UNITS = {"pitch": "midi", "loudness": "db", "timbre": "hz"}


def decoded_unit(attr: str) -> str:
    """Unit of a lane's decoded value: the paper's three have theirs; a registered attribute's
    value is its class value (bin centre of ordinal ones, the class index otherwise)."""
    return DECODED_UNITS.get(attr, "value")


def export_lanes_csv(analysis: ClipAnalysis, spec: AttributeSpec, path: str | Path) -> Path:
    """One row per frame: ``time_s``; per attribute the probe's class name, its value and probability;
    then the measured ``midi`` (empty when unvoiced), ``loudness_db`` and ``centroid_hz``.

    Decoded values: pitch as the class's MIDI number (empty for 'unvoiced'), loudness as the
    dB bin centre, timbre as the centroid bin centre in Hz.
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
        header += [f"{attr}_class", f"{attr}_value_{decoded_unit(attr)}", f"{attr}_probability"]
        columns += [[names[int(k)] for k in classes], [_num(v) for v in values], [_num(p) for p in confidence]]
    m = analysis.measured
    header += ["measured_midi", "measured_loudness_db", "measured_centroid_hz"]
    columns += [[_num(v) for v in m.midi], [_num(v) for v in m.loudness_db], [_num(v) for v in m.centroid_hz]]
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


# Lane file names -> what they hold (unit).  Rows with no value (unvoiced pitch) are left out,
# which SV draws as a gap.
SV_LANES = {
    "measured_pitch_hz": "measured pitch (CREPE), Hz, label = nearest note",
    "measured_loudness_db": "measured loudness, dBFS",
    "measured_centroid_hz": "measured spectral centroid, Hz",
    "decoded_pitch_hz": "probe-decoded pitch class, Hz of the note, label = class name",
    "decoded_loudness_db": "probe-decoded loudness bin centre, dB, label = bin",
    "decoded_timbre_hz": "probe-decoded centroid bin centre, Hz, label = bin",
}


def export_sonic_visualiser(analysis: ClipAnalysis, spec: AttributeSpec, folder: str | Path) -> dict[str, Path]:
    """Write one headerless ``time,value[,label]`` CSV per lane (names in ``SV_LANES``) into ``folder``.

    Times are frame centres in seconds, increasing.  In Sonic Visualiser: open the clip, then
    File > Import Annotation Layer, pick a CSV, and map the columns as Time / Value / Label
    with timing "Explicit, in seconds"; each file becomes a time-value layer.
    """
    folder = Path(folder)
    times = np.asarray(analysis.times, dtype=np.float64)
    if np.any(np.diff(times) <= 0):
        raise AudioSAEError("analysis frame times are not strictly increasing")
    m = analysis.measured
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
    for attr, lane in (("pitch", "decoded_pitch_hz"), ("loudness", "decoded_loudness_db"),
                       ("timbre", "decoded_timbre_hz")):
        if attr not in analysis.probabilities:
            continue
        classes, names, values = _decoded(analysis, spec, attr)
        if attr == "pitch":
            values = np.where(np.isfinite(values), midi_to_hz(np.nan_to_num(values, nan=69.0)), np.nan)
        lanes[lane] = rows(values, [names[int(k)] for k in classes])
    folder.mkdir(parents=True, exist_ok=True)
    return {lane: _write_csv(folder / f"{lane}.csv", body) for lane, body in lanes.items()}
