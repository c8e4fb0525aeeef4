"""Steering evaluation: every method at every alpha on a set of clips, measured with the
extractors that made the labels (issue 12, item 3).  One path for the CLI (``audiosae
steer-eval``) and the studio: both build an ``EvaluationRequest`` and call ``evaluate_steering``.

A **cell** is one (clip, attribute, target, method, alpha).  It steers the clip with
``control.steer_wave`` (the same call, level rule and defaults as ``audiosae steer``) and
compares the steered audio with the unsteered reconstruction (alpha 0, same path: the
steering's own effect) and with the original (what the listener hears changed):

* target: ``hit_rate`` (fraction of the steered clip's voiced / labelled frames in the target
  class; for pitch the class is a MIDI note: pitch class and octave) and the distance in classes;
* every attribute's shift (``eval_metrics.attribute_shifts``: loudness dB over frames louder
  than -50 dB in the reference, median relative centroid change in %, pitch in semitones on
  voiced frames, class-change rates); the target attribute's own shift is kept apart;
* level and clipping of the audio as written (peak dBFS, samples at/over full scale);
* distribution distances between the steered and the reference audio on an embedding
  (``embedding``: Fréchet distance and MMD; offline log-mel + MFCC by default);
* with a selection (``start``/``end``): all of the above inside it, and outside it the change
  that should not be there (max |delta| of the samples, attributes and distances).

``SteeringEvaluation`` holds the cells; ``matrix(metric)`` gives methods x alphas tables,
``best_method()`` picks a method by the documented rule ``BEST_METHOD_RULE``, ``save(folder)``
writes ``steer-eval.json`` (schema-versioned, atomic) and one PNG matrix per target
(``eval_result``; the PNG and the CLI's text tables: ``eval_plot``).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..attribute_registry import measurable_from_audio
from ..errors import AudioSAEError
from ..jobs import CancelToken, Progress, ProgressSink, null_progress
from . import eval_metrics as EM
from .control import PAPER_ALPHAS, check_alpha, frame_mask, measure, steer_wave
from .embedding import EmbeddingCache, LogMelMfccEmbedding, embedding_name, frechet_distance, mmd
from .eval_result import (BEST_METHOD_RULE, GOALS, HIT_GOAL, JSON_NAME, KIND, METRICS, Matrix,  # noqa: F401
                          SteeringEvaluation)

@dataclass
class Clip:
    """A clip to steer: ``wave`` [C, N] at the backend's rate and channel count."""

    name: str
    wave: np.ndarray


@dataclass
class EvaluationRequest:
    """What to evaluate.  ``workspace``: a path, a ``Workspace`` or loaded models
    (``analysis.LoadedModels``).  ``clips``: paths, ``Clip``s, ``(name, wave)`` pairs or waves
    (at the backend's rate).  ``targets``: ``(attribute, target)`` pairs, the target as
    ``AttributeSpec.parse_target`` reads it ('A4', '-12 dB', a class index).  ``methods``: None =
    every method of ``steering.methods.METHODS``.  ``embedding``: None = ``LogMelMfccEmbedding``;
    any object with ``name`` and ``embed(wave, sample_rate) -> [n, d]`` (CLAP, VGGish...)."""

    workspace: Any
    clips: Sequence[Any]
    targets: Sequence[tuple[str, Any]] = (("pitch", "A4"),)
    alphas: Sequence[float] = PAPER_ALPHAS
    methods: Sequence[str] | None = None
    sae: str | None = None
    start: float | None = None
    end: float | None = None
    keep_residual: bool = False
    limit: bool = True
    device: str | None = "auto"
    embedding: Any = None
    guard_seconds: float = 0.1


def available_methods() -> tuple[str, ...]:
    from . import methods as M

    return tuple(M.METHODS)


