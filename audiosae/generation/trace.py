"""Trace DiffRhythm generation through a workspace's SAE and probes, step by step.

``trace_generation`` runs ``CFM.iter_sample`` (32 states by default: t = k / 31, state 0 is the
noise, state 31 the final latent) and, at every state, sends two latents through the SAE and
the probes: the state ``X_t`` itself (what the paper probes) and the sampler's predicted end
point ``x̂1 = X_t + (1 - t) · v`` (a cleaner view of where the sample is heading).  Both come
from passes the Euler update makes anyway, so tracing adds **no** DiT evaluations.  It keeps

* the latents ``X_t`` and ``x̂1`` per state (float16, ``[S, T, 64]``; optional);
* the probe class distributions per attribute per state (``[S, T, K]``, float16);
* a summary of the SAE features per state: active-feature count per frame (``l0``,
  ``[S, T]``), mean activation per feature (``[S, F]``), and the per-frame activations of the
  ``top_features`` features whose per-state mean activation peaks highest (``[S, T, k]``);
  the full ``f`` (``[S, T, F]``) only when ``S·T·F <= full_features_limit``;
* the attribute-evolution curves and convergence steps below, and the decoded final audio.

Attribute evolution (``endpoint_progress``; the form the project uses, "endpoint form").
Per frame, with ``p_t`` the probe distribution at state ``t`` and ``T`` the last state::

    s_t = 1 - ||p_t - p_T||_1 / ||p_0 - p_T||_1        clipped to [0, 1] per frame,

averaged over frames.  Frames whose ``||p_0 - p_T||_1 < eps`` (the probe's verdict on the
noise already equals its verdict on the song: no progress to measure) are excluded; when all
frames are excluded ``s_t = 1`` for every state.  So ``s_0 = 0`` and ``s_T = 1`` whenever
the curve is defined.  The *convergence step* is the first state from which ``s_t`` stays
``>= threshold`` (default 0.9) to the end; since ``s_T = 1`` it always exists, and a curve
that only reaches the threshold at the final state counts as "not converged".

The paper's own formula (§6, "paper form", ``class_progress``) measures per-class progress
away from the start::

    s_t = (1/K) sum_k |p_{t,k} - p_{0,k}| / |p_{T,k} - p_{0,k}|

Here classes with ``|p_{T,k} - p_{0,k}| < eps / K`` are left out (the paper does not say how
it handles near-zero denominators), each ratio is clipped to [0, 1] (it can overshoot, though the paper calls
the value a fraction), the mean runs over the remaining classes of a frame, then over frames.
The two forms disagree whenever a distribution moves away from its start and back, so both
are stored; the endpoint form is the primary one.

Batches (``trace_batch``) run one trace per prompt (seed = base seed + i) into
``OUT/trace-NNN`` and aggregate the curves over prompts as mean ± 95 % confidence interval
from Student's t distribution (n - 1 degrees of freedom; no interval for n = 1), plus a
convergence table (mean step and its interval, fraction converged) in ``summary.json``.

Folder layout (``save_trace``): ``trace.json`` (facts and curves), ``trace.safetensors``
(arrays), ``final.wav`` (float WAV at 44.1 kHz, not normalised).  A trace is written into a
temporary sibling folder and renamed into place, so a crash never leaves a half-written
trace, and the JSON and tensor files carry the same ``trace_id``.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .. import __version__
from ..analysis import LoadedModels
from ..errors import AudioSAEError, BackendError, WorkspaceError
from ..jobs import CancelToken, Progress, ProgressSink, null_progress
from ..storage import (SCHEMA_VERSION, atomic_write_json, check_schema, fsync_dir, load_tensors,
                       load_tensors_metadata, read_json, read_json_object, require_int, save_tensors)
from .conditioning import LATENT_HOP, LATENT_SAMPLE_RATE, StyleEmbedding, frames_for_seconds, instrumental_tokens
from .diffrhythm import CFM, DEFAULT_CFG_STRENGTH, DEFAULT_STEPS, download_checkpoint, load_cfm, released_config

__all__ = [
    "TRACE_KIND", "BATCH_KIND", "TRACE_FILE", "TENSORS_FILE", "AUDIO_FILE", "SUMMARY_FILE", "REPORT_PNG",
    "REPORT_JSON", "SOURCES", "FORMS", "DEFAULT_THRESHOLD", "DEFAULT_EPS", "DEFAULT_TOP_FEATURES",
    "DEFAULT_FULL_FEATURES_LIMIT", "FeatureSummary", "Trace", "TraceStep", "endpoint_progress", "class_progress",
    "convergence_step", "trace_generation", "save_trace", "load_trace", "is_trace_folder", "decode_state",
    "read_prompts", "builtin_prompts_path", "trace_batch", "summarise_traces", "mean_ci", "write_report",
    "load_generator",
]

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
DEFAULT_THRESHOLD = 0.9
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


# ---- the trace -----------------------------------------------------------------------------------------


@dataclass
class FeatureSummary:
    """SAE features per state.  ``l0`` ``[S, T]`` int16 active features per frame; ``mean``
    ``[S, F]`` float32 mean ``f`` per feature; ``top_index`` ``[k]`` the features whose per-state
    mean peaks highest (descending); ``top`` ``[S, T, k]`` float16 their ``f``; ``full``
    ``[S, T, F]`` float16 or None."""

    l0: np.ndarray
    mean: np.ndarray
    top_index: np.ndarray
    top: np.ndarray
    full: np.ndarray | None = None


@dataclass
class TraceStep:
    """What a live view gets after each state: probe distributions per source and attribute
    (``[T, K]`` float32) and the mean active-feature count per source."""

    index: int
    steps: int
    t: float
    distributions: dict[str, dict[str, np.ndarray]]
    mean_l0: dict[str, float]


@dataclass
class Trace:
    """A traced generation.  ``meta`` holds the JSON facts (prompt, seed, models, timings ...);
    ``progress[source][form][attr]`` the ``s_t`` curves, ``convergence[source][form][attr]``
    their convergence steps, ``excluded_frames[source][attr]`` the frames the endpoint form
    left out."""

    meta: dict[str, Any]
    t_grid: np.ndarray                                    # [S] float32
    distributions: dict[str, dict[str, np.ndarray]]        # source -> attr -> [S, T, K] float16
    features: dict[str, FeatureSummary]                    # source -> summary
    progress: dict[str, dict[str, dict[str, list[float]]]]
    convergence: dict[str, dict[str, dict[str, int]]]
    excluded_frames: dict[str, dict[str, int]]
    final_latent: np.ndarray                               # [T, 64] float32
    lyrics_tokens: np.ndarray                              # [T] int32
    style: np.ndarray                                      # [1, 512] float32
    negative_style: np.ndarray                             # [1, 512] float32
    latents: np.ndarray | None = None                      # [S, T, 64] float16
    x1_predictions: np.ndarray | None = None               # [S, T, 64] float16
    audio: np.ndarray | None = None                        # [2, N] float32 at sample_rate
    sample_rate: int = LATENT_SAMPLE_RATE
    folder: Path | None = field(default=None, compare=False)

    @property
    def steps(self) -> int:
        return int(self.t_grid.shape[0])

    @property
    def frames(self) -> int:
        return int(self.final_latent.shape[0])

    @property
    def attributes(self) -> list[str]:
        return list(self.meta["attributes"])

    def s_t(self, attribute: str, source: str = "x_t", form: str = "endpoint") -> np.ndarray:
        """The ``s_t`` curve ``[S]`` of one attribute."""
        try:
            return np.asarray(self.progress[source][form][attribute], dtype=np.float64)
        except KeyError:
            raise AudioSAEError(f"no {form} curve for {attribute!r} from {source!r} in this trace") from None

    def convergence_step(self, attribute: str, source: str = "x_t", form: str = "endpoint",
                         threshold: float | None = None) -> int:
        """Stored convergence step, or recomputed for another ``threshold``."""
        if threshold is None:
            return int(self.convergence[source][form][attribute])
        return convergence_step(self.s_t(attribute, source, form), threshold)

    def recompute_metrics(self, threshold: float | None = None, eps: float | None = None) -> None:
        """Recompute curves and convergence steps from the stored distributions."""
        threshold = float(self.meta["threshold"] if threshold is None else threshold)
        eps = float(self.meta["eps"] if eps is None else eps)
        self.progress, self.convergence, self.excluded_frames = _metrics(
            {s: {a: d.astype(np.float32) for a, d in per.items()} for s, per in self.distributions.items()},
            threshold, eps)
        self.meta["threshold"], self.meta["eps"] = threshold, eps


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


def _style_tensor(style: StyleEmbedding | torch.Tensor | np.ndarray, name: str) -> tuple[torch.Tensor, dict]:
    if isinstance(style, StyleEmbedding):
        return style.vector, style.to_dict()
    t = torch.as_tensor(np.asarray(style) if not isinstance(style, torch.Tensor) else style).detach().float().cpu()
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if tuple(t.shape) != (1, 512):
        raise AudioSAEError(f"{name} must be [1, 512], got {list(t.shape)}")
    return t, {"source": "tensor", "detail": "", "note": "", "norm": float(t.norm())}


class _Analyser:
    """Runs the SAE and the probes on both sources of a state in one batch and keeps the results.

    The probes are applied as one matrix product over all attributes (softmax per attribute:
    exactly ``ProbeSet.predict_proba``).  The whole ``f`` is kept only when it is saved; for
    the top features, each frame's RMSNorm factor (``f / h``) is recorded so that their ``f``
    can be rebuilt at the end from a ``[D, k]`` slice of the encoder, without keeping
    ``[S, T, F]`` in memory or running the SAE again.
    """

    def __init__(self, sae: Any, probes: Any, steps: int, frames: int, latent_dim: int, *, store_full: bool):
        self.sae = sae
        self.attributes = list(probes.attributes)
        device, d_sae, n = sae.device, sae.cfg.d_sae, len(SOURCES)
        self.weight = torch.cat([probes.weights[a] for a in self.attributes]).to(device, torch.float32).T.contiguous()
        self.bias = torch.cat([probes.bias[a] for a in self.attributes]).to(device, torch.float32)
        self.slices, lo = [], 0
        for a in self.attributes:
            self.slices.append((lo, lo + probes.n_classes(a)))
            lo += probes.n_classes(a)
        self.l0 = np.zeros((n, steps, frames), dtype=np.int16)
        self.mean = np.zeros((n, steps, d_sae), dtype=np.float32)
        self.dists = {a: np.zeros((n, steps, frames, hi - lo), dtype=np.float32)
                      for a, (lo, hi) in zip(self.attributes, self.slices)}
        self.scale = np.zeros((n, steps, frames), dtype=np.float32)
        self.latents = torch.zeros(n, steps, frames, latent_dim)  # float32, CPU
        self.features = np.zeros((n, steps, frames, d_sae), dtype=np.float16) if store_full else None

    def add(self, k: int, x_t: torch.Tensor, x1: torch.Tensor) -> dict[str, dict[str, np.ndarray]]:
        """Analyse state ``k`` (``[T, D]`` latents of each source); returns its distributions."""
        x = torch.stack([x_t, x1]).to(device=self.sae.device, dtype=torch.float32)       # [2, T, D]
        h, f = self.sae.encode(x)
        logits = torch.addmm(self.bias, f.reshape(-1, f.shape[-1]), self.weight)
        probs = torch.cat([torch.softmax(logits[:, lo:hi], dim=-1) for lo, hi in self.slices], dim=-1)
        self.latents[:, k] = x.cpu()
        probs = probs.view(len(SOURCES), x.shape[1], -1).cpu().numpy()
        self.l0[:, k] = (h > 0).sum(-1).cpu().numpy()
        self.mean[:, k] = f.mean(1).cpu().numpy()
        # f = h * scale per frame (RMSNorm); frames with no active feature have f = 0 anyway
        self.scale[:, k] = (f.sum(-1) / h.sum(-1).clamp_min(1e-30)).cpu().numpy()
        if self.features is not None:
            self.features[:, k] = f.to(torch.float16).cpu().numpy()
        out: dict[str, dict[str, np.ndarray]] = {}
        for i, source in enumerate(SOURCES):
            out[source] = {}
            for a, (lo, hi) in zip(self.attributes, self.slices):
                self.dists[a][i, k] = probs[i, :, lo:hi]
                out[source][a] = self.dists[a][i, k]
        return out

    def distributions(self) -> dict[str, dict[str, np.ndarray]]:
        return {s: {a: self.dists[a][i] for a in self.attributes} for i, s in enumerate(SOURCES)}

    def summaries(self, top_features: int) -> dict[str, FeatureSummary]:
        out = {}
        for i, source in enumerate(SOURCES):
            count = min(int(top_features), self.mean.shape[2])
            order = np.argsort(-self.mean[i].max(axis=0), kind="stable")[:count].astype(np.int64)
            if self.features is not None:
                top = self.features[i][:, :, order]
            else:  # h of the chosen features only (h = relu(x W_enc + b_enc)), times each frame's factor
                index = torch.from_numpy(order).to(self.sae.device)
                x = self.latents[i].to(self.sae.device)
                h = torch.relu(x @ self.sae.W_enc[:, index] + self.sae.b_enc[index])
                scale = torch.from_numpy(self.scale[i]).to(self.sae.device)
                top = (h * scale[..., None]).to(torch.float16).cpu().numpy()
            full = self.features[i] if self.features is not None else None
            out[source] = FeatureSummary(self.l0[i], self.mean[i], order, np.ascontiguousarray(top), full)
        return out


def _check_models(models: LoadedModels, cfm: CFM) -> None:
    backend = getattr(models.workspace, "backend_name", None) or getattr(models.backend, "name", None)
    if backend != REQUIRED_BACKEND:
        raise WorkspaceError(f"{getattr(models.workspace, 'root', '?')}: tracing DiffRhythm needs a workspace built "
                             f"with the {REQUIRED_BACKEND} backend (its SAE reads the DiT's latents); this one uses "
                             f"{backend!r}")
    if models.sae.cfg.d_in != cfm.config.mel_dim:
        raise WorkspaceError(f"SAE {models.sae.cfg.name!r} reads {models.sae.cfg.d_in}-d latents; the generator "
                             f"makes {cfm.config.mel_dim}-d ones")
    if models.probes.d_features != models.sae.cfg.d_sae:
        raise WorkspaceError(f"the probes read {models.probes.d_features} features; SAE {models.sae.cfg.name!r} "
                             f"has {models.sae.cfg.d_sae}")
    try:
        models.probes.check_sae(models.sae)  # probes of another SAE (or raw-latent probes) would mislead
    except AudioSAEError as exc:
        raise WorkspaceError(str(exc)) from None


def trace_generation(
    models: LoadedModels,
    cfm: CFM,
    *,
    style: StyleEmbedding | torch.Tensor | np.ndarray,
    negative_style: StyleEmbedding | torch.Tensor | np.ndarray,
    lyrics_tokens: torch.Tensor | np.ndarray | None = None,
    seconds: float = 95.0,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    cfg_strength: float = DEFAULT_CFG_STRENGTH,
    decode_final: bool = True,
    prompt: str = "",
    threshold: float = DEFAULT_THRESHOLD,
    eps: float = DEFAULT_EPS,
    keep_latents: bool = True,
    top_features: int = DEFAULT_TOP_FEATURES,
    full_features_limit: int = DEFAULT_FULL_FEATURES_LIMIT,
    extra_meta: Mapping[str, Any] | None = None,
    on_step: Callable[[TraceStep], None] | None = None,
    progress: ProgressSink = null_progress,
    cancel: CancelToken | None = None,
) -> Trace:
    """Generate ``seconds`` of music with ``cfm`` and trace every sampler state through the SAE + probes.

    ``models``: a workspace built with ``diffrhythm-vae`` (64-d latents), its SAE and probes.
    ``style``/``negative_style``: ``[1, 512]`` (see ``conditioning``).  ``lyrics_tokens``:
    frame-aligned ids ``[L <= frames]`` or None (instrumental).  ``seconds`` gives
    ``int(seconds * 44100 / 2048)`` frames, at most the model's ``max_frames``.  ``seed``
    fixes the noise.  ``decode_final`` decodes the final latent with the workspace backend
    into ``trace.audio``.  ``on_step`` sees each state's distributions as they come.
    ``top_features``: how many features get per-frame activations in the summary;
    ``full_features_limit``: save the whole ``f`` when ``steps * frames * d_sae`` is at most
    this (otherwise only the summaries are kept, in memory too).
    Cancellable between states (``JobCancelled``).
    """
    cancel = cancel or CancelToken()
    _check_models(models, cfm)
    convergence_step([1.0], threshold)  # validates the threshold before any work
    if steps < 2:
        raise AudioSAEError("steps must be at least 2")
    frames = frames_for_seconds(seconds, cfm.config.max_frames)
    style_vec, style_info = _style_tensor(style, "style")
    negative_vec, negative_info = _style_tensor(negative_style, "negative_style")
    if lyrics_tokens is None:
        tokens = instrumental_tokens(frames)
    else:
        tokens = torch.as_tensor(np.asarray(lyrics_tokens) if not isinstance(lyrics_tokens, torch.Tensor)
                                 else lyrics_tokens).long().reshape(-1)
        if tokens.shape[0] > frames:
            raise AudioSAEError(f"{tokens.shape[0]} lyric tokens for {frames} frames (tokens are frame-aligned)")
        tokens = torch.nn.functional.pad(tokens, (0, frames - tokens.shape[0]))

    sae, probes = models.sae, models.probes
    attributes = list(probes.attributes)
    store_full = steps * frames * sae.cfg.d_sae <= full_features_limit
    analyser = _Analyser(sae, probes, steps, frames, cfm.config.mel_dim, store_full=store_full)
    t_grid = np.zeros(steps, dtype=np.float32)

    timings = {"sampling_s": 0.0, "analysis_s": 0.0, "decode_s": 0.0}
    t_start = time.perf_counter()
    sampler = cfm.iter_sample(text=tokens.unsqueeze(0), style_prompt=style_vec, negative_style_prompt=negative_vec,
                              frames=frames, steps=steps, cfg_strength=cfg_strength, seed=seed, cancel=cancel)
    final_latent: torch.Tensor | None = None
    with torch.no_grad():
        while True:
            t0 = time.perf_counter()
            state = next(sampler, None)
            if cfm.device.type == "cuda":  # kernels run asynchronously: charge them to sampling, not analysis
                torch.cuda.synchronize(cfm.device)
            timings["sampling_s"] += time.perf_counter() - t0
            if state is None:
                break
            t0 = time.perf_counter()
            k = state.index
            t_grid[k] = state.t
            step_dists = analyser.add(k, state.x_t[0], state.x1_pred[0])
            mean_l0 = {s: float(analyser.l0[i, k].mean()) for i, s in enumerate(SOURCES)}
            if state.is_final:
                final_latent = state.x1_pred[0].float().cpu()
            timings["analysis_s"] += time.perf_counter() - t0
            progress(Progress("trace", k + 1, steps, f"state {k + 1}/{steps} (t = {state.t:.3f})",
                              metrics={"mean_l0": mean_l0["x_t"]}))
            if on_step is not None:
                on_step(TraceStep(k, steps, float(state.t), step_dists, mean_l0))
            if not state.is_final:
                cancel.raise_if_cancelled()
        assert final_latent is not None

        t0 = time.perf_counter()
        features = analyser.summaries(top_features)
        dists = analyser.distributions()
        progress_curves, convergence, excluded = _metrics(dists, threshold, eps)
        timings["analysis_s"] += time.perf_counter() - t0

    audio = None
    if decode_final:
        cancel.raise_if_cancelled()
        progress(Progress("decode", 0, 1, "decoding the final latent"))
        t0 = time.perf_counter()
        audio = models.backend.decode(final_latent.numpy())
        timings["decode_s"] = time.perf_counter() - t0
        progress(Progress("decode", 1, 1, "decoded"))
    timings["total_s"] = time.perf_counter() - t_start
    timings["seconds_per_step"] = timings["sampling_s"] / max(1, steps - 1)
    timings["analysis_fraction_of_sampling"] = timings["analysis_s"] / max(timings["sampling_s"], 1e-12)

    ws = models.workspace
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "kind": TRACE_KIND, "trace_id": uuid.uuid4().hex,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "created_by": f"audiosae {__version__}",
        "prompt": prompt, "seed": int(seed), "seconds": float(seconds), "frames": frames,
        "frame_rate": LATENT_SAMPLE_RATE / LATENT_HOP, "steps": steps, "cfg_strength": float(cfg_strength),
        "style": style_info, "negative_style": negative_info,
        "lyrics": {"instrumental": bool((tokens == 0).all()), "tokens": int((tokens != 0).sum())},
        "workspace": str(getattr(ws, "root", "")), "backend": REQUIRED_BACKEND, "sae": sae.cfg.name,
        "sae_fingerprint": sae.fingerprint(), "d_sae": sae.cfg.d_sae, "attributes": attributes,
        "class_names": {a: list(probes.class_names[a]) for a in attributes},
        "model": {"config": cfm.config.to_dict(), "dtype": str(cfm.dtype).removeprefix("torch."),
                  "device": str(cfm.device)},
        "threshold": float(threshold), "eps": float(eps), "top_features": int(features["x_t"].top_index.shape[0]),
        "full_features": store_full, "sources": {"x_t": "sampler state X_t (probed in the paper)",
                                                "x1": "predicted end point x1_hat = X_t + (1 - t) v"},
        "metric": {"endpoint": "s_t = mean over frames of clip(1 - |p_t - p_T|_1 / |p_0 - p_T|_1, 0, 1); frames "
                               "with |p_0 - p_T|_1 < eps excluded; all excluded -> 1",
                   "paper": "s_t = mean over frames of mean over classes of clip(|p_t,k - p_0,k| / |p_T,k - p_0,k|, "
                            "0, 1); classes with |p_T,k - p_0,k| < eps / K left out (paper section 6)",
                   "convergence": "first state from which s_t stays >= threshold; converged = before the last state"},
        "timings": timings,
    }
    if extra_meta:
        meta.update(dict(extra_meta))
    half = {s: {a: d.astype(np.float16) for a, d in per.items()} for s, per in dists.items()}
    return Trace(
        meta=meta, t_grid=t_grid, distributions=half, features=features, progress=progress_curves,
        convergence=convergence, excluded_frames=excluded, final_latent=final_latent.numpy(),
        lyrics_tokens=tokens.to(torch.int32).numpy(), style=style_vec.numpy(), negative_style=negative_vec.numpy(),
        latents=analyser.latents[0].to(torch.float16).numpy() if keep_latents else None,
        x1_predictions=analyser.latents[1].to(torch.float16).numpy() if keep_latents else None,
        audio=audio, sample_rate=models.backend.sample_rate)


# ---- files ---------------------------------------------------------------------------------------------


def is_trace_folder(folder: str | Path) -> bool:
    return (Path(folder) / TRACE_FILE).is_file()


def _trace_json(trace: Trace) -> dict[str, Any]:
    data = dict(trace.meta)
    data.update(progress=trace.progress, convergence=trace.convergence, excluded_frames=trace.excluded_frames,
                converged={s: {f: {a: _converged(v, trace.steps) for a, v in per.items()}
                               for f, per in forms.items()} for s, forms in trace.convergence.items()},
                t_grid=[float(v) for v in trace.t_grid],
                files={"tensors": TENSORS_FILE, "audio": AUDIO_FILE if trace.audio is not None else None},
                has_latents=trace.latents is not None)
    return data


def _tensors(trace: Trace) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"t_grid": trace.t_grid.astype(np.float32),
                                  "final_latent": trace.final_latent.astype(np.float32),
                                  "lyrics_tokens": trace.lyrics_tokens.astype(np.int32),
                                  "style": trace.style.astype(np.float32),
                                  "negative_style": trace.negative_style.astype(np.float32)}
    if trace.latents is not None:
        out["latents"] = trace.latents.astype(np.float16, copy=False)
    if trace.x1_predictions is not None:
        out["x1_predictions"] = trace.x1_predictions.astype(np.float16, copy=False)
    for source, per in trace.distributions.items():
        for attr, d in per.items():
            out[f"dist.{source}.{attr}"] = d.astype(np.float16, copy=False)
    for source, summary in trace.features.items():
        out[f"features.{source}.l0"] = summary.l0.astype(np.int16)
        out[f"features.{source}.mean"] = summary.mean.astype(np.float32)
        out[f"features.{source}.top_index"] = summary.top_index.astype(np.int64)
        out[f"features.{source}.top"] = summary.top.astype(np.float16)
        if summary.full is not None:
            out[f"features.{source}.full"] = summary.full.astype(np.float16)
    return out


def save_trace(trace: Trace, folder: str | Path) -> Path:
    """Write ``trace`` to ``folder`` (created or replaced as a whole; never half-written).

    Refuses to replace a folder that exists, is not empty and is not a trace.
    """
    from ..audio import save_audio

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not is_trace_folder(folder))):
        raise WorkspaceError(f"{folder}: exists and is not a trace folder; choose another --out")
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(folder)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_tensors(tmp / TENSORS_FILE, _tensors(trace),
                     {"schema_version": SCHEMA_VERSION, "kind": TRACE_KIND, "trace_id": trace.meta["trace_id"]})
        if trace.audio is not None:
            save_audio(tmp / AUDIO_FILE, trace.audio, trace.sample_rate)
        atomic_write_json(tmp / TRACE_FILE, _trace_json(trace))  # last: it names what the folder holds
        fsync_dir(tmp)
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        fsync_dir(folder.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    trace.folder = folder
    return folder


def _remove_stale_siblings(folder: Path) -> None:
    """Delete what a ``save_trace`` killed mid-way (``kill -9``, power loss) left beside ``folder``:
    its half-written ``.NAME.tmp-*`` folder and a ``.NAME.old-*`` copy that was being replaced."""
    for pattern in (f".{folder.name}.tmp-*", f".{folder.name}.old-*"):
        for stale in folder.parent.glob(pattern):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def _need(data: Mapping[str, Any], key: str, path: Path) -> Any:
    if key not in data:
        raise WorkspaceError(f"{path}: trace file lacks {key!r}; was it edited by hand?")
    return data[key]


def load_trace(folder: str | Path, *, load_audio: bool = True) -> Trace:
    """Read a folder written by ``save_trace``; anything missing, corrupt, mismatched or newer -> ``WorkspaceError``."""
    folder = Path(folder)
    path = folder / TRACE_FILE
    if not folder.is_dir():
        raise WorkspaceError(f"{folder}: trace folder not found")
    data = read_json_object(path, kind="trace file", document_kind=TRACE_KIND)
    steps = require_int(_need(data, "steps", path), "steps", path, "trace file", minimum=1)
    frames = require_int(_need(data, "frames", path), "frames", path, "trace file", minimum=1)
    attributes = _need(data, "attributes", path)
    if not isinstance(attributes, list) or not all(isinstance(a, str) and a for a in attributes):
        raise WorkspaceError(f"{path}: trace file 'attributes' must be a list of names, got {attributes!r:.60}")
    tensor_path = folder / TENSORS_FILE
    header = load_tensors_metadata(tensor_path, kind="trace tensors")
    check_schema(header, tensor_path, kind="trace tensors")
    if header.get("trace_id") != data.get("trace_id"):
        raise WorkspaceError(f"{folder}: {TENSORS_FILE} belongs to another trace than {TRACE_FILE} "
                             "(a file was replaced); re-run the trace")
    d_sae = require_int(_need(data, "d_sae", path), "d_sae", path, "trace file", minimum=1)
    expect: dict[str, tuple[int | None, ...]] = {
        "t_grid": (steps,), "final_latent": (frames, 64), "lyrics_tokens": (frames,), "style": (1, 512),
        "negative_style": (1, 512)}
    for source in SOURCES:
        for attr in attributes:
            expect[f"dist.{source}.{attr}"] = (steps, frames, None)
        expect[f"features.{source}.l0"] = (steps, frames)
        expect[f"features.{source}.mean"] = (steps, d_sae)
        expect[f"features.{source}.top_index"] = (None,)
        expect[f"features.{source}.top"] = (steps, frames, None)
    if data.get("has_latents"):
        expect["latents"] = expect["x1_predictions"] = (steps, frames, 64)
    tensors = {k: v.numpy() for k, v in load_tensors(tensor_path, kind="trace tensors", expect=expect).items()}
    distributions = {s: {a: tensors[f"dist.{s}.{a}"] for a in attributes} for s in SOURCES}
    features = {s: FeatureSummary(tensors[f"features.{s}.l0"], tensors[f"features.{s}.mean"],
                                  tensors[f"features.{s}.top_index"], tensors[f"features.{s}.top"],
                                  tensors.get(f"features.{s}.full")) for s in SOURCES}
    try:
        progress = {s: {f: {a: [float(v) for v in data["progress"][s][f][a]] for a in attributes} for f in FORMS}
                    for s in SOURCES}
        convergence = {s: {f: {a: int(data["convergence"][s][f][a]) for a in attributes} for f in FORMS}
                       for s in SOURCES}
        excluded = {s: {a: int(data["excluded_frames"][s][a]) for a in attributes} for s in SOURCES}
    except (KeyError, TypeError, ValueError) as exc:
        raise WorkspaceError(f"{path}: trace curves are incomplete ({type(exc).__name__}: {exc})") from None
    for s in SOURCES:
        for a in attributes:
            if len(progress[s]["endpoint"][a]) != steps or len(progress[s]["paper"][a]) != steps:
                raise WorkspaceError(f"{path}: the {a} curve of {s} does not have {steps} values")
    audio, rate = None, LATENT_SAMPLE_RATE
    audio_name = (data.get("files") or {}).get("audio")
    if audio_name and load_audio:
        import soundfile as sf

        try:
            wave, rate = sf.read(str(folder / audio_name), dtype="float32", always_2d=True)
        except Exception as exc:
            raise WorkspaceError(f"{folder / audio_name}: cannot read the final audio ({exc})") from None
        audio = np.ascontiguousarray(wave.T)
    meta = {k: v for k, v in data.items() if k not in ("progress", "convergence", "excluded_frames", "converged",
                                                       "t_grid", "files", "has_latents")}
    return Trace(meta=meta, t_grid=tensors["t_grid"], distributions=distributions, features=features,
                 progress=progress, convergence=convergence, excluded_frames=excluded,
                 final_latent=tensors["final_latent"], lyrics_tokens=tensors["lyrics_tokens"],
                 style=tensors["style"], negative_style=tensors["negative_style"], latents=tensors.get("latents"),
                 x1_predictions=tensors.get("x1_predictions"), audio=audio, sample_rate=int(rate), folder=folder)


def decode_state(trace: Trace, backend: Any, index: int, which: str = "x_t") -> np.ndarray:
    """Decode one state's ``X_t`` (``which="x_t"``) or ``x̂1`` (``"x1"``) with a latent backend -> ``[C, N]``."""
    if which not in SOURCES:
        raise AudioSAEError(f"which must be one of {', '.join(SOURCES)}, got {which!r}")
    if not -trace.steps <= index < trace.steps:
        raise AudioSAEError(f"state {index} out of range (0..{trace.steps - 1})")
    stack = trace.latents if which == "x_t" else trace.x1_predictions
    if stack is None:
        if index in (-1, trace.steps - 1):
            return backend.decode(trace.final_latent)
        raise WorkspaceError("this trace was saved without per-state latents; re-run without --no-latents")
    return backend.decode(stack[index].astype(np.float32))


