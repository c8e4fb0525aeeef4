"""What the timeline prepares once per clip (numpy only; a job for long clips): the waveform's
peak pyramid, the features' block mass sums and the heatmap's colour levels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audiosae.jobs import CancelToken, Progress, null_progress

from .feature_rows import BlockMass, display_levels
from .peaks import PeakPyramid


@dataclass
class ClipDisplay:
    """What the panes precompute once per clip (pure numpy; built in a job for long clips)."""

    pyramid: PeakPyramid
    mass: BlockMass
    levels: tuple[float, float]


def prepare_clip_display(analysis: Any, *, progress=null_progress, cancel: CancelToken | None = None
                         ) -> ClipDisplay:
    """Waveform peak pyramid, block mass sums and colour levels of a ``ClipAnalysis``."""
    cancel = cancel or CancelToken()
    progress(Progress("timeline", 0, 3, "waveform peaks"))
    pyramid = PeakPyramid.from_wave(analysis.wave, analysis.sample_rate)
    cancel.raise_if_cancelled()
    progress(Progress("timeline", 1, 3, "feature mass"))
    mass = BlockMass(analysis.f)
    cancel.raise_if_cancelled()
    progress(Progress("timeline", 2, 3, "colour levels"))
    levels = display_levels(analysis.f)
    progress(Progress("timeline", 3, 3, "done"))
    return ClipDisplay(pyramid, mass, levels)


def prepare_job(token: Any, analysis: Any, *, progress=null_progress, cancel: CancelToken | None = None
                 ) -> tuple[Any, ClipDisplay]:
    return token, prepare_clip_display(analysis, progress=progress, cancel=cancel)