def resolve_methods(methods: Sequence[str] | str | None) -> list[str]:
    """``None``/``"all"`` -> every method; otherwise the names, checked; ``paper`` always first."""
    from .methods import check_method

    if methods is None or methods == "all" or list(methods) == ["all"]:
        names = list(available_methods())
    else:
        names = [methods] if isinstance(methods, str) else list(methods)
        for name in names:
            check_method(name)
    names = list(dict.fromkeys(names))
    if "paper" not in names:
        names.insert(0, "paper")  # the paper's row is in every matrix (the baseline)
    return ["paper"] + [n for n in names if n != "paper"]


def _load_models(request: EvaluationRequest) -> Any:
    from ..analysis import LoadedModels

    if isinstance(request.workspace, LoadedModels):
        models = request.workspace
    else:
        models = LoadedModels.load(request.workspace, request.sae, device=request.device)
    if models.backend is None:
        raise AudioSAEError("; ".join(p.line() for p in models.missing)
                            or "the workspace's codec could not be loaded")
    return models


def _load_clips(clips: Sequence[Any], backend: Any) -> list[Clip]:
    from ..audio import load_audio

    out: list[Clip] = []
    for i, item in enumerate(clips):
        if isinstance(item, Clip):
            clip = item
        elif isinstance(item, (str, Path)):
            clip = Clip(Path(item).name, load_audio(item, backend.sample_rate, backend.channels))
        elif isinstance(item, tuple) and len(item) == 2:
            clip = Clip(str(item[0]), np.asarray(item[1], np.float32))
        else:
            clip = Clip(f"clip{i}", np.asarray(item, np.float32))
        wave = np.asarray(clip.wave, np.float32)
        if wave.ndim == 1:
            wave = wave[None]
        if wave.ndim != 2 or wave.shape[0] != backend.channels:
            raise AudioSAEError(f"{clip.name}: expected audio [{backend.channels}, N] at {backend.sample_rate} Hz, "
                                f"got shape {list(wave.shape)}")
        out.append(Clip(clip.name, wave))
    if not out:
        raise AudioSAEError("no clip to evaluate")
    names = [c.name for c in out]
    if len(set(names)) != len(names):  # cells are found by clip name
        out = [Clip(f"{i}:{c.name}", c.wave) for i, c in enumerate(out)]
    return out


def _steer_kwargs(models: Any, method: str, attribute: str, target: int, cancel: CancelToken,
                  cache: dict) -> dict[str, Any]:
    """What ``steer_wave`` needs besides the method's name (its class means, its context)."""
    from . import methods as M

    key = (method, attribute)
    if key not in cache:
        prepare = getattr(M, "prepare_method", None)
        if prepare is not None:  # one call prepares any method (its class means, cached in WORKSPACE/steer)
            cache[key] = {"context": prepare(models.workspace, models.sae.cfg.name, models.sae, models.probes,
                                             attribute, method, cancel=cancel)}
        elif method == "mass-mean":
            cache[key] = {"means": M.workspace_class_means(models.workspace, models.sae.cfg.name, models.sae,
                                                           attribute, cancel=cancel)}
        else:
            cache[key] = {}
    return cache[key]


class _Measure:
    """``control.measure`` once per distinct wave (the reconstruction and the original are the
    reference of every cell)."""

    def __init__(self, spec: Any, backend: Any):
        self.spec, self.backend, self._cache = spec, backend, {}

    def __call__(self, wave: np.ndarray, times: np.ndarray) -> Any:
        w = np.ascontiguousarray(wave, np.float32)
        key = hashlib.sha1(w.tobytes() + np.asarray(times).tobytes()).hexdigest()
        if key not in self._cache:
            self._cache[key] = measure(self.spec, w, self.backend, times)
        return self._cache[key]


def _parts(wave: np.ndarray, spans: list[tuple[int, int]], min_samples: int) -> list[np.ndarray]:
    return [wave[:, a:b] for a, b in spans if b - a >= min_samples]


