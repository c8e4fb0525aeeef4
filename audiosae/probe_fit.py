"""The fitting machinery of the probes (``audiosae.probes``): the training loop over several
softmax heads at once, validation, the inner source split, the strided selection view, input
statistics and the confusion-matrix metrics.  ``audiosae.probes`` re-exports every name."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as tnf

from .errors import AudioSAEError, WorkspaceError
from .frames import FrameStore
from .jobs import CancelToken, Progress, ProgressSink
from .sae import MAX_CHUNK_ELEMENTS, NORM_SAMPLE_FRAMES, SparseAutoencoder, _MomentAccumulator

STD_FLOOR = 0.1              # input std floored at this fraction of the RMS std over dimensions
PROGRESS_INTERVAL_S = 0.5

def confusion_metrics(confusion: torch.Tensor | np.ndarray | Sequence[Sequence[int]],
                      class_values: Sequence[float] | None = None,
                      train_counts: Sequence[int] | None = None) -> dict[str, Any]:
    """Metrics of a ``K x K`` confusion matrix (rows = true class, columns = predicted).

    Always ``accuracy``, ``balanced_accuracy``, ``macro_f1`` (mean F1 over the classes present),
    ``chance`` (the evaluated frames' own majority class's rate: an oracle's, the highest any
    constant answer reaches), ``n_frames``, ``support`` and ``confusion``.  With ``train_counts``
    (frames per class in training) also the honest baseline, the constant answer "the training
    split's majority class": ``majority_accuracy``, ``majority_balanced_accuracy`` and
    ``majority_macro_f1``.  With ``class_values`` (the value each class
    stands for, e.g. a bin centre; ordinal attributes) also ``within1``: the share of frames
    predicted at most one class away, and ``mae``: the mean ``|value(pred) - value(true)|``
    in the values' unit.  Classes whose value is NaN (say "unvoiced") are left out of both.
    """
    cm = torch.as_tensor(np.asarray(confusion, dtype=np.int64))
    k = cm.shape[0]
    support = cm.sum(1)
    n = int(support.sum())
    present = support > 0
    recall = cm.diag()[present].double() / support[present].double()
    out: dict[str, Any] = {
        "accuracy": float(cm.diag().sum()) / n if n else float("nan"),
        "balanced_accuracy": float(recall.mean()) if n else float("nan"),
        "confusion": cm.tolist(),
        "n_frames": n,
        "chance": float(support.max()) / n if n else float("nan"),
        "support": support.tolist(),
        "macro_f1": _macro_f1(cm),
    }
    if train_counts is not None and len(train_counts) == k and n:
        major = int(np.argmax(np.asarray(train_counts)))
        const = torch.zeros_like(cm)
        const[:, major] = support
        base = confusion_metrics(const)
        out.update(majority_accuracy=base["accuracy"], majority_balanced_accuracy=base["balanced_accuracy"],
                   majority_macro_f1=base["macro_f1"])
    if class_values is not None:
        v = np.asarray(class_values, dtype=np.float64)
        if v.shape != (k,):
            raise AudioSAEError(f"{len(v)} class values for {k} classes")
        ok = np.isfinite(v)
        c = cm.numpy().astype(np.float64)[np.ix_(ok, ok)]
        idx = np.arange(k)[ok]
        m = float(c.sum())
        near = np.abs(idx[:, None] - idx[None, :]) <= 1
        err = np.abs(v[ok][:, None] - v[ok][None, :])
        out["within1"] = float((c * near).sum() / m) if m else float("nan")
        out["mae"] = float((c * err).sum() / m) if m else float("nan")
    return out


def _macro_f1(cm: torch.Tensor) -> float:
    """Mean F1 over the classes with true frames (a class never predicted scores 0)."""
    c = cm.double()
    tp, support, predicted = c.diag(), c.sum(1), c.sum(0)
    present = support > 0
    if not bool(present.any()):
        return float("nan")
    denom = support + predicted
    f1 = torch.where(denom > 0, 2.0 * tp / denom.clamp(min=1.0), torch.zeros_like(tp))
    return float(f1[present].mean())


def _unit_hash(text: str) -> float:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


# ---- training -------------------------------------------------------------------------------
def _check_labels(y: torch.Tensor, k: int, attr: str) -> None:
    if y.numel() and int(y.max()) >= k:
        raise WorkspaceError(f"{attr} label {int(y.max())} is out of range for {k} classes")


def _feature_fn(sae: SparseAutoencoder | None, standardise: tuple[torch.Tensor, torch.Tensor] | None):
    base = (lambda x: sae.encode(x)[1]) if sae is not None else (lambda x: x)
    if standardise is None:
        return base
    mean, inv_std = standardise
    return lambda x: (base(x) - mean) * inv_std


def _chunked_logits(x: torch.Tensor, feats_fn, w: torch.Tensor, b: torch.Tensor,
                    cancel: CancelToken | None = None) -> torch.Tensor:
    rows = max(1, MAX_CHUNK_ELEMENTS // max(1, w.shape[1]))
    parts = []
    for s in range(0, x.shape[0], rows):
        if cancel is not None:
            cancel.raise_if_cancelled()
        parts.append(feats_fn(x[s:s + rows]) @ w.T + b)
    return torch.cat(parts) if parts else torch.zeros(0, w.shape[0], device=x.device)


def balanced_class_weights(counts: torch.Tensor) -> torch.Tensor:
    """``n / (K_present * n_k)`` for the classes present (0 for absent ones): every class present
    weighs the same in the loss, and the weights average to 1 over the training frames."""
    counts = counts.double()
    present = counts > 0
    w = torch.zeros_like(counts)
    if present.any():
        w[present] = counts.sum() / (int(present.sum()) * counts[present])
    return w.float()


def _l2_list(l2: float | Sequence[float]) -> list[float]:
    values = [float(l2)] if isinstance(l2, (int, float)) else [float(v) for v in l2]
    if not values or any(not (v >= 0 and math.isfinite(v)) for v in values):
        raise AudioSAEError(f"L2 strengths must be finite numbers >= 0, got {l2!r}")
    return values


@dataclass
class _Head:
    attr: str
    l2: float
    max_epochs: int


def _fit_heads(store: FrameStore, feats_fn, heads: list[_Head], n_classes: Mapping[str, int], d_features: int, *,
               class_weights: Mapping[str, torch.Tensor | None], use_val: bool, batch_size: int, lr: float,
               patience: int, seed: int, dev: torch.device, progress: ProgressSink, cancel: CancelToken | None,
               stage: str, lr_decay: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train every head (one softmax probe per (attribute, L2)) in the same passes over ``train``.

    With ``use_val`` each head stops early on the ``val`` cross-entropy and keeps its best
    epoch; without, each runs its ``max_epochs`` and keeps the last.  ``lr_decay``: the
    learning rate falls linearly to 0 over ``max_epochs`` (the last steps average out
    Adam's noise, so few epochs reach the optimum).  Returns per head
    ``{"w", "b", "epoch", "val_loss", "val_accuracy", "val_balanced_accuracy"}`` and the history.
    """
    attrs = sorted({h.attr for h in heads}, key=[h.attr for h in heads].index)
    columns = ("latents", *attrs)
    n_heads = len(heads)
    weights = [torch.zeros(int(n_classes[h.attr]), d_features, device=dev, requires_grad=True) for h in heads]
    biases = [torch.zeros(int(n_classes[h.attr]), device=dev, requires_grad=True) for h in heads]
    optims = [torch.optim.Adam([weights[i], biases[i]], lr=lr) for i in range(n_heads)]
    cw = {a: (None if class_weights.get(a) is None else class_weights[a].to(dev)) for a in attrs}
    best = [{"w": weights[i].detach().clone(), "b": biases[i].detach().clone(), "epoch": 0,
             "val_loss": math.inf, "val_accuracy": float("nan"), "val_balanced_accuracy": float("nan")}
            for i in range(n_heads)]
    bad = [0] * n_heads
    stopped: set[int] = set()
    history: list[dict[str, Any]] = []
    rows_per_chunk = max(1, MAX_CHUNK_ELEMENTS // d_features)
    n_train = max(1, int(store.n_frames("train")))
    max_epochs = max(h.max_epochs for h in heads)
    total_steps = max(1, max_epochs * -(-n_train // batch_size))
    step = 0
    last_report = 0.0
    for epoch in range(max_epochs):
        active = [i for i in range(n_heads) if i not in stopped]
        train_loss = {i: 0.0 for i in active}
        train_count = {i: 0 for i in active}
        done_frames = 0
        for batch in store.iter_batches("train", batch_size, shuffle=True, seed=seed + epoch, columns=columns):
            if cancel is not None:
                cancel.raise_if_cancelled()
            x = batch["latents"].to(dev, torch.float32)
            labels = {a: batch[a].to(dev) for a in attrs}
            valid = {}
            for a in attrs:
                _check_labels(labels[a], int(n_classes[a]), a)
                valid[a] = int((labels[a] >= 0).sum())
            for i in active:
                optims[i].zero_grad(set_to_none=False)
            for s in range(0, x.shape[0], rows_per_chunk):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                with torch.no_grad():
                    f = feats_fn(x[s:s + rows_per_chunk])
                logits = f @ torch.cat([weights[i] for i in active]).T + torch.cat([biases[i] for i in active])
                loss = 0.0
                lo = 0
                for i in active:
                    a = heads[i].attr
                    k = int(n_classes[a])
                    if valid[a]:
                        ce = tnf.cross_entropy(logits[:, lo:lo + k], labels[a][s:s + rows_per_chunk], weight=cw[a],
                                               ignore_index=-1, reduction="sum")
                        train_loss[i] += float(ce.detach())
                        loss = loss + ce / valid[a]
                    lo += k
                if torch.is_tensor(loss):
                    loss.backward()
            step += 1
            for i in active:
                a = heads[i].attr
                train_count[i] += valid[a]
                if lr_decay:
                    for group in optims[i].param_groups:
                        group["lr"] = lr * max(0.0, 1.0 - (step - 1) / total_steps)
                if valid[a]:
                    if heads[i].l2 > 0:   # coupled L2: the gradient of (l2 / 2) * ||W||^2, once per step
                        with torch.no_grad():
                            weights[i].grad.add_(weights[i].detach(), alpha=heads[i].l2)
                    optims[i].step()
            done_frames += x.shape[0]
            now = time.monotonic()
            if now - last_report >= PROGRESS_INTERVAL_S:
                last_report = now
                progress(Progress(stage, epoch + min(1.0, done_frames / n_train), max_epochs,
                                  f"epoch {epoch + 1}/{max_epochs}"))
        if use_val:
            val = _validation(store, feats_fn, [weights[i] for i in active], [biases[i] for i in active],
                              [heads[i].attr for i in active], n_classes, cw, batch_size, dev, cancel)
        else:
            val = [(train_loss[i] / max(1, train_count[i]), float("nan"), float("nan")) for i in active]
        record: dict[str, Any] = {"epoch": epoch + 1}
        for i, (current, acc, bacc) in zip(active, val):
            improved = current < best[i]["val_loss"] - 1e-6 * max(1.0, abs(best[i]["val_loss"])
                                                                    if math.isfinite(best[i]["val_loss"]) else 1.0)
            if improved or not use_val:
                best[i] = {"w": weights[i].detach().clone(), "b": biases[i].detach().clone(), "epoch": epoch + 1,
                           "val_loss": current, "val_accuracy": acc, "val_balanced_accuracy": bacc}
                bad[i] = 0
            else:
                bad[i] += 1
            if (use_val and bad[i] >= patience) or epoch + 1 >= heads[i].max_epochs:
                stopped.add(i)
            single = sum(h.attr == heads[i].attr for h in heads) == 1
            record[heads[i].attr if single else f"{heads[i].attr}@{heads[i].l2:g}"] = {
                "train_loss": train_loss[i] / max(1, train_count[i]), "val_loss": current if use_val else None,
                "val_accuracy": acc if use_val else None, "stopped": i in stopped}
        history.append(record)
        progress(Progress(stage, epoch + 1, max_epochs, f"epoch {epoch + 1}/{max_epochs}",
                          metrics={k: v for k, v in record.items() if k != "epoch"}))
        if len(stopped) == n_heads:
            break
    return best, history


def _validation(store: FrameStore, feats_fn, weights: list[torch.Tensor], biases: list[torch.Tensor],
                head_attrs: list[str], n_classes: Mapping[str, int], class_weights: Mapping[str, torch.Tensor | None],
                batch_size: int, dev: torch.device, cancel: CancelToken | None = None
                ) -> list[tuple[float, float, float]]:
    """Per head: (validation cross-entropy (class-weighted like training), accuracy, balanced accuracy)."""
    attrs = list(dict.fromkeys(head_attrs))
    n = len(head_attrs)
    loss, wsum = [0.0] * n, [0.0] * n
    cms = [torch.zeros(int(n_classes[a]) ** 2, dtype=torch.int64) for a in head_attrs]
    with torch.no_grad():
        w_cat = torch.cat(weights)
        b_cat = torch.cat(biases)
        for batch in store.iter_batches("val", batch_size, shuffle=False, columns=("latents", *attrs)):
            logits = _chunked_logits(batch["latents"].to(dev, torch.float32), feats_fn, w_cat, b_cat, cancel)
            lo = 0
            for i, a in enumerate(head_attrs):
                k = int(n_classes[a])
                y = batch[a].to(dev)
                _check_labels(y, k, a)
                part = logits[:, lo:lo + k]
                keep = y >= 0
                if keep.any():
                    cw = class_weights.get(a)
                    loss[i] += float(tnf.cross_entropy(part[keep], y[keep], weight=cw, reduction="sum"))
                    wsum[i] += float(cw[y[keep]].sum()) if cw is not None else int(keep.sum())
                    cms[i] += torch.bincount((y[keep] * k + part[keep].argmax(-1)).cpu(), minlength=k * k)
                lo += k
    out = []
    for i, a in enumerate(head_attrs):
        m = confusion_metrics(cms[i].view(int(n_classes[a]), -1))
        out.append((loss[i] / wsum[i] if wsum[i] > 0 else math.inf, m["accuracy"], m["balanced_accuracy"]))
    return out


def _inner_split(store: FrameStore, fraction: float, seed: int) -> tuple[FrameStore, dict[str, Any]] | None:
    """The store's training sources split again, by whole source, into inner train / val
    (``fraction`` of them, at least one, for validation); None without a source table or
    with fewer than two training sources."""
    table = store.source_table() if hasattr(store, "source_table") else {}
    train = {sid: key for sid, (key, split, n) in table.items() if split == "train" and n > 0}
    if len(train) < 2:
        return None
    order = sorted(train, key=lambda sid: (_unit_hash(f"{seed}:inner:{train[sid]}"), train[sid], str(sid)))
    n_val = min(len(order) - 1, max(1, int(round(fraction * len(order)))))
    split_of = {sid: ("val" if i < n_val else "train") for i, sid in enumerate(order)}
    return store.with_splits(split_of), {"train_sources": len(order) - n_val, "val_sources": n_val}


class _Strided:
    """Every ``stride``-th frame of a store's batches (for choosing the L2 strength).

    Neighbouring frames are 10-40 ms apart and nearly equal, so a strided quarter of them
    ranks the strengths like all of them at a quarter of the cost (measured in
    ``benchmarks/bench_probe_speed.py``)."""

    def __init__(self, store: FrameStore, stride: int):
        self._store, self._stride = store, int(stride)
        self.d_in = store.d_in

    def n_frames(self, split: str) -> int:
        return -(-int(self._store.n_frames(split)) // self._stride)

    def iter_batches(self, split: str, batch_size: int, *, shuffle: bool, seed: int = 0,
                     columns: tuple[str, ...] = ("latents",)):
        for batch in self._store.iter_batches(split, batch_size * self._stride, shuffle=shuffle, seed=seed,
                                              columns=columns):
            yield {k: v[::self._stride] for k, v in batch.items()}


def _has_sources(store: FrameStore) -> bool:
    return bool(store.source_table()) if hasattr(store, "source_table") else False


def _input_stats(store: FrameStore, feats_fn, attrs: list[str], n_classes: Mapping[str, int], d_features: int,
                 batch_size: int, seed: int, dev: torch.device, cancel: CancelToken | None
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """One pass over ``train``: class counts (all frames) and the inputs' per-dimension mean and
    standard deviation (from the first ``NORM_SAMPLE_FRAMES`` frames of a shuffled pass)."""
    counts = {a: torch.zeros(int(n_classes[a]), dtype=torch.long) for a in attrs}
    acc = _MomentAccumulator(d_features)
    rows = max(1, MAX_CHUNK_ELEMENTS // d_features)
    for batch in store.iter_batches("train", batch_size, shuffle=True, seed=seed, columns=("latents", *attrs)):
        if cancel is not None:
            cancel.raise_if_cancelled()
        for a in attrs:
            y = batch[a]
            _check_labels(y, int(n_classes[a]), a)
            counts[a] += torch.bincount(y[y >= 0], minlength=int(n_classes[a]))
        need = NORM_SAMPLE_FRAMES - acc.n
        if need > 0:
            x = batch["latents"][:need]
            with torch.no_grad():
                for s in range(0, x.shape[0], rows):
                    acc.add(feats_fn(x[s:s + rows].to(dev, torch.float32)))
    if acc.n == 0:
        raise WorkspaceError("the training split has no frames to train probes on")
    std = (acc.m2 / acc.n).sqrt()
    # Floor: a feature that almost never fires has a tiny std; dividing by it would give its
    # (folded) weight a huge size and make it dominate control vectors.
    rms = float(std.pow(2).mean().sqrt())
    floor = max(STD_FLOOR * rms, 1e-12)
    return counts, acc.mean.float(), torch.clamp(std, min=floor).float()
