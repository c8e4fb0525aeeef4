"""A workspace: one folder holding a corpus of latent frames and everything trained on it.

Layout (every file written atomically, every JSON/safetensors header carries a schema
version)::

    WORKSPACE/
      workspace.json              backend (name + options), attribute spec, corpus summary
      corpus/manifest.json        sources (split, shard, frame range), committed shards, skipped files
      corpus/shard-00000.safetensors
                                  latents float16 [N, D], codes int32 [N, K] (discrete backends),
                                  raw attributes (midi, periodicity, loudness_db, centroid_hz),
                                  ground-truth midi (built-in corpora), index: source (row into the
                                  shard's source list in its metadata), frame, time (s)
      saes/<name>/                cfg.json + sae.safetensors + metrics.json (SAELens convention)
      probes/<name>/              one ProbeSet per SAE, plus probes/raw-latent (baseline on x)
      steer/                      steered audio and its JSON side-cars
      checkpoints/                training state for resume

Raw attribute values are stored, not classes: class labels come from the attribute spec at
read time, so the timbre range (fit on the training split) or the bins can change without
re-encoding, and probes trained on one corpus apply to another with the same spec.

Crash safety of ``build``: a shard is written (temp file + rename) before the manifest that
names it.  A run killed at any point restarts from the manifest: sources it lists are done,
a shard file it does not list is an orphan and is overwritten.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from . import __version__
from .attributes import AttributeSpec, FrameAttributes
from .corpus import Source, ground_truth_midi, split_key, validation_split
from .errors import AudioInputError, AudioSAEError, WorkspaceError
from .frames import LABEL_COLUMNS, Split
from .jobs import CancelToken, Progress, ProgressSink, null_progress
from .storage import (SCHEMA_VERSION, TensorLayout, atomic_write_json, check_schema, load_tensors,
                      load_tensors_metadata, read_json_object, require_int, save_tensors, tensor_file_layout)

WORKSPACE_FILE = "workspace.json"
MANIFEST_FILE = "manifest.json"
DEFAULT_SHARD_FRAMES = 16384
RAW_COLUMNS = ("midi", "periodicity", "loudness_db", "centroid_hz")


@dataclass
class SourceRecord:
    source_id: str
    label: str
    path: str | None
    split: str
    shard: int
    n_frames: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Manifest:
    shards: list[dict[str, Any]] = field(default_factory=list)   # {"file", "n_frames", "n_train", "n_val"}
    sources: dict[str, SourceRecord] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)               # one-line problems
    complete: bool = False
    warnings: list[str] = field(default_factory=list)              # used, but clipped / truncated

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "complete": self.complete, "shards": self.shards,
                "sources": {k: v.to_dict() for k, v in self.sources.items()}, "skipped": self.skipped,
                "warnings": self.warnings}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> "Manifest":
        check_schema(data, path, kind="corpus manifest")
        try:
            sources = {str(k): SourceRecord(**v) for k, v in data.get("sources", {}).items()}
            for record in sources.values():  # a relative file path lies inside the workspace (the demo's music)
                if record.path is not None and not Path(record.path).is_absolute():
                    record.path = str(Path(path).parent.parent / record.path)
            for record in sources.values():
                if record.split not in ("train", "val") or not isinstance(record.shard, int):
                    raise ValueError(f"source {record.source_id!r} has split {record.split!r}, "
                                     f"shard {record.shard!r}")
            shards = [dict(s) for s in data.get("shards", [])]
            for s in shards:
                name = s["file"]
                # Shards live in the corpus folder: a path elsewhere is an edit, never ours.
                if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
                    raise ValueError(f"shard file {name!r} is not a file name in the corpus folder")
                for key in ("n_frames", "n_train", "n_val"):
                    if not isinstance(s.get(key, 0), int) or s.get(key, 0) < 0:
                        raise ValueError(f"shard {name} has {key} = {s.get(key)!r}")
            skipped = [str(line) for line in data.get("skipped", [])]
            warnings = [str(line) for line in data.get("warnings", [])]
        except KeyError as exc:
            raise WorkspaceError(f"{path}: corpus manifest is malformed (an entry lacks {exc}); "
                                 f"was it edited by hand?") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise WorkspaceError(f"{path}: corpus manifest is malformed ({exc}); was it edited by hand?") from None
        return cls(shards=shards, sources=sources, skipped=skipped, complete=bool(data.get("complete", False)),
                   warnings=warnings)


class Workspace:
    """Open or create with ``Workspace.create`` / ``Workspace.open``."""

    def __init__(self, root: Path, meta: dict[str, Any]):
        self.root = Path(root)
        self.meta = meta

    # ---- creation / opening -------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, backend_name: str, backend_options: dict[str, Any] | None = None,
               spec: AttributeSpec | None = None, *, exist_ok: bool = True) -> "Workspace":
        root = Path(root)
        if (root / WORKSPACE_FILE).exists():
            ws = cls.open(root)
            if not exist_ok:
                raise WorkspaceError(f"{root}: a workspace already exists here")
            if ws.backend_name != backend_name:
                raise WorkspaceError(f"{root}: workspace uses backend {ws.backend_name!r}, not {backend_name!r}; "
                                     f"choose another folder")
            return ws
        if root.exists() and any(root.iterdir()):
            raise WorkspaceError(f"{root}: folder exists and is not empty (and is not a workspace)")
        meta = {
            "schema_version": SCHEMA_VERSION,
            "created_by": f"audiosae {__version__}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "backend": {"name": backend_name, "options": backend_options or {}},
            "attribute_spec": (spec or AttributeSpec()).to_dict(),
            "corpus": {},
        }
        for sub in ("corpus", "saes", "probes", "steer"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        atomic_write_json(root / WORKSPACE_FILE, meta)
        return cls(root, meta)

    @classmethod
    def open(cls, root: str | Path) -> "Workspace":
        root = Path(root)
        path = root / WORKSPACE_FILE
        if not path.is_file():
            raise WorkspaceError(f"{root}: not an audiosae workspace (no {WORKSPACE_FILE})")
        meta = read_json_object(path, kind="workspace file")
        backend = meta.get("backend")
        if not isinstance(backend, dict) or not isinstance(backend.get("name"), str):
            raise WorkspaceError(f"{path}: workspace file lacks 'backend.name'")
        if not isinstance(backend.get("options") or {}, dict):
            raise WorkspaceError(f"{path}: workspace file 'backend.options' must be a JSON object; was it edited?")
        corpus = meta.get("corpus") or {}
        if not isinstance(corpus, dict):
            raise WorkspaceError(f"{path}: workspace file 'corpus' must be a JSON object; was it edited?")
        if corpus.get("latent_dim") is not None:
            require_int(corpus["latent_dim"], "corpus.latent_dim", path, "workspace file", minimum=1)
        ws = cls(root, meta)
        ws.attribute_spec  # validate now, not at first use
        return ws

    def save_meta(self) -> None:
        atomic_write_json(self.root / WORKSPACE_FILE, self.meta)

    # ---- properties ----------------------------------------------------------------
    @property
    def backend_name(self) -> str:
        return self.meta["backend"]["name"]

    @property
    def backend_options(self) -> dict[str, Any]:
        return dict(self.meta["backend"].get("options") or {})

    @property
    def attribute_spec(self) -> AttributeSpec:
        try:
            return AttributeSpec.from_dict(self.meta["attribute_spec"], source=str(self.root / WORKSPACE_FILE))
        except KeyError:
            raise WorkspaceError(f"{self.root / WORKSPACE_FILE}: lacks 'attribute_spec'") from None

    def set_attribute_spec(self, spec: AttributeSpec) -> None:
        self.meta["attribute_spec"] = spec.to_dict()
        self.save_meta()

    def backend(self, device: str | None = "auto", *, progress: Any = None, cancel: Any = None):
        """The workspace's latent backend; ``progress``/``cancel`` cover a weights download."""
        from .codecs import get_backend

        return get_backend(self.backend_name, device=device, progress=progress, cancel=cancel,
                           **self.backend_options)

    @property
    def corpus_dir(self) -> Path:
        return self.root / "corpus"

    def sae_dir(self, name: str) -> Path:
        return self.root / "saes" / name

    def probe_dir(self, name: str) -> Path:
        return self.root / "probes" / name

    def sae_names(self) -> list[str]:
        base = self.root / "saes"
        return sorted(p.name for p in base.iterdir() if (p / "cfg.json").is_file()) if base.is_dir() else []

    # ---- corpus ----------------------------------------------------------------------
    def manifest(self) -> Manifest:
        path = self.corpus_dir / MANIFEST_FILE
        if not path.exists():
            return Manifest()
        return Manifest.from_dict(read_json_object(path, kind="corpus manifest", versioned=False), path)

    def write_manifest(self, manifest: Manifest) -> None:
        atomic_write_json(self.corpus_dir / MANIFEST_FILE, manifest.to_dict())

    @property
    def latent_dim(self) -> int | None:
        """The corpus' latent width as the build recorded it (None before a build)."""
        dim = (self.meta.get("corpus") or {}).get("latent_dim")
        return int(dim) if isinstance(dim, int) else None

    def frame_store(self, spec: AttributeSpec | None = None, buffer_shards: int = 2) -> "ShardStore":
        manifest = self.manifest()
        if not manifest.shards:
            raise WorkspaceError(f"{self.root}: the corpus is empty; run `audiosae build` first")
        return ShardStore(self.corpus_dir, manifest, spec or self.attribute_spec, buffer_shards=buffer_shards,
                          latent_dim=self.latent_dim)