def _distances(embed: EmbeddingCache, sr: int, steered: np.ndarray, reference: np.ndarray,
               spans: list[tuple[int, int]]) -> dict[str, float]:
    """Fréchet distance and MMD between the embeddings of the two waves over ``spans``."""
    min_samples = int(0.2 * sr)
    a = _parts(steered, spans, min_samples)
    b = _parts(reference, spans, min_samples)
    if not a:
        return {"frechet": math.nan, "mmd": math.nan, "vectors": 0}
    ea = np.concatenate([embed(x, sr) for x in a])
    eb = np.concatenate([embed(x, sr) for x in b])
    if len(ea) < 2 or len(eb) < 2:
        return {"frechet": math.nan, "mmd": math.nan, "vectors": int(len(ea))}
    return {"frechet": frechet_distance(ea, eb), "mmd": mmd(ea, eb), "vectors": int(len(ea))}


def _summary(attribute: str, target: dict, vs_recon: dict, vs_orig: dict, level: dict,
             outside: dict | None) -> dict[str, float]:
    def shift(block: dict, attr: str, key: str) -> float:
        return math.nan if attr == attribute else block["shifts"][attr][key]

    out = {"hit_rate": target["hit_rate"], "hit_rate_all_frames": target["hit_rate_all_frames"],
           "target_distance": target["distance"],
           "loudness_shift_db": shift(vs_recon, "loudness", "mean_abs_db"),
           "centroid_change_pct": shift(vs_recon, "timbre", "median_abs_pct"),
           "pitch_shift_semitones": shift(vs_recon, "pitch", "mean_abs_semitones"),
           "loudness_shift_db_vs_original": shift(vs_orig, "loudness", "mean_abs_db"),
           "centroid_change_pct_vs_original": shift(vs_orig, "timbre", "median_abs_pct"),
           "frechet": vs_recon["frechet"], "mmd": vs_recon["mmd"],
           "frechet_vs_original": vs_orig["frechet"], "mmd_vs_original": vs_orig["mmd"],
           "peak_dbfs": level["peak_dbfs"], "clipped_fraction": level["clipped_fraction"]}
    if outside is not None:
        out["outside_max_abs_delta"] = outside["samples"]["max_abs_delta"]
        out["outside_max_abs_delta_beyond_guard"] = outside["samples"]["max_abs_delta_beyond_guard"]
        out["outside_loudness_max_abs_db"] = outside["shifts"]["loudness"]["max_abs_db"]
    return out


