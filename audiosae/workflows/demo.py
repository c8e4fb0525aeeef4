"""The offline demo as a workflow (``audiosae demo``): built-in tones -> mel -> a small SAE grid
-> probes -> report -> a steered example, through ``workflows.steer``.  Nothing here imports Qt."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import WorkspaceError
from ..jobs import CancelToken, ProgressSink, null_progress

from ..defaults import (DEMO_ALPHA, DEMO_BACKEND, DEMO_GRID, DEMO_MINUTES,  # noqa: F401  (importable from here too)
                        DEMO_WORKSPACE)


@dataclass
class DemoRequest:
    """``audiosae demo [--workspace W] [--minutes M] [--fresh]``."""

    workspace: Path = Path(DEMO_WORKSPACE)
    minutes: float = DEMO_MINUTES
    fresh: bool = False
    device: str = "auto"


def demo_target(ws: Any) -> str:
    """A4, or the note nearest to it that the steering SAE's pitch probe saw in training (a
    short corpus may hold no A4, and a class never seen has no direction to steer toward)."""
    from ..probes import ProbeSet
    from ..report import best_sae

    spec = ws.attribute_spec
    a4 = spec.parse_target("pitch", "A4")
    trained = [k for k in ProbeSet.load(ws.probe_dir(best_sae(ws, "pitch"))).trained_classes("pitch") if k > 0]
    if not trained or a4 in trained:
        return "A4"
    return spec.class_names("pitch")[min(trained, key=lambda k: (abs(k - a4), k))]


def run_demo(request: DemoRequest, *, progress: ProgressSink = null_progress,
             cancel: CancelToken | None = None) -> dict[str, Any]:
    """Build, train and steer the demo; returns ``report``, ``steer`` (the steered example's
    side-car), ``build``, ``seconds`` and the example's ``original`` and ``steered`` paths."""
    from ..audio import save_audio
    from ..corpus import builtin_sources
    from ..devices import pick_device
    from ..training import TrainSettings, train_workspace
    from ..workspace import Workspace, build_corpus
    from . import steer as steer_flow

    cancel = cancel or CancelToken()
    root = Path(request.workspace)
    if request.fresh and root.exists():
        if not (root / "workspace.json").exists():
            raise WorkspaceError(f"{root}: refusing to delete a folder that is not a workspace")
        shutil.rmtree(root)
    t0 = time.monotonic()
    ws = Workspace.create(root, DEMO_BACKEND)
    sources = builtin_sources("tones", minutes=request.minutes, seed=0)
    build = build_corpus(ws, sources, device=request.device, progress=progress, cancel=cancel)
    t_build = time.monotonic() - t0
    report = train_workspace(ws, TrainSettings(**DEMO_GRID), device=str(pick_device(request.device)),
                             progress=progress, cancel=cancel)
    t_train = time.monotonic() - t0 - t_build
    cancel.raise_if_cancelled()

    # A steered example: a validation clip pushed toward A4.
    val = [r for r in ws.manifest().sources.values() if r.split == "val"]
    example = next(s for s in sources if s.source_id == val[0].source_id)
    backend = ws.backend(request.device)
    original = ws.root / "steer" / "demo-original.wav"
    save_audio(original, example.load(backend.sample_rate, backend.channels), backend.sample_rate)
    cancel.raise_if_cancelled()
    target = demo_target(ws)
    steered = ws.root / "steer" / f"demo-steered-{target}.wav"
    steer = steer_flow.run_steer(steer_flow.SteerRequest(workspace=ws.root, audio=original, attribute="pitch",
                                                         target=target, out=steered, alpha=DEMO_ALPHA,
                                                         method="paper", device=request.device),
                                 progress=progress, cancel=cancel)
    elapsed = time.monotonic() - t0
    return {"report": report, "steer": steer, "build": build.to_dict(), "workspace": ws.root,
            "original": original, "steered": steered, "target": target,
            "seconds": {"total": elapsed, "build": t_build, "train": t_train}}
