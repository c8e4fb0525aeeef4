"""Closing the loop (issue 14, item 4): does boosting a labelled feature move its labelled attribute?

For the top-labelled features of each attribute (``top_labelled``: the features whose best AUROC
within that attribute is highest, one per class where possible, active on at least
``MIN_ACTIVE`` corpus frames), ``feature_loop`` boosts the feature on a few corpus clips and
measures the boosted audio with the steering evaluation's own measuring
(``steering.control.measure`` + ``steering.eval_metrics.target_hit``: the extractors that made
the labels, the hit rate over the eligible frames):

* a clip is ``clip_seconds`` of a corpus source (validation sources first), encoded by the
  workspace's backend;
* the reference is the clip decoded from its own latents (boost 0, the same decode path: the
  codec's own effect is not counted as the feature's);
* the boost adds ``amount`` x (the feature's mean active value over the corpus) x its decoder
  row to the latents of the frames its ``schedule`` picks (``audiosae.boost_schedule``): every
  frame by default (the inspector's "Hear boosted" on the whole clip), or only on regular pulses
  (``pulses``, a BPM grid) or on the clip's own beats (``beats``), since a constant boost cannot
  make an event in time; the decoded audio goes through no level rule (the extractors see what
  the decoder made);
* ``before`` / ``after``: the share of the eligible frames in the feature's labelled class, mean
  over the clips; ``delta = after - before`` (> 0: the boost moved the attribute toward the label).
  ``features`` is a list (a feature may be the top one of two attributes: one entry each).
* ``controls`` > 0: per attribute, that many random features with no label there (AUROC of each
  measured class within 0.5 +- ``CONTROL_AUROC``), each boosted on the same frames as each of the
  attribute's labelled features with a vector of the same length (``boost_norm``: the multiplier
  times the decoder row's norm) and measured against that feature's class (entries with
  ``"control": true, "control_of": J``): does any feature boosted so move the class (pulses
  alone may make onsets)?
* with a schedule other than ``every``, ``before_boosted`` / ``after_boosted``: the class's share
  on the boosted frames alone (does a beat-phase feature pulsed land its frames in its quarter?);
* where the workspace measures ``onset`` / ``beat_phase``, each entry also carries the timing of
  the onsets / tracked beats against the pulse starts (``boost_schedule.onset_timing`` /
  ``beat_timing``; the ``bpm`` grid for ``every`` and ``pulses``, the clip's beats for ``beats``),
  mean over the clips.

Attributes whose extractor needs ground truth (``instrument``: the MIDI program or a side-car)
cannot be measured on decoded audio; they are listed under ``not_measurable``.

The result is cached beside the SAE (``saes/<name>/feature-loop.json`` for the default schedule,
``feature-loop-<schedule>.json`` for another: schema version, SAE fingerprint, settings, the
schedule) and read back by ``load_feature_loop`` (None when stale); the studio shows the default
schedule's on the feature's card.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import defaults as D
from .attribute_registry import measurable_from_audio
from .boost_schedule import BoostSchedule, beat_starts, beat_timing, onset_timing, pulse_starts, schedule_mask
from .describe import FeatureDescription, load_or_describe
from .errors import AudioSAEError, WorkspaceError
from .jobs import CancelToken, Progress, ProgressSink, null_progress
from .storage import SCHEMA_VERSION, atomic_write_json, check_schema, read_json
from .workspace import Workspace

__all__ = ["feature_loop", "load_feature_loop", "loop_path", "top_labelled", "control_features", "mean_active_value",
           "entries_for", "LOOP_FILE", "GROUND_TRUTH_ONLY", "DEFAULT_AMOUNT"]

LOOP_FILE = "feature-loop.json"
LOOP_KIND = "audiosae.feature_loop"
GROUND_TRUTH_ONLY = ("instrument",)   # the built-in ones registered with from_audio=False (kept for importers)
NO_LABEL_CLASSES = ("unvoiced", "none", "no onset")   # a feature "of" these is no finding
MIN_ACTIVE = 50
DEFAULT_AMOUNT = D.BOOST_AMOUNT
MOVED_POINTS = 0.05    # "moved": the labelled class's share grew by at least 5 points
CONTROL_AUROC = 0.05   # a control feature's AUROC for each measured class lies within 0.5 +- this


def _schedule(schedule: BoostSchedule | str | None) -> BoostSchedule:
    return schedule if isinstance(schedule, BoostSchedule) else BoostSchedule(schedule or "every")


def loop_path(workspace: Workspace, sae_name: str, schedule: BoostSchedule | str | None = None) -> Path:
    """``feature-loop.json`` for the default schedule, ``feature-loop-<slug>.json`` for another."""
    sched = _schedule(schedule)
    name = LOOP_FILE if sched.name == "every" else f"feature-loop-{sched.slug}.json"
    return workspace.sae_dir(sae_name) / name


def mean_active_value(desc: FeatureDescription, feature: int) -> float:
    """The feature's mean value over the corpus frames where it is active (1.0 for a dead one)."""
    first = desc.attributes[0]
    at, n = desc.offsets[first], len(desc.class_names[first])
    active = float(desc.active[feature, at:at + n].sum())
    return float(desc.mass[feature, at:at + n].sum()) / active if active > 0 else 1.0


