"""``audiosae build`` under torchrun: ranks share the sources, one manifest at the end.

* Sources are sorted by id and dealt round-robin (``plan.source_ranks``); the train/val split
  is the whole corpus' (``corpus.validation_split`` over every source, earlier runs' splits
  kept), so it does not depend on the world size.
* Rank r encodes and labels its sources on its own device (``cuda:LOCAL_RANK`` on GPUs: the
  codec and CREPE run batched there) into a part, ``WORKSPACE/build-parts/rank<r>-of-<W>/``, a
  workspace of its own written by the ordinary ``build_corpus``: shards atomically, the part's
  manifest after each shard, so a killed rank resumes where it stopped.
* After a barrier rank 0 merges: it reads the parts' frames source by source in the order one
  process would have encoded them and writes the shards one process would have written
  (``workspace.write_shard``, the manifest after each), fits the timbre and extra-attribute
  bins on the whole training split, then removes the parts.  Memory: one part shard per rank
  plus the shard being written.  A merge killed half way resumes at the next shard; parts of
  another world size are dropped (their sources are encoded again).  So the corpus is the same
  files, bit for bit, as one process' build of the same sources, for any world size, resumed
  or not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..corpus import validation_split
from ..errors import AudioSAEError
from ..jobs import CancelToken, Progress, ProgressSink, null_progress
from .context import Context, DistributedError
from .plan import source_ranks

PARTS_DIR = "build-parts"


def _part_root(ws_root: Path, rank: int, world_size: int) -> Path:
    return Path(ws_root) / PARTS_DIR / f"rank{rank}-of-{world_size}"


def _on_main(ctx: Context, what: str, fn) -> Any:
    """Run ``fn`` on rank 0 and give every rank its result, or raise its error on every rank."""
    result, error = None, None
    if ctx.is_main:
        try:
            result = fn()
        except AudioSAEError as exc:
            error = str(exc)
    result, error = ctx.broadcast_object((result, error), what)
    if error is not None:
        raise AudioSAEError(error)
    return result


def build_corpus_distributed(ctx: Context, ws_root: Path, backend: str, backend_options: dict, sources: Sequence[Any], *,
                             problems: Sequence[Any] = (), device: str | None = "auto", seed: int = 0,
                             crepe_model: str | None = None, attributes: Sequence[str] | None = None,
                             attribute_params: dict | None = None, shard_frames: int | None = None,
                             progress: ProgressSink = null_progress, cancel: CancelToken | None = None):
    """This rank's part of the build, then (rank 0) the merge; returns ``(workspace, BuildSummary)``."""
    from ..workspace import BuildSummary, Workspace, _remove_orphans, build_corpus, remove_stale_temp_files

    cancel = cancel or CancelToken()
    ids = [s.source_id for s in sources]
    if len(set(ids)) != len(ids):
        raise AudioSAEError("source ids are not unique")

    def prepare():
        ws = Workspace.create(ws_root, backend, backend_options)
        spec = ws.attribute_spec
        if crepe_model:
            spec.crepe_model = crepe_model
        if attributes is not None or attribute_params:
            spec = spec.with_attributes(list(attributes or ()), attribute_params)
        ws.set_attribute_spec(spec)
        manifest = ws.manifest()
        _remove_orphans(ws.corpus_dir, manifest)
        remove_stale_temp_files(ws.root)
        _drop_merged_parts(ws, manifest, ctx.world_size)
        return {sid: rec.split for sid, rec in manifest.sources.items()}

    earlier = _on_main(ctx, "prepare the workspace", prepare)
    ws = Workspace.open(ws_root)
    splits = validation_split(list(sources), seed=seed) if len(sources) else {}
    splits.update(earlier)
    owner = source_ranks(ids, ctx.world_size)      # over every source: a rerun deals them the same way
    mine = [s for s in sources if owner[s.source_id] == ctx.rank and s.source_id not in earlier]
    part_root = _part_root(ws.root, ctx.rank, ctx.world_size)
    part = Workspace.create(part_root, ws.backend_name, ws.backend_options, spec=ws.attribute_spec)
    part.set_attribute_spec(ws.attribute_spec)
    from ..workspace import DEFAULT_SHARD_FRAMES

    shard_frames = int(shard_frames or DEFAULT_SHARD_FRAMES)
    error = None
    try:
        build_corpus(part, mine, device=ctx.device(device), seed=seed, split_of={s.source_id: splits[s.source_id]
                     for s in mine}, fit=False, progress=progress, cancel=cancel, shard_frames=shard_frames)
    except AudioSAEError as exc:        # every rank hears of it at the barrier, not at a timeout
        error = f"rank {ctx.rank}: {exc}"
    errors = [e for e in ctx.all_gather_object(error, "encoded every part") if e]
    if errors:
        raise DistributedError("; ".join(errors))
    summary = BuildSummary(**_on_main(ctx, "merge the parts",
                                        lambda: _merge(ws, ctx.world_size, sources, problems, seed, shard_frames).to_dict()))
    progress(Progress("build", 1, 1, "corpus complete"))
    return Workspace.open(ws_root), summary


