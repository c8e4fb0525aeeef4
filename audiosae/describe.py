"""Every SAE feature labelled automatically: its association with every class of every attribute.

``describe_features`` streams the workspace's corpus (both splits) through one SAE and, for
every feature ``j`` of ``f`` (``sae.encode(x)[1]``) and every class ``c`` of every attribute
the workspace's attribute spec labels (the paper's pitch notes, loudness and timbre bins, and the
registered ones: onset, chord, instrument families ...; frames without a label of an attribute
(-1) count for none of its classes), computes:

* ``auroc[j, c]``: the one-vs-rest AUROC of ``f_j`` for class ``c``, i.e.
  ``P(a > b) + 0.5 P(a = b)`` with ``a`` the value on a random frame of class ``c`` and ``b``
  on a random frame of another class (NaN when the corpus has no frame of ``c``, or only such);
* ``mass[j, c]``: the sum of ``f_j`` over the frames of ``c`` (per attribute, the rows sum to the
  feature's total mass); ``mass_fraction`` divides by that total;
* ``active[j, c]``: frames of ``c`` on which ``f_j > 0``; ``density[j]``: fraction of frames with
  ``f_j > 0``.

A label is ``(attribute, class, score = AUROC, mass_fraction)``; a feature's labels are ranked
best first by AUROC (then mass fraction).  Its ``single_label_score`` is the fraction of its
activation mass (within the best label's attribute) that falls on the best label's class:
1 for a feature that fires only on one note, about the class's frame share for a random one.
Dead features (never active) have no labels and score 0.  Classes with fewer than
``MIN_CLASS_FRAMES`` corpus frames are never labels (an AUROC from a handful of frames is mostly
chance); their AUROC is still stored.

**How AUROC stays cheap.**  Activations are sparse (most ``f_j`` are exactly 0), so per batch
only the active entries are touched: each is put in one of ``bins`` log-spaced bins
(``feature_index.histogram_edges``, ``1e-3 .. sqrt(d_sae)``; values outside go to the end bins)
and counted per (class, feature, bin) for each attribute (one ``scatter_add_`` into an int32
``[C, F, bins]`` array: 111 MB for 4,096 features x 106 classes x 64 bins).  The zero
"bin" is never counted: it is the class's frame count minus its active frames.  AUROC then
comes from the cumulative histograms.  Ties at 0 are real ties and are counted exactly (0.5);
frames in the same non-zero bin are also counted as ties, so the only error is theirs::

    |AUROC_hist - AUROC_exact| <= 0.5 * sum_{b >= 1} p_b q_b     (stored as auroc_error[j, c])

with ``p_b`` / ``q_b`` the fractions of class-``c`` / other frames in bin ``b``: exactly the pairs
whose order the histogram does not know.  With 64 bins (each 1.19x wide), on 121k frames of real
music (mel, SAEs of 1,024-4,096 features, density 7-28 %) it averaged 1e-4..2e-3 and was at most
0.009..0.026; ``auroc_error`` holds it for every (feature, class).

Saved atomically beside the SAE (``saes/<name>/describe.safetensors``: arrays + JSON header with
schema version, class names, SAE fingerprint, fingerprint of corpus + attribute spec + bins);
``load_description`` returns None when it is stale.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .attributes import UNVOICED, midi_to_name, name_to_midi
from .devices import pick_device
from .errors import AudioSAEError, WorkspaceError
from .feature_index import (INDEX_CHUNK_ELEMENTS, corpus_fingerprint, histogram_edges, load_feature_index,
                            sae_fingerprint)
from .jobs import CancelToken, Progress, ProgressSink, null_progress
from .sae import SparseAutoencoder
from .storage import SCHEMA_VERSION, atomic_write_json, check_schema, load_tensors, load_tensors_metadata, save_tensors
from .workspace import Workspace

__all__ = ["FeatureDescription", "describe_features", "load_description", "load_or_describe", "description_path",
           "auroc_from_histograms", "search_features", "neuronpedia_export", "top_frame_precision",
           "DESCRIBE_FILE", "DEFAULT_BINS"]

DESCRIBE_FILE = "describe.safetensors"
DESCRIBE_KIND = "audiosae.describe"
DEFAULT_BINS = 64
MIN_CLASS_FRAMES = 50   # a label's class needs this many corpus frames (0.67 s at 75 Hz)
CHUNK_ELEMENTS = 2 * INDEX_CHUNK_ELEMENTS  # frames x features per batch: 16 MB [B, F] (< glibc mmap cap)


@dataclass
class FeatureDescription:
    """Per-feature, per-class statistics of one SAE over a corpus (see the module docstring).

    Classes of all attributes lie side by side on the class axis: attribute ``a`` owns columns
    ``offsets[a] .. offsets[a] + len(class_names[a])``.
    """

    attributes: list[str]
    class_names: dict[str, list[str]]
    auroc: np.ndarray          # [F, C] float32 (NaN: undefined)
    auroc_error: np.ndarray    # [F, C] float32, bound on |auroc - exact|
    mass: np.ndarray           # [F, C] float32, sum of f_j over the class's frames
    active: np.ndarray         # [F, C] int32, active frames per class
    class_frames: np.ndarray   # [C] int64, frames per class
    density: np.ndarray        # [F] float32
    sae_name: str = ""
    sae_fingerprint: str = ""
    corpus_fingerprint: str = ""
    n_frames: int = 0
    bins: int = DEFAULT_BINS
    seconds: float = 0.0
    min_class_frames: int = MIN_CLASS_FRAMES   # rarer classes are never a label (their AUROC is noise)

    @property
    def n_features(self) -> int:
        return int(self.density.shape[0])

    @property
    def offsets(self) -> dict[str, int]:
        starts = np.cumsum([0] + [len(self.class_names[a]) for a in self.attributes])
        return {a: int(starts[i]) for i, a in enumerate(self.attributes)}

    def columns(self) -> list[tuple[str, str]]:
        """``(attribute, class name)`` of every class column."""
        return [(a, c) for a in self.attributes for c in self.class_names[a]]

    def mass_fraction(self, rows: slice | None = None) -> np.ndarray:
        """``[F, C]`` (or ``rows`` of it): ``mass`` over the feature's total mass, per attribute
        (0 for dead features)."""
        mass = self.mass[rows if rows is not None else slice(None)].astype(np.float64)
        out = np.zeros_like(mass)
        for a, at in self.offsets.items():
            block = mass[:, at:at + len(self.class_names[a])]
            total = block.sum(axis=1, keepdims=True)
            out[:, at:at + block.shape[1]] = np.divide(block, total, out=np.zeros_like(block), where=total > 0)
        return out

    def label_scores(self, rows: slice | None = None) -> np.ndarray:
        """``[F, C]`` AUROC as a label score: NaN for classes with fewer than ``min_class_frames`` frames."""
        keep = self.class_frames >= max(1, int(self.min_class_frames))
        return np.where(keep[None, :], self.auroc[rows if rows is not None else slice(None)].astype(np.float64), np.nan)

    def ranking(self, rows: slice | None = None) -> np.ndarray:
        """``[F, C]`` class columns per feature, best label first (AUROC, then mass fraction; NaN last)."""
        score = np.nan_to_num(self.label_scores(rows), nan=-1.0)
        return np.argsort(-(score + 1e-9 * self.mass_fraction(rows)), axis=1, kind="stable")

    def single_label_score(self) -> np.ndarray:
        """``[F]``: mass fraction of each feature's best label (0 for dead features)."""
        best = self.ranking()[:, 0]
        frac = self.mass_fraction()[np.arange(self.n_features), best]
        return np.where(self.density > 0, frac, 0.0).astype(np.float32)

    def labels(self, feature: int, top: int | None = 5) -> list[dict[str, Any]]:
        """The ``top`` best labels of ``feature`` as dicts, best first (none for a dead feature)."""
        self._check(feature)
        if self.density[feature] <= 0:
            return []
        one = slice(int(feature), int(feature) + 1)
        order, frac, score = self.ranking(one)[0], self.mass_fraction(one)[0], self.label_scores(one)[0]
        cols = self.columns()
        out = []
        for c in order:
            if not np.isfinite(score[c]):
                continue
            a, name = cols[c]
            out.append({"attribute": a, "class": name, "score": round(float(self.auroc[feature, c]), 4),
                        "mass_fraction": round(float(frac[c]), 4),
                        "auroc_error": round(float(self.auroc_error[feature, c]), 4),
                        "active_frames": int(self.active[feature, c]), "class_frames": int(self.class_frames[c])})
            if top is not None and len(out) >= top:
                break
        return out

    def describe(self, feature: int, top: int | None = 5) -> dict[str, Any]:
        """One feature as the CLI's JSON prints it."""
        labels = self.labels(feature, top)
        best = labels[0] if labels else None
        return {"feature": int(feature), "labels": labels,
                "single_label_score": round(float(best["mass_fraction"]), 4) if best else 0.0,
                "density": float(self.density[feature])}

    def to_json(self, features: Sequence[int] | None = None, top: int | None = 5) -> dict[str, Any]:
        feats = range(self.n_features) if features is None else features
        return {"sae": self.sae_name, "features": [self.describe(int(j), top) for j in feats]}

    def _check(self, feature: int) -> None:
        if not 0 <= int(feature) < self.n_features:
            raise AudioSAEError(f"feature {feature} is out of range (0..{self.n_features - 1})")

    # -- files ------------------------------------------------------------------------------
    def save(self, path) -> None:
        tensors = {"auroc": self.auroc.astype(np.float32), "auroc_error": self.auroc_error.astype(np.float32),
                   "mass": self.mass.astype(np.float32), "active": self.active.astype(np.int32),
                   "class_frames": self.class_frames.astype(np.int64), "density": self.density.astype(np.float32)}
        meta = {"schema_version": SCHEMA_VERSION, "kind": DESCRIBE_KIND, "sae_name": self.sae_name,
                "sae_fingerprint": self.sae_fingerprint, "corpus_fingerprint": self.corpus_fingerprint,
                "n_frames": int(self.n_frames), "n_features": self.n_features, "bins": int(self.bins),
                "seconds": round(float(self.seconds), 3), "attributes": list(self.attributes),
                "class_names": {a: list(v) for a, v in self.class_names.items()},
                "score": "one-vs-rest AUROC of f_j per class, from per-class histograms (auroc_error bounds it)"}
        save_tensors(path, tensors, meta)

    @classmethod
    def read(cls, path) -> "FeatureDescription":
        meta = load_tensors_metadata(path, kind="feature description")
        check_schema(meta, path, kind="feature description")
        if meta.get("kind") != DESCRIBE_KIND:
            raise WorkspaceError(f"{path}: not a feature description (kind {meta.get('kind')!r})")
        try:
            attrs = [str(a) for a in meta["attributes"]]
            names = {a: [str(c) for c in meta["class_names"][a]] for a in attrs}
            n_feat, n_cls = int(meta["n_features"]), sum(len(v) for v in names.values())
        except (KeyError, TypeError, ValueError) as exc:
            raise WorkspaceError(f"{path}: feature description header is malformed ({exc})") from None
        fc = (n_feat, n_cls)
        t = load_tensors(path, kind="feature description", expect={
            "auroc": fc, "auroc_error": fc, "mass": fc, "active": fc, "class_frames": (n_cls,), "density": (n_feat,)})
        return cls(attributes=attrs, class_names=names, **{k: t[k].numpy() for k in t},
                   sae_name=str(meta.get("sae_name", "")), sae_fingerprint=str(meta.get("sae_fingerprint", "")),
                   corpus_fingerprint=str(meta.get("corpus_fingerprint", "")), n_frames=int(meta.get("n_frames", 0)),
                   bins=int(meta.get("bins", DEFAULT_BINS)), seconds=float(meta.get("seconds", 0.0)))