# ---- loading the generator --------------------------------------------------------------------------


def load_generator(*, variant: str | None = None, weights: str | Path | None = None,
                   device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                   progress: ProgressSink = null_progress, cancel: CancelToken | None = None) -> CFM:
    """The DiffRhythm CFM: from ``weights`` (a ``cfm_model.pt``, shape read off the file) or the
    released ``variant`` ("base" 95 s, "full" 285 s) through the hub cache.  ``dtype`` None:
    float16 on CUDA (as upstream), float32 elsewhere."""
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    if weights is None:
        path = download_checkpoint(variant or "base", progress=progress, cancel=cancel)
        return load_cfm(path, released_config(variant or "base"), device=device, dtype=dtype)
    model = load_cfm(weights, None, device=device, dtype=dtype)
    if variant is not None and model.config.max_frames != released_config(variant).max_frames:
        found = "full" if model.config.max_frames == released_config("full").max_frames else "base"
        raise BackendError(f"{weights}: is a {found!r} checkpoint ({model.config.max_frames} frames), "
                           f"not {variant!r}; drop --model or pass the matching weights")
    return model


# ---- batches -------------------------------------------------------------------------------------------


def builtin_prompts_path() -> Path:
    """The prompt list shipped with audiosae (about 30 varied music descriptions)."""
    return Path(__file__).resolve().parent / "prompts.txt"


