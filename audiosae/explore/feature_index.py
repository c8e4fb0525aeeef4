"""Corpus statistics per SAE feature: density, activation histogram, top-activating frames.

``build_feature_index`` streams every frame of a workspace's corpus (both splits) through one
SAE and keeps, for each feature ``j`` of ``f = RMSNorm(h)`` (the values the explorer's heatmap
shows):

* ``density[j]``: fraction of frames with ``h_j > 0`` (equivalently ``f_j > 0``);
* ``mean_active[j]``: mean of ``f_j`` over those frames (the feature's "typical active value");
* ``hist[j, b]``: counts of active frames per log-spaced bin of ``f_j``.  The bins are common to
  all features: ``HIST_LOW`` .. ``sqrt(d_sae)`` (the largest value RMSNorm allows: ``sum_j f_j^2
  <= d_sae``).  Bin ``b`` is ``[edges[b], edges[b+1])``; values below the first edge count in
  bin 0 and the (unreachable) values above the last in bin ``B-1``, so ``hist.sum(1)`` is the
  number of active frames;
* ``top_*[j, r]``: the ``top_k`` frames with the largest ``f_j`` (rank 0 first), as activation,
  source, frame index and frame-centre time.  A feature active on fewer than ``top_k`` frames
  has trailing entries with activation 0 and source/frame -1.

Everything is vectorised over features: per batch one ``bincount`` fills all histograms and
one ``topk`` over the concatenation of the running top-k and the batch's frames updates every
feature's list (only the features whose batch maximum beats their current k-th value take
part).  The result is saved atomically next to the SAE (``saes/<name>/feature_index.safetensors``)
with the SAE's and the corpus's fingerprints; ``load_feature_index`` returns None when either
has changed, so a retrained SAE or a grown corpus never shows stale statistics.

``FeatureIndex.snippet`` brings back the audio around a top frame (user files are read in part;
built-in corpus sources are re-rendered deterministically), and ``render_boost`` is the headless
half of the inspector's "boost this feature": latents plus ``amount`` times the feature's
decoder direction on a window, decoded with the backend.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio import load_audio
from ..codecs import backend_spec
from ..codecs.base import LatentBackend
from ..corpus import BUILTIN_CORPORA
from ..devices import pick_device
from ..errors import AudioSAEError, WorkspaceError
from ..jobs import CancelToken, Progress, ProgressSink, null_progress
from ..sae import SparseAutoencoder
from ..storage import (SCHEMA_VERSION, check_schema, load_tensors, load_tensors_metadata, read_json,
                      save_tensors)
from ..workspace import Workspace
from .sources import RENDER_CACHE_SIZE, builtin_source, corpus_seed, rendered_builtin

__all__ = [
    "FeatureIndex", "BoostedWindow", "build_feature_index", "load_feature_index", "load_or_build_feature_index",
    "feature_index_path", "histogram_edges", "histogram_counts", "corpus_fingerprint", "sae_fingerprint",
    "decoder_direction", "load_source_window", "render_boost", "boost_window", "INDEX_FILE", "HIST_LOW",
]

INDEX_FILE = "feature_index.safetensors"
INDEX_KIND = "audiosae.feature_index"
INDEX_CHUNK_ELEMENTS = 1 << 21  # frames x features per batch when indexing (see build_feature_index)
HIST_LOW = 1e-3          # f below this is numerically "barely on"; such values share bin 0
_RENDER_CACHE_SIZE = RENDER_CACHE_SIZE


# ---- the index ------------------------------------------------------------------------------
@dataclass
class FeatureIndex:
    """Per-feature corpus statistics of one SAE (see the module docstring for the definitions).

    ``top_source`` indexes ``source_ids`` / ``source_labels`` (-1: no such frame).
    """

    density: np.ndarray          # [F] float32
    mean_active: np.ndarray      # [F] float32
    hist_edges: np.ndarray       # [B+1] float32, log-spaced
    hist: np.ndarray             # [F, B] int64
    top_activation: np.ndarray   # [F, k] float32, descending
    top_source: np.ndarray       # [F, k] int32
    top_frame: np.ndarray        # [F, k] int32
    top_time: np.ndarray         # [F, k] float32 (s, frame centre from the source start)
    source_ids: list[str]
    source_labels: list[str]
    sae_name: str = ""
    sae_fingerprint: str = ""
    corpus_fingerprint: str = ""
    n_frames: int = 0
    build_seconds: float = 0.0

    @property
    def n_features(self) -> int:
        return int(self.density.shape[0])

    @property
    def top_k(self) -> int:
        return int(self.top_activation.shape[1])

    def active_counts(self) -> np.ndarray:
        """Frames on which each feature is active, ``[F]`` int64 (``hist`` row sums)."""
        return self.hist.sum(axis=1)

    def top_entries(self, feature: int, min_gap_seconds: float = 0.0) -> list[dict[str, Any]]:
        """The real (activation > 0) top frames of ``feature``, strongest first, as dicts: rank,
        activation, source_id, label, frame, time.

        ``min_gap_seconds > 0`` drops a frame lying within that distance of a stronger frame
        already listed from the same source, so one long note does not fill the whole list.
        """
        self._check_feature(feature)
        rows: list[dict[str, Any]] = []
        kept: dict[int, list[float]] = {}
        for rank in range(self.top_k):
            act = float(self.top_activation[feature, rank])
            src = int(self.top_source[feature, rank])
            if act <= 0 or src < 0:
                break
            t = float(self.top_time[feature, rank])
            if min_gap_seconds > 0 and any(abs(t - u) < min_gap_seconds for u in kept.get(src, ())):
                continue
            kept.setdefault(src, []).append(t)
            rows.append({"rank": rank, "activation": act, "source_id": self.source_ids[src],
                         "label": self.source_labels[src], "frame": int(self.top_frame[feature, rank]),
                         "time": t})
        return rows

    def snippet(self, workspace: Workspace, feature: int, rank: int, seconds: float = 1.0
                ) -> tuple[np.ndarray, int, float]:
        """About ``seconds`` of audio centred on top frame ``rank`` of ``feature``.

        Returns ``(wave [channels, N], sample_rate, start_time)`` at the workspace backend's rate,
        ``start_time`` being the snippet's start in seconds from the source start (the window is
        shifted, not shortened, near the source's ends when the source is long enough).
        """
        self._check_feature(feature)
        if not 0 <= rank < self.top_k:
            raise AudioSAEError(f"rank {rank} is out of range (0..{self.top_k - 1})")
        src = int(self.top_source[feature, rank])
        if src < 0 or self.top_activation[feature, rank] <= 0:
            raise AudioSAEError(f"feature {feature} has no top frame of rank {rank} "
                                f"(it is active on {int(self.active_counts()[feature])} frames)")
        centre = float(self.top_time[feature, rank])
        return load_source_window(workspace, self.source_ids[src], centre - seconds / 2.0, seconds)

    def _check_feature(self, feature: int) -> None:
        if not 0 <= int(feature) < self.n_features:
            raise AudioSAEError(f"feature {feature} is out of range (0..{self.n_features - 1})")

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the index atomically as safetensors with its facts in the JSON header."""
        path = Path(path)
        tensors = {
            "density": self.density.astype(np.float32), "mean_active": self.mean_active.astype(np.float32),
            "hist_edges": self.hist_edges.astype(np.float32), "hist": self.hist.astype(np.int64),
            "top_activation": self.top_activation.astype(np.float32),
            "top_source": self.top_source.astype(np.int32), "top_frame": self.top_frame.astype(np.int32),
            "top_time": self.top_time.astype(np.float32),
        }
        meta = {"schema_version": SCHEMA_VERSION, "kind": INDEX_KIND, "sae_name": self.sae_name,
                "sae_fingerprint": self.sae_fingerprint, "corpus_fingerprint": self.corpus_fingerprint,
                "n_frames": int(self.n_frames), "n_features": self.n_features, "top_k": self.top_k,
                "hist_bins": int(self.hist.shape[1]), "build_seconds": round(float(self.build_seconds), 3),
                "activation": "f = RMSNorm(h) (the SAE features); density counts h > 0",
                "source_ids": list(self.source_ids), "source_labels": list(self.source_labels)}
        save_tensors(path, tensors, meta)
        return path

    @classmethod
    def read(cls, path: str | Path) -> "FeatureIndex":
        """Read a file written by ``save`` (no staleness check; see ``load_feature_index``)."""
        path = Path(path)
        meta = load_tensors_metadata(path, kind="feature index")
        check_schema(meta, path, kind="feature index")
        if meta.get("kind") != INDEX_KIND:
            raise WorkspaceError(f"{path}: not a feature index (kind {meta.get('kind')!r})")
        try:
            n_feat, k, bins = int(meta["n_features"]), int(meta["top_k"]), int(meta["hist_bins"])
            source_ids = [str(s) for s in meta["source_ids"]]
            source_labels = [str(s) for s in meta["source_labels"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise WorkspaceError(f"{path}: feature index header is malformed ({exc})") from None
        t = load_tensors(path, kind="feature index", expect={
            "density": (n_feat,), "mean_active": (n_feat,), "hist_edges": (bins + 1,), "hist": (n_feat, bins),
            "top_activation": (n_feat, k), "top_source": (n_feat, k), "top_frame": (n_feat, k),
            "top_time": (n_feat, k)})
        top_source = t["top_source"].numpy()
        if len(source_ids) != len(source_labels) or (top_source.size and top_source.max() >= len(source_ids)):
            raise WorkspaceError(f"{path}: feature index names sources its header does not list")
        return cls(density=t["density"].numpy(), mean_active=t["mean_active"].numpy(),
                   hist_edges=t["hist_edges"].numpy(), hist=t["hist"].numpy(),
                   top_activation=t["top_activation"].numpy(), top_source=top_source,
                   top_frame=t["top_frame"].numpy(), top_time=t["top_time"].numpy(),
                   source_ids=source_ids, source_labels=source_labels, sae_name=str(meta.get("sae_name", "")),
                   sae_fingerprint=str(meta.get("sae_fingerprint", "")),
                   corpus_fingerprint=str(meta.get("corpus_fingerprint", "")),
                   n_frames=int(meta.get("n_frames", 0)), build_seconds=float(meta.get("build_seconds", 0.0)))


# ---- helpers shared with the UI -------------------------------------------------------------
def feature_index_path(workspace: Workspace, sae_name: str) -> Path:
    return workspace.sae_dir(sae_name) / INDEX_FILE


def histogram_edges(n_features: int, bins: int = 40, low: float = HIST_LOW) -> np.ndarray:
    """``bins + 1`` log-spaced edges from ``low`` to ``sqrt(n_features)`` (float32)."""
    if bins < 1:
        raise AudioSAEError(f"histogram needs at least one bin, got {bins}")
    high = max(math.sqrt(n_features), low * 10.0)
    return np.logspace(math.log10(low), math.log10(high), bins + 1).astype(np.float32)


def histogram_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of the positive ``values`` per bin of ``edges`` with the index's clamping rule
    (below the first edge -> bin 0, at or above the last -> last bin); e.g. for one clip."""
    v = np.asarray(values, dtype=np.float32).ravel()
    v = v[v > 0]
    inner = np.asarray(edges, dtype=np.float32)[1:-1]
    return np.bincount(np.searchsorted(inner, v, side="right"), minlength=len(edges) - 1).astype(np.int64)


def sae_fingerprint(workspace: Workspace, sae_name: str) -> str:
    """The SAE's weight fingerprint as its ``cfg.json`` records it (``SparseAutoencoder.load``
    verifies that record against the weights)."""
    cfg_path = workspace.sae_dir(sae_name) / "cfg.json"
    cfg = read_json(cfg_path, kind="SAE config")
    fingerprint = cfg.get("fingerprint") if isinstance(cfg, dict) else None
    if isinstance(fingerprint, str) and fingerprint:
        return fingerprint
    return SparseAutoencoder.load(workspace.sae_dir(sae_name), device="cpu").fingerprint()


def corpus_fingerprint(workspace: Workspace) -> str:
    """Names the corpus content: backend, shard files with their frame counts, source ids."""
    manifest = workspace.manifest()
    blob = json.dumps({"backend": workspace.backend_name, "options": workspace.backend_options,
                       "shards": [[s["file"], int(s["n_frames"])] for s in manifest.shards],
                       "sources": sorted(manifest.sources)}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def decoder_direction(sae: SparseAutoencoder, feature: int) -> np.ndarray:
    """Row ``feature`` of ``W_dec`` ``[D]`` (float32): what one unit of ``f_feature`` adds to the
    reconstructed latent."""
    if not 0 <= int(feature) < sae.cfg.d_sae:
        raise AudioSAEError(f"feature {feature} is out of range (0..{sae.cfg.d_sae - 1})")
    return sae.W_dec[int(feature)].detach().to("cpu", torch.float32).numpy().copy()


# ---- building -------------------------------------------------------------------------------
def build_feature_index(workspace: Workspace, sae_name: str, *, top_k: int = 32, hist_bins: int = 40,
                        batch_size: int = 4096, device: str = "cpu", progress: ProgressSink = null_progress,
                        cancel: CancelToken | None = None) -> FeatureIndex:
    """Stream the whole corpus through SAE ``sae_name`` and save its ``FeatureIndex``.

    Nothing is written until the last batch is done, so a cancelled run (``JobCancelled``)
    leaves no file behind.
    """
    cancel = cancel or CancelToken()
    if top_k < 1:
        raise AudioSAEError(f"top_k must be at least 1, got {top_k}")
    if batch_size < 1:
        raise AudioSAEError(f"batch_size must be at least 1, got {batch_size}")
    started = time.monotonic()
    dev = pick_device(device)
    sae = SparseAutoencoder.load(workspace.sae_dir(sae_name), device=dev)
    store = workspace.frame_store()
    manifest = store.manifest
    if store.d_in != sae.cfg.d_in:
        raise WorkspaceError(f"SAE {sae_name!r} takes {sae.cfg.d_in}-d latents but the corpus has "
                             f"{store.d_in}-d frames")
    n_feat = sae.cfg.d_sae
    k = int(top_k)
    edges = histogram_edges(n_feat, hist_bins)
    total = int(sum(int(s["n_frames"]) for s in manifest.shards))
    # Bound the [rows, F] work per batch: the histogram, sum and top-k passes cost ~70 ns per
    # element on one CPU core, so INDEX_CHUNK_ELEMENTS keeps a batch near 0.15 s and a cancel
    # is seen well within a second (4096 rows of 8192 features took 2.4 s).
    rows_per_batch = max(1, min(int(batch_size), INDEX_CHUNK_ELEMENTS // max(1, n_feat)))

    source_index: dict[str, int] = {}
    log_low = math.log(float(edges[0]))
    log_step = (math.log(float(edges[-1])) - log_low) / hist_bins
    edges_t = torch.from_numpy(edges).to(dev)
    hist = torch.zeros(n_feat * hist_bins, dtype=torch.int64, device=dev)
    sum_f = torch.zeros(n_feat, dtype=torch.float64, device=dev)
    # Running top-k per feature, [F, k] descending; frames along the last (contiguous) axis,
    # where topk is ~3x faster on CPU than along the first.
    run_val = torch.full((n_feat, k), -1.0, device=dev)
    run_src = torch.full((n_feat, k), -1, dtype=torch.int64, device=dev)
    run_frame = torch.full((n_feat, k), -1, dtype=torch.int64, device=dev)
    run_time = torch.full((n_feat, k), -1.0, device=dev)
    done = 0
    progress(Progress("feature index", 0, total, f"indexing {n_feat} features of {sae_name}"))
    with torch.inference_mode():
        for shard_no, shard in enumerate(manifest.shards):
            cancel.raise_if_cancelled()
            header = load_tensors_metadata(store.corpus_dir / shard["file"], kind="corpus shard")
            local_ids = header.get("sources")
            if not isinstance(local_ids, list):
                raise WorkspaceError(f"{store.corpus_dir / shard['file']}: corpus shard metadata lacks its source list")
            to_global = torch.tensor([source_index.setdefault(str(s), len(source_index)) for s in local_ids],
                                     dtype=torch.int64)
            cols = store.load_shard(shard_no, split=None, columns=("latents", "source", "frame", "time"))
            n = int(cols["latents"].shape[0])
            for a in range(0, n, rows_per_batch):
                cancel.raise_if_cancelled()
                b = min(n, a + rows_per_batch)
                _, f = sae.encode(cols["latents"][a:b].to(dev))
                ft = f.T.contiguous()                                   # [F, B]
                rows = ft.shape[1]
                # All histograms at once: one bincount over flat (feature, bin) ids of active entries.
                where = torch.nonzero(ft.view(-1) > 0).squeeze(1)
                values = ft.view(-1)[where]
                feats = where // rows
                bins = ((values.log() - log_low) / log_step).floor_().clamp_(0, hist_bins - 1).long()
                # The log is only a guess at the bin: settle it against the stored edges exactly.
                bins -= ((values < edges_t[bins]) & (bins > 0)).long()
                bins += ((values >= edges_t[bins + 1]) & (bins < hist_bins - 1)).long()
                hist += torch.bincount(feats * hist_bins + bins, minlength=n_feat * hist_bins)
                sum_f += ft.sum(dim=1).double()   # float32 within a batch, float64 across batches
                # Top-k: only features whose batch maximum beats their current k-th value.
                cand = torch.nonzero(ft.amax(dim=1) > run_val[:, -1]).squeeze(1)
                if cand.numel():
                    merged = torch.cat([run_val[cand], ft[cand]], dim=1)
                    new_val, idx = torch.topk(merged, k, dim=1)
                    from_run = idx < k
                    run_idx = idx.clamp(max=k - 1)
                    batch_idx = (idx - k).clamp(min=0)
                    b_src = to_global[cols["source"][a:b].long()].to(dev)
                    b_frame = cols["frame"][a:b].to(dev, torch.int64)
                    b_time = cols["time"][a:b].to(dev, torch.float32)
                    run_src[cand] = torch.where(from_run, run_src[cand].gather(1, run_idx), b_src[batch_idx])
                    run_frame[cand] = torch.where(from_run, run_frame[cand].gather(1, run_idx), b_frame[batch_idx])
                    run_time[cand] = torch.where(from_run, run_time[cand].gather(1, run_idx), b_time[batch_idx])
                    run_val[cand] = new_val
                done += b - a
                progress(Progress("feature index", done, total, f"{done} / {total} frames"))
    cancel.raise_if_cancelled()

    hist_np = hist.view(n_feat, hist_bins).cpu().numpy()
    counts = hist_np.sum(axis=1)
    frames = max(1, done)
    top_val = run_val.cpu().numpy()
    real = top_val > 0  # slots that held a real active frame
    top_val = np.where(real, top_val, 0.0).astype(np.float32)
    labels_by_id = {sid: rec.label for sid, rec in manifest.sources.items()}
    source_ids = sorted(source_index, key=source_index.__getitem__)
    index = FeatureIndex(
        density=(counts / frames).astype(np.float32),
        mean_active=np.where(counts > 0, sum_f.cpu().numpy() / np.maximum(counts, 1), 0.0).astype(np.float32),
        hist_edges=edges, hist=hist_np.astype(np.int64), top_activation=top_val,
        top_source=np.where(real, run_src.cpu().numpy(), -1).astype(np.int32),
        top_frame=np.where(real, run_frame.cpu().numpy(), -1).astype(np.int32),
        top_time=np.where(real, run_time.cpu().numpy(), -1.0).astype(np.float32),
        source_ids=source_ids, source_labels=[labels_by_id.get(s, s) for s in source_ids],
        sae_name=sae_name, sae_fingerprint=sae.fingerprint(), corpus_fingerprint=corpus_fingerprint(workspace),
        n_frames=done, build_seconds=time.monotonic() - started)
    cancel.raise_if_cancelled()
    index.save(feature_index_path(workspace, sae_name))
    progress(Progress("feature index", total, total, f"indexed {done} frames"))
    return index


def load_feature_index(workspace: Workspace, sae_name: str) -> FeatureIndex | None:
    """The saved index of SAE ``sae_name``; None when there is none, it cannot be read, or it is
    stale (the SAE's weights or the corpus changed since it was built).  A file from a newer
    audiosae raises ``WorkspaceError`` rather than being silently rebuilt over."""
    path = feature_index_path(workspace, sae_name)
    if not path.is_file():
        return None
    try:
        meta = load_tensors_metadata(path, kind="feature index")
    except WorkspaceError:
        return None  # truncated or corrupt: a rebuild replaces it
    check_schema(meta, path, kind="feature index")
    try:
        if meta.get("sae_fingerprint") != sae_fingerprint(workspace, sae_name):
            return None
        if meta.get("corpus_fingerprint") != corpus_fingerprint(workspace):
            return None
        return FeatureIndex.read(path)
    except WorkspaceError:
        return None


def load_or_build_feature_index(workspace: Workspace, sae_name: str, *, device: str = "cpu",
                                progress: ProgressSink = null_progress, cancel: CancelToken | None = None,
                                **build_options: Any) -> FeatureIndex:
    """The saved index when it is current, else a fresh build (a job: the studio runs it in a worker)."""
    index = load_feature_index(workspace, sae_name)
    if index is not None:
        progress(Progress("feature index", 1, 1, "loaded"))
        return index
    return build_feature_index(workspace, sae_name, device=device, progress=progress, cancel=cancel,
                               **build_options)


# ---- audio of corpus sources ----------------------------------------------------------------
# Finding a corpus source again is written once, in audiosae.explore.sources (old names kept).
_builtin_source = builtin_source
_rendered_builtin = rendered_builtin


def load_source_window(workspace: Workspace, source_id: str, start: float, seconds: float, *,
                       sample_rate: int | None = None, channels: int | None = None
                       ) -> tuple[np.ndarray, int, float]:
    """``seconds`` of corpus source ``source_id`` from ``start`` (s), as ``(wave [C, N], rate, start)``.

    Defaults to the workspace backend's rate and channels.  The window is moved inside the
    source when it would run over an end (and cut to the source when it is shorter).  User
    files are decoded in part (``load_audio(start=, duration=)``); built-in corpus sources are
    re-rendered (seed: ``workspace.meta["corpus"]["builtin_seed"]`` or ``["seed"]``, else 0;
    a source whose length differs from the manifest's is refused) and cached.
    """
    if not seconds > 0:
        raise AudioSAEError(f"snippet length must be positive, got {seconds}")
    spec = backend_spec(workspace.backend_name)
    rate = int(sample_rate or spec.sample_rate)
    chans = int(channels or spec.channels)
    record = workspace.manifest().sources.get(source_id)
    if record is None:
        raise WorkspaceError(f"{workspace.root}: the corpus has no source {source_id!r}")
    length = float(record.seconds)
    start = min(max(0.0, float(start)), max(0.0, length - seconds))
    n = int(round(seconds * rate))
    first = int(round(start * rate))
    corpus = source_id.split("/", 1)[0]
    if record.path is None and corpus in BUILTIN_CORPORA:
        seed = corpus_seed(workspace)
        whole = _rendered_builtin(corpus, seed, source_id, rate, chans, length)
        wave = whole[:, first:first + n]
    elif record.path is not None:
        wave = load_audio(record.path, rate, chans, start=start, duration=seconds)[:, :n]
    else:
        raise WorkspaceError(f"source {source_id!r} has no file and is not from a built-in corpus")
    return np.ascontiguousarray(wave, dtype=np.float32), rate, first / rate


# ---- boost ----------------------------------------------------------------------------------
@dataclass
class BoostedWindow:
    """Audio of a window with and without the boost, at the backend's rate."""

    boosted: np.ndarray     # [C, N] decoded from latents + amount * direction
    original: np.ndarray    # [C, N] the clip's own audio of the same window
    sample_rate: int
    start_time: float       # s from the clip start
    frames: tuple[int, int]
    amount: float
    level: dict | None = None  # what the level rule did to ``boosted`` (steering.level.LevelReport)


def boost_window(n_frames: int, frame: int, frame_rate: float, window_seconds: float = 2.0) -> tuple[int, int]:
    """Frames ``[a, b)`` of a ~``window_seconds`` window centred on ``frame``, moved inside the clip."""
    if n_frames < 1:
        raise AudioSAEError("the clip has no frames")
    frame = min(max(int(frame), 0), n_frames - 1)
    span = max(1, int(round(window_seconds * frame_rate)))
    a = min(max(0, frame - span // 2), max(0, n_frames - span))
    return a, min(n_frames, a + span)


def render_boost(backend: LatentBackend, latents: np.ndarray, wave: np.ndarray, frame: int,
                 direction: np.ndarray, amount: float, *, window_seconds: float = 2.0, limit: bool = True,
                 progress: ProgressSink = null_progress, cancel: CancelToken | None = None) -> BoostedWindow:
    """Decode ``latents[a:b] + amount * direction`` for a ~``window_seconds`` window around ``frame``.

    ``latents`` ``[T, D]`` and ``wave`` ``[C, N]`` are the clip's (e.g. ``ClipAnalysis``);
    ``direction`` is the feature's decoder row (``decoder_direction``), so ``amount`` is the
    change of ``f_j`` the decoder would turn into this latent change.  The decode gets the
    window's own audio as reference, aligned to its first frame.

    ``boosted`` goes through the level rule (``steering.level``): its loudness matched to the
    window's original audio, its peaks limited to -1 dBFS (``level`` says what was done), so
    the A/B compares what the feature does, not a jump in level.  ``limit=False``: raw.
    """
    cancel = cancel or CancelToken()
    lat = np.asarray(latents, dtype=np.float32)
    if lat.ndim != 2 or lat.shape[0] == 0:
        raise AudioSAEError(f"boost needs latents [T, D], got shape {list(lat.shape)}")
    direction = np.asarray(direction, dtype=np.float32).reshape(-1)
    if direction.shape[0] != lat.shape[1]:
        raise AudioSAEError(f"decoder direction has {direction.shape[0]} dims, latents {lat.shape[1]}")
    if not math.isfinite(amount):
        raise AudioSAEError(f"boost amount must be finite, got {amount}")
    a, b = boost_window(lat.shape[0], frame, backend.frame_rate, window_seconds)
    hop = backend.hop_length
    progress(Progress("boost", 0, 1, "decoding"))
    reference = np.ascontiguousarray(wave[:, a * hop:b * hop], dtype=np.float32)
    boosted_latents = lat[a:b] + np.float32(amount) * direction[None, :]
    cancel.raise_if_cancelled()
    decoded = backend.decode(boosted_latents, reference=reference)
    cancel.raise_if_cancelled()
    n = reference.shape[1]
    boosted = np.zeros_like(reference)
    boosted[:, :min(n, decoded.shape[1])] = decoded[:, :n]
    from ..steering.level import apply_level_rule, rule_for

    # The level rule of every steered output (rule_for: loudness matched, peaks limited; raw on request).
    boosted, level = apply_level_rule(boosted, reference, backend.sample_rate, rule_for(None, limit=limit))
    progress(Progress("boost", 1, 1, "done"))
    return BoostedWindow(boosted=boosted, original=reference, sample_rate=backend.sample_rate,
                         start_time=a * hop / backend.sample_rate, frames=(a, b), amount=float(amount),
                         level=level.to_dict())