# ---- AUROC from histograms -------------------------------------------------------------------
def auroc_from_histograms(pos: np.ndarray, total: np.ndarray, n_pos: np.ndarray, n_all: int
                          ) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and its error bound from counts of active frames per non-zero bin.

    ``pos [..., B]``: frames of the class per bin; ``total [..., B]``: all frames per bin (same
    leading shape or broadcastable); ``n_pos [...]``: frames of the class; ``n_all``: all frames.
    Frames not counted in any bin are the zeros (below every bin).  Returns ``(auroc, bound)``,
    NaN where the class or its complement is empty.
    """
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(total, dtype=np.float64) - pos
    n_pos = np.asarray(n_pos, dtype=np.float64)
    n_neg = float(n_all) - n_pos
    pos0 = n_pos - pos.sum(-1)
    neg0 = n_neg - neg.sum(-1)
    below = neg0[..., None] + np.cumsum(neg, axis=-1) - neg          # other frames in lower bins
    wins = 0.5 * pos0 * neg0 + (pos * (below + 0.5 * neg)).sum(-1)
    ties = 0.5 * (pos * neg).sum(-1)
    denom = n_pos * n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = np.where(denom > 0, wins / denom, np.nan)
        bound = np.where(denom > 0, ties / denom, np.nan)
    return auroc, bound


# ---- computing ---------------------------------------------------------------------------------
def description_path(workspace: Workspace, sae_name: str):
    return workspace.sae_dir(sae_name) / DESCRIBE_FILE


def _corpus_key(workspace: Workspace, bins: int) -> str:
    """Corpus fingerprint + attribute spec + bins: whatever changes a class label or a histogram."""
    blob = json.dumps({"corpus": corpus_fingerprint(workspace), "spec": workspace.attribute_spec.to_dict(),
                       "bins": int(bins)}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def describe_features(workspace: Workspace, sae_name: str, *, bins: int = DEFAULT_BINS, device: str = "cpu",
                      chunk_elements: int = CHUNK_ELEMENTS, progress: ProgressSink = null_progress,
                      cancel: CancelToken | None = None, save: bool = True, threads: int | None = None
                      ) -> FeatureDescription:
    """Stream the corpus through SAE ``sae_name``, label every feature, save the result (atomically,
    only after the last batch: a cancelled run leaves no file).

    ``threads``: torch's intra-op threads meanwhile (process-wide, restored after; None: as they
    are).  On a busy machine 1 beats 2 by 2-3x (see benchmarks/bench_describe.py).
    """
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _describe(workspace, sae_name, bins, device, chunk_elements, progress, cancel, save)
    finally:
        if threads:
            torch.set_num_threads(previous)


def _describe(workspace: Workspace, sae_name: str, bins: int, device: str, chunk_elements: int,
              progress: ProgressSink, cancel: CancelToken | None, save: bool) -> FeatureDescription:
    cancel = cancel or CancelToken()
    started = time.monotonic()
    dev = pick_device(device)
    sae = SparseAutoencoder.load(workspace.sae_dir(sae_name), device=dev)
    spec = workspace.attribute_spec
    store = workspace.frame_store(spec)
    if store.d_in != sae.cfg.d_in:
        raise WorkspaceError(f"SAE {sae_name!r} takes {sae.cfg.d_in}-d latents but the corpus has "
                             f"{store.d_in}-d frames")
    n_feat = sae.cfg.d_sae
    attrs = list(spec.attributes)   # the paper's three, then the registered attributes the workspace labels
    names = {a: spec.class_names(a) for a in attrs}
    offsets = np.cumsum([0] + [len(names[a]) for a in attrs])
    n_cls = int(offsets[-1])
    n_att = len(attrs)
    # frames without a label (-1) of an attribute count in one spare class slot, dropped at the end
    n_slots = n_cls + 1
    edges = histogram_edges(n_feat, bins)
    inner = torch.from_numpy(edges[1:-1].copy()).to(dev)
    slab = n_feat * bins                                     # one class's [F, bins] block
    # Layout [C, F, bins]: consecutive active entries of one frame hit one class's block (cache).
    hist = torch.zeros(n_slots * slab, dtype=torch.int32, device=dev)
    mass = torch.zeros(n_slots * n_feat, dtype=torch.float64, device=dev)
    batch_mass = torch.zeros(n_slots * n_feat, dtype=torch.float32, device=dev)
    class_frames = torch.zeros(n_slots, dtype=torch.int64, device=dev)
    ones = torch.ones(1, dtype=torch.int32, device=dev)
    rows_per_batch = max(1, int(chunk_elements) // max(1, n_feat))
    total = int(sum(int(s["n_frames"]) for s in store.manifest.shards))
    done = 0
    progress(Progress("describe", 0, total, f"labelling {n_feat} features of {sae_name}"))
    with torch.inference_mode():
        for shard_no in range(len(store.manifest.shards)):
            cancel.raise_if_cancelled()
            cols = store.load_shard(shard_no, split=None, columns=("latents", *attrs))
            cls = torch.stack([torch.where(cols[a] >= 0, cols[a] + int(offsets[i]), n_cls)
                               for i, a in enumerate(attrs)], dim=1).to(dev)  # [N, attributes]
            class_frames += torch.bincount(cls.reshape(-1), minlength=n_slots)
            hist_off, mass_off = cls * slab, cls * n_feat       # per frame: start of its classes' blocks
            n = int(cls.shape[0])
            for a in range(0, n, rows_per_batch):
                cancel.raise_if_cancelled()
                b = min(n, a + rows_per_batch)
                _, f = sae.encode(cols["latents"][a:b].to(dev))
                # Active entries only (f >= 0 for every SAE architecture here; 0 = inactive).
                flat = f.reshape(-1)
                where = torch.nonzero(flat).squeeze(1)
                values = flat[where]
                row = torch.div(where, n_feat, rounding_mode="floor")
                feat = where - row * n_feat
                base = feat * bins + torch.bucketize(values, inner, right=True)      # [nnz]: (feature, bin)
                row += a
                hist.scatter_add_(0, (hist_off[row] + base[:, None]).reshape(-1), ones.expand(n_att * base.numel()))
                batch_mass.zero_().index_add_(0, (mass_off[row] + feat[:, None]).reshape(-1),
                                              values[:, None].expand(-1, n_att).reshape(-1))
                mass += batch_mass   # float32 within a batch, float64 across batches
                done += b - a
                progress(Progress("describe", done, total, f"{done} / {total} frames"))
    cancel.raise_if_cancelled()
    progress(Progress("describe AUROC", 0, 1, "AUROC from the histograms"))
    hist3 = hist.view(n_slots, n_feat, bins)[:n_cls].cpu()
    counts = class_frames[:n_cls].cpu().numpy()
    auroc = np.full((n_feat, n_cls), np.nan, dtype=np.float32)
    bound = np.full((n_feat, n_cls), np.nan, dtype=np.float32)
    active = hist3.sum(dim=2, dtype=torch.int64).T.numpy().astype(np.int32)         # [F, C]
    step = max(1, (1 << 22) // max(1, n_cls * bins))
    for i, att in enumerate(attrs):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        for j0 in range(0, n_feat, step):
            cancel.raise_if_cancelled()
            block = hist3[lo:hi, j0:j0 + step].numpy().astype(np.float64)           # [Ca, Fc, B]
            labelled = int(counts[lo:hi].sum())   # = done unless some frames have no label of att
            au, bd = auroc_from_histograms(block, block.sum(0, keepdims=True), counts[lo:hi, None], labelled)
            auroc[j0:j0 + step, lo:hi] = au.T
            bound[j0:j0 + step, lo:hi] = bd.T
    active_any = active[:, :int(offsets[1])].sum(axis=1)
    desc = FeatureDescription(
        attributes=attrs, class_names=names, auroc=auroc, auroc_error=bound,
        mass=mass.view(n_slots, n_feat)[:n_cls].T.cpu().numpy().astype(np.float32), active=active, class_frames=counts,
        density=(active_any / max(1, done)).astype(np.float32), sae_name=sae_name, sae_fingerprint=sae.fingerprint(),
        corpus_fingerprint=_corpus_key(workspace, bins), n_frames=done, bins=bins,
        seconds=time.monotonic() - started)
    cancel.raise_if_cancelled()
    if save:
        desc.save(description_path(workspace, sae_name))
    progress(Progress("describe AUROC", 1, 1, f"labelled {n_feat} features"))
    return desc


def load_description(workspace: Workspace, sae_name: str, bins: int = DEFAULT_BINS) -> FeatureDescription | None:
    """The saved description of ``sae_name``; None when absent, unreadable, or stale (the SAE's
    weights, the corpus, the attribute spec or ``bins`` changed).  A newer schema raises."""
    path = description_path(workspace, sae_name)
    if not path.is_file():
        return None
    try:
        meta = load_tensors_metadata(path, kind="feature description")
    except WorkspaceError:
        return None
    check_schema(meta, path, kind="feature description")
    try:
        if meta.get("sae_fingerprint") != sae_fingerprint(workspace, sae_name):
            return None
        if meta.get("corpus_fingerprint") != _corpus_key(workspace, bins):
            return None
        return FeatureDescription.read(path)
    except WorkspaceError:
        return None


def load_or_describe(workspace: Workspace, sae_name: str, *, bins: int = DEFAULT_BINS, device: str = "cpu",
                     progress: ProgressSink = null_progress, cancel: CancelToken | None = None,
                     threads: int | None = None) -> FeatureDescription:
    """The cached description when current, else a fresh one (a job: the studio runs it in a worker)."""
    if sae_name not in workspace.sae_names():
        raise WorkspaceError(f"{workspace.root}: no SAE named {sae_name!r}; available: "
                             f"{', '.join(workspace.sae_names()) or 'none'}")
    desc = load_description(workspace, sae_name, bins)
    if desc is not None:
        progress(Progress("describe", 1, 1, "loaded"))
        return desc
    return describe_features(workspace, sae_name, bins=bins, device=device, progress=progress, cancel=cancel,
                             threads=threads)


# ---- search ------------------------------------------------------------------------------------
def _matching_columns(desc: FeatureDescription, query: str) -> list[int]:
    q = " ".join(str(query).lower().split())
    if not q:
        raise AudioSAEError("empty search text")
    cols = desc.columns()
    note = None
    try:
        note = midi_to_name(name_to_midi(q))           # "Db4" -> "C#4"
    except AudioSAEError:
        pass
    exact = [i for i, (a, c) in enumerate(cols) if c.lower() in (q, (note or "").lower())
             or f"{a} {c}".lower() == q]
    if exact:
        return exact
    quality = _chord_quality(q, cols)
    if quality is not None:
        return quality
    return [i for i, (a, c) in enumerate(cols) if q in f"{a} {c}".lower()]


def _chord_quality(q: str, cols: list[tuple[str, str]]) -> list[int] | None:
    """"minor" / "major" (every minor / major triad), "a minor" / "c# major" (one): chord classes
    are named "Am" / "C#" (``attribute_library.chord_names``)."""
    words = q.replace("chord", "").split()
    if not words or words[-1] not in ("minor", "major", "min", "maj") or len(words) > 2:
        return None
    minor = words[-1].startswith("min")
    root = words[0] if len(words) == 2 else None
    out = []
    for i, (a, c) in enumerate(cols):
        if a != "chord" or c == "none":
            continue
        is_minor = c.endswith("m")
        name = c[:-1] if is_minor else c
        if is_minor == minor and (root is None or name.lower() == root):
            out.append(i)
    return out


def search_features(desc: FeatureDescription, query: str, *, min_score: float = 0.5, limit: int | None = 50
                    ) -> list[dict[str, Any]]:
    """Features whose labels match ``query`` (case-insensitive), best AUROC first.

    ``query`` is a class name ("C#4", "db4", "unvoiced", "-12..-9 dB", "Am", "brass"), an attribute
    name or part of one ("loud" -> every loudness class, "onset"), a chord quality ("minor", "major",
    "a minor"), or any part of "attribute class" text ("pitch C#").
    An exact class name wins over partial matches.  Each hit: ``feature``, ``score`` (its best
    AUROC among the matching classes), ``attribute``, ``class``, ``mass_fraction``, ``density``.
    """
    cols = _matching_columns(desc, query)
    if not cols:
        return []
    au = np.nan_to_num(desc.label_scores()[:, cols], nan=-1.0)
    best = au.argmax(axis=1)
    score = au[np.arange(desc.n_features), best]
    keep = np.flatnonzero((score >= min_score) & (desc.density > 0))
    keep = keep[np.argsort(-score[keep], kind="stable")][:limit]
    frac, names = desc.mass_fraction(), desc.columns()
    return [{"feature": int(j), "score": round(float(score[j]), 4), "attribute": names[cols[best[j]]][0],
             "class": names[cols[best[j]]][1], "mass_fraction": round(float(frac[j, cols[best[j]]]), 4),
             "density": float(desc.density[j])} for j in keep]


# ---- exports -----------------------------------------------------------------------------------
def neuronpedia_export(workspace: Workspace, desc: FeatureDescription, path, *, top: int = 3,
                       max_activations: int = 10) -> dict[str, Any]:
    """A Neuronpedia-style JSON: per feature its index, explanations ("pitch C#4 (AUROC 0.97)"),
    density and, when a current feature index exists (no extra pass), its top activations."""
    index = load_feature_index(workspace, desc.sae_name)
    features = []
    for j in range(desc.n_features):
        expl = [{"description": f"{lab['attribute']} {lab['class']} (AUROC {lab['score']:.2f})",
                 "score": lab["score"], "mass_fraction": lab["mass_fraction"], "method": "audiosae describe: AUROC"}
                for lab in desc.labels(j, top)]
        item: dict[str, Any] = {"index": j, "explanations": expl, "frac_nonzero": float(desc.density[j])}
        if index is not None:
            item["activations"] = [{"source": e["label"], "source_id": e["source_id"], "time": round(e["time"], 3),
                                    "frame": e["frame"], "value": e["activation"]}
                                   for e in index.top_entries(j)[:max_activations]]
        features.append(item)
    doc = {"schema_version": SCHEMA_VERSION, "kind": "audiosae.neuronpedia", "modelId": workspace.backend_name,
           "layer": "latent", "saeId": desc.sae_name, "sae_fingerprint": desc.sae_fingerprint,
           "n_frames": desc.n_frames, "features": features}
    atomic_write_json(path, doc)
    return doc


# ---- validation ----------------------------------------------------------------------------------
def _truth_classes(gt_midi: torch.Tensor | None, n: int, n_classes: int) -> torch.Tensor:
    """Pitch classes of ground-truth MIDI notes (0 = unvoiced / none, k = MIDI_MIN + k - 1)."""
    from .attributes import MIDI_MIN

    if gt_midi is None:
        raise WorkspaceError("the corpus has no ground-truth notes (gt_midi: built-in corpora only)")
    m = torch.nan_to_num(gt_midi.double(), nan=-1.0).round().long()
    k = m - MIDI_MIN + 1
    return torch.where((m >= 0) & (k >= 1) & (k < n_classes), k, torch.zeros_like(k))[:n]

def top_frame_precision(workspace: Workspace, sae_name: str, desc: FeatureDescription, *, attribute: str = "pitch",
                        k: int = 50, device: str = "cpu", skip_classes: Sequence[str] = (UNVOICED,),
                        among_classes_only: bool = False, cancel: CancelToken | None = None,
                        ground_truth: bool = False) -> dict[int, dict[str, Any]]:
    """For each live feature whose best ``attribute`` label is not in ``skip_classes``: the
    fraction of its ``k`` most active corpus frames that carry that class (one extra pass), and
    the most common class among those frames with its share (what any label could reach).
    ``among_classes_only``: rank only the frames whose class is not in ``skip_classes`` (e.g.
    "of its 50 most active pitched frames, how many are that note").
    ``ground_truth`` (pitch only): judge the frames by the corpus' ground-truth notes (``gt_midi``
    of the built-in corpora: the sounding note, the melody's top note in chords; none = unvoiced)
    instead of the measured (CREPE) pitch classes the labels were scored on."""
    cancel = cancel or CancelToken()
    if ground_truth and attribute != "pitch":
        raise AudioSAEError("ground_truth applies to the pitch attribute (the instrument labels are ground truth)")
    at, n_a = desc.offsets[attribute], len(desc.class_names[attribute])
    au = np.nan_to_num(desc.label_scores()[:, at:at + n_a], nan=-1.0)
    best = au.argmax(axis=1)
    skip = {desc.class_names[attribute].index(c) for c in skip_classes if c in desc.class_names[attribute]}
    feats = [j for j in range(desc.n_features) if desc.density[j] > 0 and int(best[j]) not in skip]
    if not feats:
        return {}
    dev = pick_device(device)
    sae = SparseAutoencoder.load(workspace.sae_dir(sae_name), device=dev)
    store = workspace.frame_store()
    sel = torch.tensor(feats, device=dev)
    run_val, run_cls = (torch.full((len(feats), k), -1, dtype=t, device=dev) for t in (torch.float32, torch.int64))
    rows = max(1, CHUNK_ELEMENTS // max(1, len(feats)))
    with torch.inference_mode():
        for shard_no in range(len(store.manifest.shards)):
            cols = store.load_shard(shard_no, split=None,
                                    columns=("latents", "gt_midi" if ground_truth else attribute))
            if ground_truth:
                cols[attribute] = _truth_classes(cols.get("gt_midi"), cols["latents"].shape[0],
                                                 len(desc.class_names[attribute]))
            for a in range(0, cols["latents"].shape[0], rows):
                cancel.raise_if_cancelled()
                ft = sae.encode(cols["latents"][a:a + rows].to(dev))[1][:, sel].T      # [F', B]
                y = cols[attribute][a:a + rows].to(dev)
                if among_classes_only and skip:
                    ft = ft.masked_fill(torch.isin(y, torch.tensor(sorted(skip), device=dev))[None, :], 0.0)
                merged = torch.cat([run_val, ft], dim=1)
                run_val, idx = torch.topk(merged, k, dim=1)
                run_cls = torch.cat([run_cls, y[None, :].expand(len(feats), -1)], dim=1).gather(1, idx)
    vals, labs, names, out = run_val.cpu().numpy(), run_cls.cpu().numpy(), desc.class_names[attribute], {}
    for i, j in enumerate(feats):
        top, n_real = labs[i][vals[i] > 0], max(1, int((vals[i] > 0).sum()))
        mode = int(np.bincount(top, minlength=len(names)).argmax()) if top.size else int(best[j])
        # mode: the most common class among those frames, the best precision any label could have
        out[j] = {"feature": j, "class": names[int(best[j])], "auroc": float(au[j, best[j]]), "frames": int(top.size),
                  "precision": int((top == best[j]).sum()) / n_real, "mode_class": names[mode],
                  "mode_precision": int((top == mode).sum()) / n_real}
    return out
