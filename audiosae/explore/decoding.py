"""Probe decoding, written once: logits, class distributions and argmax classes of SAE
features, and what one feature contributes to each class at one frame.

Every caller goes through here: clip analysis (``ClipAnalysis.probabilities``), the timeline's
steered lanes (argmax per frame, in a job), and the feature inspector (softmax and
contributions at the clicked frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..jobs import CancelToken

DECODE_CHUNK_FRAMES = 8192   # frames per probe pass of ``decode_classes`` (a cancel is checked between)
TOP_CLASSES = 5              # classes listed by ``feature_contributions`` by default


def _probe_device(probes: Any) -> torch.device:
    return next(iter(probes.weights.values())).device


def _as_tensor(f: Any, device: torch.device) -> torch.Tensor:
    if isinstance(f, torch.Tensor):
        return f.to(device)
    return torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)).to(device)


def probe_logits(probes: Any, f: Any, attribute: str) -> np.ndarray:
    """``f @ W.T + b`` of ``attribute``'s probe: ``[..., F]`` features -> ``[..., K]`` (numpy)."""
    with torch.no_grad():
        return probes.logits(_as_tensor(f, probes.weights[attribute].device), attribute).cpu().numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class distribution(s) of ``logits`` ``[..., K]`` (stable: the max is subtracted)."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def probe_distributions(probes: Any, f: torch.Tensor | np.ndarray,
                        attributes: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Class distributions ``[T, K]`` per attribute for features ``f`` ``[T, F]``."""
    names = list(probes.attributes) if attributes is None else list(attributes)
    with torch.no_grad():
        x = f if isinstance(f, torch.Tensor) else _as_tensor(f, _probe_device(probes))
        return {a: probes.predict_proba(x, a).cpu().numpy() for a in names}


def decode_cost(f: np.ndarray, n_classes: Sequence[int]) -> int:
    """Multiply-adds of ``decode_classes`` (frames x features x classes): small ones run inline."""
    return int(f.shape[0]) * int(f.shape[1]) * int(sum(n_classes))


def decode_classes(probes: Any, f: np.ndarray, attributes: Sequence[str],
                   cancel: CancelToken | None = None, chunk_frames: int = DECODE_CHUNK_FRAMES
                   ) -> dict[str, np.ndarray]:
    """Argmax class per frame for each attribute, for features ``f`` ``[T, F]`` (chunked)."""
    device = _probe_device(probes)
    out = {a: np.zeros(f.shape[0], dtype=np.int64) for a in attributes}
    with torch.no_grad():
        for start in range(0, f.shape[0], chunk_frames):
            if cancel is not None:
                cancel.raise_if_cancelled()
            chunk = _as_tensor(f[start: start + chunk_frames], device)
            for a in attributes:
                out[a][start: start + chunk.shape[0]] = probes.logits(chunk, a).argmax(dim=-1).cpu().numpy()
    return out


@dataclass(frozen=True)
class Contribution:
    """What feature ``j`` adds to class ``k``'s logit at one frame: ``c = W[k, j] * f_j``."""

    klass: int
    name: str
    p: float              # the class's probability at the frame (softmax of all logits)
    weight: float         # W[k, j]
    contribution: float   # W[k, j] * f_j
    logit: float
    predicted: bool       # the most likely class at the frame

    def as_row(self) -> dict[str, Any]:
        return {"class": self.klass, "name": self.name, "p": self.p, "weight": self.weight,
                "contribution": self.contribution, "logit": self.logit, "predicted": self.predicted}


def feature_contributions(probes: Any, features: np.ndarray, attribute: str, feature: int,
                          top: int = TOP_CLASSES) -> list[Contribution]:
    """The ``top`` most likely classes of ``attribute`` at one frame (``features`` ``[F]``),
    the predicted one first, each with feature ``feature``'s contribution to its logit."""
    logits = probe_logits(probes, features, attribute)
    probs = softmax(logits)
    order = [int(k) for k in np.argsort(-probs)[:top]]
    names = probes.class_names[attribute]
    w = probes.weights[attribute]
    row = _as_tensor(features, w.device)
    out = []
    with torch.no_grad():
        for k in order:
            c = float(probes.contributions(row, attribute, k)[feature])
            out.append(Contribution(klass=k, name=names[k], p=float(probs[k]), weight=float(w[k, feature]),
                                    contribution=c, logit=float(logits[k]), predicted=k == order[0]))
    return out


def probe_weight_column(probes: Any, attribute: str, feature: int) -> tuple[list[str], np.ndarray]:
    """(class names, ``W[:, j]`` as float64) of ``attribute``'s probe for feature ``j``."""
    w = probes.weights[attribute][:, feature].detach().cpu().numpy().astype(np.float64)
    return list(probes.class_names[attribute]), w


def probe_weight_row(probes: Any, attribute: str, klass: int) -> np.ndarray:
    """``W[k, :]`` as float64: class ``k``'s weight on every feature (the heatmap's "probe" order)."""
    return probes.weights[attribute][int(klass)].detach().cpu().numpy().astype(np.float64)
