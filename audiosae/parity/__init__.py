"""``python -m audiosae.parity FIXTURE.pt``: check our models against the official code's outputs.

A fixture (format: ``shared/fixtures/README.md``) holds an official state dict, inputs and
the outputs the official code produced.  The matching checker loads the state dict into our
implementation by its official key names (strict), re-runs every recorded output and
returns one ``ParityRow`` per output.  Exit status is 1 when any relative error exceeds the
tolerance (default 1e-4), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .errors import AudioSAEError

DEFAULT_RTOL = 1e-4

# fixture kind -> (a key only that kind has, checker module with ``check(fixture) -> list[ParityRow]``)
CHECKERS = {
    "diffrhythm": ("sample_trajectory", "audiosae.generation.diffrhythm.parity"),
    "wavtokenizer": ("head_linear_out", "audiosae.codecs.wavtokenizer.parity"),
}


@dataclass
class ParityRow:
    name: str
    max_abs: float
    max_rel: float  # max |ours - ref| / max |ref|  (scale-aware, robust to ref values near 0)
    exact: bool | None = None  # for integer outputs (codes): all equal

    def ok(self, rtol: float) -> bool:
        return self.exact if self.exact is not None else self.max_rel <= rtol


def compare(name: str, ours: torch.Tensor, ref: torch.Tensor) -> ParityRow:
    """One row: errors of ``ours`` against ``ref`` (shapes must match)."""
    if tuple(ours.shape) != tuple(ref.shape):
        raise ValueError(f"{name}: shape {list(ours.shape)} != reference {list(ref.shape)}")
    if not ref.is_floating_point():
        equal = bool(torch.equal(ours.to(ref.dtype), ref))
        diff = (ours.long() - ref.long()).abs()
        return ParityRow(name, float(diff.max()) if diff.numel() else 0.0, 0.0 if equal else float("inf"), equal)
    ours64, ref64 = ours.detach().double(), ref.detach().double()
    abs_err = float((ours64 - ref64).abs().max()) if ref.numel() else 0.0
    scale = float(ref64.abs().max()) if ref.numel() else 0.0
    return ParityRow(name, abs_err, abs_err / scale if scale > 0 else abs_err)


def detect_kind(fixture: dict) -> str:
    for kind, (marker, _) in CHECKERS.items():
        if marker in fixture:
            return kind
    raise ValueError("not a known parity fixture (expected a DiffRhythm or WavTokenizer fixture)")


def run(path: str | Path) -> tuple[str, list[ParityRow]]:
    fixture = torch.load(str(path), map_location="cpu", weights_only=True)
    kind = detect_kind(fixture)
    module = importlib.import_module(CHECKERS[kind][1])
    return kind, module.check(fixture)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audiosae.parity", description=__doc__.splitlines()[0])
    parser.add_argument("fixture", type=Path, help="fixture .pt file (see shared/fixtures/README.md)")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help="max relative error (default 1e-4)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