def top_labelled(desc: FeatureDescription, attribute: str, n: int = 2, *, min_active: int = MIN_ACTIVE,
                 skip_classes: Sequence[str] = NO_LABEL_CLASSES) -> list[dict[str, Any]]:
    """The ``n`` features labelled best with a class of ``attribute`` (AUROC of their best class
    there, classes in ``skip_classes`` left out), preferring distinct classes."""
    at, names = desc.offsets[attribute], desc.class_names[attribute]
    scores = np.nan_to_num(desc.label_scores()[:, at:at + len(names)], nan=-1.0)
    for c, name in enumerate(names):
        if name in skip_classes:
            scores[:, c] = -1.0
    total_active = np.rint(desc.density * desc.n_frames)
    best = scores.argmax(axis=1)
    score = scores[np.arange(desc.n_features), best]
    order = [int(j) for j in np.argsort(-score, kind="stable") if score[j] > 0.5 and total_active[j] >= min_active]
    picked: list[int] = []
    for distinct in (True, False):
        for j in order:
            if len(picked) >= n:
                break
            if j in picked or (distinct and any(best[k] == best[j] for k in picked)):
                continue
            picked.append(j)
    return [{"feature": j, "attribute": attribute, "class": names[int(best[j])], "class_index": int(best[j]),
             "auroc": round(float(score[j]), 4)} for j in picked]


def control_features(desc: FeatureDescription, attribute: str, class_indices: Sequence[int], n: int = 1, *,
                     seed: int = 0, exclude: Sequence[int] = (), min_active: int = MIN_ACTIVE) -> list[int]:
    """``n`` random features (``seed``) active on at least ``min_active`` frames whose AUROC for
    every class in ``class_indices`` of ``attribute`` lies within 0.5 +- ``CONTROL_AUROC``: features
    with no label there, boosted as controls."""
    at = desc.offsets[attribute]
    scores = desc.label_scores()[:, [at + int(c) for c in class_indices]]
    ok = np.isfinite(scores).all(axis=1) & (np.abs(scores - 0.5) <= CONTROL_AUROC).all(axis=1)
    ok &= np.rint(desc.density * desc.n_frames) >= min_active
    ok[[int(j) for j in exclude if 0 <= int(j) < desc.n_features]] = False
    pool = np.flatnonzero(ok)
    if not len(pool):
        return []
    rng = np.random.default_rng(seed)
    return sorted(int(j) for j in rng.choice(pool, size=min(n, len(pool)), replace=False))


def _clips(ws: Workspace, n: int, seconds: float, sample_rate: int, channels: int,
           cancel: CancelToken) -> list[tuple[str, np.ndarray]]:
    from .labelling import source_audio

    sources = ws.manifest().sources
    order = sorted(sources, key=lambda s: (sources[s].split != "val", s))
    out = []
    for sid in order:
        if len(out) >= n:
            break
        cancel.raise_if_cancelled()
        try:
            wave, _ = source_audio(ws, sid, sample_rate, channels)
        except (AudioSAEError, OSError):
            continue
        want = int(seconds * sample_rate)
        start = max(0, min(wave.shape[1] - want, int(0.5 * sample_rate)))
        clip = np.ascontiguousarray(wave[:, start:start + want], dtype=np.float32)
        if clip.shape[1] >= sample_rate and float(np.abs(clip).max()) > 1e-4:
            out.append((sid, clip))
    if not out:
        raise WorkspaceError(f"{ws.root}: no corpus audio could be loaded to steer")
    return out


