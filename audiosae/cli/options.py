"""Option types and the options every command shares (``common``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def common_options() -> argparse.ArgumentParser:
    """The parent parser of every command: --device, --json, --debug, --quiet."""
    from ..devices import DEVICE_CHOICES

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="auto", help=f"compute device: {', '.join(DEVICE_CHOICES)} (default auto: cuda, then mps, then cpu)")
    common.add_argument("--json", action="store_true", help="print a machine-readable JSON summary on stdout")
    common.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    common.add_argument("--quiet", action="store_true", help="no progress output")
    return common


def warn(line: str) -> None:
    """A warning line on stderr, as every command prints them."""
    print(f"audiosae: warning: {line}", file=sys.stderr)


def floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def folds(text: str) -> int:
    """--probe-folds: 0 (or 1: no cross-validation) or a number of folds >= 2."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of folds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"the number of folds must be >= 0 (0 = no cross-validation), got {value}")
    return value


def class_weight_choice(value: str | None) -> str:
    """``audiosae.defaults``' class weight (None or "balanced") as the CLI spells it."""
    return "none" if value is None else str(value)


def alpha(text: str) -> float:
    """--alpha: a finite number >= 0 (argparse turns the error into exit status 2)."""
    from ..errors import AudioSAEError
    from ..steering.control import check_alpha

    try:
        return check_alpha(text)
    except AudioSAEError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def alpha_list(text: str) -> list[float]:
    """--alpha of steer-eval: comma-separated finite numbers >= 0."""
    values = [alpha(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError("give at least one alpha")
    return values


def method_list(text: str) -> list[str] | None:
    """--method of steer-eval: 'all' (None) or comma-separated method names."""
    from ..steering.methods import METHODS

    if text.strip() == "all":
        return None
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [n for n in names if n not in METHODS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(bad) or text!r}; choose 'all' or "
                                         f"from {', '.join(METHODS)}")
    return names


def names(text: str) -> list[str]:
    """A comma-separated attribute list ('none': empty)."""
    found = [t.strip() for t in str(text).split(",") if t.strip()]
    return [] if found == ["none"] else found


def registered() -> list[str]:
    from ..attribute_registry import registered_names

    return registered_names()


def csv(values: Any) -> str:
    return ",".join(f"{v:g}" for v in values)
