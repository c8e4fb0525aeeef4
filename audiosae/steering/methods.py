"""Steering methods: where the direction added to the SAE features comes from.

* ``paper`` (default): the probe's weight row ``w_k`` for the target class (Paek et al.).
* ``mass-mean``: the difference of class means in feature space,
  ``mean(f | class k) - mean(f | other labelled frames)`` over the workspace's training frames
  (the "mass-mean probe" direction of Marks & Tegmark, "The Geometry of Truth").  It points
  from where the corpus is to where class ``k`` frames are, independent of the probe's
  regularisation; it needs the corpus (the class means are computed once per SAE and
  attribute and cached in ``WORKSPACE/steer/``).

Both are scaled to the same length, ``ALPHA_UNIT * sqrt(F)``, so alpha means the same
(alpha 10 = one feature-vector length) whichever method is used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import AudioSAEError

METHODS = ("paper", "mass-mean")
DEFAULT_METHOD = "paper"


def check_method(method: str) -> str:
    if method not in METHODS:
        raise AudioSAEError(f"unknown steering method {method!r}; choose one of {', '.join(METHODS)}")
    return method


@dataclass
class ClassMeans:
    """Per-class means of the SAE features ``f`` for one attribute (``[K, F]``) and frame counts."""

    attribute: str
    sums: np.ndarray      # [K, F] float64 sums of f over the frames of each class
    counts: np.ndarray    # [K] frames per class

    def direction(self, target: int) -> np.ndarray:
        """``mean(f | k) - mean(f | labelled, not k)`` as float32 [F]."""
        k = int(target)
        if not 0 <= k < len(self.counts):
            raise AudioSAEError(f"class {k} is out of range for {self.attribute} (0..{len(self.counts) - 1})")
        n_k = float(self.counts[k])
        n_rest = float(self.counts.sum()) - n_k
        if n_k == 0:
            raise AudioSAEError(f"{self.attribute} class {k} has no frame in the workspace's training data; "
                                "there is no class mean to steer toward")
        if n_rest == 0:
            raise AudioSAEError(f"every labelled {self.attribute} frame is class {k}: no contrast to steer along")
        mean_k = self.sums[k] / n_k
        mean_rest = (self.sums.sum(axis=0) - self.sums[k]) / n_rest
        return (mean_k - mean_rest).astype(np.float32)


def class_means(store: Any, sae: Any, attribute: str, n_classes: int, *, split: str = "train",
                batch_size: int = 4096, cancel: Any = None) -> ClassMeans:
    """Stream ``split`` frames of ``store`` (a ``FrameStore`` with an ``attribute`` label column)
    through ``sae`` and sum its features ``f`` per class (labels < 0 are skipped)."""
    device = next(sae.parameters()).device
    sums = torch.zeros(n_classes, int(sae.cfg.d_sae), dtype=torch.float64, device=device)
    counts = torch.zeros(n_classes, dtype=torch.int64, device=device)
    with torch.inference_mode():
        for batch in store.iter_batches(split, batch_size, shuffle=False, columns=("latents", attribute)):
            if cancel is not None:
                cancel.raise_if_cancelled()
            y = batch[attribute].to(device).long()
            keep = (y >= 0) & (y < n_classes)
            if not keep.any():
                continue
            _, f = sae.encode(batch["latents"][keep.cpu()].to(device, torch.float32))
            sums.index_add_(0, y[keep], f.double())
            counts += torch.bincount(y[keep], minlength=n_classes)
    if int(counts.sum()) == 0:
        raise AudioSAEError(f"the {split!r} split has no frame labelled with {attribute}; mass-mean steering "
                            "needs a labelled corpus")
    return ClassMeans(attribute, sums.cpu().numpy(), counts.cpu().numpy())


def _fingerprint(sae: Any, n_frames: int) -> str:
    h = hashlib.sha256()
    for p in sae.parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    h.update(str(n_frames).encode())
    return h.hexdigest()[:16]


def workspace_class_means(ws: Any, sae_name: str, sae: Any, attribute: str, *, cancel: Any = None) -> ClassMeans:
    """``class_means`` over the workspace's training frames, cached in ``steer/`` (keyed by the
    SAE's weights and the corpus size, so a retrained SAE or a rebuilt corpus recomputes)."""
    store = ws.frame_store()
    n_classes = len(ws.attribute_spec.class_names(attribute))
    key = _fingerprint(sae, int(store.n_frames("train")))
    cache = Path(ws.root) / "steer" / f"class-means-{sae_name}-{attribute}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as data:
                if str(data["key"]) == key and data["sums"].shape == (n_classes, int(sae.cfg.d_sae)):
                    return ClassMeans(attribute, data["sums"], data["counts"])
        except (OSError, KeyError, ValueError):
            pass  # unreadable: recompute
    means = class_means(store, sae, attribute, n_classes, cancel=cancel)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, key=key, sums=means.sums, counts=means.counts,
                 meta=json.dumps({"sae": sae_name, "attribute": attribute}))
        tmp.replace(cache)
    except OSError:
        pass  # a read-only workspace: compute again next time
    return means


def steering_direction(method: str, probes: Any, attribute: str, target: int, *,
                       means: ClassMeans | None = None) -> torch.Tensor:
    """The unit-scaled direction (length ``ALPHA_UNIT * sqrt(F)``) for ``method``."""
    from .control import ALPHA_UNIT, control_vector

    check_method(method)
    if method == "paper":
        return control_vector(probes, attribute, target)
    if means is None or means.attribute != attribute:
        raise AudioSAEError("mass-mean steering needs the class means of the SAE features "
                            "(steering.methods.workspace_class_means)")
    w = torch.from_numpy(means.direction(target))
    norm = float(w.norm())
    if norm == 0:
        raise AudioSAEError(f"{attribute} class {target}: its mean equals the other classes' mean; no direction")
    return w * (ALPHA_UNIT * w.numel() ** 0.5 / norm)


__all__ = ["ClassMeans", "DEFAULT_METHOD", "METHODS", "check_method", "class_means", "steering_direction",
           "workspace_class_means"]
