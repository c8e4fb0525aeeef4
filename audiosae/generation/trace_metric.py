"""The attribute-evolution metric of a DiffRhythm trace and the constants the trace modules share.

``endpoint_progress`` (the project's form) and ``class_progress`` (the paper's, section 6),
``convergence_step`` and ``mean_ci``; the definitions are in ``audiosae.generation.trace``'s
docstring.  numpy only (no torch, no files).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from .. import defaults as D
from ..errors import AudioSAEError

TRACE_KIND = "audiosae.trace"
BATCH_KIND = "audiosae.trace_batch"
TRACE_FILE = "trace.json"
TENSORS_FILE = "trace.safetensors"
AUDIO_FILE = "final.wav"
SUMMARY_FILE = "summary.json"
REPORT_PNG = "report.png"
REPORT_JSON = "report.json"
SOURCES = ("x_t", "x1")          # the sampler state, and its predicted end point
FORMS = ("endpoint", "paper")   # s_t forms: the project's (primary) and the paper's per-class one
DEFAULT_THRESHOLD = D.TRACE_THRESHOLD
DEFAULT_EPS = 1e-3
DEFAULT_TOP_FEATURES = 64
DEFAULT_FULL_FEATURES_LIMIT = 1 << 22   # elements of [S, T, F] saved (8 MB in float16 per source)
REQUIRED_BACKEND = "diffrhythm-vae"
CI_METHOD = "95% confidence interval of the mean over prompts, Student t with n-1 degrees of freedom"


# ---- the metric -------------------------------------------------------------------------------------


def _check_distributions(dists: np.ndarray) -> np.ndarray:
    p = np.asarray(dists, dtype=np.float32)  # float32: a 95 s trace has ~4 M values per attribute
    if p.ndim != 3 or p.shape[0] < 2:
        raise AudioSAEError(f"distributions must be [steps >= 2, frames, classes], got {list(p.shape)}")
    return p


def endpoint_progress(dists: np.ndarray, eps: float = DEFAULT_EPS) -> tuple[np.ndarray, int]:
    """Endpoint form ``s_t`` ``[S]`` for distributions ``[S, T, K]``, and the number of excluded frames.

    ``s_t = mean over frames of clip(1 - |p_t - p_T|_1 / |p_0 - p_T|_1, 0, 1)``; frames with
    ``|p_0 - p_T|_1 < eps`` are excluded; all excluded -> ones.
    """
    p = _check_distributions(dists)
    final = p[-1]
    span = np.abs(p[0] - final).sum(-1)                       # [T]
    keep = span >= eps
    if not keep.any():
        return np.ones(p.shape[0]), int(p.shape[1])
    distance = np.abs(p[:, keep] - final[keep]).sum(-1)        # [S, T']
    per_frame = np.clip(1.0 - distance / span[keep], 0.0, 1.0)
    return per_frame.mean(axis=1, dtype=np.float64), int(np.count_nonzero(~keep))


def class_progress(dists: np.ndarray, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Paper form ``s_t`` ``[S]``: per-class progress away from the start, ``|p_t - p_0| / |p_T - p_0|``.

    Classes with ``|p_T,k - p_0,k| < eps / K`` are left out (only near-zero denominators: the
    paper averages over all classes); ratios are clipped to [0, 1]; mean over a frame's
    remaining classes, then over frames that have any; none -> ones.
    """
    p = _check_distributions(dists)
    start = p[0]
    span = np.abs(p[-1] - start)                               # [T, K]
    keep = span >= eps / p.shape[2]  # the endpoint form's L1 budget, spread over the K classes
    frames = keep.any(axis=1)
    if not frames.any():
        return np.ones(p.shape[0])
    ratio = np.clip(np.abs(p - start) / np.where(keep, span, np.float32(1)), 0.0, 1.0)   # [S, T, K]
    per_frame = (ratio * keep).sum(-1)[:, frames] / keep.sum(-1)[frames]
    return per_frame.mean(axis=1, dtype=np.float64)


def convergence_step(curve: Sequence[float] | np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> int:
    """First index from which ``curve`` stays ``>= threshold`` to the end (``len(curve)`` if it never does)."""
    if not 0.0 < threshold <= 1.0:
        raise AudioSAEError(f"the convergence threshold must lie in (0, 1], got {threshold}")
    below = np.flatnonzero(np.asarray(curve, dtype=np.float64) < threshold)
    return 0 if below.size == 0 else int(below[-1] + 1)


def _converged(step: int, steps: int) -> bool:
    return step < steps - 1  # s_T = 1 by construction: reaching the threshold only there does not count


def _metrics(dists: Mapping[str, Mapping[str, np.ndarray]], threshold: float, eps: float):
    progress: dict[str, dict[str, dict[str, list[float]]]] = {}
    convergence: dict[str, dict[str, dict[str, int]]] = {}
    excluded: dict[str, dict[str, int]] = {}
    for source, per_attr in dists.items():
        progress[source] = {form: {} for form in FORMS}
        convergence[source] = {form: {} for form in FORMS}
        excluded[source] = {}
        for attr, d in per_attr.items():
            curve, dropped = endpoint_progress(d, eps)
            paper = class_progress(d, eps)
            progress[source]["endpoint"][attr] = [float(v) for v in curve]
            progress[source]["paper"][attr] = [float(v) for v in paper]
            convergence[source]["endpoint"][attr] = convergence_step(curve, threshold)
            convergence[source]["paper"][attr] = convergence_step(paper, threshold)
            excluded[source][attr] = dropped
    return progress, convergence, excluded


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Mean over axis 0 and its two-sided Student-t confidence interval (None for fewer than 2 rows)."""
    values = np.asarray(values, dtype=np.float64)
    mean = values.mean(axis=0)
    n = values.shape[0]
    if n < 2:
        return mean, None, None
    from scipy.stats import t as student_t

    half = student_t.ppf(0.5 + confidence / 2, n - 1) * values.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half
