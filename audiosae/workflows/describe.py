"""Feature descriptions as a workflow: ``audiosae describe`` (every SAE feature's best attribute
classes, cached next to the SAE) and its Neuronpedia-style export.  Nothing here imports Qt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AudioSAEError
from ..jobs import CancelToken, ProgressSink, null_progress

from ..defaults import DESCRIBE_THREADS, DESCRIBE_TOP  # noqa: F401  (labels per feature; CPU threads)


@dataclass
class DescribeRequest:
    """``audiosae describe WORKSPACE --sae NAME``.  ``feature`` None: every feature;
    ``neuronpedia``: also write the Neuronpedia-style export there; ``boost_check``: also
    boost the top-labelled features of each attribute and measure whether their labelled class
    grows (``audiosae.feature_loop``, cached beside the SAE); ``boost_schedule``: on which frames
    (``every`` frame, regular ``pulses`` at ``boost_bpm``, the clip's ``beats``);
    ``boost_controls``: random unlabelled features per attribute boosted alike."""

    workspace: Path
    sae: str
    feature: int | None = None
    top: int = DESCRIBE_TOP
    neuronpedia: Path | None = None
    threads: int = DESCRIBE_THREADS
    device: str = "auto"
    boost_check: bool = False
    boost_schedule: str = "every"
    boost_bpm: float = 120.0
    boost_controls: int = 0


@dataclass
class DescribeResult:
    description: Any          # describe.FeatureDescription
    data: dict[str, Any]      # its JSON for the chosen features
    neuronpedia: Path | None
    boost_check: dict[str, Any] | None = None   # feature_loop's document


def run_describe(request: DescribeRequest, *, progress: ProgressSink = null_progress,
                 cancel: CancelToken | None = None) -> DescribeResult:
    from ..describe import load_or_describe, neuronpedia_export
    from ..workspace import Workspace

    if request.top < 1:
        raise AudioSAEError(f"--top must be at least 1, got {request.top}")
    ws = Workspace.open(request.workspace)
    desc = load_or_describe(ws, request.sae, device=request.device, progress=progress, cancel=cancel or CancelToken(),
                            threads=request.threads or None)
    if request.feature is not None and not 0 <= request.feature < desc.n_features:
        raise AudioSAEError(f"feature {request.feature} is out of range (0..{desc.n_features - 1})")
    feats = [request.feature] if request.feature is not None else range(desc.n_features)
    data = desc.to_json(feats, top=request.top)
    if request.neuronpedia is not None:
        neuronpedia_export(ws, desc, request.neuronpedia, top=request.top)
    loop = None
    if request.boost_check:
        from ..boost_schedule import BoostSchedule
        from ..feature_loop import feature_loop, load_feature_loop

        schedule = BoostSchedule(request.boost_schedule, bpm=request.boost_bpm)
        cached = load_feature_loop(ws, request.sae, schedule)
        if cached is not None and int(cached.get("controls", 0)) < request.boost_controls:
            cached = None
        loop = cached or feature_loop(
            ws, request.sae, desc=desc, device="cpu" if request.device == "auto" else request.device,
            schedule=schedule, controls=request.boost_controls, progress=progress, cancel=cancel)
        data["boost_check"] = loop
    return DescribeResult(desc, data, request.neuronpedia, loop)
