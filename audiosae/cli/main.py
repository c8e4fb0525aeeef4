"""The ``audiosae`` command: the parser of every command group, and ``main`` (dispatch, errors,
printing).  Each subcommand's parser sets ``handler``: ``handler(args, *, progress, cancel)``
returns ``{"text": str, "json": dict}``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from .. import memory
from ..errors import AudioSAEError, JobCancelled
from ..jobs import CancelToken
from .corpus import add_backends, add_build, add_label
from .exporting import add_describe, add_export_lanes, add_export_sae, add_import_sae
from .steering import add_steer, add_steer_eval
from .tracing import add_trace, add_trace_report
from .training import add_demo, add_report, add_train
from .options import common_options
from .progress import TqdmProgress

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

# The commands in the order `audiosae --help` lists them.
COMMANDS: tuple[Callable[..., argparse.ArgumentParser], ...] = (
    add_build, add_label, add_train, add_report, add_steer, add_demo, add_backends, add_trace, add_trace_report,
    add_export_sae, add_import_sae, add_export_lanes, add_describe, add_steer_eval,
)


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    p = argparse.ArgumentParser(prog="audiosae", description="Sparse autoencoders, probes and control vectors on audio latents.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub, common)
    return p


def _run(args: argparse.Namespace, cancel: CancelToken) -> dict[str, Any]:
    progress = TqdmProgress(quiet=args.quiet)
    try:
        return args.handler(args, progress=progress, cancel=cancel)
    finally:
        progress.close()


def _tolerant_output() -> None:
    """Never die printing a name: a terminal that cannot show a character (an ASCII locale, a
    file name that is not valid UTF-8) gets an escape like \\xff instead of UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # replaced by a plain object, or closed
            pass


def _secondary_rank() -> bool:
    """A rank other than 0 of a torchrun launch (never true without torchrun's variables)."""
    import os

    return "WORLD_SIZE" in os.environ and os.environ.get("RANK", "0") != "0"


def _leave_process_group() -> None:
    """Leave the torchrun process group if this run joined one (nothing is imported otherwise)."""
    dist = sys.modules.get("audiosae.distributed")
    if dist is not None:
        dist.stop()


def main(argv: list[str] | None = None) -> int:
    _tolerant_output()
    memory.keep_large_allocations_off_the_heap()  # long builds/training: no heap creep
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "post_parse", None) is not None:
            args.post_parse(parser, args)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return int(exc.code or 0)
    cancel = CancelToken()
    secondary = _secondary_rank()
    if secondary:                    # under torchrun rank 0 shows the progress and prints the result
        args.quiet = True
    try:
        result = _run(args, cancel)
    except KeyboardInterrupt:
        cancel.cancel()
        print("audiosae: interrupted; re-run the same command to resume", file=sys.stderr)
        return EXIT_ERROR
    except JobCancelled as exc:
        print(f"audiosae: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except AudioSAEError as exc:
        if args.debug:
            raise
        print(f"audiosae: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # an unexpected bug: still one line unless --debug
        if args.debug:
            raise
        print(f"audiosae: internal error: {exc.__class__.__name__}: {exc} (re-run with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR
    finally:
        _leave_process_group()
    if secondary:
        return EXIT_OK
    try:
        if args.json:
            print(json.dumps(result.get("json", result), indent=2, default=str))
        elif result.get("text"):
            print(result["text"])
        sys.stdout.flush()
    except BrokenPipeError:  # `audiosae report WS | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK
