"""Linear softmax probes from SAE features (or raw latents) to discretised acoustic attributes.

One probe per attribute, as in the paper: ``p(a) = softmax(W(a) f + b(a))`` with ``f`` the
RMS-normalised SAE features, trained with cross-entropy.  The contribution of feature ``j``
to class ``k`` on a frame is ``c_{j->k} = W_kj f_j``; summed over ``j`` plus ``b_k`` it is the
logit, which is what the studio's attribution views show.

Training choices:

* Features are computed on the fly per batch from the latents (``sae.encode``), so no
  feature matrix is ever stored.  All attributes' probes train in the same pass.
* The raw-latent baseline (``sae=None``) standardises each latent dimension with the
  training split's mean and standard deviation (from up to ``NORM_SAMPLE_FRAMES`` frames);
  the map is folded into the saved weights, so both kinds of probe take what they name
  (features or raw latents) with no extra step.  SAE features are used as they are: they
  already have unit RMS per frame, and ``W_kj`` then reads directly as the paper's ``c``.
* AdamW with decoupled weight decay ``WEIGHT_DECAY`` on ``W`` (not on ``b``): the features
  of wide SAEs outnumber the classes' frames for rare classes, and a little decay keeps
  weights of features that never co-occur with a class at zero instead of drifting.
* Early stopping per attribute on the validation cross-entropy, with ``patience`` epochs
  without improvement; each attribute keeps the weights of its best epoch and stops
  updating.  Without validation frames the training loss is used instead.
* Labels are the int64 columns named like the attributes; negative labels mean
  "unlabelled" and are ignored.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as tnf

from .devices import pick_device
from .errors import AudioSAEError, WorkspaceError
from .frames import FrameStore
from .jobs import CancelToken, Progress, ProgressSink, null_progress
from .sae import MAX_CHUNK_ELEMENTS, NORM_SAMPLE_FRAMES, SparseAutoencoder, _json_safe, _MomentAccumulator
from .storage import (SCHEMA_VERSION, atomic_write_json, check_schema, load_tensors, load_tensors_metadata,
                      read_json_object, require_int, save_tensors)

__all__ = ["ProbeSet", "train_probes", "WEIGHT_DECAY"]

WEIGHT_DECAY = 1e-2          # AdamW decoupled decay on W: shrink by lr * 1e-2 per step
PROBE_KIND = "audiosae.probes"
WEIGHTS_FILE = "probes.safetensors"
META_FILE = "probes.json"
PROGRESS_INTERVAL_S = 0.5


def _sae_info(sae: SparseAutoencoder) -> dict[str, Any]:
    return {"name": sae.cfg.name, "fingerprint": sae.fingerprint(), "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae,
            "l1_coefficient": sae.cfg.l1_coefficient}


def _centred(t: torch.Tensor) -> torch.Tensor:
    """``t`` minus its mean over classes (dim 0); unchanged when already centred, so that
    loading a saved probe set gives bit-identical weights."""
    if t.numel() == 0:
        return t
    mean = t.mean(dim=0, keepdim=True)
    return t if float(mean.abs().max()) <= 1e-6 * float(t.abs().max()) else t - mean


@dataclass
class ProbeSet:
    """Per-attribute softmax probes: ``weights[attr]`` ``[K, F]``, ``bias[attr]`` ``[K]``.

    ``feature_kind`` is ``"sae"`` (inputs are the features ``f`` of the SAE in ``sae``) or
    ``"latent"`` (inputs are raw latents; the standardisation is folded in).
    """

    weights: dict[str, torch.Tensor]
    bias: dict[str, torch.Tensor]
    class_names: dict[str, list[str]]
    feature_kind: str
    sae: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Softmax is unchanged when the same vector is added to every row of W (or the same
        # number to every bias), so W_k alone is only defined up to that shift; Adam, unlike
        # plain SGD, does not keep the rows' mean at zero.  Centre the rows: predictions stay
        # identical, and W_k becomes a meaningful direction for steering and for the
        # contributions c_{j->k} = W_kj f_j (which otherwise carry the arbitrary shift).
        self.weights = {a: _centred(w) for a, w in self.weights.items()}
        self.bias = {a: _centred(b) for a, b in self.bias.items()}
        if self.feature_kind not in ("sae", "latent"):
            raise AudioSAEError(f"feature_kind must be 'sae' or 'latent', got {self.feature_kind!r}")
        if set(self.weights) != set(self.bias):
            raise AudioSAEError("probe weights and biases name different attributes")
        for a, w in self.weights.items():
            if w.ndim != 2 or self.bias[a].shape != (w.shape[0],):
                raise AudioSAEError(f"probe {a!r}: weight {list(w.shape)} and bias {list(self.bias[a].shape)} "
                                    "do not fit")
            if w.shape[1] != self.d_features:
                raise AudioSAEError(f"probe {a!r} has {w.shape[1]} inputs, the others {self.d_features}")
            names = self.class_names.get(a)
            if names is None or len(names) != w.shape[0]:
                self.class_names[a] = [str(k) for k in range(w.shape[0])]

    # -- facts ---------------------------------------------------------------------------------
    @property
    def attributes(self) -> list[str]:
        return list(self.weights)

    @property
    def d_features(self) -> int:
        return int(next(iter(self.weights.values())).shape[1])

    def n_classes(self, attr: str) -> int:
        return int(self._w(attr).shape[0])

    def trained_classes(self, attr: str) -> list[int]:
        """Classes that occurred in the training frames (all of them if unrecorded)."""
        counts = (self.metrics.get("class_counts") or {}).get(attr)
        if not counts or len(counts) != self.n_classes(attr):
            return list(range(self.n_classes(attr)))
        return [k for k, c in enumerate(counts) if c > 0]

    def _w(self, attr: str) -> torch.Tensor:
        try:
            return self.weights[attr]
        except KeyError:
            raise AudioSAEError(f"no probe for attribute {attr!r}; have {', '.join(self.weights)}") from None

    # -- inference ---------------------------------------------------------------------------
    def check_sae(self, sae: SparseAutoencoder | None) -> None:
        """Refuse an SAE that is not the one these probes were trained on (or one for latent probes)."""
        if self.feature_kind == "latent":
            if sae is not None:
                raise AudioSAEError("these probes read raw latents; do not pass an SAE")
            return
        name = (self.sae or {}).get("name", "?")
        if sae is None:
            raise AudioSAEError(f"these probes read the features of SAE {name!r}; pass that SAE")
        if self.sae and self.sae.get("fingerprint") not in (None, sae.fingerprint()):
            raise AudioSAEError(f"these probes were trained on SAE {name!r}, not on {sae.cfg.name!r} "
                                "(weights differ)")

    def features(self, latents: torch.Tensor, sae: SparseAutoencoder | None = None) -> torch.Tensor:
        """The probes' inputs for raw latents ``[..., d_in]``: ``f`` of the SAE, or the latents themselves."""
        self.check_sae(sae)
        if sae is None:
            return latents.float()
        with torch.no_grad():
            return sae.encode(latents.to(sae.device, torch.float32))[1]

    def logits(self, features: torch.Tensor, attr: str) -> torch.Tensor:
        """``features @ W.T + b``: ``[..., F]`` -> ``[..., K]``."""
        w = self._w(attr).to(features.device)
        return features @ w.T + self.bias[attr].to(features.device)

    def predict_proba(self, features: torch.Tensor, attr: str) -> torch.Tensor:
        return torch.softmax(self.logits(features, attr), dim=-1)

    def predict(self, features: torch.Tensor, attr: str) -> torch.Tensor:
        return self.logits(features, attr).argmax(dim=-1)

    def contributions(self, features: torch.Tensor, attr: str, k: int) -> torch.Tensor:
        """``c_{j->k} = W[k, j] * f_j`` for frame(s) ``[F]`` or ``[T, F]``; sums (+ ``b_k``) to the logit."""
        w = self._w(attr)
        if not 0 <= k < w.shape[0]:
            raise AudioSAEError(f"class {k} is out of range for {attr} (0..{w.shape[0] - 1})")
        return w[k].to(features.device) * features

    def to(self, device: str | torch.device) -> "ProbeSet":
        self.weights = {a: w.to(device) for a, w in self.weights.items()}
        self.bias = {a: b.to(device) for a, b in self.bias.items()}
        return self

    # -- files -------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``probes.safetensors`` then ``probes.json`` (each atomically) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for a in self.attributes:
            tensors[f"weight.{a}"] = self.weights[a].detach().float()
            tensors[f"bias.{a}"] = self.bias[a].detach().float()
        header = {"kind": PROBE_KIND, "feature_kind": self.feature_kind, "d_features": self.d_features,
                  "n_classes": {a: self.n_classes(a) for a in self.attributes},
                  "sae_fingerprint": (self.sae or {}).get("fingerprint")}
        save_tensors(folder / WEIGHTS_FILE, tensors, metadata=header)
        meta = {"schema_version": SCHEMA_VERSION, "kind": PROBE_KIND, "feature_kind": self.feature_kind,
                "d_features": self.d_features,
                "attributes": [{"name": a, "n_classes": self.n_classes(a), "class_names": self.class_names[a]}
                               for a in self.attributes],
                "sae": self.sae, "metrics": _json_safe(self.metrics)}
        atomic_write_json(folder / META_FILE, meta)
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> "ProbeSet":
        """Load a folder written by ``save``; missing, truncated, edited or newer files -> WorkspaceError."""
        folder = Path(folder)
        meta_path, weights_path = folder / META_FILE, folder / WEIGHTS_FILE
        meta = read_json_object(meta_path, kind="probe set", document_kind=PROBE_KIND)
        kind = "probe set"
        try:
            d_features = require_int(meta["d_features"], "d_features", meta_path, kind, minimum=1)
            if not isinstance(meta["attributes"], list) or not meta["attributes"]:
                raise WorkspaceError(f"{meta_path}: probe set field 'attributes' must be a non-empty list")
            attrs = []
            for e in meta["attributes"]:
                name = str(e["name"])
                k = require_int(e["n_classes"], f"attributes.{name}.n_classes", meta_path, kind, minimum=1)
                names = e["class_names"]
                if not isinstance(names, list) or len(names) != k:
                    raise WorkspaceError(f"{meta_path}: probe set {name} has {k} classes but "
                                         f"{len(names) if isinstance(names, list) else 'no list of'} class names; "
                                         f"was it edited?")
                attrs.append((name, k, [str(n) for n in names]))
            feature_kind = str(meta["feature_kind"])
        except KeyError as exc:
            raise WorkspaceError(f"{meta_path}: probe set lacks {exc}; was it edited by hand?") from None
        except (TypeError, ValueError) as exc:
            raise WorkspaceError(f"{meta_path}: probe set is incomplete or edited ({exc})") from None
        header = load_tensors_metadata(weights_path, kind="probe weights")
        check_schema(header, weights_path, kind="probe weights")
        expect = {}
        for name, k, _ in attrs:
            expect[f"weight.{name}"] = (k, d_features)
            expect[f"bias.{name}"] = (k,)
        tensors = load_tensors(weights_path, kind="probe weights", expect=expect)
        sae = meta.get("sae") if isinstance(meta.get("sae"), dict) else None
        if (header.get("d_features") != d_features or header.get("feature_kind") != feature_kind
                or header.get("n_classes") != {n: k for n, k, _ in attrs}
                or header.get("sae_fingerprint") != (sae or {}).get("fingerprint")):
            raise WorkspaceError(f"{meta_path}: does not match {weights_path.name}; was it edited?")
        for name, t in tensors.items():
            if t.dtype != torch.float32:
                raise WorkspaceError(f"{weights_path}: tensor {name!r} is {t.dtype}, expected float32")
            if not torch.isfinite(t).all():
                raise WorkspaceError(f"{weights_path}: tensor {name!r} contains NaN or inf")
        try:
            return cls(weights={n: tensors[f"weight.{n}"].float().to(device) for n, _, _ in attrs},
                       bias={n: tensors[f"bias.{n}"].float().to(device) for n, _, _ in attrs},
                       class_names={n: names for n, _, names in attrs}, feature_kind=feature_kind, sae=sae,
                       metrics=meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {})
        except AudioSAEError as exc:
            raise WorkspaceError(f"{meta_path}: {exc}") from None

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, store: FrameStore, split: str = "val", sae: SparseAutoencoder | None = None,
                 batch_size: int = 4096, cancel: CancelToken | None = None) -> dict[str, dict[str, Any]]:
        """Per attribute: ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present),
        ``confusion`` (``K x K`` list, rows = true class, columns = predicted), ``n_frames``
        (labelled frames) and ``chance`` (the majority class's rate)."""
        self.check_sae(sae)
        if int(store.n_frames(split)) == 0:  # type: ignore[arg-type]
            raise WorkspaceError(f"the {split!r} split has no frames to evaluate probes on")
        attrs = self.attributes
        device = sae.device if sae is not None else torch.device("cpu")
        w_all, b_all, offsets = self._stacked(device)
        confusion = {a: torch.zeros(self.n_classes(a) ** 2, dtype=torch.int64) for a in attrs}
        with torch.no_grad():
            for batch in store.iter_batches(split, batch_size, shuffle=False,  # type: ignore[arg-type]
                                            columns=("latents", *attrs)):
                feats_fn = _feature_fn(sae, None)
                logits = _chunked_logits(batch["latents"].to(device, torch.float32), feats_fn, w_all, b_all, cancel)
                for a, (lo, hi) in zip(attrs, offsets):
                    y = batch[a].to(device)
                    _check_labels(y, self.n_classes(a), a)
                    keep = y >= 0
                    pred = logits[:, lo:hi].argmax(-1)
                    k = self.n_classes(a)
                    confusion[a] += torch.bincount((y[keep] * k + pred[keep]).cpu(), minlength=k * k)
        out = {}
        for a in attrs:
            k = self.n_classes(a)
            cm = confusion[a].view(k, k)
            support = cm.sum(1)
            n = int(support.sum())
            present = support > 0
            recall = cm.diag()[present].double() / support[present].double()
            out[a] = {
                "accuracy": float(cm.diag().sum()) / n if n else float("nan"),
                "balanced_accuracy": float(recall.mean()) if n else float("nan"),
                "confusion": cm.tolist(),
                "n_frames": n,
                "chance": float(support.max()) / n if n else float("nan"),
            }
        return out

    def _stacked(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        w = torch.cat([self.weights[a] for a in self.attributes]).to(device)
        b = torch.cat([self.bias[a] for a in self.attributes]).to(device)
        offsets, lo = [], 0
        for a in self.attributes:
            offsets.append((lo, lo + self.n_classes(a)))
            lo += self.n_classes(a)
        return w, b, offsets


# ---- training -------------------------------------------------------------------------------
def _check_labels(y: torch.Tensor, k: int, attr: str) -> None:
    if y.numel() and int(y.max()) >= k:
        raise WorkspaceError(f"{attr} label {int(y.max())} is out of range for {k} classes")


def _feature_fn(sae: SparseAutoencoder | None, standardise: tuple[torch.Tensor, torch.Tensor] | None):
    if sae is not None:
        return lambda x: sae.encode(x)[1]
    if standardise is not None:
        mean, inv_std = standardise
        return lambda x: (x - mean) * inv_std
    return lambda x: x


def _chunked_logits(x: torch.Tensor, feats_fn, w: torch.Tensor, b: torch.Tensor,
                    cancel: CancelToken | None = None) -> torch.Tensor:
    rows = max(1, MAX_CHUNK_ELEMENTS // max(1, w.shape[1]))
    parts = []
    for s in range(0, x.shape[0], rows):
        if cancel is not None:
            cancel.raise_if_cancelled()
        parts.append(feats_fn(x[s:s + rows]) @ w.T + b)
    return torch.cat(parts) if parts else torch.zeros(0, w.shape[0], device=x.device)


def train_probes(store: FrameStore, *, sae: SparseAutoencoder | None, n_classes: Mapping[str, int],
                 class_names: Mapping[str, list[str]] | None = None, max_epochs: int = 30, batch_size: int = 4096,
                 lr: float = 1e-3, patience: int = 3, seed: int = 0, device: str | torch.device = "cpu",
                 progress: ProgressSink = null_progress, cancel: CancelToken | None = None) -> ProbeSet:
    """Train one softmax probe per attribute on SAE features (or on raw latents when ``sae`` is None).

    Labels are the int64 columns named like the attributes in the store's batches.  Every
    epoch makes one pass over ``train`` (order ``seed + epoch``) for all attributes at once
    and one pass over ``val`` for early stopping; see the module docstring for the choices.
    """
    attrs = list(n_classes)
    if not attrs:
        raise AudioSAEError("no attributes to probe")
    for a, k in n_classes.items():
        if int(k) < 2:
            raise AudioSAEError(f"attribute {a!r} needs at least 2 classes, got {k}")
    if max_epochs < 1 or batch_size < 1 or patience < 1:
        raise AudioSAEError("max_epochs, batch_size and patience must be >= 1")
    if int(store.n_frames("train")) == 0:
        raise WorkspaceError("the training split has no frames to train probes on")
    dev = device if isinstance(device, torch.device) else pick_device(str(device))
    if sae is not None:
        if sae.cfg.d_in != store.d_in:
            raise AudioSAEError(f"SAE {sae.cfg.name!r} reads {sae.cfg.d_in}-d latents, the frames are {store.d_in}-d")
        model = sae if sae.device == dev else copy.deepcopy(sae).to(dev)
        model.eval()
        d_features = sae.cfg.d_sae
        standardise = None
    else:
        model = None
        d_features = int(store.d_in)
        acc = _MomentAccumulator(d_features)
        for batch in store.iter_batches("train", batch_size, shuffle=True, seed=seed):
            if cancel is not None:
                cancel.raise_if_cancelled()
            acc.add(batch["latents"][: NORM_SAMPLE_FRAMES - acc.n])
            if acc.n >= NORM_SAMPLE_FRAMES:
                break
        std = (acc.m2 / acc.n).sqrt()
        std = torch.where(std > 1e-12 * max(float(std.max()), 1e-30), std, torch.ones_like(std))
        standardise = (acc.mean.to(dev, torch.float32), (1.0 / std).to(dev, torch.float32))
    feats_fn = _feature_fn(model, standardise)
    has_val = int(store.n_frames("val")) > 0
    columns = ("latents", *attrs)

    weights = {a: torch.zeros(int(n_classes[a]), d_features, device=dev, requires_grad=True) for a in attrs}
    biases = {a: torch.zeros(int(n_classes[a]), device=dev, requires_grad=True) for a in attrs}
    optims = {a: torch.optim.AdamW([{"params": [weights[a]], "weight_decay": WEIGHT_DECAY},
                                    {"params": [biases[a]], "weight_decay": 0.0}], lr=lr) for a in attrs}
    best = {a: (math.inf, -1, weights[a].detach().clone(), biases[a].detach().clone()) for a in attrs}
    bad_epochs = {a: 0 for a in attrs}
    stopped: set[str] = set()
    history: list[dict[str, Any]] = []
    rows_per_chunk = max(1, MAX_CHUNK_ELEMENTS // d_features)
    n_train = int(store.n_frames("train"))
    last_report = 0.0

    # Training frames per class: a class that never occurs has no learned direction.
    class_counts = {a: torch.zeros(int(n_classes[a]), dtype=torch.long) for a in attrs}
    for epoch in range(max_epochs):
        active = [a for a in attrs if a not in stopped]
        train_loss = {a: 0.0 for a in active}
        train_count = {a: 0 for a in active}
        done_frames = 0
        for batch in store.iter_batches("train", batch_size, shuffle=True, seed=seed + epoch, columns=columns):
            if cancel is not None:
                cancel.raise_if_cancelled()
            x = batch["latents"].to(dev, torch.float32)
            labels = {a: batch[a].to(dev) for a in active}
            valid = {}
            for a in active:
                _check_labels(labels[a], int(n_classes[a]), a)
                valid[a] = int((labels[a] >= 0).sum())
            for opt in (optims[a] for a in active):
                opt.zero_grad(set_to_none=False)
            for s in range(0, x.shape[0], rows_per_chunk):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                with torch.no_grad():
                    f = feats_fn(x[s:s + rows_per_chunk])
                w_cat = torch.cat([weights[a] for a in active])
                b_cat = torch.cat([biases[a] for a in active])
                logits = f @ w_cat.T + b_cat
                loss = 0.0
                lo = 0
                for a in active:
                    k = int(n_classes[a])
                    if valid[a]:
                        ce = tnf.cross_entropy(logits[:, lo:lo + k], labels[a][s:s + rows_per_chunk],
                                               ignore_index=-1, reduction="sum")
                        train_loss[a] += float(ce.detach())
                        loss = loss + ce / valid[a]
                    lo += k
                if torch.is_tensor(loss):
                    loss.backward()
            for a in active:
                train_count[a] += valid[a]
                if epoch == 0:
                    ok = labels[a] >= 0
                    class_counts[a] += torch.bincount(labels[a][ok].cpu(), minlength=int(n_classes[a]))
                if valid[a]:
                    optims[a].step()
            done_frames += x.shape[0]
            now = time.monotonic()
            if now - last_report >= PROGRESS_INTERVAL_S:
                last_report = now
                progress(Progress("train probes", epoch + min(1.0, done_frames / n_train), max_epochs,
                                  f"epoch {epoch + 1}/{max_epochs}"))
        # validation (or training loss when there is no validation split)
        if has_val:
            val_loss, val_acc = _validation(store, feats_fn, weights, biases, active, n_classes, batch_size, dev,
                                            cancel)
        else:
            val_loss = {a: train_loss[a] / max(1, train_count[a]) for a in active}
            val_acc = {a: float("nan") for a in active}
        record: dict[str, Any] = {"epoch": epoch + 1}
        for a in active:
            current = val_loss[a]
            if current < best[a][0] - 1e-6 * max(1.0, abs(best[a][0]) if math.isfinite(best[a][0]) else 1.0):
                best[a] = (current, epoch + 1, weights[a].detach().clone(), biases[a].detach().clone())
                bad_epochs[a] = 0
            else:
                bad_epochs[a] += 1
                if bad_epochs[a] >= patience:
                    stopped.add(a)
            record[a] = {"train_loss": train_loss[a] / max(1, train_count[a]), "val_loss": current,
                         "val_accuracy": val_acc[a], "stopped": a in stopped}
        history.append(record)
        progress(Progress("train probes", epoch + 1, max_epochs, f"epoch {epoch + 1}/{max_epochs}",
                          metrics={a: record[a] for a in active}))
        if len(stopped) == len(attrs):
            break

    out_w, out_b = {}, {}
    for a in attrs:
        w, b = best[a][2].double(), best[a][3].double()
        if standardise is not None:        # fold (x - mean) * inv_std into the weights
            mean, inv_std = (t.double() for t in standardise)
            w = w * inv_std
            b = b - w @ mean
        out_w[a], out_b[a] = w.float().cpu(), b.float().cpu()
    names = {a: list((class_names or {}).get(a) or [str(k) for k in range(int(n_classes[a]))]) for a in attrs}
    for a in attrs:
        if len(names[a]) != int(n_classes[a]):
            raise AudioSAEError(f"{a}: {len(names[a])} class names for {n_classes[a]} classes")
    metrics = {"epochs": len(history), "best_epoch": {a: best[a][1] for a in attrs},
               "best_val_loss": {a: best[a][0] for a in attrs},
               "early_stopping": "val_loss" if has_val else "train_loss",
               "max_epochs": max_epochs, "batch_size": batch_size, "lr": lr, "patience": patience,
               "weight_decay": WEIGHT_DECAY, "seed": seed, "history": history,
               "class_counts": {a: class_counts[a].tolist() for a in attrs}}
    return ProbeSet(weights=out_w, bias=out_b, class_names=names, feature_kind="sae" if sae is not None else "latent",
                    sae=_sae_info(sae) if sae is not None else None, metrics=metrics)


def _validation(store: FrameStore, feats_fn, weights: dict[str, torch.Tensor], biases: dict[str, torch.Tensor],
                attrs: list[str], n_classes: Mapping[str, int], batch_size: int, dev: torch.device,
                cancel: CancelToken | None = None) -> tuple[dict[str, float], dict[str, float]]:
    loss = {a: 0.0 for a in attrs}
    correct = {a: 0 for a in attrs}
    count = {a: 0 for a in attrs}
    with torch.no_grad():
        w_cat = torch.cat([weights[a] for a in attrs])
        b_cat = torch.cat([biases[a] for a in attrs])
        for batch in store.iter_batches("val", batch_size, shuffle=False, columns=("latents", *attrs)):
            logits = _chunked_logits(batch["latents"].to(dev, torch.float32), feats_fn, w_cat, b_cat, cancel)
            lo = 0
            for a in attrs:
                k = int(n_classes[a])
                y = batch[a].to(dev)
                _check_labels(y, k, a)
                part = logits[:, lo:lo + k]
                keep = y >= 0
                if keep.any():
                    loss[a] += float(tnf.cross_entropy(part[keep], y[keep], reduction="sum"))
                    correct[a] += int((part[keep].argmax(-1) == y[keep]).sum())
                    count[a] += int(keep.sum())
                lo += k
    return ({a: loss[a] / count[a] if count[a] else math.inf for a in attrs},
            {a: correct[a] / count[a] if count[a] else float("nan") for a in attrs})


def preload_optimizer_modules() -> None:
    """Import what torch's first optimizer imports, now rather than when training starts.

    Building the first ``torch.optim`` optimizer in a process imports ``torch._dynamo`` (with
    sympy, inductor, ...: ~900 modules, ~0.9 s on a CPU core) holding the GIL the whole time.
    In the studio that landed mid-playback, when a training job reached its probes: the audio
    callback starved and the device underran.  The studio calls this when its window is built.
    """
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])

