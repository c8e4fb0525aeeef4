"""``python -m audiosae.parity FIXTURE.pt``'s command line (the checks are ``audiosae.parity``).
Exit status 1 when any relative error exceeds the tolerance (default 1e-4), 2 on bad usage."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from ..parity import DEFAULT_RTOL

    parser = argparse.ArgumentParser(prog="python -m audiosae.parity",
                                     description="check our models against the official code's outputs")
    parser.add_argument("fixture", type=Path, help="fixture .pt file (see shared/fixtures/README.md)")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help="max relative error (default 1e-4)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary")
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import AudioSAEError
    from ..parity import run

    args = build_parser().parse_args(argv)
    if not args.fixture.is_file():
        print(f"error: {args.fixture}: fixture not found", file=sys.stderr)
        return 2
    try:
        kind, rows = run(args.fixture)
    except (ValueError, KeyError, RuntimeError, AudioSAEError) as exc:
        print(f"error: {args.fixture}: {exc}", file=sys.stderr)
        return 1
    failed = [r for r in rows if not r.ok(args.rtol)]
    if args.json:
        print(json.dumps({"fixture": str(args.fixture), "kind": kind, "rtol": args.rtol,
                          "ok": not failed, "rows": [asdict(r) for r in rows]}, indent=2))
    else:
        print(f"{args.fixture} ({kind}), tolerance {args.rtol:g} relative")
        width = max(len(r.name) for r in rows) if rows else 10
        print(f"{'output':<{width}}  {'max abs':>11}  {'max rel':>11}  status")
        for r in rows:
            status = "ok" if r.ok(args.rtol) else "FAIL"
            if r.exact is not None:
                status += " (exact)" if r.exact else " (codes differ)"
            print(f"{r.name:<{width}}  {r.max_abs:11.3e}  {r.max_rel:11.3e}  {status}")
        print(f"{len(rows) - len(failed)}/{len(rows)} outputs within tolerance")
    return 1 if failed else 0
