"""A Sonic Visualiser session file (``.sv``) that opens a clip with every exported lane as a layer.

SV's session format is bzip2-compressed XML (read by SV's ``SVFileReader``): a ``<data>`` part
with models (the audio file; one sparse time-value model per lane, its points inline in a
``<dataset>``) and layers (a waveform; one time-value layer per lane), and a ``<display>`` part
with the panes, each listing its layers.  Here the first pane is the waveform and each further
pane one *group*: the measured and the decoded lane of an attribute together, on one vertical
scale, so the probe's decode lies over the measurement.

The audio is referenced by its absolute path (SV asks where it is when it has moved); the
lanes' times are seconds, written as frames of the audio file's own sample rate.
"""

from __future__ import annotations

import bz2
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import quoteattr

import numpy as np

from .errors import AudioSAEError
from .storage import atomic_write_bytes

__all__ = ["SessionLane", "session_xml", "write_sv_session", "SV_SESSION_FILE"]

SV_SESSION_FILE = "session.sv"

# SV's TimeValueLayer plot style "points" (its enum's 0): each point a step as wide as the model's
# resolution (the frame spacing), so a lane is a step curve that breaks where frames are left out.
# Curves would interpolate between classes that do not exist.
PLOT_POINTS = 0
_PANE_WIDTH_PX = 1000   # the zoom fits the whole clip into about this many pixels


@dataclass(frozen=True)
class SessionLane:
    """One layer: ``rows`` as in the lane's CSV (``time_s, value[, label]`` text), its ``group``
    (lanes of one group share a pane and a scale), ``units`` (SV shows them on the scale) and
    whether it is ``measured`` (drawn in black, under) or decoded (blue, over it)."""

    name: str
    rows: Sequence[Sequence[str]]
    group: str
    units: str = ""
    measured: bool = False


def _attr(value: object) -> str:
    return quoteattr(str(value))


def session_xml(audio: str | Path, sample_rate: int, n_frames: int, lanes: Sequence[SessionLane]) -> str:
    """The session's XML text (not yet compressed)."""
    if sample_rate <= 0 or n_frames <= 0:
        raise AudioSAEError(f"a session needs the audio's sample rate and length, got {sample_rate} Hz, "
                            f"{n_frames} frames")
    data: list[str] = []
    panes: dict[str, list[int]] = {lane.group: [] for lane in lanes}   # in the lanes' order
    next_id = 0

    def new_id() -> int:
        nonlocal next_id
        next_id += 1
        return next_id - 1

    wave_model, wave_layer = new_id(), new_id()
    data.append(f'    <model id="{wave_model}" name={_attr(Path(audio).stem)} sampleRate="{sample_rate}" start="0" '
                f'end="{n_frames}" type="wavefile" file={_attr(Path(audio).resolve())} mainModel="true"/>')
    # one value range per group, so the measured and the decoded lane of a pane share a scale
    ranges: dict[str, tuple[float, float]] = {}
    for lane in lanes:
        values = [float(r[1]) for r in lane.rows]
        if values:
            lo, hi = ranges.get(lane.group, (math.inf, -math.inf))
            ranges[lane.group] = (min(lo, min(values)), max(hi, max(values)))
    layers: list[str] = [f'    <layer id="{wave_layer}" type="waveform" name="Waveform" model="{wave_model}"/>']
    # the model's resolution is the frame spacing: each point is drawn that wide
    times = sorted({float(r[0]) for lane in lanes for r in lane.rows})
    spacing = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    resolution = max(1, math.ceil(spacing * sample_rate * 1.01))
    ordered = sorted(lanes, key=lambda lane: not lane.measured)   # within a pane the decoded lane on top
    for lane in ordered:
        model, dataset, layer = new_id(), new_id(), new_id()
        lo, hi = ranges.get(lane.group, (0.0, 1.0))
        pad = 0.05 * (hi - lo) if hi > lo else 0.5     # points on the extremes stay inside the pane
        lo, hi = lo - pad, hi + pad
        points = []
        for row in lane.rows:
            frame = int(round(float(row[0]) * sample_rate))
            label = f" label={_attr(row[2])}" if len(row) > 2 else ""
            points.append(f'      <point frame="{frame}" value="{float(row[1])!r}"{label}/>')
        data.append(f'    <model id="{model}" name={_attr(lane.name)} sampleRate="{sample_rate}" start="0" '
                    f'end="{n_frames}" type="sparse" dimensions="2" resolution="{resolution}" notifyOnAdd="true" '
                    f'dataset="{dataset}" minimum="{lo!r}" maximum="{hi!r}" units={_attr(lane.units)}/>')
        data.append(f'    <dataset id="{dataset}" dimensions="2">')
        data += points
        data.append("    </dataset>")
        colour = "Black" if lane.measured else "Blue"
        layers.append(f'    <layer id="{layer}" type="timevalues" name={_attr(lane.name)} model="{model}" '
                      f'colourName="{colour}" plotStyle="{PLOT_POINTS}"/>')
        panes[lane.group].append(layer)
    zoom = max(1, math.ceil(n_frames / _PANE_WIDTH_PX))
    view = (f'centre="{n_frames // 2}" zoom="{zoom}" followPan="1" followZoom="1" tracking="page" '
            f'centreLineVisible="0"')
    display = [f'    <view type="pane" {view}>', f'      <layer id="{wave_layer}"/>', "    </view>"]
    for ids in panes.values():
        display.append(f'    <view type="pane" {view}>')
        display += [f'      <layer id="{i}"/>' for i in ids]
        display.append("    </view>")
    return "\n".join(['<?xml version="1.0" encoding="UTF-8"?>', "<!DOCTYPE sonic-visualiser>", "<sv>",
                      "  <data>", *data, *layers, "  </data>", "  <display>", *display, "  </display>",
                      "  <selections/>", "</sv>", ""])


def write_sv_session(path: str | Path, audio: str | Path, lanes: Sequence[SessionLane]) -> Path:
    """Write ``path`` (bzip2 XML, atomically): the audio file ``audio`` and ``lanes`` as layers."""
    from .audio import probe_audio

    info = probe_audio(audio)
    text = session_xml(audio, info.sample_rate, info.frames, lanes)
    path = Path(path)
    atomic_write_bytes(path, bz2.compress(text.encode("utf-8")))
    return path