def evaluate_steering(request: EvaluationRequest, *, progress: ProgressSink = null_progress,
                      cancel: CancelToken | None = None) -> SteeringEvaluation:
    """Run every cell of ``request`` (see the module docstring); a job: ``progress`` gets one
    event per cell, ``cancel`` is checked between cells."""
    cancel = cancel or CancelToken()
    alphas = [check_alpha(a) for a in request.alphas]
    if not alphas:
        raise AudioSAEError("no alpha to evaluate")
    if request.start is not None and request.end is not None and request.end <= request.start:
        raise AudioSAEError(f"the selection must end after it starts (start {request.start}, end {request.end})")
    methods = resolve_methods(request.methods)
    models = _load_models(request)
    backend, spec = models.backend, models.spec
    targets = []
    for attribute, target in request.targets:
        if attribute not in spec.attributes:
            raise AudioSAEError(f"this workspace does not label {attribute!r}; it labels {', '.join(spec.attributes)} "
                                "(add one with `audiosae label`, then train its probe with `train --attributes`)")
        if not measurable_from_audio(attribute):
            raise AudioSAEError(f"{attribute!r} comes from ground truth (MIDI programs or your labels), not from "
                                "the sound: steered audio cannot be measured for it")
        k = spec.parse_target(attribute, target)
        targets.append((attribute, k, spec.class_names(attribute)[k]))
    if not targets:
        raise AudioSAEError("no (attribute, target) to evaluate")
    clips = _load_clips(request.clips, backend)
    embedding = request.embedding if request.embedding is not None else LogMelMfccEmbedding()
    embed, meas, contexts = EmbeddingCache(embedding), _Measure(spec, backend), {}
    sr = int(backend.sample_rate)
    total = len(clips) * len(targets) * len(methods) * len(alphas)
    cells: list[dict[str, Any]] = []
    t0 = time.monotonic()
    selection = request.start is not None or request.end is not None
    for clip in clips:
        n = clip.wave.shape[1]
        span = EM.sample_range(request.start, request.end, sr, n)
        outside_spans = [(0, span[0]), (span[1], n)]
        for attribute, k, target_name in targets:
            for method in methods:
                cancel.raise_if_cancelled()
                extra = _steer_kwargs(models, method, attribute, k, cancel, contexts)
                for alpha in alphas:
                    cancel.raise_if_cancelled()
                    progress(Progress("steer-eval", len(cells), total,
                                      f"{clip.name}: {attribute} {target_name}, {method}, alpha {alpha:g}"))
                    res = steer_wave(backend, models.sae, models.probes, spec, clip.wave, attribute, k, alpha,
                                     start=request.start, end=request.end, keep_residual=request.keep_residual,
                                     measure_shift=False, limit=request.limit, method=method, **extra)
                    times = backend.frame_centers(res.latents.shape[0])
                    inside = frame_mask(len(times), times, request.start, request.end).numpy()
                    steered_fa = meas(res.wave, times)
                    recon_fa, orig_fa = meas(res.reconstruction, times), meas(clip.wave, times)
                    target = EM.target_hit(spec, steered_fa, attribute, k, inside)
                    target["hit_rate_reconstruction"] = EM.target_hit(spec, recon_fa, attribute, k, inside)["hit_rate"]
                    target["hit_rate_original"] = EM.target_hit(spec, orig_fa, attribute, k, inside)["hit_rate"]
                    vs_recon = {"shifts": EM.attribute_shifts(spec, recon_fa, steered_fa, inside),
                                **_distances(embed, sr, res.wave, res.reconstruction, [span])}
                    vs_orig = {"shifts": EM.attribute_shifts(spec, orig_fa, steered_fa, inside),
                               **_distances(embed, sr, res.wave, clip.wave, [span])}
                    level = EM.level_metrics(res.wave, res.report.get("level"))
                    outside = None
                    if selection and not inside.all():
                        outside = {"samples": EM.outside_change(res.wave, res.reconstruction, sr, span,
                                                                request.guard_seconds),
                                   "shifts": EM.attribute_shifts(spec, recon_fa, steered_fa, ~inside),
                                   **_distances(embed, sr, res.wave, res.reconstruction, outside_spans)}
                    cells.append({
                        "clip": clip.name, "attribute": attribute, "target": target_name, "target_class": int(k),
                        "method": method, "alpha": float(alpha), "target_metrics": target,
                        "vs_reconstruction": vs_recon, "vs_original": vs_orig, "level": level, "outside": outside,
                        "summary": _summary(attribute, target, vs_recon, vs_orig, level, outside)})
    progress(Progress("steer-eval", total, total, "done"))
    meta = {"workspace": str(models.workspace.root), "sae": models.sae.cfg.name,
            "backend": models.workspace.backend_name, "sample_rate": sr,
            "clips": [{"name": c.name, "seconds": c.wave.shape[1] / sr} for c in clips],
            "targets": [{"attribute": a, "target": name, "class": int(k)} for a, k, name in targets],
            "methods": methods, "alphas": alphas, "start": request.start, "end": request.end,
            "keep_residual": request.keep_residual, "limit": request.limit,
            "embedding": getattr(embedding, "describe", lambda: {"name": embedding_name(embedding)})(),
            "loud_gate_db": EM.LOUD_GATE_DB, "guard_seconds": request.guard_seconds,
            "hit_goal": HIT_GOAL, "goals": GOALS, "best_method_rule": BEST_METHOD_RULE,
            "seconds": time.monotonic() - t0}
    return SteeringEvaluation(meta=meta, cells=cells)


__all__ = ["BEST_METHOD_RULE", "Clip", "EvaluationRequest", "GOALS", "HIT_GOAL", "JSON_NAME", "KIND", "METRICS",
           "Matrix", "SteeringEvaluation", "available_methods", "evaluate_steering", "resolve_methods"]
