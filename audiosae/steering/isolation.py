"""The feature-space math of the isolation methods (``steering.methods`` picks and scales them).

Every function works on a batch of frames ``f`` ``[T, F]`` and needs no corpus by itself;
``steering.methods`` feeds them the class statistics, the probes and the step length
``unit`` (the length of the step at alpha 1, ``ALPHA_UNIT * typical ||f||``).

* ``project_out``: a direction with its components along the span of other probes' rows
  removed, and (for an SAE with RMSNorm) per frame also along the frame itself, so that no
  non-target logit moves to first order even through the RMSNorm that follows.
* ``solve_frames``: per frame, the smallest step that lifts the target class over every other
  class of its attribute by a margin while holding every other logit, within a budget.
* ``clamp_range``: features kept inside ``[0, max seen in training]``.
* ``top_features``: a direction restricted to the features that carry the target class.
"""

from __future__ import annotations

from typing import Callable

import torch

# Margin (nats) by which ``solve_frames`` lifts the target class's logit over every other class
# of the attribute: p(target) >= 1 / (1 + (K - 1) e^-3), 0.95 against any single other class.
SOLVE_MARGIN = 3.0
SOLVE_ITERATIONS = 6          # Gauss-Newton steps through the RMSNorm (one is exact without it)
TOP_FEATURE_SHARE = 0.8       # top-features: the fewest features carrying this share of the class's evidence
_RCOND = 1e-6


def orthonormal_rows(rows: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis ``[F, r]`` (float64) of the span of ``rows`` ``[n, F]``."""
    if rows.numel() == 0:
        return torch.zeros(rows.shape[-1], 0, dtype=torch.float64)
    u, s, _ = torch.linalg.svd(rows.double().T, full_matrices=False)
    keep = s > _RCOND * float(s.max()) if s.numel() else s > 0
    return u[:, keep]


def project_out(direction: torch.Tensor, basis: torch.Tensor, f: torch.Tensor | None, unit: float) -> torch.Tensor:
    """Per-frame directions ``[T, F]`` of length ``unit``: ``direction`` minus its part in the span
    of ``basis`` ``[F, r]`` (orthonormal), and, when ``f`` ``[T, F]`` is given, minus its part along
    each frame's ``f`` (taken orthogonal to the basis first, so the result is orthogonal to both).

    Orthogonal to ``f``, the step ``f + a d`` keeps ``||f||`` to first order, so RMSNorm's
    rescaling is second order and the logits ``W_o f`` of the projected-out probes do not move
    to first order.  A frame whose projected direction vanishes gets a zero row (no step)."""
    d = direction.double()
    d = d - basis @ (basis.T @ d)
    if f is None:
        norm = float(d.norm())
        return (d * (unit / norm) if norm > 0 else d * 0)[None].float()
    g = f.double()
    g = g - (g @ basis) @ basis.T                              # f's part outside the basis [T, F]
    gg = (g * g).sum(dim=1, keepdim=True)
    coef = torch.where(gg > 0, (g @ d)[:, None] / gg.clamp_min(1e-300), torch.zeros_like(gg))
    dt = d[None, :] - coef * g                                 # [T, F], orthogonal to basis and f
    norm = dt.norm(dim=1, keepdim=True)
    scale = torch.where(norm > 1e-12 * max(1.0, float(d.norm())), unit / norm.clamp_min(1e-300),
                        torch.zeros_like(norm))
    return (dt * scale).to(f.dtype)


def target_logits(logits: torch.Tensor, target: int, margin: float = SOLVE_MARGIN) -> torch.Tensor:
    """``logits`` ``[T, K]`` with the target column raised (never lowered) to ``margin`` over the
    largest other column: what ``solve_frames`` aims at for the target attribute."""
    others = logits.clone()
    others[:, target] = -torch.inf
    want = torch.maximum(logits[:, target], others.max(dim=1).values + margin)
    out = logits.clone()
    out[:, target] = want
    return out


def solve_frames(f: torch.Tensor, logits_fn: Callable[[torch.Tensor], torch.Tensor], weights: torch.Tensor,
                 desired: torch.Tensor, budget: float, normalize: Callable[[torch.Tensor], torch.Tensor],
                 iterations: int = SOLVE_ITERATIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame, the least-norm step ``delta`` with ``logits(normalize(f + delta)) = desired``.

    ``weights`` ``[R, F]``: every probe row stacked (target attribute and the others, the rows
    ``logits_fn`` multiplies by); ``desired`` ``[T, R]``: the target attribute's logits with the
    target lifted (``target_logits``), the other attributes' logits as they are.  Least norm via
    the pseudo-inverse of the stacked rows (batched over frames: one ``[T, R] @ [R, F]``), then a
    few Gauss-Newton steps through ``normalize`` (RMSNorm shrinks ``f + delta``; for an SAE
    without it the first step is exact).  ``||delta||`` is capped at ``budget`` per frame (a frame
    that needs more gets the capped step: it moves toward the target without reaching it).
    Returns ``(normalize(f + delta), delta)``."""
    pinv = torch.linalg.pinv(weights.double(), rtol=_RCOND).to(f.dtype)   # [F, R]
    delta = torch.zeros_like(f)
    current = f
    for step in range(max(1, iterations)):
        residual = desired - logits_fn(current)                          # [T, R]
        if step == 0 and not bool((residual.abs() > 1e-6).any()):
            break
        # RMSNorm scales f + delta by g = 1 / rms(f + delta): a change s moves the logits by ~ g W s.
        raw = f + delta
        rn = raw.norm(dim=1, keepdim=True)
        gain = torch.where(rn > 0, normalize(raw).norm(dim=1, keepdim=True) / rn.clamp_min(1e-30),
                           torch.ones_like(rn))
        delta = delta + (residual @ pinv.T) / gain
        norm = delta.norm(dim=1, keepdim=True)
        delta = delta * torch.clamp(budget / norm.clamp_min(1e-30), max=1.0)
        current = normalize(f + delta)
    return current, delta


def clamp_range(f: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """``f`` clipped to ``[0, upper]`` per feature (the codes of every architecture are >= 0)."""
    return torch.minimum(f.clamp_min(0.0), upper.to(f)[None, :])


def top_features(direction: torch.Tensor, evidence: torch.Tensor, share: float = TOP_FEATURE_SHARE) -> torch.Tensor:
    """``direction`` kept on the fewest features whose positive ``evidence`` (``W_kj * mean(f_j | k)``,
    the target class's mean logit contribution per feature) sums to ``share`` of its positive
    total, and where the direction itself is positive (raise what carries the class); zero elsewhere."""
    ev = evidence.double().clamp_min(0.0)
    total = float(ev.sum())
    if total <= 0:
        return torch.zeros_like(direction)
    order = torch.argsort(ev, descending=True)
    cum = torch.cumsum(ev[order], 0)
    n = int(torch.searchsorted(cum, torch.tensor(share * total, dtype=cum.dtype)).item()) + 1
    keep = torch.zeros_like(direction, dtype=torch.bool)
    keep[order[:n]] = True
    keep &= ev > 0
    return torch.where(keep & (direction > 0), direction, torch.zeros_like(direction))


__all__ = ["SOLVE_ITERATIONS", "SOLVE_MARGIN", "TOP_FEATURE_SHARE", "clamp_range", "orthonormal_rows",
           "project_out", "solve_frames", "target_logits", "top_features"]
