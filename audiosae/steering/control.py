"""Control vectors: push SAE features toward a probe class and hear the result.

Following the paper: with ``w_k`` the probe's weight row for class ``k`` of an attribute,

    f' = RMSNorm(f + alpha * w_k)        (on the chosen frames; the others keep f)
    x' = W_dec f' + b_dec                (SAE decoder)
    audio' = backend.decode(x')

"Keep residual" adds back what the SAE does not reconstruct, ``x - SAE(x)``, so that only
the steered direction changes.  After steering the attributes of the result are measured
again and compared with the unsteered path (same SAE and decoder, alpha = 0), which
separates the effect of steering from the codec's and the SAE's own reconstruction loss.
That is the ``paper`` method; ``steering.methods`` has the others (``steer_wave(method=...)``
or ``context=methods.prepare_method(...)``), all with the same alpha scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..attributes import ATTRIBUTES, AttributeSpec, FrameAttributes
from ..codecs.base import LatentBackend
from ..errors import AudioSAEError
from ..probes import ProbeSet
from ..sae import SparseAutoencoder
from .level import LevelRule, apply_level_rule, rule_for
from .vectors import ALPHA_UNIT, PAPER_ALPHAS, check_alpha, control_vector  # noqa: F401  (re-exported)

def frame_mask(n_frames: int, frame_times: np.ndarray, start: float | None, end: float | None) -> torch.Tensor:
    """Boolean mask of the frames whose centre lies in [start, end) (None = open end)."""
    times = np.asarray(frame_times)
    keep = np.ones(n_frames, dtype=bool)
    if start is not None:
        keep &= times >= start
    if end is not None:
        keep &= times < end
    if not keep.any():
        raise AudioSAEError(f"the time range {start}..{end} s contains no latent frame")
    return torch.from_numpy(keep)


def selection_samples(mask: np.ndarray, hop_length: int, n_samples: int) -> tuple[int, int]:
    """The samples ``[a, b)`` of the steered frames (frame ``i`` covers ``[i hop, (i + 1) hop)``)."""
    idx = np.flatnonzero(np.asarray(mask, dtype=bool))
    if idx.size == 0:
        return 0, 0
    a = min(n_samples, int(idx[0]) * int(hop_length))
    return a, max(a, min(n_samples, (int(idx[-1]) + 1) * int(hop_length)))


def steer_features(sae: SparseAutoencoder, f: torch.Tensor, direction: torch.Tensor, alpha: float,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """``RMSNorm(f + alpha * direction)`` on the masked frames of ``f`` [T, F] (the ``paper`` and
    ``mass-mean`` methods; ``methods.SteeringContext.steer_features`` runs any method).

    For an SAE without RMSNorm ``sae.normalize`` is the identity: ``f + alpha * direction``.  For
    TopK / BatchTopK / JumpReLU SAEs the step is added to the code after the activation, which is
    not applied again (see ``steering.methods``)."""
    alpha = check_alpha(alpha)
    steered = sae.normalize(f + alpha * direction.to(f))
    if mask is None:
        return steered
    return torch.where(mask.to(f.device)[:, None], steered, f)


def steer_latents(sae: SparseAutoencoder, latents: torch.Tensor, direction: torch.Tensor | None, alpha: float, *,
                  mask: torch.Tensor | None = None, keep_residual: bool = False, context: Any = None,
                  target: int | None = None) -> torch.Tensor:
    """Latents [T, D] -> steered latents [T, D] through the SAE (decoder of the steered features).

    ``context`` (a ``methods.SteeringContext``) steers with its method toward ``target``
    instead of adding ``direction``."""
    with torch.no_grad():  # not inference_mode: callers may feed the result to the SAE again
        x = latents.to(next(sae.parameters()).device, torch.float32)
        _, f = sae.encode(x)
        if context is not None:
            if target is None:
                raise AudioSAEError("steer_latents: a steering context needs the target class")
            f_steered = context.steer_features(f, int(target), alpha, mask)
        else:
            f_steered = steer_features(sae, f, direction, alpha, mask)
        x_steered = sae.decode(f_steered)
        if keep_residual:
            x_steered = x_steered + (x - sae.decode(f))
        if mask is not None and keep_residual:
            # Frames outside the range are exactly the input when the residual is kept.
            x_steered = torch.where(mask.to(x.device)[:, None], x_steered, x)
        return x_steered.cpu()


@dataclass
class SteerResult:
    wave: np.ndarray                      # steered audio [C, N]
    reconstruction: np.ndarray            # the same path with alpha = 0 [C, N]
    latents: np.ndarray                   # steered latents [T, D]
    report: dict[str, Any] = field(default_factory=dict)


def measure(spec: AttributeSpec, wave: np.ndarray, backend: LatentBackend, times: np.ndarray) -> FrameAttributes:
    return spec.measure(wave, backend.sample_rate, times, hop_length=backend.hop_length, device=str(backend.device))


def attribute_shift(spec: AttributeSpec, reference: FrameAttributes, steered: FrameAttributes,
                    attribute: str, target: int, mask: np.ndarray) -> dict[str, Any]:
    """How far the steered frames moved toward ``target`` and how much the other attributes changed."""
    ref_cls = spec.classify(reference)
    new_cls = spec.classify(steered)
    m = np.asarray(mask, dtype=bool)
    out: dict[str, Any] = {"frames": int(m.sum())}

    def distance(classes: np.ndarray) -> float:
        c = classes[m]
        if attribute == "pitch":  # semitones among voiced frames; unvoiced frames reported apart
            voiced = c > 0
            return float(np.mean(np.abs(c[voiced] - target))) if voiced.any() else float("nan")
        return float(np.mean(np.abs(c - target)))

    out["target"] = {
        "attribute": attribute, "class": int(target), "name": spec.class_names(attribute)[target],
        "rate_before": float(np.mean(ref_cls[attribute][m] == target)),
        "rate_after": float(np.mean(new_cls[attribute][m] == target)),
        "distance_before": distance(ref_cls[attribute]), "distance_after": distance(new_cls[attribute]),
        "unit": "semitones" if attribute == "pitch" else "bins",
    }
    if attribute == "pitch":
        out["target"]["voiced_before"] = float(np.mean(ref_cls["pitch"][m] > 0))
        out["target"]["voiced_after"] = float(np.mean(new_cls["pitch"][m] > 0))
    others = {}
    raw = {"pitch": ("midi", "semitones"), "loudness": ("loudness_db", "dB"), "timbre": ("centroid_hz", "Hz")}
    for other in ATTRIBUTES:
        if other == attribute:
            continue
        field_name, unit = raw[other]
        a = np.asarray(getattr(reference, field_name))[m]
        b = np.asarray(getattr(steered, field_name))[m]
        both = np.isfinite(a) & np.isfinite(b)
        others[other] = {
            "changed_fraction": float(np.mean(ref_cls[other][m] != new_cls[other][m])),
            "mean_abs_shift": float(np.mean(np.abs(a[both] - b[both]))) if both.any() else float("nan"),
            "unit": unit,
        }
    out["non_target"] = others
    return out


def steer_wave(backend: LatentBackend, sae: SparseAutoencoder, probes: ProbeSet, spec: AttributeSpec,
               wave: np.ndarray, attribute: str, target: int, alpha: float, *, start: float | None = None,
               end: float | None = None, keep_residual: bool = False, measure_shift: bool = True,
               limit: bool = True, level: LevelRule | None = None, method: str | None = None,
               means: Any = None, context: Any = None) -> SteerResult:
    """Steer a whole clip (already at the backend's rate and channel count).

    The result goes through the level rule (``steering.level``): loudness matched to ``wave``
    unless loudness is the target, then a true-peak limiter to -1 dBFS.  ``limit=False``
    keeps the raw decoded level (over full scale if that is what the decoder gave);
    ``level`` overrides the rule.  ``report["level"]`` says what was done.  With a selection
    (``start``/``end``) the rule acts only on the selected samples and cross-fades into the
    unsteered path (``wave``'s reconstruction through the same rule) over ``rule.crossfade_seconds``
    outside each edge: beyond that the output is the reconstruction, sample for sample
    (``report["level"]["levelled"] == "selection"``, ``["region"]`` in seconds).
    ``method``: how the features are steered (``steering.methods.METHODS``; default
    ``defaults.DEFAULT_STEER_METHOD``, chosen by the steering evaluation).  ``context``: a ``methods.prepare_method`` result (what the method needs from
    the workspace); without one it is prepared here from ``means`` (the ``ClassMeans`` of this SAE
    and attribute, needed by the corpus methods).  Every method has the same alpha scale.
    ``+match`` methods match the loudness per frame (two latent hops) instead of per 0.2 s.
    """
    from dataclasses import replace

    from .methods import DEFAULT_METHOD, check_method, match_block_seconds, prepare_method

    alpha = check_alpha(alpha)
    if method is not None:
        check_method(method)
    if attribute not in spec.attributes:   # the paper's three and the workspace's registered attributes
        raise AudioSAEError(f"unknown attribute {attribute!r}; choose one of {', '.join(spec.attributes)}")
    if context is not None:
        if method is not None and method != context.method:
            raise AudioSAEError(f"method {method!r} differs from the prepared context's {context.method!r}")
        if context.attribute != attribute:
            raise AudioSAEError(f"the steering context is for {context.attribute}, not {attribute}")
    else:
        context = prepare_method(None, "", sae, probes, attribute, method or DEFAULT_METHOD, means=means)
    method = context.method
    rule = level if level is not None else rule_for(attribute, limit=limit)
    if context.match_frames and rule.match_loudness:
        rule = replace(rule, block_seconds=match_block_seconds(backend.hop_length, backend.sample_rate))
    encoded = backend.encode_long(wave)
    latents = torch.from_numpy(encoded.latents)
    times = backend.frame_centers(latents.shape[0])
    mask = frame_mask(latents.shape[0], times, start, end)
    with torch.no_grad():
        _, f_all = sae.encode(latents.to(next(sae.parameters()).device, torch.float32))
        direction = context.direction(target, f_all[mask.to(f_all.device)])
    steered = steer_latents(sae, latents, None, alpha, mask=mask, keep_residual=keep_residual, context=context,
                            target=target)
    plain = steer_latents(sae, latents, direction, 0.0, mask=mask, keep_residual=keep_residual)
    n = wave.shape[1]
    out_wave = backend.decode(steered, reference=wave)[:, :n]
    recon = backend.decode(plain, reference=wave)[:, :n]
    # The same rule on both, so the measured shift is the steering's, not a level difference.
    # With a selection only the selection is levelled and cross-faded into the unsteered audio
    # (``level`` module, step 3): outside it the output is the reconstruction, sample for sample.
    recon, _ = apply_level_rule(recon, wave, backend.sample_rate, rule, target_attribute=attribute)
    region = selection_samples(mask.numpy(), backend.hop_length, n) if (start is not None or end is not None) \
        else None
    out_wave, level_report = apply_level_rule(out_wave, wave, backend.sample_rate, rule, target_attribute=attribute,
                                              region=region, unsteered=recon)
    report: dict[str, Any] = {
        "attribute": attribute, "target": spec.class_names(attribute)[target], "alpha": alpha,
        "keep_residual": keep_residual, "start": start, "end": end, "method": method,
        "direction_norm": float(direction.norm()), **context.describe(),
        "level": level_report.to_dict(),
    }
    if measure_shift:
        before = measure(spec, recon, backend, times)
        after = measure(spec, out_wave, backend, times)
        original = measure(spec, wave, backend, times)
        report["shift"] = attribute_shift(spec, before, after, attribute, target, mask.numpy())
        report["shift_vs_original"] = attribute_shift(spec, original, after, attribute, target, mask.numpy())
    return SteerResult(wave=out_wave, reconstruction=recon, latents=steered.numpy(), report=report)
