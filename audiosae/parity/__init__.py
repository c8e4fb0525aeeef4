"""``python -m audiosae.parity FIXTURE.pt``: check our models against the official code's outputs.

A fixture (format: ``shared/fixtures/README.md``) holds an official state dict, inputs and
the outputs the official code produced.  The matching checker loads the state dict into our
implementation by its official key names (strict), re-runs every recorded output and
returns one ``ParityRow`` per output.  The command line (exit status 1 when any relative error
exceeds the tolerance, default 1e-4; 2 on bad usage) is ``audiosae.cli.parity``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch


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
