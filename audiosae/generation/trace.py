"""Trace DiffRhythm generation through a workspace's SAE and probes, step by step.

``trace_generation`` runs ``CFM.iter_sample`` (32 states by default: t = k / 31, state 0 is the
noise, state 31 the final latent) and, at every state, sends two latents through the SAE and
the probes: the state ``X_t`` itself (what the paper probes) and the sampler's predicted end
point ``x̂1 = X_t + (1 - t) · v`` (a cleaner view of where the sample is heading).  Both come
from passes the Euler update makes anyway, so tracing adds **no** DiT evaluations.  It keeps

* the latents ``X_t`` and ``x̂1`` per state (float16, ``[S, T, 64]``; optional);
* the probe class distributions per attribute per state (``[S, T, K]``, float16);
* a summary of the SAE features per state: active-feature count per frame (``l0``: non-zero code ``h``,
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

import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .. import __version__
from ..analysis import LoadedModels
from ..errors import AudioSAEError, BackendError, WorkspaceError
from ..jobs import CancelToken, Progress, ProgressSink, null_progress
from ..storage import SCHEMA_VERSION, atomic_write_json, read_json
from .conditioning import LATENT_HOP, LATENT_SAMPLE_RATE, StyleEmbedding, frames_for_seconds, instrumental_tokens
from .diffrhythm import CFM, DEFAULT_CFG_STRENGTH, DEFAULT_STEPS, download_checkpoint, load_cfm, released_config
# The trace's parts live in three sibling modules (trace_metric: the s_t metric and constants;
# trace_files: Trace, save/load; trace_summary: prompts, batch summaries, report.png); their
# names are importable from here, as before the split.
from .trace_files import (FeatureSummary, Trace, TraceStep, _need, _remove_stale_siblings, _tensors,  # noqa: F401
                          _trace_json, decode_state, is_trace_folder, load_trace, save_trace)
from .trace_metric import (AUDIO_FILE, BATCH_KIND, CI_METHOD, DEFAULT_EPS, DEFAULT_FULL_FEATURES_LIMIT,  # noqa: F401
                           DEFAULT_THRESHOLD, DEFAULT_TOP_FEATURES, FORMS, REPORT_JSON, REPORT_PNG,
                           REQUIRED_BACKEND, SOURCES, SUMMARY_FILE, TENSORS_FILE, TRACE_FILE, TRACE_KIND,
                           _check_distributions, _converged, _metrics, class_progress, convergence_step,
                           endpoint_progress, mean_ci)
from .trace_summary import (_batch_folders, _floats, _plot, builtin_prompts_path, read_prompts,  # noqa: F401
                            summarise_traces, write_report)

__all__ = [
    "TRACE_KIND", "BATCH_KIND", "TRACE_FILE", "TENSORS_FILE", "AUDIO_FILE", "SUMMARY_FILE", "REPORT_PNG",
    "REPORT_JSON", "SOURCES", "FORMS", "DEFAULT_THRESHOLD", "DEFAULT_EPS", "DEFAULT_TOP_FEATURES",
    "DEFAULT_FULL_FEATURES_LIMIT", "FeatureSummary", "Trace", "TraceStep", "endpoint_progress", "class_progress",
    "convergence_step", "trace_generation", "save_trace", "load_trace", "is_trace_folder", "decode_state",
    "read_prompts", "builtin_prompts_path", "trace_batch", "summarise_traces", "mean_ci", "write_report",
    "load_generator",
]


# ---- tracing one generation ------------------------------------------------------------------------


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
    exactly ``ProbeSet.predict_proba``).  Features come from the SAE's own ``encode``, so every
    architecture (ReLU, TopK, BatchTopK, JumpReLU; with or without RMSNorm) is traced as it
    runs; a feature is active on a frame when its code ``h`` is non-zero.  The whole ``f`` is
    kept only when it is saved; otherwise the top features' ``f`` is computed again at the end
    from the kept latents, with ``encode`` in chunks (a TopK code or an RMSNorm factor depends
    on the frame's whole pre-activation row, so a slice of the encoder cannot give it).
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
        self.l0[:, k] = (h != 0).sum(-1).cpu().numpy()
        self.mean[:, k] = f.mean(1).cpu().numpy()
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

    def _encoded_columns(self, i: int, order: np.ndarray) -> np.ndarray:
        """``f[:, :, order]`` ``[S, T, k]`` float16 of source ``i``, from ``sae.encode`` of the kept
        latents in chunks of at most ``MAX_CHUNK_ELEMENTS`` features."""
        from ..sae import MAX_CHUNK_ELEMENTS

        index = torch.from_numpy(order).to(self.sae.device)
        steps, frames = int(self.latents.shape[1]), int(self.latents.shape[2])
        out = np.zeros((steps, frames, len(order)), dtype=np.float16)
        rows = max(1, MAX_CHUNK_ELEMENTS // self.sae.cfg.d_sae)
        flat = self.latents[i].reshape(steps * frames, -1)
        view = out.reshape(steps * frames, len(order))
        for s in range(0, flat.shape[0], rows):
            _, f = self.sae.encode(flat[s:s + rows].to(self.sae.device))
            view[s:s + rows] = f[:, index].to(torch.float16).cpu().numpy()
        return out

    def summaries(self, top_features: int) -> dict[str, FeatureSummary]:
        out = {}
        for i, source in enumerate(SOURCES):
            count = min(int(top_features), self.mean.shape[2])
            order = np.argsort(-self.mean[i].max(axis=0), kind="stable")[:count].astype(np.int64)
            top = self.features[i][:, :, order] if self.features is not None else self._encoded_columns(i, order)
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
        "sae_fingerprint": sae.fingerprint(), "d_sae": sae.cfg.d_sae, "sae_architecture": sae.cfg.label,
        "sae_k": sae.cfg.k, "attributes": attributes,
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


# ---- batches ----------------------------------------------------------------------------------------


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