def _drop_merged_parts(ws, manifest, world_size: int) -> None:
    """Parts whose sources the manifest already lists were merged before a kill, and parts of a
    run with another world size (their sources are dealt anew and encoded again): remove them."""
    from ..workspace import Workspace, remove_tree

    base = ws.root / PARTS_DIR
    if not base.is_dir():
        return
    for part_root in sorted(base.iterdir()):
        try:
            part = Workspace.open(part_root)
            listed = set(part.manifest().sources)
        except AudioSAEError:
            listed = set()
        if (listed and listed <= set(manifest.sources)) or not part_root.name.endswith(f"-of-{world_size}"):
            remove_tree(part_root)


def _merge(ws, world_size: int, sources: Sequence[Any], problems: Sequence[Any], seed: int, shard_frames: int):
    """Write the parts' frames as the shards one process would have written, in source order."""
    import numpy as np

    from ..workspace import (EXTRA_PREFIX, RAW_COLUMNS, Workspace, _empty_pending, complete_corpus, read_shard,
                             remove_tree, write_shard)

    manifest = ws.manifest()
    resumed = sum(1 for s in sources if s.source_id in manifest.sources)
    parts = [Workspace.open(_part_root(ws.root, r, world_size)) for r in range(world_size)]
    where: dict[str, tuple[int, Any]] = {}
    meta_corpus: dict[str, Any] = {}
    for r, part in enumerate(parts):
        pm = part.manifest()
        meta_corpus = meta_corpus or {k: v for k, v in (part.meta.get("corpus") or {}).items()
                                      if k in ("frame_rate", "latent_dim")}
        for sid, rec in pm.sources.items():
            where.setdefault(sid, (r, pm, rec))
    for p in problems:                      # first, as one process lists them
        if str(p) not in manifest.skipped:
            manifest.skipped.append(str(p))
    for part in parts:
        pm = part.manifest()
        manifest.skipped.extend(line for line in pm.skipped if line not in manifest.skipped)
        manifest.warnings.extend(line for line in pm.warnings if line not in manifest.warnings)
    splits = {sid: rec.split for sid, (_, _, rec) in where.items()} | {sid: r.split for sid, r in manifest.sources.items()}
    frame_rate = meta_corpus.get("frame_rate")
    loaded: dict[int, tuple[int, dict, dict]] = {}      # rank -> (its shard index, tensors, meta): one per rank
    pending, pending_sources, pending_frames = _empty_pending(), [], 0
    for src in sources:
        if src.source_id in manifest.sources or src.source_id not in where:
            continue                         # merged by an earlier run, or skipped (unreadable)
        r, pm, rec = where[src.source_id]
        if r not in loaded or loaded[r][0] != rec.shard:
            tensors, meta = read_shard(parts[r].corpus_dir / pm.shards[rec.shard]["file"])
            loaded[r] = (rec.shard, {k: v.numpy() for k, v in tensors.items()}, meta)
        _, t, meta = loaded[r]
        rows = t["source"] == meta["sources"].index(src.source_id)
        n = int(np.count_nonzero(rows))
        pending["latents"].append(t["latents"][rows])
        pending["codes"].append(t["codes"][rows] if "codes" in t else None)
        pending["source"].append(np.full(n, len(pending_sources), dtype=np.int32))
        for c in ("frame", "time", "gt_midi", *RAW_COLUMNS):
            pending[c].append(t[c][rows])
        pending["extra"].append({k[len(EXTRA_PREFIX):]: v[rows] for k, v in t.items() if k.startswith(EXTRA_PREFIX)})
        pending_sources.append(src)
        pending_frames += n
        if pending_frames >= shard_frames:
            write_shard(ws, manifest, pending, pending_sources, splits, frame_rate)
            pending, pending_sources, pending_frames = _empty_pending(), [], 0
    if pending_sources:
        write_shard(ws, manifest, pending, pending_sources, splits, frame_rate)
    summary = complete_corpus(ws, manifest, len(sources) + len(problems), resumed)
    ws = Workspace.open(ws.root)
    ws.meta["corpus"] = summary.to_dict() | meta_corpus | {"seed": seed}
    ws.save_meta()
    remove_tree(ws.root / PARTS_DIR)
    return summary
