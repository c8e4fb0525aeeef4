"""``audiosae build``, ``label`` and ``backends``: the corpus of a workspace."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .. import defaults as D
from ..errors import AudioSAEError
from ..jobs import CancelToken, ProgressSink
from .options import names, registered


def add_build(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    b = sub.add_parser("build", parents=[common], help="encode audio into a workspace corpus (resumable)",
                       description="Encode audio with a latent backend, label every frame (pitch, loudness, timbre) "
                                   "and store the corpus in WORKSPACE. Re-running resumes an interrupted build.")
    b.add_argument("workspace", type=Path)
    b.add_argument("--backend", default=D.DEFAULT_BACKEND,
                   help=f"latent backend (see `audiosae backends`; default {D.DEFAULT_BACKEND})")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", nargs="+", type=Path, metavar="PATH", help="audio files and/or folders")
    src.add_argument("--builtin", choices=["tones", "midi"], help="a built-in offline corpus with ground truth")
    b.add_argument("--minutes", type=float, default=None, help="limit the built-in corpus to about N minutes")
    b.add_argument("--weights", type=Path, default=None, help="local checkpoint file for the backend (offline)")
    b.add_argument("--crepe-model", choices=["tiny", "full"], default=None, help="CREPE size for pitch labels")
    b.add_argument("--seed", type=int, default=D.SEED)
    b.add_argument("--attributes", type=names, default=None, metavar="A,B,...",
                   help="attributes labelled besides pitch, loudness and timbre (default: every registered one: "
                        f"{', '.join(registered())}); 'none' for only the paper's three")
    b.add_argument("--labels", type=Path, default=None, metavar="FILE",
                   help="your own labels, a CSV (file,start,end,label) or JSON side-car: they become classes of "
                        "the 'instrument' attribute")
    b.add_argument("--shard-frames", type=int, default=None, help=argparse.SUPPRESS)  # small shards for tests
    b.set_defaults(handler=run_build)
    return b


def backend_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if getattr(args, "weights", None):
        weights = Path(args.weights).expanduser().resolve()
        if not weights.is_file():
            raise AudioSAEError(f"{weights}: weights file not found")
        options["weights"] = str(weights)
    return options


def build_request_from_args(args: argparse.Namespace) -> Any:
    """``audiosae build``'s options as a ``BuildRequest`` (the audio found and checked)."""
    from ..codecs import backend_spec
    from ..corpus import builtin_sources, user_sources
    from ..workflows import train as flow

    backend_spec(args.backend)  # unknown name -> error listing the known ones, before any work
    problems: list = []
    if args.builtin:
        sources = builtin_sources(args.builtin, minutes=args.minutes, seed=args.seed)
    else:
        sources, problems = user_sources(args.audio)
        if not sources:
            detail = "; ".join(str(p) for p in problems[:5])
            raise AudioSAEError(f"no usable audio found in {', '.join(map(str, args.audio))}"
                                + (f" ({detail})" if detail else ""))
    return flow.BuildRequest(workspace=args.workspace, backend=args.backend, sources=sources,
                             backend_options=backend_options(args), problems=problems, device=args.device,
                             crepe_model=args.crepe_model, seed=args.seed, shard_frames=args.shard_frames,
                             attributes=args.attributes, labels=args.labels)


def run_build(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from ..workflows import train as flow

    request = build_request_from_args(args)
    t0 = time.monotonic()
    ws, summary = flow.run_build(request, progress=progress, cancel=cancel)
    elapsed = time.monotonic() - t0
    lines = [f"workspace {ws.root}: {summary.sources_done} source(s), {summary.frames} frames "
             f"({summary.train_frames} train / {summary.val_frames} validation), "
             f"{summary.seconds_of_audio / 60:.1f} min of audio, built in {elapsed:.0f} s"]
    if summary.resumed_sources:
        lines.append(f"resumed: {summary.resumed_sources} source(s) were already encoded")
    if summary.skipped:
        lines.append(f"skipped {len(summary.skipped)} file(s):")
        lines += [f"  {s}" for s in summary.skipped]
    if summary.warnings:
        lines.append(f"used {len(summary.warnings)} file(s) with a warning:")
        lines += [f"  {s}" for s in summary.warnings]
    return {"text": "\n".join(lines), "json": {"workspace": str(ws.root), **summary.to_dict(), "seconds": elapsed}}


def add_label(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    lb = sub.add_parser("label", parents=[common], help="add attributes to a built workspace (no re-encoding)",
                        description="Re-read the corpus' audio, measure more attributes at the stored frame times and "
                                    "write them into the shards (atomically). Sources whose audio is gone get no "
                                    "label (-1) for them, with a warning.")
    lb.add_argument("workspace", type=Path)
    lb.add_argument("--attributes", type=names, required=True, metavar="A,B,...",
                    help=f"attributes to add: {', '.join(registered())}")
    lb.add_argument("--labels", type=Path, default=None, metavar="FILE",
                    help="a side-car (file,start,end,label CSV or JSON) for the 'instrument' attribute")
    lb.add_argument("--relabel", action="store_true", help="measure again where the shards already hold them")
    lb.set_defaults(handler=run_label)
    return lb


def run_label(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from ..workflows import train as flow

    request = flow.LabelRequest(workspace=args.workspace, attributes=args.attributes, labels=args.labels,
                                relabel=args.relabel)
    ws, summary = flow.run_label(request, progress=progress, cancel=cancel)
    lines = [f"workspace {ws.root}: labelled {', '.join(summary.attributes)} on {summary.frames} frames of "
             f"{summary.sources_labelled} source(s) ({summary.shards_written} shard(s) written, "
             f"{summary.shards_skipped} already labelled) in {summary.seconds:.1f} s"]
    lines += [f"warning: {w}" for w in summary.warnings]
    return {"text": "\n".join(lines), "json": {"workspace": str(ws.root), **summary.to_dict()}}


def add_backends(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = sub.add_parser("backends", parents=[common], help="list the latent backends")
    p.set_defaults(handler=run_backends)
    return p


def run_backends(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from ..codecs import available_backends

    specs = available_backends()
    width = max(len(s.name) for s in specs) + 1
    lines = [f"{'name':<{width}} {'rate':>6} {'ch':>3} {'fps':>6} {'dim':>5} {'kind':<10} download"]
    for s in specs:
        size = "built in" if s.download_bytes is None else f"{s.download_bytes / 1e6:,.0f} MB"
        lines.append(f"{s.name:<{width}} {s.sample_rate:>6} {s.channels:>3} {s.frame_rate:>6.2f} {s.latent_dim:>5} "
                     f"{s.kind:<10} {size}")
    data = [{"name": s.name, "sample_rate": s.sample_rate, "channels": s.channels, "frame_rate": s.frame_rate,
             "latent_dim": s.latent_dim, "kind": s.kind, "download_bytes": s.download_bytes,
             "description": s.description} for s in specs]
    return {"text": "\n".join(lines), "json": {"backends": data}}