def feature_loop(workspace: Workspace, sae_name: str, *, desc: FeatureDescription | None = None,
                 attributes: Sequence[str] | None = None, per_attribute: int = 2, clips: int = 2,
                 clip_seconds: float = 6.0, amount: float = DEFAULT_AMOUNT, device: str = "cpu",
                 schedule: BoostSchedule | str | None = None, controls: int = 0, seed: int = 0,
                 progress: ProgressSink = null_progress, cancel: CancelToken | None = None,
                 save: bool = True) -> dict[str, Any]:
    """Boost the top-labelled features of each attribute and measure their label's share (see
    the module docstring).  ``schedule``: which frames get the boost (default every frame);
    ``controls``: random unlabelled features per attribute boosted alike.  Returns (and saves)
    the result document."""
    from .sae import SparseAutoencoder
    from .steering.eval_metrics import target_hit

    cancel = cancel or CancelToken()
    sched = _schedule(schedule)
    if not math.isfinite(amount):
        raise AudioSAEError(f"boost amount must be finite, got {amount}")
    started = time.monotonic()
    desc = desc or load_or_describe(workspace, sae_name, device=device, cancel=cancel)
    spec = workspace.attribute_spec
    backend = workspace.backend(device)
    sae = SparseAutoencoder.load(workspace.sae_dir(sae_name), device="cpu")
    attrs = [a for a in (attributes or desc.attributes) if a in desc.attributes]
    not_measurable = [a for a in attrs if not measurable_from_audio(a)]
    chosen = [t for a in attrs if a not in not_measurable for t in top_labelled(desc, a, per_attribute)]
    norms = sae.W_dec.detach().to(torch.float32).norm(dim=1).numpy()
    # each entry's boost: (feature, its decoder row's multiplier); a control gets the multiplier that
    # adds a vector as long as its labelled feature's (the pulses' energy matched)
    jobs = [(t["feature"], float(amount * mean_active_value(desc, t["feature"]))) for t in chosen]
    if controls > 0:
        labelled = sorted({t["feature"] for t in chosen})
        for a in dict.fromkeys(t["attribute"] for t in chosen):
            mine = [(t, job) for t, job in zip(chosen, jobs) if t["attribute"] == a and not t.get("control")]
            pool = control_features(desc, a, sorted({t["class_index"] for t, _ in mine}), controls, seed=seed,
                                    exclude=labelled)
            at = desc.offsets[a]
            for t, (j, scale) in mine:
                for c in pool:
                    chosen.append({"feature": c, "attribute": a, "class": t["class"], "class_index": t["class_index"],
                                   "control": True, "control_of": j,
                                   "auroc": round(float(desc.label_scores()[c, at + t["class_index"]]), 4)})
                    jobs.append((c, scale * float(norms[j]) / max(float(norms[c]), 1e-12)))
    measured = set(getattr(spec, "extra", {}) or {})
    timing_onset, timing_beats = "onset" in measured, "beat_phase" in measured
    # CREPE only when a pitch class is measured (the slowest extractor; every other class ignores it)
    need_pitch = any(t["attribute"] == "pitch" for t in chosen)

    def measure(wave: np.ndarray, times: np.ndarray):
        return spec.measure(wave, backend.sample_rate, times, hop_length=backend.hop_length,
                            device=str(backend.device), pitch=need_pitch)

    loaded = _clips(workspace, clips, clip_seconds, backend.sample_rate, backend.channels, cancel)
    features_boosted = list(dict.fromkeys(jobs))
    steps = len(loaded) * (1 + len(features_boosted))
    done = 0
    progress(Progress("feature loop", 0, steps, f"boosting {len(features_boosted)} features on {len(loaded)} clips"
                                                f" ({sched.slug})"))
    # keyed by position: one feature may be a top-labelled one of two attributes
    per: list[dict[str, list[float]]] = [{} for _ in chosen]
    boosted_frames: list[float] = []
    for name, wave in loaded:
        cancel.raise_if_cancelled()
        latents = backend.encode(wave).latents
        times = backend.frame_centers(latents.shape[0])
        mask = np.ones(latents.shape[0], bool)
        ref = measure(backend.decode(latents, reference=wave), times)
        ref_raw, ref_cls = ref.raw(), spec.classify(ref)
        phase = ref_raw.get("beat_phase")
        where = schedule_mask(sched, latents.shape[0], backend.frame_rate,
                              beat_phase=None if phase is None else np.asarray(phase).reshape(-1))
        boosted_frames.append(float(where.mean()))
        starts = beat_starts(np.asarray(phase).reshape(-1)) if sched.name == "beats" else \
            pulse_starts(latents.shape[0], backend.frame_rate, sched.bpm)
        done += 1
        progress(Progress("feature loop", done, steps, f"{name}: reference"))
        for j, scale in features_boosted:
            cancel.raise_if_cancelled()
            direction = sae.W_dec[j].detach().to(torch.float32).numpy()
            boosted = latents + (where[:, None] * np.float32(scale)).astype(np.float32) * direction[None, :]
            fa = measure(backend.decode(boosted, reference=wave), times)
            fa_raw, fa_cls = fa.raw(), spec.classify(fa)
            timing: dict[str, float] = {}
            if timing_onset:
                timing.update(onset_timing(ref_cls["onset"] == 1, fa_cls["onset"] == 1, starts))
            if timing_beats:
                timing.update(beat_timing(np.asarray(ref_raw["beat_phase"]).reshape(-1),
                                          np.asarray(fa_raw["beat_phase"]).reshape(-1), starts))
            for i, t in enumerate(chosen):
                if jobs[i] != (j, scale):
                    continue
                got = per[i]
                got.setdefault("before", []).append(
                    target_hit(spec, ref, t["attribute"], t["class_index"], mask)["hit_rate"])
                got.setdefault("after", []).append(
                    target_hit(spec, fa, t["attribute"], t["class_index"], mask)["hit_rate"])
                if sched.name != "every":   # the class's share on the boosted frames alone
                    for key, f in (("before_boosted", ref), ("after_boosted", fa)):
                        got.setdefault(key, []).append(target_hit(spec, f, t["attribute"], t["class_index"],
                                                                  where)["hit_rate"])
                for k, v in timing.items():
                    got.setdefault(k, []).append(v)
            done += 1
            progress(Progress("feature loop", done, steps, f"{name}: feature {j}"))
    features: list[dict[str, Any]] = []
    by_attr: dict[str, list[float]] = {}
    by_control: dict[str, list[float]] = {}
    for t, got, (j, scale) in zip(chosen, per, jobs):
        before = _nanmean(got.get("before", []))
        after = _nanmean(got.get("after", []))
        delta = after - before
        entry = {**t, "before": _r(before), "after": _r(after), "delta": _r(delta),
                 "boost": _r(scale), "boost_norm": _r(scale * float(norms[j]))}
        for key in ("before_boosted", "after_boosted"):
            if key in got:
                entry[key] = _r(_nanmean(got[key]))
        timing_keys = [k for k in got if k not in ("before", "after", "before_boosted", "after_boosted")]
        if timing_keys:
            entry["timing"] = {k: _r(_nanmean(got[k])) for k in timing_keys}
        features.append(entry)
        if math.isfinite(delta):
            (by_control if t.get("control") else by_attr).setdefault(t["attribute"], []).append(delta)
    summary: dict[str, dict[str, Any]] = {}
    for a, v in by_attr.items():
        summary[a] = {"features": len(v), "mean_delta": _r(float(np.mean(v))),
                      "moved": int(sum(1 for d in v if d >= MOVED_POINTS))}
        if by_control.get(a):
            summary[a]["control_mean_delta"] = _r(float(np.mean(by_control[a])))
    doc = {"schema_version": SCHEMA_VERSION, "kind": LOOP_KIND, "sae": sae_name,
           "sae_fingerprint": sae.fingerprint(), "amount": amount, "clip_seconds": clip_seconds,
           "schedule": sched.to_json(), "boosted_frames": _r(_nanmean(boosted_frames)), "controls": int(controls),
           "clips": [n for n, _ in loaded], "per_attribute": per_attribute,
           "measure": "steering.eval_metrics.target_hit on the decoded audio (hit rate over eligible frames), "
                      "boost 0 decoded the same way as reference",
           "features": features, "not_measurable": not_measurable, "attributes": summary,
           "seconds": round(time.monotonic() - started, 1)}
    if save:
        atomic_write_json(loop_path(workspace, sae_name, sched), doc)
    progress(Progress("feature loop", steps, steps, "done"))
    return doc


