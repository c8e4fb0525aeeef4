"""Adding attributes to a built workspace without re-encoding: ``audiosae label WS --attributes``.

``label_workspace`` adds registered attributes (``audiosae.attribute_registry``) to the
workspace's attribute spec, then re-reads each corpus source's audio (user files from their
path; built-in corpora re-rendered with the workspace's seed) at the backend's rate, measures
the new attributes' raw columns at the frame times stored in the shard, and rewrites each
shard with its new ``x.<column>`` tensors (temp file + rename: a shard is either the old one
or the new one).  The latents are never touched.  A source whose audio is missing or
unreadable gets NaN columns, i.e. label -1 (no label) for those attributes, and a warning.

Resumable: the spec is saved first, and shards that already hold every column are skipped,
so a killed run is re-run as is.  Afterwards the attributes that fit on the corpus (MFCC
k-means) are fit on the training split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .attribute_registry import get_attribute
from .errors import AudioInputError, AudioSAEError, WorkspaceError
from .jobs import CancelToken, Progress, ProgressSink, null_progress
from .storage import save_tensors
from .workspace import EXTRA_PREFIX, Workspace, fit_extra_attributes, read_shard

__all__ = ["LabelSummary", "label_workspace", "source_audio"]


@dataclass
class LabelSummary:
    attributes: list[str]
    shards_written: int
    shards_skipped: int
    sources_labelled: int
    frames: int
    missing_sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def source_audio(ws: Workspace, source_id: str, sample_rate: int, channels: int
                 ) -> tuple[np.ndarray, Any]:
    """``(wave [C, N], Source)`` of a corpus source: a user file decoded from its path, a built-in
    source re-rendered with the workspace's seed.  Raises ``AudioInputError`` when it cannot."""
    from .corpus import BUILTIN_CORPORA, Source
    from .explore.sources import builtin_source, corpus_seed   # the one "find this corpus source"

    record = ws.manifest().sources.get(source_id)
    if record is None:
        raise WorkspaceError(f"{ws.root}: the corpus has no source {source_id!r}")
    corpus = source_id.split("/", 1)[0]
    if record.path is None and corpus in BUILTIN_CORPORA:
        source = builtin_source(corpus, corpus_seed(ws), source_id)
    else:
        if record.path is None:
            raise AudioInputError(source_id, "the corpus records no file for this source")
        source = Source(source_id=source_id, label=record.label, path=record.path, seconds=record.seconds,
                        notes=None, corpus="user")
    return source.load(sample_rate, channels), source


def label_workspace(ws: Workspace, attributes: Sequence[str], *, params: dict[str, dict] | None = None,
                    progress: ProgressSink = null_progress, cancel: CancelToken | None = None,
                    relabel: bool = False) -> LabelSummary:
    """Add the registered ``attributes`` to a built workspace (see the module docstring).

    ``params``: an attribute's params where not the defaults (the instrument side-car);
    ``relabel``: measure again even where a shard already holds the columns.
    """
    import time

    from .codecs import backend_spec

    started = time.monotonic()
    cancel = cancel or CancelToken()
    names = [a for a in dict.fromkeys(attributes)]
    for name in names:
        get_attribute(name)  # unknown names fail before any work
    manifest = ws.manifest()
    if not manifest.shards:
        raise WorkspaceError(f"{ws.root}: the corpus is empty; run `audiosae build` first")
    spec = ws.attribute_spec.with_attributes(names, params)
    ws.set_attribute_spec(spec)
    columns = sorted({c for n in names for c in get_attribute(n).columns})
    geometry = backend_spec(ws.backend_name)
    summary = LabelSummary(attributes=names, shards_written=0, shards_skipped=0, sources_labelled=0, frames=0)
    total = len(manifest.shards)
    for index, shard in enumerate(manifest.shards):
        cancel.raise_if_cancelled()
        path = ws.corpus_dir / shard["file"]
        tensors, meta = read_shard(path, ws.latent_dim)
        if not relabel and all(EXTRA_PREFIX + c in tensors for c in columns):
            summary.shards_skipped += 1
            continue
        progress(Progress("label", index, total, f"labelling {shard['file']}"))
        n = int(tensors["latents"].shape[0])
        new = {c: None for c in columns}
        source_rows = tensors["source"].numpy()
        times_all = tensors["time"].double().numpy()
        for local, source_id in enumerate(meta["sources"]):
            cancel.raise_if_cancelled()
            rows = np.flatnonzero(source_rows == local)
            if not len(rows):
                continue
            try:
                wave, source = source_audio(ws, source_id, geometry.sample_rate, geometry.channels)
                raw = spec.measure_extra(wave, geometry.sample_rate, times_all[rows], hop_length=geometry.hop_length,
                                         names=names, source=source, cancel=cancel)
                summary.sources_labelled += 1
            except (AudioInputError, OSError, AudioSAEError) as exc:
                if isinstance(exc, WorkspaceError):
                    raise
                line = f"{source_id}: audio unavailable, its frames get no {', '.join(names)} label ({exc})"
                summary.missing_sources.append(source_id)
                summary.warnings.append(line)
                raw = None
            for c in columns:
                width = _width(c, names)
                if new[c] is None:
                    new[c] = np.full((n,) if width == 1 else (n, width), np.nan, dtype=np.float32)
                if raw is not None:
                    new[c][rows] = raw[c]
        out = {k: v for k, v in tensors.items()}
        for c in columns:
            out[EXTRA_PREFIX + c] = new[c]
        save_tensors(path, out, meta)   # atomic: the old shard or the new one, never half
        summary.shards_written += 1
        summary.frames += n
    fit_extra_attributes(ws)
    summary.seconds = time.monotonic() - started
    progress(Progress("label", total, total, "labels complete"))
    return summary


def _width(column: str, names: Sequence[str]) -> int:
    for name in names:
        attr = get_attribute(name)
        if column in attr.columns:
            return int(attr.columns[column])
    raise AudioSAEError(f"no attribute has column {column!r}")