# ---- reading shards -------------------------------------------------------------------------
SHARD_COLUMNS = ("latents", "source", "frame", "time", *RAW_COLUMNS)
_SHARD_INTEGER_COLUMNS = ("source", "frame", "codes")


@dataclass(frozen=True)
class _Layout:
    """``TensorLayout`` for a loaded tensor (its family from torch, not a safetensors name)."""

    dtype: str
    shape: tuple[int, ...]
    family: str


def _check_shard_layout(path: Path, layout: dict[str, TensorLayout] | dict[str, _Layout], meta: dict[str, Any],
                        latent_dim: int | None) -> int:
    """Columns, dtypes and shapes of a shard (from its header or its tensors); returns its rows."""
    if not isinstance(meta.get("sources"), list):
        raise WorkspaceError(f"{path}: corpus shard metadata lacks its source list")
    for name in SHARD_COLUMNS:
        if name not in layout:
            raise WorkspaceError(f"{path}: corpus shard lacks tensor {name!r}")
    latents = layout["latents"]
    if len(latents.shape) != 2 or latents.family != "float":
        raise WorkspaceError(f"{path}: corpus shard tensor 'latents' is {latents.dtype} {list(latents.shape)}, "
                             f"expected floats [frames, latent dim]")
    n, width = latents.shape
    if latent_dim is not None and width != latent_dim:
        raise WorkspaceError(f"{path}: corpus shard latents are {width} wide, the corpus' latent dim is "
                             f"{latent_dim} (a shard from another backend?)")
    for name, column in layout.items():
        if name == "latents":
            continue
        if not column.shape or column.shape[0] != n:
            raise WorkspaceError(f"{path}: corpus shard tensor {name!r} has {column.shape[0] if column.shape else 0} "
                                 f"rows, latents have {n}")
        wanted = "int" if name in _SHARD_INTEGER_COLUMNS else "float"
        if name in (*SHARD_COLUMNS, "gt_midi", "codes") and column.family != wanted:
            raise WorkspaceError(f"{path}: corpus shard tensor {name!r} is {column.dtype}, expected "
                                 f"{'integers' if wanted == 'int' else 'floats'}")
    return n


