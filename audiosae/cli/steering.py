"""``audiosae steer`` (one steered file, ``workflows.steer``) and ``steer-eval`` (every method x
alpha on clips, ``workflows.evaluate``), and the lines that describe a steered file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import defaults as D
from ..jobs import CancelToken, ProgressSink
from .options import alpha, alpha_list, method_list, warn


def add_steer(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    s = sub.add_parser("steer", parents=[common], help="apply a control vector to an audio file",
                       description="f' = RMSNorm(f + alpha * w_k) on the SAE features of AUDIO, decoded back to audio; "
                                   "reports the measured shift of the target attribute and of the others.")
    s.add_argument("workspace", type=Path)
    s.add_argument("audio", type=Path)
    s.add_argument("--attribute", required=True,
                   help="pitch, loudness, timbre or a registered attribute the workspace labels (e.g. chord)")
    s.add_argument("--target", required=True, help="class: a note like A4 for pitch; a bin index, '-12 dB' or '1500 Hz'")
    s.add_argument("--alpha", type=alpha, default=D.STEER_ALPHA,
                   help="steering strength, a finite number >= 0 (paper: 1, 10, 20, 30)")
    s.add_argument("--sae", default=None, help="SAE name (default: best pitch probe accuracy)")
    s.add_argument("--start", type=float, default=None, help="steer from this time (s)")
    s.add_argument("--end", type=float, default=None, help="steer until this time (s)")
    s.add_argument("--keep-residual", action="store_true", help="add back x - SAE(x) so only the steered direction changes")
    s.add_argument("--out", type=Path, required=True, help="output audio (.wav or .flac)")
    s.add_argument("--method", choices=D.STEER_METHODS, default=D.DEFAULT_STEER_METHOD,
                   help=f"how the features are steered (default {D.DEFAULT_STEER_METHOD!r}: the lowest cost on "
                        "non-target attributes at the first alpha reaching the target on >= 50%% of frames, in the "
                        "steering evaluation on held-out real music; README, 'Steering methods'): 'paper' = add the "
                        "probe's row for the target class (Paek et al.); 'mass-mean' = mean SAE features of the target class minus the other classes' "
                        "(over the workspace's training frames, cached in WORKSPACE/steer); 'orthogonal' = "
                        "mass-mean without its parts along the other attributes' probes; 'solve' = per frame the "
                        "smallest step reaching the target class while holding the other probes (alpha = budget); "
                        "'clamp' = mass-mean with features kept in their training range; 'top-features' = "
                        "mass-mean on the features that carry the class only; '+match' = loudness matched per "
                        "frame after decoding. Same step length for all, so alpha means the same")
    s.add_argument("--no-limit", dest="limit", action="store_false",
                   help="write the raw decoded level: no loudness match to the input, no limiter (the output "
                        "may be far over full scale). Default: the steered audio's loudness is matched to the "
                        "input's (unless --attribute loudness) and its peaks limited to -1 dBFS")
    s.set_defaults(handler=run_steer)
    return s


def steer_request_from_args(args: argparse.Namespace) -> Any:
    """``audiosae steer``'s options as a ``SteerRequest``."""
    from ..workflows.steer import SteerRequest

    return SteerRequest(workspace=args.workspace, audio=args.audio, attribute=args.attribute, target=args.target,
                        out=args.out, alpha=args.alpha, method=args.method, sae=args.sae, start=args.start,
                        end=args.end, keep_residual=args.keep_residual, limit=args.limit, device=args.device)


