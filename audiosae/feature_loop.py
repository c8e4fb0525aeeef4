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
  row to every frame's latent (the inspector's "Hear boosted" on the whole clip); the decoded
  audio goes through no level rule (the extractors see what the decoder made);
* ``before`` / ``after``: the share of the eligible frames in the feature's labelled class, mean
  over the clips; ``delta = after - before`` (> 0: the boost moved the attribute toward the label).
  ``features`` is a list (a feature may be the top one of two attributes: one entry each).

Attributes whose extractor needs ground truth (``instrument``: the MIDI program or a side-car)
cannot be measured on decoded audio; they are listed under ``not_measurable``.

The result is cached beside the SAE (``saes/<name>/feature-loop.json``: schema version, SAE
fingerprint, settings) and read back by ``load_feature_loop`` (None when stale); the studio
shows it on the feature's card.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .attribute_registry import measurable_from_audio
from .describe import FeatureDescription, load_or_describe
from .errors import AudioSAEError, WorkspaceError
from .jobs import CancelToken, Progress, ProgressSink, null_progress
from .storage import SCHEMA_VERSION, atomic_write_json, check_schema, read_json
from .workspace import Workspace

__all__ = ["feature_loop", "load_feature_loop", "loop_path", "top_labelled", "mean_active_value", "entries_for",
           "LOOP_FILE", "GROUND_TRUTH_ONLY", "DEFAULT_AMOUNT"]

LOOP_FILE = "feature-loop.json"
LOOP_KIND = "audiosae.feature_loop"
GROUND_TRUTH_ONLY = ("instrument",)   # the built-in ones registered with from_audio=False (kept for importers)
NO_LABEL_CLASSES = ("unvoiced", "none", "no onset")   # a feature "of" these is no finding
MIN_ACTIVE = 50
DEFAULT_AMOUNT = 4.0
MOVED_POINTS = 0.05    # "moved": the labelled class's share grew by at least 5 points


def loop_path(workspace: Workspace, sae_name: str) -> Path:
    return workspace.sae_dir(sae_name) / LOOP_FILE


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
                 progress: ProgressSink = null_progress, cancel: CancelToken | None = None,
                 save: bool = True) -> dict[str, Any]:
    """Boost the top-labelled features of each attribute and measure their label's share (see
    the module docstring).  Returns (and saves) the result document."""
    from .explore.analysis import LoadedModels
    from .sae import SparseAutoencoder
    from .steering.control import measure
    from .steering.eval_metrics import target_hit

    cancel = cancel or CancelToken()
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
    loaded = _clips(workspace, clips, clip_seconds, backend.sample_rate, backend.channels, cancel)
    steps = len(loaded) * (1 + len(chosen))
    done = 0
    progress(Progress("feature loop", 0, steps, f"boosting {len(chosen)} labelled features on {len(loaded)} clips"))
    # keyed by position: one feature may be a top-labelled one of two attributes
    per: list[dict[str, list[float]]] = [{"before": [], "after": []} for _ in chosen]
    for name, wave in loaded:
        cancel.raise_if_cancelled()
        latents = backend.encode(wave).latents
        times = backend.frame_centers(latents.shape[0])
        mask = np.ones(latents.shape[0], bool)
        ref = measure(spec, backend.decode(latents, reference=wave), backend, times)
        done += 1
        progress(Progress("feature loop", done, steps, f"{name}: reference"))
        for i, t in enumerate(chosen):
            cancel.raise_if_cancelled()
            j = t["feature"]
            direction = sae.W_dec[j].detach().to(torch.float32).numpy()
            boosted = latents + np.float32(amount * mean_active_value(desc, j)) * direction[None, :]
            fa = measure(spec, backend.decode(boosted, reference=wave), backend, times)
            per[i]["before"].append(target_hit(spec, ref, t["attribute"], t["class_index"], mask)["hit_rate"])
            per[i]["after"].append(target_hit(spec, fa, t["attribute"], t["class_index"], mask)["hit_rate"])
            done += 1
            progress(Progress("feature loop", done, steps, f"{name}: feature {j} ({t['attribute']} {t['class']})"))
    features: list[dict[str, Any]] = []
    by_attr: dict[str, list[float]] = {}
    for t, got in zip(chosen, per):
        before = _nanmean(got["before"])
        after = _nanmean(got["after"])
        delta = after - before
        features.append({**t, "before": _r(before), "after": _r(after), "delta": _r(delta),
                         "boost": _r(amount * mean_active_value(desc, t["feature"]))})
        if math.isfinite(delta):
            by_attr.setdefault(t["attribute"], []).append(delta)
    doc = {"schema_version": SCHEMA_VERSION, "kind": LOOP_KIND, "sae": sae_name,
           "sae_fingerprint": sae.fingerprint(), "amount": amount, "clip_seconds": clip_seconds,
           "clips": [n for n, _ in loaded], "per_attribute": per_attribute,
           "measure": "steering.eval_metrics.target_hit on the decoded audio (hit rate over eligible frames), "
                      "boost 0 decoded the same way as reference",
           "features": features, "not_measurable": not_measurable,
           "attributes": {a: {"features": len(v), "mean_delta": _r(float(np.mean(v))),
                              "moved": int(sum(1 for d in v if d >= MOVED_POINTS))} for a, v in by_attr.items()},
           "seconds": round(time.monotonic() - started, 1)}
    if save:
        atomic_write_json(loop_path(workspace, sae_name), doc)
    progress(Progress("feature loop", steps, steps, "done"))
    return doc


def _nanmean(values: list[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else math.nan


def entries_for(doc: dict[str, Any] | None, feature: int) -> list[dict[str, Any]]:
    """The boost-check entries of ``feature`` in a ``feature_loop`` document (one per attribute it
    was a top-labelled feature of)."""
    return [e for e in (doc or {}).get("features") or [] if int(e.get("feature", -1)) == int(feature)]


def _r(x: float) -> float | None:
    return round(float(x), 4) if math.isfinite(x) else None


def load_feature_loop(workspace: Workspace, sae_name: str) -> dict[str, Any] | None:
    """The cached closing-the-loop result of ``sae_name``; None when absent, unreadable or made
    with other SAE weights.  A newer schema raises."""
    from .feature_index import sae_fingerprint

    path = loop_path(workspace, sae_name)
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
    return doc