def check_shard_file(path: Path, latent_dim: int | None = None) -> dict[str, Any]:
    """A shard's header checks (schema, columns, dtypes, shapes, complete data) without reading
    its data: cheap enough to run over every shard of a large corpus."""
    layout, meta = tensor_file_layout(path, kind="corpus shard")
    check_schema(meta, path, kind="corpus shard")
    _check_shard_layout(path, layout, meta, latent_dim)
    return meta


def _family(t: torch.Tensor) -> str:
    return "float" if t.dtype.is_floating_point else "bool" if t.dtype == torch.bool else "int"


def read_shard(path: Path, latent_dim: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A shard's tensors and metadata, checked: a shard that is cut, edited, from another build or
    holds NaN latents raises ``WorkspaceError`` naming it, never reaches training as garbage."""
    meta = load_tensors_metadata(path, kind="corpus shard")
    check_schema(meta, path, kind="corpus shard")
    tensors = load_tensors(path, kind="corpus shard")
    layout = {k: _Layout(str(t.dtype).removeprefix("torch."), tuple(t.shape), _family(t)) for k, t in tensors.items()}
    n = _check_shard_layout(path, layout, meta, latent_dim)
    source = tensors["source"]
    if n and (int(source.min()) < 0 or int(source.max()) >= len(meta["sources"])):
        raise WorkspaceError(f"{path}: corpus shard rows point outside its source list "
                             f"({len(meta['sources'])} sources); was it edited?")
    if not bool(torch.isfinite(tensors["latents"]).all()):
        raise WorkspaceError(f"{path}: corpus shard latents contain NaN or inf")
    return tensors, meta


EXTRA_PREFIX = "x."  # raw columns of registered attributes: "x.<column>" (audiosae.attribute_registry)


def shard_attributes(tensors: dict[str, torch.Tensor]) -> FrameAttributes:
    extra = {k[len(EXTRA_PREFIX):]: t.double().numpy() for k, t in tensors.items() if k.startswith(EXTRA_PREFIX)}
    return FrameAttributes(**{c: tensors[c].double().numpy() for c in RAW_COLUMNS}, extra=extra)


class ShardStore:
    """``FrameStore`` over the shards of a workspace, streaming ``buffer_shards`` at a time.

    Shuffling: the shard order is permuted by (seed), then the rows of each buffer of
    shards are permuted, so memory holds at most ``buffer_shards`` shards while batches mix
    sources.  The order is a pure function of the seed, which makes training resumable.
    """

    def __init__(self, corpus_dir: Path, manifest: Manifest, spec: AttributeSpec, buffer_shards: int = 2,
                 latent_dim: int | None = None):
        self.corpus_dir = corpus_dir
        self.manifest = manifest
        self.spec = spec
        self.buffer_shards = max(1, buffer_shards)
        first, _ = read_shard(corpus_dir / manifest.shards[0]["file"], latent_dim)
        self.d_in = int(first["latents"].shape[1])
        self._split_of = {sid: rec.split for sid, rec in manifest.sources.items()}

    def n_frames(self, split: Split) -> int:
        key = "n_train" if split == "train" else "n_val"
        return int(sum(s.get(key, 0) for s in self.manifest.shards))

    # ---- sources, for cross-validation and inner splits (see ``audiosae.probes``) ------
    def source_table(self) -> dict[str, tuple[str, str, int]]:
        """``{source_id: (split_key, split, n_frames)}`` of the sources with frames; the key
        does not depend on where the files lie (``corpus.split_key``)."""
        table = {}
        for sid, rec in self.manifest.sources.items():
            side = self._split_of.get(sid, rec.split)
            if rec.n_frames > 0 and side in ("train", "val"):    # not those a view leaves out
                table[sid] = (split_key(sid, rec.path), side, int(rec.n_frames))
        return table

    def with_splits(self, split_of: dict[str, str]) -> "ShardStore":
        """The same shards with the sources assigned to splits anew: ``split_of[source_id]`` is
        "train", "val" or anything else (left out).  Nothing is read or written."""
        view = copy.copy(self)
        view._split_of = {sid: str(split_of.get(sid, "-")) for sid in self.manifest.sources}
        shards = [dict(s, n_train=0, n_val=0) for s in self.manifest.shards]
        for sid, rec in self.manifest.sources.items():
            side = view._split_of[sid]
            if side in ("train", "val") and 0 <= rec.shard < len(shards):
                shards[rec.shard]["n_" + side] += int(rec.n_frames)
        view.manifest = dataclasses.replace(self.manifest, shards=shards)
        return view

    def load_shard(self, index: int, split: Split | None = None,
                   columns: Sequence[str] = ("latents", *LABEL_COLUMNS)) -> dict[str, torch.Tensor]:
        """Rows of one shard (optionally only one split) as tensors, labels classified."""
        path = self.corpus_dir / self.manifest.shards[index]["file"]
        tensors, meta = read_shard(path, self.d_in)
        listed = self.manifest.shards[index].get("n_frames")
        if listed is not None and int(tensors["latents"].shape[0]) != listed:
            raise WorkspaceError(f"{path}: corpus shard holds {tensors['latents'].shape[0]} frames, the corpus "
                                 f"manifest says {listed} (a shard from another build?)")
        out: dict[str, torch.Tensor] = {}
        if split is not None:
            splits = np.array([self._split_of.get(sid, "train") for sid in meta["sources"]])
            keep = torch.from_numpy(splits[tensors["source"].numpy()] == split)
        else:
            keep = torch.ones(tensors["latents"].shape[0], dtype=torch.bool)
        labels: dict[str, np.ndarray] = {}
        label_columns = self.spec.attributes
        if any(c in label_columns for c in columns):
            labels = self.spec.classify(shard_attributes(tensors))
        for c in columns:
            if c in label_columns:
                out[c] = torch.from_numpy(np.asarray(labels[c], dtype=np.int64))[keep]
            elif c == "latents":
                out[c] = tensors["latents"][keep].float()
            elif c in tensors:
                out[c] = tensors[c][keep]
            else:
                raise WorkspaceError(f"corpus shards have no column {c!r}")
        return out

    def iter_batches(self, split: Split, batch_size: int, *, shuffle: bool, seed: int = 0,
                     columns: tuple[str, ...] = ("latents",)) -> Iterator[dict[str, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        n_shards = len(self.manifest.shards)
        order = torch.randperm(n_shards, generator=gen).tolist() if shuffle else list(range(n_shards))
        key = "n_train" if split == "train" else "n_val"
        order = [i for i in order if self.manifest.shards[i].get(key, 0) > 0]
        carry: dict[str, torch.Tensor] | None = None
        for start in range(0, len(order), self.buffer_shards):
            parts = [self.load_shard(i, split, columns) for i in order[start:start + self.buffer_shards]]
            buf = {c: torch.cat([p[c] for p in parts]) for c in columns}
            if shuffle:
                perm = torch.randperm(buf[columns[0]].shape[0], generator=gen)
                buf = {c: v[perm] for c, v in buf.items()}
            if carry is not None:
                buf = {c: torch.cat([carry[c], buf[c]]) for c in columns}
            n = buf[columns[0]].shape[0]
            full = (n // batch_size) * batch_size
            for b in range(0, full, batch_size):
                yield {c: v[b:b + batch_size] for c, v in buf.items()}
            carry = {c: v[full:] for c, v in buf.items()} if full < n else None
        if carry is not None and carry[columns[0]].shape[0] > 0:
            yield carry


# ---- building ----------------------------------------------------------------------------
@dataclass
class BuildSummary:
    sources_done: int
    sources_total: int
    frames: int
    train_frames: int
    val_frames: int
    seconds_of_audio: float
    skipped: list[str]
    resumed_sources: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _empty_pending() -> dict[str, list]:
    return {k: [] for k in ("latents", "codes", "source", "frame", "time", "gt_midi", "extra", *RAW_COLUMNS)}


def write_shard(ws: Workspace, manifest: Manifest, pending: dict[str, list], pending_sources: Sequence[Source],
                splits: dict[str, str], frame_rate: float) -> None:
    """Write the pending sources' frames as the next shard, then the manifest naming it (a build's
    flush; a torchrun build's merge writes the same shards through it)."""
    index = len(manifest.shards)
    name = f"shard-{index:05d}.safetensors"
    tensors: dict[str, np.ndarray] = {
        "latents": np.concatenate(pending["latents"]).astype(np.float16),
        "source": np.concatenate(pending["source"]).astype(np.int32),
        "frame": np.concatenate(pending["frame"]).astype(np.int32),
        "time": np.concatenate(pending["time"]).astype(np.float32),
        "gt_midi": np.concatenate(pending["gt_midi"]).astype(np.float32),
    }
    for c in RAW_COLUMNS:
        tensors[c] = np.concatenate(pending[c]).astype(np.float32)
    for c in sorted(set.intersection(*(set(e) for e in pending["extra"]))):
        tensors[EXTRA_PREFIX + c] = np.concatenate([e[c] for e in pending["extra"]]).astype(np.float32)
    if pending["codes"] and all(c is not None for c in pending["codes"]):
        tensors["codes"] = np.concatenate(pending["codes"]).astype(np.int32)
    ids = [s.source_id for s in pending_sources]
    save_tensors(ws.corpus_dir / name, tensors, {
        "schema_version": SCHEMA_VERSION, "sources": ids, "backend": ws.backend_name,
        "frame_rate": frame_rate})
    split_rows = np.array([splits[i] for i in ids])[tensors["source"]]
    manifest.shards.append({"file": name, "n_frames": int(tensors["latents"].shape[0]),
                            "n_train": int(np.count_nonzero(split_rows == "train")),
                            "n_val": int(np.count_nonzero(split_rows == "val"))})
    for local, src in enumerate(pending_sources):
        manifest.sources[src.source_id] = SourceRecord(
            source_id=src.source_id, label=src.label, path=src.path, split=splits[src.source_id],
            shard=index, n_frames=int(np.count_nonzero(tensors["source"] == local)), seconds=src.seconds)
    ws.write_manifest(manifest)  # after the shard: a crash in between leaves an orphan, not a hole


def build_corpus(ws: Workspace, sources: Sequence[Source], *, device: str | None = "auto",
                 problems: Sequence[AudioInputError] = (), shard_frames: int = DEFAULT_SHARD_FRAMES,
                 val_fraction: float = 0.1, seed: int = 0, crepe_model: str | None = None,
                 attributes: Sequence[str] | None = None, attribute_params: dict[str, dict] | None = None,
                 progress: ProgressSink = null_progress, cancel: CancelToken | None = None,
                 split_of: dict[str, str] | None = None, fit: bool = True) -> BuildSummary:
    """Encode ``sources`` with the workspace's backend, label every frame, write shards.

    ``attributes``: registered attributes (``audiosae.attribute_registry``) labelled besides the
    paper's three, added to the workspace's spec (None: those the spec already has);
    ``attribute_params``: their params where not the defaults (the instrument side-car).
    Resumable: sources already in the manifest are skipped.  Bad files become entries in
    the manifest's ``skipped`` list; the build goes on with the rest.  ``split_of`` (a rank's
    part of a torchrun build, ``audiosae.distributed.build``): the whole corpus' split instead
    of one over ``sources``; ``fit`` False leaves the timbre and extra-attribute fits to the merge.
    """
    cancel = cancel or CancelToken()
    manifest = ws.manifest()
    spec = ws.attribute_spec
    if crepe_model:
        spec.crepe_model = crepe_model
        ws.set_attribute_spec(spec)
    if attributes is not None or attribute_params:
        spec = spec.with_attributes(list(attributes or ()), attribute_params)
        ws.set_attribute_spec(spec)
    _remove_orphans(ws.corpus_dir, manifest)
    remove_stale_temp_files(ws.root)
    splits = validation_split(list(sources), fraction=val_fraction, seed=seed) if split_of is None else dict(split_of)
    for rec in manifest.sources.values():  # keep splits decided by earlier runs
        splits[rec.source_id] = rec.split
    for p in problems:
        if str(p) not in manifest.skipped:
            manifest.skipped.append(str(p))
    todo = [s for s in sources if s.source_id not in manifest.sources]
    resumed = len(sources) - len(todo)
    backend = ws.backend(device, progress=progress, cancel=cancel)
    total_s = sum(s.seconds for s in todo) or 1.0
    done_s = 0.0
    pending = _empty_pending()
    pending_sources: list[Source] = []
    pending_frames = 0

    def flush() -> None:
        nonlocal pending, pending_sources, pending_frames
        if not pending_sources:
            return
        write_shard(ws, manifest, pending, pending_sources, splits, backend.frame_rate)
        pending, pending_sources, pending_frames = _empty_pending(), [], 0

    for src in todo:
        cancel.raise_if_cancelled()
        progress(Progress("build", done_s, total_s, f"encoding {src.label}"))
        source_warnings: list[str] = []
        try:
            wave = src.load(backend.sample_rate, backend.channels, on_warning=source_warnings.append)
        except AudioInputError as exc:
            manifest.skipped.append(str(exc))
            done_s += src.seconds
            continue
        cancel.raise_if_cancelled()
        encoded = backend.encode_long(wave, cancel=cancel)
        cancel.raise_if_cancelled()
        n = encoded.latents.shape[0]
        times = backend.frame_centers(n)
        def labelling(event: Progress, src: Source = src, base: float = done_s) -> None:
            progress(Progress("build", base + (event.fraction or 0.0) * src.seconds, total_s,
                              f"labelling {src.label}"))

        attrs = spec.measure(wave, backend.sample_rate, times, hop_length=backend.hop_length,
                             device=str(backend.device), progress=labelling, cancel=cancel, source=src)
        local = len(pending_sources)
        pending["latents"].append(encoded.latents)
        pending["codes"].append(encoded.codes)
        pending["source"].append(np.full(n, local, dtype=np.int32))
        pending["frame"].append(np.arange(n, dtype=np.int32))
        pending["time"].append(times.astype(np.float32))
        gt = ground_truth_midi(src.notes, times) if src.notes else np.full(n, np.nan, dtype=np.float32)
        pending["gt_midi"].append(np.asarray(gt, dtype=np.float32))
        for c in RAW_COLUMNS:
            pending[c].append(np.asarray(getattr(attrs, c), dtype=np.float32))
        pending["extra"].append(attrs.extra)
        pending_sources.append(src)
        pending_frames += n
        manifest.warnings.extend(w for w in source_warnings if w not in manifest.warnings)
        done_s += src.seconds
        if pending_frames >= shard_frames:
            flush()
    flush()

    summary = complete_corpus(ws, manifest, len(sources) + len(problems), resumed, fit=fit)
    # The seed also chose the built-in corpora's notes: snippets re-render sources with it.
    ws.meta["corpus"] = summary.to_dict() | {"frame_rate": backend.frame_rate, "latent_dim": backend.latent_dim,
                                             "seed": seed}
    ws.save_meta()
    progress(Progress("build", total_s, total_s, "corpus complete"))
    return summary


def complete_corpus(ws: Workspace, manifest: Manifest, sources_total: int, resumed: int, *,
                    fit: bool = True) -> BuildSummary:
    """Mark the manifest complete, fit the corpus-wide attribute parameters (the centroid range,
    the registered attributes' bins and clusters) unless ``fit`` is False, and sum up the build
    (one process' build and the distributed merge end the same way)."""
    manifest.complete = True
    ws.write_manifest(manifest)
    if manifest.shards and fit:
        fit_timbre_range(ws, manifest)
        fit_extra_attributes(ws, manifest)
    n_train = sum(s["n_train"] for s in manifest.shards)
    n_val = sum(s["n_val"] for s in manifest.shards)
    return BuildSummary(
        sources_done=len(manifest.sources), sources_total=sources_total,
        frames=n_train + n_val, train_frames=n_train, val_frames=n_val,
        seconds_of_audio=float(sum(r.seconds for r in manifest.sources.values())),
        skipped=list(manifest.skipped), resumed_sources=resumed, warnings=list(manifest.warnings))


def fit_timbre_range(ws: Workspace, manifest: Manifest) -> AttributeSpec:
    """Fit the timbre bins on the centroids of the training split's non-silent frames."""
    spec = ws.attribute_spec
    store = ShardStore(ws.corpus_dir, manifest, spec)
    centroids = []
    for i in range(len(manifest.shards)):
        rows = store.load_shard(i, "train", columns=("centroid_hz", "loudness_db"))
        voiced = rows["loudness_db"] > spec.silence_db
        centroids.append(rows["centroid_hz"][voiced].numpy())
    values = np.concatenate(centroids) if centroids else np.empty(0)
    if values.size == 0:
        raise AudioSAEError("the training split has no non-silent frames; cannot fit the timbre bins")
    spec = spec.with_timbre_range_from(values)
    ws.set_attribute_spec(spec)
    return spec


def fit_extra_attributes(ws: Workspace, manifest: Manifest | None = None) -> AttributeSpec:
    """Refit the registered attributes that fit on the corpus (``Attribute.fit``: the MFCC
    k-means centroids) on the training split's raw columns; a no-op when none does."""
    from .attribute_registry import get_attribute

    spec = ws.attribute_spec
    manifest = manifest or ws.manifest()
    columns = {c for name in spec.extra if get_attribute(name).fit is not None for c in get_attribute(name).columns}
    if not columns or not manifest.shards:
        return spec
    store = ShardStore(ws.corpus_dir, manifest, spec)
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(len(manifest.shards)):
        layout, _ = tensor_file_layout(ws.corpus_dir / manifest.shards[i]["file"], kind="corpus shard")
        want = [c for c in sorted(columns) if EXTRA_PREFIX + c in layout]
        rows = store.load_shard(i, "train", columns=("loudness_db", *(EXTRA_PREFIX + c for c in want)))
        for c in want:
            parts.setdefault(c, []).append(rows[EXTRA_PREFIX + c].double().numpy())
        parts.setdefault("loudness_db", []).append(rows["loudness_db"].double().numpy())
    raw = {c: np.concatenate(v) for c, v in parts.items() if v}
    spec = spec.fit_extra(raw)
    ws.set_attribute_spec(spec)
    return spec


def _remove_orphans(corpus_dir: Path, manifest: Manifest) -> None:
    """Delete shard files the manifest does not list and stale temp files (from a killed run)."""
    listed = {s["file"] for s in manifest.shards}
    if not corpus_dir.is_dir():
        return
    for p in corpus_dir.iterdir():
        if (p.name.startswith("shard-") and p.name not in listed) or p.name.endswith(".tmp"):
            try:
                p.unlink()
            except OSError:
                pass


def remove_stale_temp_files(root: Path) -> list[Path]:
    """Delete the temporary files ``storage.atomic_write_bytes`` leaves when a process is killed
    between creating and renaming one (``.NAME.XXXX.tmp``), anywhere under ``root``.

    Called when a writing job (build, train) starts on a workspace; a second job writing to
    the same workspace at the same time is not supported anyway.  Returns what was deleted.
    """
    removed = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for p in root.rglob(".*.tmp"):
        if p.is_file():
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