def run_steer(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from ..workflows import steer as flow

    report = flow.run_steer(steer_request_from_args(args), progress=progress, cancel=cancel)
    for line in report.get("input_warnings", []):
        warn(line)
    text = f"wrote {report['output']} (steered {report['attribute']} toward {report['target']}, " \
           f"alpha {report['alpha']:g}, method {report['method']}, SAE {report['sae']})\n" + \
           describe_level(report) + describe_shift(report)
    return {"text": text, "json": report}


def describe_level(report: dict[str, Any]) -> str:
    """One line: what the level rule did (gain, peaks, limited samples)."""
    level = report.get("level")
    if not level:
        return ""

    def db(value: Any) -> str:
        return "-inf" if value is None else f"{value:+.1f}"

    if level["rule"] == "raw":
        return (f"level: raw (--no-limit): peak {db(level['peak_after_dbfs'])} dBFS, loudness "
                f"{db(level['loudness_shift_db'])} dB vs the input\n")
    gain = f"gain {level['gain_db']:+.1f} dB (loudness matched to the input), " if "matched" in level["rule"] else \
        "loudness not matched (it is the target), "
    where = ""
    if level.get("levelled") == "selection" and level.get("region"):
        a, b = level["region"]
        where = (f" (selection {a:.2f}-{b:.2f} s only, {1000 * (level.get('crossfade_seconds') or 0):.0f} ms "
                 "cross-fades; outside it the unsteered audio)")
    return (f"level: {gain}peak {db(level['peak_before_dbfs'])} -> {db(level['peak_after_dbfs'])} dBFS, "
            f"{100 * level['limited_fraction']:.1f}% of samples limited{where}\n")


def describe_shift(report: dict[str, Any]) -> str:
    shift = report.get("shift")
    if not shift:
        return ""
    t = shift["target"]
    lines = [f"target {t['attribute']} = {t['name']}: frames at target {100 * t['rate_before']:.0f}% -> "
             f"{100 * t['rate_after']:.0f}%, mean distance {t['distance_before']:.2f} -> "
             f"{t['distance_after']:.2f} {t['unit']}"]
    for other, s in shift["non_target"].items():
        lines.append(f"non-target {other}: {100 * s['changed_fraction']:.0f}% of frames changed class, "
                     f"mean shift {s['mean_abs_shift']:.2f} {s['unit']}")
    return "\n".join(lines)


class _EvalAttribute(argparse.Action):
    """--attribute of steer-eval: the attribute of the --target values that follow it."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        setattr(namespace, self.dest, values)
        namespace.eval_pending = values  # an --attribute must be followed by a --target


class _EvalTarget(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        targets = list(getattr(namespace, self.dest, None) or [])
        targets.append((getattr(namespace, "attribute", None) or "pitch", values))
        setattr(namespace, self.dest, targets)
        namespace.eval_pending = None


def _check_eval_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """steer-eval's checks that need several options (usage errors: exit status 2)."""
    if getattr(args, "eval_pending", None):
        parser.error(f"--attribute {args.eval_pending} needs a --target after it")
    from ..attribute_registry import PAPER_ATTRIBUTES, registered_names

    known = [*PAPER_ATTRIBUTES, *registered_names()]
    for attribute, _ in getattr(args, "eval_targets", None) or []:
        if attribute not in known:
            parser.error(f"--attribute: unknown attribute {attribute!r} (known: {', '.join(known)})")
    if args.start is not None and args.start < 0:
        parser.error(f"--start must be >= 0, got {args.start}")
    if args.start is not None and args.end is not None and args.end <= args.start:
        parser.error(f"--end ({args.end}) must be after --start ({args.start})")


def add_steer_eval(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    se = sub.add_parser("steer-eval", parents=[common], help="evaluate steering methods x alphas on clips (JSON + PNG)",
                        description="Steers every CLIP toward each target with each method at each alpha and measures, "
                                    "with the label extractors, the target hit rate, the shift of the other attributes, "
                                    "level/clipping and a Frechet/MMD distance to the unsteered audio. Writes "
                                    "steer-eval.json and one PNG matrix per target to --out and prints the tables.")
    se.add_argument("workspace", type=Path)
    se.add_argument("--audio", nargs="+", type=Path, required=True, metavar="CLIP", help="audio files to steer")
    se.add_argument("--sae", default=None, help="SAE name (default: best pitch probe accuracy)")
    se.add_argument("--attribute", action=_EvalAttribute, default="pitch",
                    help="attribute of the --target values that follow: pitch, loudness, timbre or a registered "
                         "attribute the workspace labels and probes (e.g. chroma, chord); repeatable; default pitch")
    se.add_argument("--target", action=_EvalTarget, dest="eval_targets", default=None,
                    help="a target class of the last --attribute (repeatable; default: pitch A4)")
    se.add_argument("--alpha", type=alpha_list, default=None, metavar="A,B,...",
                    help="steering strengths (default the paper's 1,10,20,30)")
    se.add_argument("--method", type=method_list, default=None, metavar="all|M1,M2",
                    help="methods (default all; the paper's is always a row)")
    se.add_argument("--start", type=float, default=None, help="steer only from this time (s); measured inside and outside")
    se.add_argument("--end", type=float, default=None, help="steer only until this time (s)")
    se.add_argument("--keep-residual", action="store_true", help="add back x - SAE(x)")
    se.add_argument("--no-limit", dest="limit", action="store_false", help="evaluate the raw decoded level")
    se.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default WORKSPACE/steer/eval)")
    se.set_defaults(command="steer_eval", post_parse=_check_eval_args, handler=run_steer_eval)
    return se


def run_steer_eval(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    """Every method x alpha on the clips: JSON + PNG matrices, and the tables."""
    from ..steering.eval_plot import format_tables
    from ..workflows import evaluate as flow

    request = flow.EvaluateRequest(workspace=args.workspace, audio=list(args.audio),
                                   targets=args.eval_targets or list(flow.DEFAULT_TARGETS), alphas=args.alpha,
                                   methods=args.method, sae=args.sae, start=args.start, end=args.end,
                                   keep_residual=args.keep_residual, limit=args.limit, device=args.device,
                                   out=args.out)
    result = flow.run_evaluate(request, progress=progress, cancel=cancel)
    files = result.files
    text = format_tables(result.evaluation) + f"\nwrote {files['json']}" + "".join(f"\nwrote {p}" for p in files["png"])
    return {"text": text, "json": flow.evaluation_summary(result)}


__all__ = ["add_steer", "add_steer_eval", "describe_level", "describe_shift", "run_steer", "run_steer_eval",
           "steer_request_from_args"]
