"""The steering evaluation as a workflow: ``audiosae steer-eval`` (every method x alpha on clips).

``EvaluateRequest`` holds what the user chose; ``run_evaluate`` checks the clips before any model
loads, runs ``steering.evaluate.evaluate_steering`` and saves ``steer-eval.json`` and the PNG
matrices (default folder ``WORKSPACE/steer/eval``).  The studio's steering-evaluation view runs
it too, on its open clip (a ``steering.evaluate.Clip``) with its loaded models, and saves when
asked.  Nothing here imports Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..jobs import CancelToken, ProgressSink, null_progress

DEFAULT_TARGETS: tuple[tuple[str, str], ...] = (("pitch", "A4"),)


@dataclass
class EvaluateRequest:
    """``audiosae steer-eval WORKSPACE --audio CLIP...``.  ``targets``: ``(attribute, target)``
    pairs (default pitch A4); ``alphas`` None: the paper's 1, 10, 20, 30; ``methods`` None:
    every method; ``out`` None: ``WORKSPACE/steer/eval``; ``save`` False: nothing written (the
    caller saves the evaluation when asked).  ``audio``: files, or ``steering.evaluate.Clip``s
    (a name and a wave at the backend's rate)."""

    workspace: Path
    audio: Sequence[Any]
    targets: Sequence[tuple[str, str]] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    alphas: Sequence[float] | None = None
    methods: Sequence[str] | None = None
    sae: str | None = None
    start: float | None = None
    end: float | None = None
    keep_residual: bool = False
    limit: bool = True
    device: str = "auto"
    out: Path | None = None
    save: bool = True


@dataclass
class EvaluateResult:
    evaluation: Any          # steering.eval_result.SteeringEvaluation
    files: dict[str, Any]    # {"json": path, "png": [paths]}


def run_evaluate(request: EvaluateRequest, *, models: Any = None, progress: ProgressSink = null_progress,
                 cancel: CancelToken | None = None) -> EvaluateResult:
    """Every method x alpha on the request's clips.  ``models``: already loaded
    ``explore.analysis.LoadedModels`` of ``request.workspace`` (the studio's), used instead of
    opening the workspace and loading them again."""
    from ..audio import probe_audio
    from ..steering.control import PAPER_ALPHAS
    from ..steering.evaluate import Clip, EvaluationRequest, evaluate_steering
    from ..workspace import Workspace

    for clip in request.audio:
        if not isinstance(clip, Clip):
            probe_audio(clip)  # a bad input file fails before any model loads
    source = models if models is not None else Workspace.open(request.workspace)
    inner = EvaluationRequest(source, list(request.audio), targets=list(request.targets or DEFAULT_TARGETS),
                              alphas=list(request.alphas or PAPER_ALPHAS), methods=request.methods, sae=request.sae,
                              start=request.start, end=request.end, keep_residual=request.keep_residual,
                              limit=request.limit, device=request.device)
    evaluation = evaluate_steering(inner, progress=progress, cancel=cancel or CancelToken())
    files: dict[str, Any] = {}
    if request.save:
        root = source.workspace.root if models is not None else source.root
        files = evaluation.save(request.out if request.out is not None else root / "steer" / "eval")
    return EvaluateResult(evaluation, files)


def evaluation_summary(result: EvaluateResult) -> dict[str, Any]:
    """The JSON summary of an evaluation: files, methods, alphas, the matrices, the best method."""
    from ..steering.eval_metrics import json_clean

    evaluation = result.evaluation
    matrices = {f"{a} {t}": {m: evaluation.matrix(m, attribute=a, target=t).values.tolist()
                             for m in ("hit_rate", "loudness_shift_db", "centroid_change_pct", "frechet", "mmd",
                                       "clipped_fraction")} for a, t in evaluation.targets}
    data = {"files": result.files, "methods": evaluation.methods, "alphas": evaluation.alphas, "matrices": matrices,
            "best": [evaluation.best_method(attribute=a, target=t) for a, t in evaluation.targets]}
    return json_clean(data)
