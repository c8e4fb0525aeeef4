"""The feature-space math of the isolation methods (``steering.methods`` picks and scales them).

Every function works on a batch of frames ``f`` ``[T, F]`` and needs no corpus by itself;
``steering.methods`` feeds them the class statistics, the probes and the step length
``unit`` (the length of the step at alpha 1, ``ALPHA_UNIT * typical ||f||``).

* ``project_out``: a direction with its components along the span of other probes' rows
  removed, and (for an SAE with RMSNorm) per frame also along the frame itself, so that no
  non-target logit moves to first order even through the RMSNorm that follows.
* ``line_search``: per frame, the shortest step along a (per-frame) direction that lifts the
  target class over every other class of its attribute by a margin, within a budget.
* ``clamp_range``: features kept inside ``[0, max seen in training]`` (or where they were before the step).
* ``top_features``: a direction restricted to the features that carry the target class.
"""

from __future__ import annotations

from typing import Callable

import torch

# Margin (nats) by which ``line_search`` lifts the target class's logit over every other class
# of the attribute: p(target) >= 1 / (1 + (K - 1) e^-3), 0.95 against any single other class.
SOLVE_MARGIN = 3.0
SOLVE_GRID = 24               # step lengths tried per frame (evenly spaced up to the budget)...
SOLVE_REFINE = 8              # ...then bisections: the length is found to budget / (24 * 2^8)
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


def class_margin(logits: torch.Tensor, target: int) -> torch.Tensor:
    """``z_target - max_{j != target} z_j`` per frame (``logits`` ``[T, K]``)."""
    others = logits.clone()
    others[:, target] = -torch.inf
    return logits[:, target] - others.max(dim=1).values


def line_search(f: torch.Tensor, directions: torch.Tensor, margin_fn: Callable[[torch.Tensor], torch.Tensor],
                budget: float, normalize: Callable[[torch.Tensor], torch.Tensor], *, margin: float = SOLVE_MARGIN,
                grid: int = SOLVE_GRID, refine: int = SOLVE_REFINE) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame, the shortest step ``s * d_t`` (``s`` in ``[0, budget]``, ``d_t`` = row ``t`` of
    ``directions``, unit length) with ``margin_fn(normalize(f + s d_t)) >= margin``.

    Batched over frames: ``grid`` evenly spaced lengths, then ``refine`` bisections between the
    last length short of the margin and the first that reaches it.  A frame already at the
    margin gets ``s = 0``; one that does not reach it within the budget gets the whole budget.
    Returns ``(normalize(f + s d), s)``."""
    t = f.shape[0]
    lo = torch.zeros(t, dtype=f.dtype, device=f.device)
    hi = torch.full((t,), float(budget), dtype=f.dtype, device=f.device)
    done = margin_fn(normalize(f)) >= margin
    found = done.clone()
    hi = torch.where(done, lo, hi)
    for i in range(1, grid + 1):
        if bool(found.all()):
            break
        s = budget * i / grid
        ok = (margin_fn(normalize(f + s * directions)) >= margin) & ~found
        hi = torch.where(ok, torch.full_like(hi, s), hi)
        lo = torch.where(~found & ~ok, torch.full_like(lo, s), lo)
        found |= ok
    move = found & ~done
    for _ in range(refine if bool(move.any()) else 0):
        mid = (lo + hi) / 2
        ok = margin_fn(normalize(f + mid[:, None] * directions)) >= margin
        hi = torch.where(move & ok, mid, hi)
        lo = torch.where(move & ~ok, mid, lo)
    return normalize(f + hi[:, None] * directions), hi


def clamp_range(f: torch.Tensor, upper: torch.Tensor, before: torch.Tensor | None = None) -> torch.Tensor:
    """``f`` clipped to ``[0, upper]`` per feature (the codes of every architecture are >= 0).

    ``before`` (the unsteered code, same shape as ``f``): the clamp bites only on what the step
    pushed out of range: each feature is kept inside ``[min(0, before), max(upper, before)]``, so a
    feature that was already out of range (a held-out clip) is never moved further in than where
    it was, and the result tends to ``before`` as the step tends to 0 (continuous at alpha 0)."""
    hi = upper.to(f)[None, :]
    if before is None:
        return torch.minimum(f.clamp_min(0.0), hi)
    b = before.to(f)
    return torch.minimum(torch.maximum(f, torch.minimum(b, torch.zeros_like(b))), torch.maximum(hi, b))


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


__all__ = ["SOLVE_GRID", "SOLVE_MARGIN", "SOLVE_REFINE", "TOP_FEATURE_SHARE", "class_margin", "clamp_range",
           "line_search", "orthonormal_rows", "project_out", "top_features"]
