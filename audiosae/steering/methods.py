"""Steering methods: how the SAE features of the steered frames are changed.

API (one call runs any method)::

    ctx = prepare_method(ws_or_none, sae_name, sae, probes, attribute, method)   # -> SteeringContext
    result = steer_wave(backend, sae, probes, spec, wave, attribute, target, alpha, context=ctx)
    f_steered = ctx.steer_features(f, target, alpha, mask)                       # the feature-space step alone

``prepare_method`` reads what the method needs from the workspace once (the class means of
the SAE's features over the training frames, cached in ``WORKSPACE/steer/``; ``ws`` may be
None for the methods that need no corpus, or pass ``means=``).  ``METHODS`` lists every name
``method=`` accepts (``check_method`` refuses others with ``AudioSAEError``); the CLI's
``--method`` choices are ``METHODS``.

Methods (``BASE_METHODS``), all with one meaning of alpha: the step added in feature space at
alpha is ``alpha * unit`` long, ``unit = ALPHA_UNIT * typical ||f||`` (alpha 10 = one
feature-vector length), so alpha values compare across methods.

* ``paper``: the probe's row ``w_k`` for the target class, centred over classes (Paek et al.):
  ``f' = RMSNorm(f + alpha * w_k)``.
* ``mass-mean``: the difference of class means in feature space,
  ``mean(f | class k) - mean(f | other labelled frames)`` (the "mass-mean probe" of Marks &
  Tegmark, which steers better than classifier weights in language models): independent of the
  probe's regularisation, it points from where the corpus is to where class-``k`` frames are.
* ``orthogonal``: the mass-mean direction minus its components in the span of every other
  attribute's probe rows and, per frame, along the frame itself (``isolation.project_out``).
  The other probes' logits ``W_o f'`` then do not change to first order, even through the
  RMSNorm: RMSNorm only rescales, and a step orthogonal to ``f`` changes ``||f||`` only at
  second order.  (At alpha 10 the rescaling is 1/sqrt(2): logits shrink toward their bias but
  keep their order.)
* ``solve``: per frame, the shortest step along the ``orthogonal`` direction (the probe row's,
  projected the same way, when there are no class means) after which the target class leads
  every other class of its attribute by ``SOLVE_MARGIN`` nats in the probe's reading of the
  decoded frame read back through the SAE (``probe(encode(decode(f')))``; the probe on ``f'``
  itself is reached by steps the decoder loses: at alpha 10, A4 in 12-80 % of the audio frames
  of two held-out real-music clips with two SAEs, against 67-100 % with the read-back).  ``isolation.line_search``, batched over frames.  Here
  ``alpha * unit`` is a budget: frames already at the target are left alone, the others get
  the step they need, capped at it.  (A least-norm solve through the pseudo-inverse of the
  stacked probe rows, which holds every other logit exactly, was tried first: it moved the
  probes to the target on every frame and the audio not at all, even within the decoder's
  span: the least-norm step lies off the data and the decode/re-encode loses it.)
* ``clamp``: the mass-mean step, then every feature kept inside ``[0, max over the training
  frames]`` (codes of every architecture are >= 0; a steered code outside what the decoder saw
  in training is where decodes blow up).  The step is as long as the others' before the clip.
  The clamp bites only on what the step pushed out of range: a feature already outside the
  range in the unsteered code ``normalize(f)`` (held-out audio) may stay where it was, so the
  method is continuous at alpha 0 (clamping the unsteered code itself moved the demo flute's
  latents by 5.8 at alpha 1, against 0.66 for ``paper``).
* ``top-features``: the mass-mean direction kept only on the features that carry the target
  class (the fewest whose evidence ``W_kj * mean(f_j | k)`` sums to 80 % of the class's
  positive evidence) and only where it raises them; the rest of the code is untouched.

``<method>+match`` (every base method, all in ``METHODS``): after decoding, the loudness is
matched to the source frame by frame (blocks of two latent hops) instead of the level rule's
0.2 s blocks, unless loudness is the target (``match_block_seconds``).

SAEs without RMSNorm (``cfg.rmsnorm=False``, ``f = h``): the code has no fixed scale, so the unit
is ``ALPHA_UNIT * mean ||f||`` over the workspace's training frames (computed in the same pass as
the class means and cached with them; without a workspace, the mean ``||f||`` of the frames
being steered), and the step is not renormalised: ``f' = f + alpha * d`` (the decoder was trained
on un-normalised codes; RMSNorm's renormalisation exists only to return to its sphere).
With RMSNorm ``||f|| = sqrt(F)`` and the unit is ``ALPHA_UNIT * sqrt(F)`` exactly as before.

TopK / BatchTopK / JumpReLU SAEs: steering acts on the code after the activation, and the
activation is not applied again: the steered code is dense along the direction (re-applying
TopK or the JumpReLU threshold would drop most of the step, which is spread over many
features).  The decoder is linear, so it decodes any code; ``clamp`` keeps the code inside its
training range and ``top-features`` keeps it close to sparse.

Alpha 0 is the unsteered path for every method: ``normalize(f)`` (``f`` itself without RMSNorm).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import defaults as D
from ..errors import AudioSAEError
import audiosae.steering.isolation as isolation

BASE_METHODS = D.STEER_BASE_METHODS
MATCH_SUFFIX = "+match"
METHODS = D.STEER_METHODS              # every base method and its "+match"; the CLI's --method choices
DEFAULT_METHOD = D.DEFAULT_STEER_METHOD
CORPUS_METHODS = ("mass-mean", "orthogonal", "clamp", "top-features")   # need the class means
_CACHE_VERSION = "2"   # class sums + counts + per-feature max + sum of ||f||


def split_method(method: str) -> tuple[str, bool]:
    """``"orthogonal+match"`` -> ``("orthogonal", True)``."""
    check_method(method)
    return (method[:-len(MATCH_SUFFIX)], True) if method.endswith(MATCH_SUFFIX) else (method, False)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise AudioSAEError(f"unknown steering method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def match_block_seconds(hop_length: int, sample_rate: int) -> float:
    """The loudness-match block of ``+match`` methods: two latent hops (hop: one frame)."""
    return max(2.0 * hop_length / sample_rate, 0.01)


# ---- class statistics of the SAE features over the training frames ------------------------------
@dataclass
class ClassMeans:
    """Per-class sums of the SAE features ``f`` for one attribute (``[K, F]``), frame counts, and
    (for ``clamp`` and SAEs without RMSNorm) the per-feature max and the mean ``||f||`` over all
    training frames, labelled or not."""

    attribute: str
    sums: np.ndarray      # [K, F] float64 sums of f over the frames of each class
    counts: np.ndarray    # [K] frames per class
    fmax: np.ndarray | None = None   # [F] max of each feature over the training frames
    norm_sum: float = 0.0            # sum of ||f|| over the training frames
    n_frames: int = 0                # frames in norm_sum / fmax

    @property
    def mean_norm(self) -> float | None:
        return self.norm_sum / self.n_frames if self.n_frames else None

    def class_mean(self, target: int) -> np.ndarray:
        k = self._check(target)
        return self.sums[k] / float(self.counts[k])

    def _check(self, target: int) -> int:
        k = int(target)
        if not 0 <= k < len(self.counts):
            raise AudioSAEError(f"class {k} is out of range for {self.attribute} (0..{len(self.counts) - 1})")
        if self.counts[k] == 0:
            raise AudioSAEError(f"{self.attribute} class {k} has no frame in the workspace's training data; "
                                "there is no class mean to steer toward")
        return k

    def direction(self, target: int) -> np.ndarray:
        """``mean(f | k) - mean(f | labelled, not k)`` as float32 [F]."""
        k = self._check(target)
        n_rest = float(self.counts.sum()) - float(self.counts[k])
        if n_rest == 0:
            raise AudioSAEError(f"every labelled {self.attribute} frame is class {k}: no contrast to steer along")
        mean_rest = (self.sums.sum(axis=0) - self.sums[k]) / n_rest
        return (self.class_mean(k) - mean_rest).astype(np.float32)


def class_means(store: Any, sae: Any, attribute: str, n_classes: int, *, split: str = "train",
                batch_size: int = 4096, cancel: Any = None) -> ClassMeans:
    """Stream ``split`` frames of ``store`` (a ``FrameStore`` with an ``attribute`` label column)
    through ``sae``: features ``f`` summed per class (labels < 0 are skipped), and the per-feature
    max and the sum of ``||f||`` over every frame."""
    device = next(sae.parameters()).device
    d = int(sae.cfg.d_sae)
    sums = torch.zeros(n_classes, d, dtype=torch.float64, device=device)
    counts = torch.zeros(n_classes, dtype=torch.int64, device=device)
    fmax = torch.zeros(d, dtype=torch.float32, device=device)
    norm_sum, n_all = 0.0, 0
    with torch.inference_mode():
        for batch in store.iter_batches(split, batch_size, shuffle=False, columns=("latents", attribute)):
            if cancel is not None:
                cancel.raise_if_cancelled()
            _, f = sae.encode(batch["latents"].to(device, torch.float32))
            fmax = torch.maximum(fmax, f.max(dim=0).values)
            norm_sum += float(f.double().norm(dim=1).sum())
            n_all += int(f.shape[0])
            y = batch[attribute].to(device).long()
            keep = (y >= 0) & (y < n_classes)
            if not keep.any():
                continue
            sums.index_add_(0, y[keep], f[keep].double())
            counts += torch.bincount(y[keep], minlength=n_classes)
    if int(counts.sum()) == 0:
        raise AudioSAEError(f"the {split!r} split has no frame labelled with {attribute}; mass-mean steering "
                            "needs a labelled corpus")
    return ClassMeans(attribute, sums.cpu().numpy(), counts.cpu().numpy(), fmax.cpu().numpy(), norm_sum, n_all)


def _fingerprint(sae: Any, n_frames: int) -> str:
    h = hashlib.sha256(_CACHE_VERSION.encode())
    for p in sae.parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    h.update(str(n_frames).encode())
    return h.hexdigest()[:16]


def workspace_class_means(ws: Any, sae_name: str, sae: Any, attribute: str, *, cancel: Any = None) -> ClassMeans:
    """``class_means`` over the workspace's training frames, cached in ``steer/`` (keyed by the
    SAE's weights, the corpus size and the cache layout, so a retrained SAE or a rebuilt corpus
    recomputes)."""
    store = ws.frame_store()
    n_classes = len(ws.attribute_spec.class_names(attribute))
    key = _fingerprint(sae, int(store.n_frames("train")))
    cache = Path(ws.root) / "steer" / f"class-means-{sae_name}-{attribute}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as data:
                if str(data["key"]) == key and data["sums"].shape == (n_classes, int(sae.cfg.d_sae)):
                    return ClassMeans(attribute, data["sums"], data["counts"], data["fmax"],
                                      float(data["norm_sum"]), int(data["n_frames"]))
        except (OSError, KeyError, ValueError):
            pass  # unreadable or an older layout: recompute
    means = class_means(store, sae, attribute, n_classes, cancel=cancel)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, key=key, sums=means.sums, counts=means.counts, fmax=means.fmax,
                 norm_sum=np.float64(means.norm_sum), n_frames=np.int64(means.n_frames),
                 meta=json.dumps({"sae": sae_name, "attribute": attribute, "version": _CACHE_VERSION}))
        tmp.replace(cache)
    except OSError:
        pass  # a read-only workspace: compute again next time
    return means


# ---- the context every method steers through -----------------------------------------------------
@dataclass
class SteeringContext:
    """One method, prepared for one SAE, its probes and one attribute (see the module docstring)."""

    method: str
    attribute: str
    sae: Any
    probes: Any
    means: ClassMeans | None = None
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def base(self) -> str:
        return split_method(self.method)[0]

    @property
    def match_frames(self) -> bool:
        return split_method(self.method)[1]

    @property
    def rmsnorm(self) -> bool:
        return bool(self.sae.cfg.rmsnorm)

    def feature_scale(self, f: torch.Tensor | None = None) -> float:
        """Typical ``||f||``: ``sqrt(F)`` with RMSNorm; without it the training frames' mean
        ``||f||`` (or, with no class statistics, that of ``f``, the frames being steered)."""
        d = int(self.sae.cfg.d_sae)
        if self.rmsnorm:
            return math.sqrt(d)
        if self.means is not None and self.means.mean_norm:
            return float(self.means.mean_norm)
        if f is not None and f.numel():
            scale = float(f.double().norm(dim=1).mean())
            if scale > 0:
                return scale
        raise AudioSAEError(f"SAE {self.sae.cfg.name!r} has no RMSNorm: the step length needs the typical "
                            "||f|| of its training frames (a workspace) or of the frames being steered")

    def unit(self, f: torch.Tensor | None = None) -> float:
        """The step length at alpha 1: ``ALPHA_UNIT * feature_scale``."""
        from .vectors import ALPHA_UNIT

        return ALPHA_UNIT * self.feature_scale(f)

    def _mass_mean(self, target: int) -> torch.Tensor:
        if self.means is None or self.means.attribute != self.attribute:
            raise AudioSAEError(f"{self.base} steering needs the class means of the SAE features "
                                "(steering.methods.workspace_class_means; pass a workspace or means=)")
        return torch.from_numpy(self.means.direction(target))

    def _basis(self) -> torch.Tensor:
        if "basis" not in self._cache:
            rows = [self.probes.weights[a].detach().float().cpu() for a in self.probes.attributes
                    if a != self.attribute]
            self._cache["basis"] = isolation.orthonormal_rows(torch.cat(rows) if rows else
                                                              torch.zeros(0, int(self.sae.cfg.d_sae)))
        return self._cache["basis"]

    def raw_direction(self, target: int) -> torch.Tensor:
        """The method's direction before scaling and per-frame adjustment (float32 [F], CPU)."""
        from .vectors import control_vector

        base = self.base
        if base == "paper" or (base == "solve" and self.means is None):
            d = control_vector(self.probes, self.attribute, int(target), normalize=False).cpu()
        else:
            d = self._mass_mean(target)
        if base in ("orthogonal", "solve"):
            basis = self._basis()
            d = (d.double() - basis @ (basis.T @ d.double())).float()
        elif base == "top-features":
            evidence = self.probes.weights[self.attribute][int(target)].detach().double().cpu() \
                * torch.from_numpy(self.means.class_mean(target))
            d = isolation.top_features(d, evidence)
        return d

    def direction(self, target: int, f: torch.Tensor | None = None) -> torch.Tensor:
        """The direction at alpha 1: ``raw_direction`` scaled to ``unit`` (``solve`` and
        ``orthogonal`` adjust it per frame; this is their frame-independent part)."""
        key = ("direction", int(target))
        if key not in self._cache or not (self.rmsnorm or self.means is not None):
            from .vectors import control_vector

            if self.base == "paper" and self.rmsnorm:   # bit-identical to the paper's control vector
                w = control_vector(self.probes, self.attribute, int(target)).cpu()
            else:
                d = self.raw_direction(target).float()
                norm = float(d.norm())
                if norm <= 1e-12:
                    raise AudioSAEError(f"{self.attribute} class {target}: method {self.base!r} leaves no "
                                        "direction to steer along")
                w = d * (self.unit(f) / norm)
            self._cache[key] = w
        return self._cache[key]

    def steer_features(self, f: torch.Tensor, target: int, alpha: float,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
        """Steered features ``[T, F]`` for features ``f`` ``[T, F]`` (masked frames only)."""
        from .vectors import check_alpha

        alpha = check_alpha(alpha)
        sae = self.sae
        if alpha == 0:
            steered = sae.normalize(f)
        else:
            base = self.base
            ref = f if mask is None else f[mask.to(f.device)]   # the steered frames (the unit's fallback)
            w = self.direction(target, ref).to(f)
            if base == "orthogonal":
                basis = self._basis().to(f.device)
                steered = sae.normalize(f + alpha * isolation.project_out(
                    self.raw_direction(target).to(f.device), basis, f if self.rmsnorm else None, self.unit(ref)))
            elif base == "solve":
                steered = self._solve(f, int(target), alpha * self.unit(ref))
            else:
                steered = sae.normalize(f + alpha * w)
                if base == "clamp":
                    if self.means is None or self.means.fmax is None:
                        raise AudioSAEError("clamp steering needs the per-feature range of the training frames "
                                            "(steering.methods.workspace_class_means)")
                    steered = isolation.clamp_range(steered, torch.from_numpy(self.means.fmax), sae.normalize(f))
        if mask is None:
            return steered
        return torch.where(mask.to(f.device)[:, None], steered, f)

    def _solve(self, f: torch.Tensor, target: int, budget: float) -> torch.Tensor:
        directions = isolation.project_out(self.raw_direction(target).to(f.device), self._basis().to(f.device),
                                           f if self.rmsnorm else None, 1.0).to(f).expand_as(f)
        def margin(x: torch.Tensor) -> torch.Tensor:   # what the decoded frame says, read back by the SAE
            return isolation.class_margin(self.probes.logits(self.sae.encode(self.sae.decode(x))[1], self.attribute),
                                          target)

        steered, _ = isolation.line_search(f, directions, margin, budget, self.sae.normalize)
        return steered

    def describe(self) -> dict[str, Any]:
        """For side-cars: the method, its parts and how the step length was set."""
        if self.rmsnorm:
            scale = "sqrt(F) (RMSNorm)"
        elif self.means is not None and self.means.mean_norm:
            scale = f"mean ||f|| of {self.means.n_frames} training frames ({self.means.mean_norm:.4g})"
        else:
            scale = "mean ||f|| of the steered frames (no training statistics)"
        return {"method": self.method, "base": self.base, "match_frames": self.match_frames,
                "alpha_unit": f"0.1 * {scale} (alpha 10 = one feature-vector length)"}


def prepare_method(ws: Any, sae_name: str, sae: Any, probes: Any, attribute: str, method: str = DEFAULT_METHOD, *,
                   means: ClassMeans | None = None, cancel: Any = None) -> SteeringContext:
    """Everything ``method`` needs to steer ``attribute`` with ``sae`` + ``probes`` (one call).

    ``ws``: the workspace the SAE belongs to (for the class means; cached after the first call),
    or None: then the corpus methods need ``means=``; ``paper`` and ``solve`` need nothing else
    (an SAE without RMSNorm then scales the step by the steered frames' mean ``||f||``)."""
    base, _ = split_method(method)
    probes.n_classes(attribute)   # an attribute without a probe fails here
    if means is not None and means.attribute != attribute:
        raise AudioSAEError(f"class means are for {means.attribute}, not {attribute}")
    if means is None and ws is not None and (base in CORPUS_METHODS or not sae.cfg.rmsnorm):
        means = workspace_class_means(ws, sae_name, sae, attribute, cancel=cancel)
    if means is None and base in CORPUS_METHODS:
        raise AudioSAEError(f"{base} steering needs the class means of the SAE features over the training frames "
                            "(a workspace, or means= from steering.methods.class_means)")
    return SteeringContext(method, attribute, sae, probes, means)


def steering_direction(method: str, probes: Any, attribute: str, target: int, *,
                       means: ClassMeans | None = None, sae: Any = None) -> torch.Tensor:
    """The frame-independent direction at alpha 1 (length ``ALPHA_UNIT * sqrt(F)`` for an SAE with
    RMSNorm, the default when ``sae`` is not given) for ``method``."""
    base, _ = split_method(method)
    if base in CORPUS_METHODS and (means is None or means.attribute != attribute):
        raise AudioSAEError(f"{base} steering needs the class means of the SAE features "
                            "(steering.methods.workspace_class_means)")
    if sae is None:
        sae = _FeatureSpace(probes.d_features)
    return SteeringContext(method, attribute, sae, probes, means).direction(target)


class _FeatureSpace:
    """Stands in for an SAE with RMSNorm of ``F`` features where only the width matters."""

    def __init__(self, d: int):
        self.cfg = type("cfg", (), {"d_sae": d, "rmsnorm": True, "name": "?"})()


__all__ = ["BASE_METHODS", "CORPUS_METHODS", "ClassMeans", "DEFAULT_METHOD", "METHODS", "SteeringContext",
           "check_method", "class_means", "match_block_seconds", "prepare_method", "split_method",
           "steering_direction", "workspace_class_means"]
