"""Linear softmax probes from SAE features (or raw latents) to discretised acoustic attributes.

One probe per attribute, as in the paper: ``p(a) = softmax(W(a) f + b(a))`` with ``f`` the
RMS-normalised SAE features, trained with cross-entropy.  The contribution of feature ``j``
to class ``k`` on a frame is ``c_{j->k} = W_kj f_j``; summed over ``j`` plus ``b_k`` it is the
logit, which is what the studio's attribution views show.

Training choices:

* Features are computed on the fly per batch from the latents (``sae.encode``), so no
  feature matrix is ever stored.  All attributes' probes (and, when the L2 strength is being
  chosen, every strength of the grid) train in the same pass.
* Inputs are standardised per dimension with the training frames' mean and standard
  deviation (from up to ``NORM_SAMPLE_FRAMES`` frames; the std floored at ``STD_FLOOR`` times
  its RMS over dimensions, so a feature that almost never fires cannot get a huge weight).
  The map is folded into the saved weights (``W <- W' / std``, ``b <- b' - W mean``): both
  kinds of probe take what they name (features or raw latents) with no extra step, the
  logit is still ``sum_j W_kj f_j + b_k``, and ``W_k`` is the logit's gradient in feature
  space, the direction steering adds (``steering.control_vector`` rescales it).
* Coupled L2 ``(l2 / 2) ||W'||^2`` on the standardised weights (not on ``b``), Adam.  Given a
  grid, the strength is chosen per attribute by held-out accuracy on an inner split of the
  *training* sources, then the probe is trained again on all training frames for the
  chosen strength's best epoch count; see ``train_probes``.  ``class_weight="balanced"``
  weighs the cross-entropy by ``n / (K n_k)``.
* Early stopping per attribute on the (inner) validation cross-entropy, with ``patience``
  epochs without improvement; each keeps the weights of its best epoch.  ``audiosae train``
  instead runs a short fixed schedule with the rate decayed to 0 and compares the L2
  strengths on every 4th frame (``defaults.PROBE_*``): as accurate, 8x faster.
* Labels are the int64 columns named like the attributes; negative labels mean
  "unlabelled" and are ignored.
* ``cross_validate_probes`` measures by whole source (k folds); ``confusion_metrics`` adds
  within-one-bin accuracy and the mean error in the classes' unit for ordinal attributes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

import torch

from .attribute_plugins import PAPER_ATTRIBUTES
from .devices import pick_device
from .errors import AudioSAEError, WorkspaceError
from .frames import FrameStore
from .jobs import CancelToken, Progress, ProgressSink, null_progress
from .sae import SparseAutoencoder, _json_safe
from .probe_fit import (PROGRESS_INTERVAL_S, STD_FLOOR, _check_labels, _chunked_logits, _feature_fn,  # noqa: F401
                        _fit_heads, _Head, _has_sources, _inner_split, _input_stats, _l2_list, _Strided,
                        _unit_hash, _validation, balanced_class_weights, confusion_metrics)
from .storage import (SCHEMA_VERSION, atomic_write_json, check_schema, load_tensors, load_tensors_metadata,
                      read_json_object, require_int, save_tensors)

__all__ = ["ProbeSet", "train_probes", "cross_validate_probes", "summarize_folds", "range_warning",
           "confusion_metrics", "balanced_class_weights", "DEFAULT_L2", "L2_GRID", "weighs_balanced"]

DEFAULT_L2 = 1e-3            # coupled L2 on W (standardised inputs, mean cross-entropy): (l2 / 2) ||W||^2
# Strengths tried on an inner split.  1e-4 never won on real music; 1.0 sometimes won the inner
# split by a hair and then collapsed onto the majority class on held-out sources (10 min of real
# music, mel: raw-latent pitch 0.22 at 1.0 against 0.67 at 1e-3; the x8 SAE 0.46 against 0.68).
L2_GRID = (1e-3, 1e-2, 1e-1)
INNER_VAL_FRACTION = 0.25    # share of the training sources held out to choose the L2 strength
PROBE_KIND = "audiosae.probes"
WEIGHTS_FILE = "probes.safetensors"
META_FILE = "probes.json"


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
                 batch_size: int = 4096, cancel: CancelToken | None = None,
                 class_values: Mapping[str, Sequence[float]] | None = None) -> dict[str, dict[str, Any]]:
        """Per attribute: ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present),
        ``confusion`` (``K x K`` list, rows = true class, columns = predicted), ``n_frames``
        (labelled frames), ``chance`` (the majority class's rate), ``macro_f1``, ``support``
        (frames per true class) and the training majority class's ``majority_accuracy`` /
        ``majority_balanced_accuracy`` / ``majority_macro_f1``.  For the attributes in
        ``class_values`` (ordinal classes: the value of each class, e.g. bin centres in dB or
        Hz) also ``within1`` and ``mae``; see
        ``confusion_metrics``."""
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
        values = class_values or {}
        counts = self.metrics.get("class_counts") or {}   # the training split's, for the majority baseline
        return {a: confusion_metrics(confusion[a].view(self.n_classes(a), -1), values.get(a), counts.get(a))
                for a in attrs}

    def _stacked(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        w = torch.cat([self.weights[a] for a in self.attributes]).to(device)
        b = torch.cat([self.bias[a] for a in self.attributes]).to(device)
        offsets, lo = [], 0
        for a in self.attributes:
            offsets.append((lo, lo + self.n_classes(a)))
            lo += self.n_classes(a)
        return w, b, offsets


# ---- metrics --------------------------------------------------------------------------------

def weighs_balanced(class_weight: str | None, attribute: str) -> bool:
    """Whether ``attribute``'s probe is trained with balanced class weights: always with
    "balanced", never with None, and with "auto" for every attribute but the paper's three."""
    return class_weight == "balanced" or (class_weight == "auto" and attribute not in PAPER_ATTRIBUTES)


def train_probes(store: FrameStore, *, sae: SparseAutoencoder | None, n_classes: Mapping[str, int],
                 class_names: Mapping[str, list[str]] | None = None, max_epochs: int = 30, batch_size: int = 4096,
                 lr: float = 1e-3, patience: int = 3, seed: int = 0, device: str | torch.device = "cpu",
                 progress: ProgressSink = null_progress, cancel: CancelToken | None = None,
                 l2: float | Sequence[float] = DEFAULT_L2, class_weight: str | None = None,
                 standardize: bool = True, inner_fraction: float = INNER_VAL_FRACTION,
                 lr_decay: bool = False, selection_stride: int = 1) -> ProbeSet:
    """Train one softmax probe per attribute on SAE features (or on raw latents when ``sae`` is None).

    Labels are the int64 columns named like the attributes in the store's batches.

    * ``standardize``: inputs are standardised per dimension with the training frames' mean
      and (floored) standard deviation; the map is folded into the saved weights.
    * ``l2``: one strength, or a grid.  With a grid the strength is chosen per attribute on an
      inner split of the *training* sources (``inner_fraction`` of them held out; needs a
      store with ``source_table`` and two or more training sources, else the store's ``val``
      split is used and ``metrics["selection"]["on"]`` says so); every strength of the grid
      trains in the same passes, early-stopped on the inner validation loss; then the chosen
      strength is trained again on all training frames for its best epoch count.  The store's
      ``val`` split is then never looked at.  With one strength, early stopping uses ``val``
      (or the training loss without validation frames), as before.
    * ``class_weight="balanced"``: cross-entropy weights ``n / (K n_k)`` per class; ``"auto"``:
      balanced for every attribute but the paper's three (``weighs_balanced``).
    * ``lr_decay``: every fit runs ``max_epochs`` with the learning rate falling linearly to 0
      (the chosen strength is then trained again for the same ``max_epochs``);
      ``selection_stride``: the strengths are compared on every n-th frame only.
    """
    attrs = list(n_classes)
    if not attrs:
        raise AudioSAEError("no attributes to probe")
    for a, k in n_classes.items():
        if int(k) < 2:
            raise AudioSAEError(f"attribute {a!r} needs at least 2 classes, got {k}")
    if max_epochs < 1 or batch_size < 1 or patience < 1 or selection_stride < 1:
        raise AudioSAEError("max_epochs, batch_size, patience and selection_stride must be >= 1")
    if class_weight not in (None, "balanced", "auto"):
        raise AudioSAEError(f"class_weight must be None, 'balanced' or 'auto', got {class_weight!r}")
    if not 0.0 < inner_fraction < 1.0:
        raise AudioSAEError(f"inner_fraction must be between 0 and 1, got {inner_fraction}")
    grid = _l2_list(l2)
    if int(store.n_frames("train")) == 0:
        raise WorkspaceError("the training split has no frames to train probes on")
    dev = device if isinstance(device, torch.device) else pick_device(str(device))
    if sae is not None:
        if sae.cfg.d_in != store.d_in:
            raise AudioSAEError(f"SAE {sae.cfg.name!r} reads {sae.cfg.d_in}-d latents, the frames are {store.d_in}-d")
        model = sae if sae.device == dev else copy.deepcopy(sae).to(dev)
        model.eval()
        d_features = sae.cfg.d_sae
    else:
        model = None
        d_features = int(store.d_in)
    raw_fn = _feature_fn(model, None)
    class_counts, mean, std = _input_stats(store, raw_fn, attrs, n_classes, d_features, batch_size, seed, dev, cancel)
    standardise = (mean.to(dev), (1.0 / std).to(dev)) if standardize else None
    feats_fn = _feature_fn(model, standardise)
    balanced = {a for a in attrs if weighs_balanced(class_weight, a)}
    cw = {a: (balanced_class_weights(class_counts[a]) if a in balanced else None) for a in attrs}
    common = dict(class_weights=cw, batch_size=batch_size, lr=lr, patience=patience, seed=seed, dev=dev, lr_decay=lr_decay,
                  progress=progress, cancel=cancel)
    selection: dict[str, Any] = {"grid": grid}
    history: list[dict[str, Any]] = []
    inner = _inner_split(store, inner_fraction, seed) if len(grid) > 1 else None
    if len(grid) > 1 and inner is None and _has_sources(store):
        # one training source: nothing to hold out but the store's val split, which may be the
        # fold being measured; take the grid's middle strength and its full epoch count
        grid = [grid[len(grid) // 2]]
        selection["on"] = "none (one training source)"
    if len(grid) > 1:
        if inner is not None:
            sel_store, info = inner
            selection.update(on="inner source split", **info)
        else:
            if int(store.n_frames("val")) == 0:
                raise AudioSAEError("choosing the L2 strength needs two or more training sources or a val split")
            sel_store = store
            selection["on"] = "val split (no source table)"
        if selection_stride > 1:
            sel_store = _Strided(sel_store, selection_stride)
            selection["stride"] = selection_stride
        heads = [_Head(a, v, max_epochs) for a in attrs for v in grid]
        results, history = _fit_heads(sel_store, feats_fn, heads, n_classes, d_features, use_val=True,
                                      stage="select probe L2", **common)
        chosen: dict[str, _Head] = {}
        scores: dict[str, dict[str, float]] = {}
        for a in attrs:
            mine = [(h, r) for h, r in zip(heads, results) if h.attr == a]
            key = "val_balanced_accuracy" if a in balanced else "val_accuracy"
            scores[a] = {f"{h.l2:g}": r[key] for h, r in mine}
            # best held-out score; among ties (within 1e-9) the strongest regularisation
            h, r = max(mine, key=lambda hr: (round(_nan_low(hr[1][key]), 9), hr[0].l2))
            chosen[a] = _Head(a, h.l2, max_epochs if lr_decay else max(1, int(r["epoch"])))
        selection.update(score=key.removeprefix("val_"), scores=scores,
                         chosen={a: chosen[a].l2 for a in attrs}, epochs={a: chosen[a].max_epochs for a in attrs})
        final, final_history = _fit_heads(store, feats_fn, [chosen[a] for a in attrs], n_classes, d_features,
                                          use_val=False, stage="train probes", **common)
        history += final_history
        early_stopping = "inner split (fixed epochs on all training frames)"
    else:
        has_val = int(store.n_frames("val")) > 0 and selection.get("on") is None
        final, history = _fit_heads(store, feats_fn, [_Head(a, grid[0], max_epochs) for a in attrs], n_classes,
                                    d_features, use_val=has_val, stage="train probes", **common)
        selection.setdefault("on", None)
        selection["chosen"] = {a: grid[0] for a in attrs}
        early_stopping = "val_loss" if has_val else "none (fixed epochs)"

    out_w, out_b = {}, {}
    for a, r in zip(attrs, final):
        w, b = r["w"].double(), r["b"].double()
        if standardise is not None:        # fold (x - mean) * inv_std into the weights
            m, inv_std = (t.double() for t in standardise)
            w = w * inv_std
            b = b - w @ m
        out_w[a], out_b[a] = w.float().cpu(), b.float().cpu()
    names = {a: list((class_names or {}).get(a) or [str(k) for k in range(int(n_classes[a]))]) for a in attrs}
    for a in attrs:
        if len(names[a]) != int(n_classes[a]):
            raise AudioSAEError(f"{a}: {len(names[a])} class names for {n_classes[a]} classes")
    metrics = {"epochs": len(history), "best_epoch": {a: r["epoch"] for a, r in zip(attrs, final)},
               "best_val_loss": {a: r["val_loss"] for a, r in zip(attrs, final)},
               "early_stopping": early_stopping,
               "max_epochs": max_epochs, "batch_size": batch_size, "lr": lr, "patience": patience,
               "lr_decay": bool(lr_decay),
               "l2": {a: selection["chosen"][a] for a in attrs}, "selection": selection,
               "class_weight": class_weight, "standardized": bool(standardize),
               "input_std_floor": STD_FLOOR if standardize else None,
               "seed": seed, "history": history,
               "class_counts": {a: class_counts[a].tolist() for a in attrs}}
    return ProbeSet(weights=out_w, bias=out_b, class_names=names, feature_kind="sae" if sae is not None else "latent",
                    sae=_sae_info(sae) if sae is not None else None, metrics=metrics)


RANGE_COVERAGE_WARNING = 0.5   # warn when validation covers less than this share of the training class span
SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "chance", "majority_accuracy",
                   "majority_balanced_accuracy", "majority_macro_f1", "within1", "mae")


def range_warning(attr: str, train_counts: Sequence[int], val_support: Sequence[int],
                  class_names: Sequence[str] | None = None, where: str = "validation") -> str | None:
    """A line when the validation frames' classes span less than ``RANGE_COVERAGE_WARNING`` of
    the span of classes seen in training (ordinal attributes: such a split measures only a
    corner of the range), else None."""
    seen = [k for k, c in enumerate(train_counts) if c > 0]
    val = [k for k, c in enumerate(val_support) if c > 0]
    if not seen:
        return None
    name = (lambda k: class_names[k]) if class_names is not None and len(class_names) == len(train_counts) \
        else (lambda k: str(k))
    if not val:
        return f"{where}: no labelled {attr} frames"
    lo, hi, tlo, thi = min(val), max(val), min(seen), max(seen)
    coverage = max(0, min(hi, thi) - max(lo, tlo) + 1) / (thi - tlo + 1)
    if coverage >= RANGE_COVERAGE_WARNING:
        return None
    return (f"{where}: {attr} classes {name(lo)} .. {name(hi)} cover {coverage:.0%} of the training range "
            f"{name(tlo)} .. {name(thi)}; its {attr} accuracy says little about the rest")


def summarize_folds(folds: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per attribute: each of ``SUMMARY_METRICS`` as the mean over folds (NaN-free folds), its
    sample standard deviation as ``<metric>_std`` (0 for one fold), ``n_folds``, and the pooled
    ``confusion``, ``support`` and ``n_frames``."""
    out: dict[str, dict[str, Any]] = {}
    for a in folds[0]:
        row: dict[str, Any] = {"n_folds": len(folds)}
        for m in SUMMARY_METRICS:
            vals = np.array([f[a][m] for f in folds if m in f[a] and f[a][m] is not None
                             and math.isfinite(f[a][m])], dtype=np.float64)
            if vals.size == 0:
                continue
            row[m] = float(vals.mean())
            row[f"{m}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
        cm = np.sum([np.asarray(f[a]["confusion"], dtype=np.int64) for f in folds], axis=0)
        row["confusion"] = cm.tolist()
        row["support"] = cm.sum(1).tolist()
        row["n_frames"] = int(cm.sum())
        out[a] = row
    return out


def cross_validate_probes(store: FrameStore, *, sae: SparseAutoencoder | None, n_classes: Mapping[str, int],
                          n_folds: int = 5, seed: int = 0, class_values: Mapping[str, Sequence[float]] | None = None,
                          class_names: Mapping[str, list[str]] | None = None,
                          progress: ProgressSink = null_progress, cancel: CancelToken | None = None,
                          **train_kw: Any) -> dict[str, Any]:
    """Cross-validation by whole source: ``min(n_folds, sources)`` folds (``corpus.source_folds``:
    independent of where the files lie); each fold's sources are held out while probes train
    (``train_probes`` with ``train_kw``, L2 chosen inside the other sources) on the rest.

    Every source of the store takes part, whatever its split.  Returns ``{"n_folds",
    "folds": [{"sources", "evaluation"}], "summary": summarize_folds(...), "warnings": [...]}``.
    """
    from .corpus import source_folds

    table = store.source_table() if hasattr(store, "source_table") else {}
    if len(table) < 2:
        raise AudioSAEError("cross-validation by source needs a store with two or more sources")
    folds = source_folds({sid: key for sid, (key, _, _) in table.items()}, n_folds, seed)
    k = max(folds.values()) + 1
    results, warnings = [], []
    for i in range(k):
        if cancel is not None:
            cancel.raise_if_cancelled()
        held = sorted(str(table[sid][0]) for sid, f in folds.items() if f == i)
        view = store.with_splits({sid: ("val" if f == i else "train") for sid, f in folds.items()})
        probes = train_probes(view, sae=sae, n_classes=n_classes, class_names=class_names, seed=seed,
                              progress=progress, cancel=cancel, **train_kw)
        ev = probes.evaluate(view, "val", sae=sae, cancel=cancel, class_values=class_values)
        for a in class_values or {}:
            if a in ev:
                line = range_warning(a, probes.metrics["class_counts"][a], ev[a]["support"],
                                     probes.class_names.get(a), where=f"fold {i + 1}/{k} ({', '.join(held)})")
                if line:
                    warnings.append(line)
        results.append({"sources": held, "l2": probes.metrics.get("l2"),
                        "l2_chosen_on": probes.metrics["selection"].get("on"), "evaluation": ev})
        progress(Progress("cross-validate probes", i + 1, k, f"fold {i + 1}/{k}"))
    return {"n_folds": k, "folds": results, "summary": summarize_folds([r["evaluation"] for r in results]),
            "warnings": warnings}


def _nan_low(x: float) -> float:
    return -math.inf if x is None or not math.isfinite(x) else float(x)


def preload_optimizer_modules() -> None:
    """Import what torch's first optimizer imports, now rather than when training starts.

    Building the first ``torch.optim`` optimizer in a process imports ``torch._dynamo`` (with
    sympy, inductor, ...: ~900 modules, ~0.9 s on a CPU core) holding the GIL the whole time.
    In the studio that landed mid-playback, when a training job reached its probes: the audio
    callback starved and the device underran.  The studio calls this when its window is built.
    """
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])