def read_prompts(path: str | Path) -> list[str]:
    """Non-empty lines of a text file, ``#`` comments skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise AudioSAEError(f"{path}: prompt file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AudioSAEError(f"{path}: cannot read prompts ({type(exc).__name__}: {exc})") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise AudioSAEError(f"{path}: no prompts (one per line; '#' starts a comment)")
    return prompts


def trace_batch(models: LoadedModels, cfm: CFM, prompts: Sequence[str], out: str | Path, *,
                style_for: Callable[[int, str], StyleEmbedding], negative_style: StyleEmbedding,
                lyrics_tokens: torch.Tensor | None = None, seed: int = 0, threshold: float = DEFAULT_THRESHOLD,
                progress: ProgressSink = null_progress, cancel: CancelToken | None = None,
                **trace_kwargs: Any) -> dict[str, Any]:
    """One trace per prompt (seed ``seed + i``) into ``out/trace-NNN``, then ``summary.json``.

    Resumable: a subfolder already holding a trace with the same prompt, seed and settings is
    kept.  ``style_for(i, prompt)`` gives each prompt's style.  Returns the summary.
    """
    cancel = cancel or CancelToken()
    out = Path(out)
    if out.exists() and is_trace_folder(out):
        raise WorkspaceError(f"{out}: holds a single trace; choose another folder for a batch")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp"):  # a summary.json write cut by a kill
        stale.unlink(missing_ok=True)
    folders = []
    for i, prompt in enumerate(prompts):
        cancel.raise_if_cancelled()
        folder = out / f"trace-{i:03d}"
        folders.append(folder)
        _remove_stale_siblings(folder)  # even when the trace itself is kept
        if _same_trace(folder, prompt, seed + i, trace_kwargs):
            progress(Progress("prompts", i + 1, len(prompts), f"kept existing trace {folder.name}"))
            continue

        def inner(event: Progress, i: int = i) -> None:
            progress(Progress(event.stage, event.done, event.total, f"[{i + 1}/{len(prompts)}] {event.message}",
                              event.metrics))

        trace = trace_generation(models, cfm, style=style_for(i, prompt), negative_style=negative_style,
                                 lyrics_tokens=lyrics_tokens, seed=seed + i, prompt=prompt, threshold=threshold,
                                 progress=inner, cancel=cancel, **trace_kwargs)
        save_trace(trace, folder)
        progress(Progress("prompts", i + 1, len(prompts), f"saved {folder.name}"))
    summary = summarise_traces(folders, threshold=threshold)
    summary["base_seed"] = seed
    atomic_write_json(out / SUMMARY_FILE, summary)
    return summary


def _same_trace(folder: Path, prompt: str, seed: int, settings: Mapping[str, Any]) -> bool:
    if not is_trace_folder(folder):
        return False
    try:
        data = read_json(folder / TRACE_FILE, kind="trace file")
    except WorkspaceError:
        return False
    wanted = {"prompt": prompt, "seed": seed}
    for key in ("seconds", "steps", "cfg_strength"):
        if key in settings:
            wanted[key] = settings[key]
    return all(data.get(k) == v for k, v in wanted.items())


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


def _floats(values: np.ndarray | None) -> list[float] | float | None:
    if values is None:
        return None
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        return float(array)
    return [float(v) for v in array]


def summarise_traces(folders_or_traces: Sequence[str | Path | Trace], threshold: float | None = None
                     ) -> dict[str, Any]:
    """Mean ± 95 % CI curves and the convergence table over several traces of the same shape.

    ``threshold`` None: each trace's own.  Convergence steps count a curve that never
    converges as the last state.
    """
    traces = [t if isinstance(t, Trace) else load_trace(t, load_audio=False) for t in folders_or_traces]
    if not traces:
        raise AudioSAEError("no traces to summarise")
    steps, attributes = traces[0].steps, traces[0].attributes
    for t in traces[1:]:
        if t.steps != steps or t.attributes != attributes:
            raise AudioSAEError("the traces differ in steps or attributes; summarise like with like")
    threshold = float(traces[0].meta["threshold"] if threshold is None else threshold)
    curves: dict[str, Any] = {}
    table: dict[str, Any] = {}
    for source in SOURCES:
        curves[source], table[source] = {}, {}
        for form in FORMS:
            curves[source][form], table[source][form] = {}, {}
            for attr in attributes:
                rows = np.stack([t.s_t(attr, source, form) for t in traces])
                mean, lo, hi = mean_ci(rows)
                curves[source][form][attr] = {"mean": _floats(mean), "lo": _floats(lo), "hi": _floats(hi)}
                conv = np.array([convergence_step(r, threshold) for r in rows], dtype=np.float64)
                c_mean, c_lo, c_hi = mean_ci(conv[:, None])
                table[source][form][attr] = {
                    "mean_step": float(c_mean[0]), "lo": None if c_lo is None else float(c_lo[0]),
                    "hi": None if c_hi is None else float(c_hi[0]),
                    "fraction_converged": float(np.mean([_converged(int(c), steps) for c in conv])),
                    "steps": [int(c) for c in conv]}
    return {"schema_version": SCHEMA_VERSION, "kind": BATCH_KIND, "n": len(traces), "steps": steps,
            "attributes": attributes, "threshold": threshold, "ci": CI_METHOD,
            "traces": [{"folder": str(t.folder.name) if t.folder else None, "prompt": t.meta.get("prompt"),
                        "seed": t.meta.get("seed")} for t in traces],
            "curves": curves, "convergence": table}


# ---- report ----------------------------------------------------------------------------------------------


def _batch_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and is_trace_folder(p))


def write_report(folder: str | Path, threshold: float | None = None) -> dict[str, Any]:
    """``report.png`` (s_t curves per attribute with convergence markers; mean ± CI bands for a
    batch) and ``report.json`` for a trace folder or a batch folder.  Returns the JSON."""
    folder = Path(folder)
    if is_trace_folder(folder):
        trace = load_trace(folder, load_audio=False)
        if threshold is not None:
            trace.meta["threshold"] = float(threshold)
        summary = summarise_traces([trace], threshold)
        kind = "trace"
    else:
        subs = _batch_folders(folder) if folder.is_dir() else []
        if not subs:
            raise WorkspaceError(f"{folder}: neither a trace folder ({TRACE_FILE}) nor a batch of trace folders")
        summary = summarise_traces(subs, threshold)
        kind = "batch"
    report = {"schema_version": SCHEMA_VERSION, "kind": f"audiosae.trace_report.{kind}", "folder": str(folder),
              "png": REPORT_PNG, **{k: v for k, v in summary.items() if k not in ("schema_version", "kind")}}
    _plot(summary, folder / REPORT_PNG, batch=kind == "batch")
    atomic_write_json(folder / REPORT_JSON, report)
    return report


def _plot(summary: Mapping[str, Any], path: Path, *, batch: bool) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        from ..errors import DependencyError

        raise DependencyError("trace reports need matplotlib; run: pip install 'matplotlib>=3.7'") from None
    import io

    from ..storage import atomic_write_bytes

    attributes, steps, threshold = summary["attributes"], summary["steps"], summary["threshold"]
    x = np.arange(steps)
    fig, axes = plt.subplots(1, len(attributes), figsize=(4.2 * len(attributes), 3.6), sharey=True, squeeze=False)
    styles = [("x_t", "endpoint", "-", "C0", "X_t"), ("x1", "endpoint", "--", "C1", "x̂1"),
              ("x_t", "paper", ":", "C2", "X_t, paper form")]
    for ax, attr in zip(axes[0], attributes):
        for source, form, line, color, label in styles:
            curve = summary["curves"][source][form][attr]
            ax.plot(x, curve["mean"], line, color=color, label=label, linewidth=1.6)
            if batch and curve["lo"] is not None:
                ax.fill_between(x, curve["lo"], curve["hi"], color=color, alpha=0.18, linewidth=0)
            conv = summary["convergence"][source][form][attr]
            step = conv["mean_step"]
            if form == "endpoint":
                y = float(np.interp(step, x, curve["mean"]))
                ax.plot([step], [y], marker="v" if source == "x_t" else "^", color=color, markersize=8)
                if batch and conv["lo"] is not None:
                    ax.errorbar([step], [y], xerr=[[step - conv["lo"]], [conv["hi"] - step]], color=color,
                                capsize=3, linewidth=1)
        ax.axhline(threshold, color="0.5", linewidth=0.8, linestyle="-.")
        ax.set_title(attr)
        ax.set_xlabel("sampler state (0 = noise)")
        ax.set_xlim(0, steps - 1)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("s_t")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    n = summary["n"]
    title = f"attribute evolution, {n} prompts (mean ± 95% CI)" if batch else \
        f"attribute evolution: {summary['traces'][0].get('prompt') or 'trace'}"[:110]
    fig.suptitle(title + f"; markers: convergence (s_t ≥ {threshold:g})", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
