"""A corpus source found again, written once: its file when it is still there, else the
built-in source re-made with the workspace's seed (cached); and the first clip a workspace
shows.  Used by the feature index's snippets, relabelling and the studio's first clip."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import AUDIO_EXTENSIONS
from ..corpus import BUILTIN_CORPORA, Source, builtin_sources
from ..errors import AudioSAEError, WorkspaceError
from ..workspace import Workspace

CLIPS_FOLDER = "clips"    # a workspace's own example clips (the demo ships two)
RENDER_CACHE_SIZE = 8     # rendered built-in sources kept (a 9 s source at 24 kHz is ~0.9 MB)

_builtin_lock = threading.Lock()
_builtin_lists: dict[tuple[str, int], dict[str, Source]] = {}
_rendered: OrderedDict[tuple[str, int, str, int, int], np.ndarray] = OrderedDict()


def corpus_seed(workspace: Workspace) -> int:
    """The seed the workspace's built-in corpus was made with (``builtin_seed``, else ``seed``, else 0)."""
    meta = workspace.meta.get("corpus") or {}
    return int(meta.get("builtin_seed", meta.get("seed", 0)))


def builtin_sources_by_id(corpus: str, seed: int) -> dict[str, Source]:
    """``{source id: Source}`` of a whole built-in corpus (cached per corpus and seed)."""
    key = (corpus, seed)
    with _builtin_lock:
        sources = _builtin_lists.get(key)
    if sources is None:
        sources = {s.source_id: s for s in builtin_sources(corpus, minutes=None, seed=seed)}
        with _builtin_lock:
            _builtin_lists[key] = sources
    return sources


def builtin_source(corpus: str, seed: int, source_id: str) -> Source:
    """One built-in source re-made; ``WorkspaceError`` when the corpus has no such id."""
    try:
        return builtin_sources_by_id(corpus, seed)[source_id]
    except KeyError:
        raise WorkspaceError(f"built-in corpus {corpus!r} (seed {seed}) has no source {source_id!r}") from None


def rendered_builtin(corpus: str, seed: int, source_id: str, sample_rate: int, channels: int,
                     expected_seconds: float | None) -> np.ndarray:
    """The audio of a built-in source (cached); refused when its length differs from ``expected_seconds``."""
    key = (corpus, seed, source_id, sample_rate, channels)
    with _builtin_lock:
        if key in _rendered:
            _rendered.move_to_end(key)
            return _rendered[key]
    source = builtin_source(corpus, seed, source_id)
    if expected_seconds is not None and abs(source.seconds - expected_seconds) > 1e-3:
        raise WorkspaceError(f"cannot re-render {source_id}: it lasts {source.seconds:.3f} s with seed {seed} "
                             f"but {expected_seconds:.3f} s in the corpus (built with another seed?)")
    wave = source.load(sample_rate, channels)
    with _builtin_lock:
        _rendered[key] = wave
        while len(_rendered) > RENDER_CACHE_SIZE:
            _rendered.popitem(last=False)
    return wave


def find_source(workspace: Workspace, record: Any) -> str | Source | None:
    """Corpus source ``record`` (a manifest record) again: its file's path while the file
    exists, else the built-in source re-made with the workspace's seed when its label matches
    the manifest's (which guards against a corpus built with another seed); None otherwise
    (a moved file, a user source, a corpus that cannot be made here, e.g. FluidSynth missing)."""
    if record.path and Path(record.path).is_file():
        return record.path
    corpus = record.source_id.split("/", 1)[0]
    if corpus not in BUILTIN_CORPORA:
        return None
    try:
        source = builtin_sources_by_id(corpus, corpus_seed(workspace)).get(record.source_id)
    except AudioSAEError:   # e.g. FluidSynth missing for the midi corpus
        return None
    return source if source is not None and source.label == record.label else None


def default_clip(workspace: Workspace) -> str | Source | None:
    """What to show first: the workspace's ``clips/`` folder, else its first validation source
    found again (``find_source``); None when there is nothing to show."""
    clips = workspace.root / CLIPS_FOLDER
    if clips.is_dir():
        files = sorted(p for p in clips.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        if files:
            return str(files[0])
    records = sorted(workspace.manifest().sources.values(), key=lambda r: (r.split != "val", r.source_id))
    failed: set[str] = set()
    for record in records:
        corpus = record.source_id.split("/", 1)[0]
        if corpus in failed:
            continue
        found = find_source(workspace, record)
        if found is not None:
            return found
        if corpus in BUILTIN_CORPORA and (corpus, corpus_seed(workspace)) not in _builtin_lists:
            failed.add(corpus)    # the corpus cannot be made here: skip its other sources fast
    return None