def _nanmean(values: list[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else math.nan


def entries_for(doc: dict[str, Any] | None, feature: int) -> list[dict[str, Any]]:
    """The boost-check entries of ``feature`` in a ``feature_loop`` document (one per attribute it
    was a top-labelled feature of; control entries left out)."""
    return [e for e in (doc or {}).get("features") or []
            if int(e.get("feature", -1)) == int(feature) and not e.get("control")]


def _r(x: float) -> float | None:
    return round(float(x), 4) if math.isfinite(x) else None


def load_feature_loop(workspace: Workspace, sae_name: str,
                      schedule: BoostSchedule | str | None = None) -> dict[str, Any] | None:
    """The cached closing-the-loop result of ``sae_name`` with ``schedule`` (default: every
    frame); None when absent, unreadable, made with other SAE weights or another schedule.  A
    newer schema raises."""
    from .feature_index import sae_fingerprint

    sched = _schedule(schedule)
    path = loop_path(workspace, sae_name, sched)
    if not path.is_file():
        return None
    try:
        doc = read_json(path, kind="feature loop")
    except (AudioSAEError, OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    check_schema(doc, path, kind="feature loop")
    if not isinstance(doc.get("features"), list):
        return None   # an older layout
    if doc.get("kind") != LOOP_KIND or doc.get("sae_fingerprint") != sae_fingerprint(workspace, sae_name):
        return None
    try:
        if BoostSchedule.from_json(doc.get("schedule")) != sched:
            return None
    except (AudioSAEError, TypeError, ValueError):
        return None
    return doc
