"""``audiosae``: the command line.  Every long command shows progress; ``--json`` prints a
machine-readable summary on stdout; exit status 0 = ok, 1 = error (one-line message, no
traceback unless ``--debug``), 2 = usage error."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from . import memory
from .errors import AudioSAEError, JobCancelled
from .jobs import CancelToken, Progress

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class TqdmProgress:
    """Progress sink for a terminal: one tqdm bar per stage, on stderr, silent when asked."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._bar = None
        self._stage: str | None = None
        self._last_line = 0.0

    def __call__(self, event: Progress) -> None:
        if self.quiet:
            return
        if not self.tty:
            return self._plain(event)
        from tqdm import tqdm

        if event.stage != self._stage or self._bar is None:
            self.close()
            self._stage = event.stage
            self._bar = tqdm(total=event.total, desc=event.stage, unit="", leave=False,
                             dynamic_ncols=True, file=sys.stderr)
        if event.total is not None and self._bar.total != event.total:
            self._bar.total = event.total
        self._bar.n = event.done
        postfix = event.message[:60]
        self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.refresh()

    def _plain(self, event: Progress) -> None:
        # Not a terminal (CI, a pipe): an occasional plain line so long work shows life.
        now = time.monotonic()
        if event.stage != self._stage or now - self._last_line > 10:
            self._stage, self._last_line = event.stage, now
            frac = event.fraction
            pct = f" {100 * frac:5.1f}%" if frac is not None else ""
            print(f"[{event.stage}]{pct} {event.message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _folds(text: str) -> int:
    """--probe-folds: 0 (or 1: no cross-validation) or a number of folds >= 2."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of folds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"the number of folds must be >= 0 (0 = no cross-validation), got {value}")
    return value


def _class_weight_choice(value: str | None) -> str:
    """``audiosae.defaults``' class weight (None or "balanced") as the CLI spells it."""
    return "none" if value is None else str(value)


def _alpha(text: str) -> float:
    """--alpha: a finite number >= 0 (argparse turns the error into exit status 2)."""
    from .errors import AudioSAEError
    from .steering.control import check_alpha

    try:
        return check_alpha(text)
    except AudioSAEError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _alpha_list(text: str) -> list[float]:
    """--alpha of steer-eval: comma-separated finite numbers >= 0."""
    values = [_alpha(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError("give at least one alpha")
    return values


def _method_list(text: str) -> list[str] | None:
    """--method of steer-eval: 'all' (None) or comma-separated method names."""
    from .steering.methods import METHODS

    if text.strip() == "all":
        return None
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [n for n in names if n not in METHODS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(bad) or text!r}; choose 'all' or "
                                         f"from {', '.join(METHODS)}")
    return names


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
    if args.start is not None and args.start < 0:
        parser.error(f"--start must be >= 0, got {args.start}")
    if args.start is not None and args.end is not None and args.end <= args.start:
        parser.error(f"--end ({args.end}) must be after --start ({args.start})")


def _names(text: str) -> list[str]:
    """A comma-separated attribute list ('none': empty)."""
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    return [] if names == ["none"] else names


def _registered() -> list[str]:
    from .attribute_registry import registered_names

    return registered_names()


def build_parser() -> argparse.ArgumentParser:
    from .devices import DEVICE_CHOICES

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="auto", help=f"compute device: {', '.join(DEVICE_CHOICES)} (default auto: cuda, then mps, then cpu)")
    common.add_argument("--json", action="store_true", help="print a machine-readable JSON summary on stdout")
    common.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    common.add_argument("--quiet", action="store_true", help="no progress output")

    p = argparse.ArgumentParser(prog="audiosae", description="Sparse autoencoders, probes and control vectors on audio latents.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    b = sub.add_parser("build", parents=[common], help="encode audio into a workspace corpus (resumable)",
                       description="Encode audio with a latent backend, label every frame (pitch, loudness, timbre) "
                                   "and store the corpus in WORKSPACE. Re-running resumes an interrupted build.")
    b.add_argument("workspace", type=Path)
    b.add_argument("--backend", default="mel", help="latent backend (see `audiosae backends`; default mel)")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", nargs="+", type=Path, metavar="PATH", help="audio files and/or folders")
    src.add_argument("--builtin", choices=["tones", "midi"], help="a built-in offline corpus with ground truth")
    b.add_argument("--minutes", type=float, default=None, help="limit the built-in corpus to about N minutes")
    b.add_argument("--weights", type=Path, default=None, help="local checkpoint file for the backend (offline)")
    b.add_argument("--crepe-model", choices=["tiny", "full"], default=None, help="CREPE size for pitch labels")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--attributes", type=_names, default=None, metavar="A,B,...",
                   help="attributes labelled besides pitch, loudness and timbre (default: every registered one: "
                        f"{', '.join(_registered())}); 'none' for only the paper's three")
    b.add_argument("--labels", type=Path, default=None, metavar="FILE",
                   help="your own labels, a CSV (file,start,end,label) or JSON side-car: they become classes of "
                        "the 'instrument' attribute")
    b.add_argument("--shard-frames", type=int, default=None, help=argparse.SUPPRESS)  # small shards for tests

    lb = sub.add_parser("label", parents=[common], help="add attributes to a built workspace (no re-encoding)",
                        description="Re-read the corpus' audio, measure more attributes at the stored frame times and "
                                    "write them into the shards (atomically). Sources whose audio is gone get no "
                                    "label (-1) for them, with a warning.")
    lb.add_argument("workspace", type=Path)
    lb.add_argument("--attributes", type=_names, required=True, metavar="A,B,...",
                    help=f"attributes to add: {', '.join(_registered())}")
    lb.add_argument("--labels", type=Path, default=None, metavar="FILE",
                    help="a side-car (file,start,end,label CSV or JSON) for the 'instrument' attribute")
    lb.add_argument("--relabel", action="store_true", help="measure again where the shards already hold them")

    t = sub.add_parser("train", parents=[common], help="train the SAE grid, then the probes",
                       description="Train one SAE per (expansion, L1) pair in one pass over the corpus, then "
                                   "linear probes on each SAE's features and on the raw latent (baseline). "
                                   "Re-running after an interruption resumes from the last checkpoint.")
    t.add_argument("workspace", type=Path)
    from . import defaults as D

    def _csv(values: Any) -> str:
        return ",".join(f"{v:g}" for v in values)

    t.add_argument("--expansion", type=_ints, default=list(D.DEFAULT_EXPANSIONS),
                   help=f"widths as multiples of the latent dim (default {_csv(D.DEFAULT_EXPANSIONS)})")
    t.add_argument("--l1", type=_floats, default=None,
                   help=f"sparsity coefficients lambda: L1 for relu-rmsnorm (default {_csv(D.DEFAULT_L1S)}), "
                        f"L0 for jumprelu (default {_csv(D.DEFAULT_L0S)})")
    t.add_argument("--architecture", choices=D.ARCHITECTURE_CHOICES, default=D.DEFAULT_ARCHITECTURE,
                   help="SAE architecture, SAELens' names (default relu-rmsnorm: the paper's ReLU + L1 + RMSNorm)")
    t.add_argument("--k", type=_ints, default=None,
                   help=f"active features per frame of topk/batchtopk, a grid like --l1 (default {_csv(D.DEFAULT_KS)})")
    t.add_argument("--no-rmsnorm", dest="rmsnorm", action="store_const", const=False, default=None,
                   help="no RMSNorm on the code (SAELens' plain forward)")
    budget = t.add_mutually_exclusive_group()
    budget.add_argument("--frames", type=int, default=None,
                        help="SAE budget in training frames (default: max(%g epochs, %d steps), stopping earlier "
                             "when the held-out loss stops improving)" % (D.SAE_EPOCHS_EQUIVALENT, D.SAE_MIN_STEPS))
    budget.add_argument("--epochs", type=int, default=None,
                        help="a fixed number of passes over the training frames instead (no plateau stop)")
    t.add_argument("--batch-size", type=int, default=D.SAE_BATCH_SIZE,
                   help=f"frames per SAE step (default {D.SAE_BATCH_SIZE})")
    t.add_argument("--probe-folds", type=_folds, default=D.PROBE_FOLDS, metavar="N",
                   help=f"probe evaluation: cross-validate by whole source in N folds when the corpus has fewer "
                        f"than {D.PROBE_CV_MAX_SOURCES} sources (default {D.PROBE_FOLDS}); 0 turns cross-validation "
                        "off (probes are measured on the val split only, and train about N+1 times faster)")
    t.add_argument("--class-weights", choices=D.CLASS_WEIGHT_CHOICES,
                   default=_class_weight_choice(D.PROBE_CLASS_WEIGHT),
                   help="probe cross-entropy weights: 'balanced' weighs every class the same (n / (K n_k)); "
                        f"'none' every frame (default {_class_weight_choice(D.PROBE_CLASS_WEIGHT)})")
    t.add_argument("--seed", type=int, default=D.SEED)
    t.add_argument("--attributes", type=_names, default=None, metavar="A,B,...",
                   help="attributes to probe (default pitch,loudness,timbre: the time budget covers those; each "
                        "further one adds about one probe head per SAE); 'all' = every one the workspace labels")
    t.add_argument("--checkpoint-seconds", type=float, default=None, help=argparse.SUPPRESS)  # crash tests

    r = sub.add_parser("report", parents=[common], help="the paper-style table: sparsity, L0, dead, FVU, probe accuracy")
    r.add_argument("workspace", type=Path)

    s = sub.add_parser("steer", parents=[common], help="apply a control vector to an audio file",
                       description="f' = RMSNorm(f + alpha * w_k) on the SAE features of AUDIO, decoded back to audio; "
                                   "reports the measured shift of the target attribute and of the others.")
    s.add_argument("workspace", type=Path)
    s.add_argument("audio", type=Path)
    s.add_argument("--attribute", required=True,
                   help="pitch, loudness, timbre or a registered attribute the workspace labels (e.g. chord)")
    s.add_argument("--target", required=True, help="class: a note like A4 for pitch; a bin index, '-12 dB' or '1500 Hz'")
    s.add_argument("--alpha", type=_alpha, default=20.0,
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

    d = sub.add_parser("demo", parents=[common], help="offline demo: build, train, report and steer on built-in audio",
                       description="Builds a small workspace from the built-in tones with the mel backend, trains a "
                                   "small SAE grid and probes, prints the report and writes a steered example.")
    d.add_argument("--workspace", type=Path, default=Path("demo-workspace"), help="where to put it (default ./demo-workspace)")
    d.add_argument("--minutes", type=float, default=4.0)
    d.add_argument("--fresh", action="store_true", help="delete an existing demo workspace first")

    sub.add_parser("backends", parents=[common], help="list the latent backends")

    g = sub.add_parser("trace", parents=[common], help="trace DiffRhythm generation through the SAE and probes",
                       description="Generate music with DiffRhythm and send every sampler state (X_t and the predicted "
                                   "end point) through WORKSPACE's SAE and probes (a workspace built with the "
                                   "diffrhythm-vae backend). Writes trace.json, trace.safetensors and final.wav to "
                                   "--out; with --prompts, one trace per prompt plus summary.json (mean and 95% CI).")
    g.add_argument("workspace", type=Path)
    what = g.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", help="style text (through MuQ-MuLan unless --style-audio/--style-embedding is "
                                       "given, in which case it is only recorded)")
    what.add_argument("--prompts", type=Path, metavar="FILE",
                      help="one prompt per line ('#' comments); 'builtin' = the shipped list; seeds are --seed + i")
    g.add_argument("--seconds", type=float, default=95.0, help="length (default 95; up to 285 with --model full)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--lyrics", type=Path, metavar="FILE.lrc", help="timed lyrics ([mm:ss.xx]text); default: instrumental")
    g.add_argument("--g2p-vocab", type=Path, metavar="FILE",
                   help="DiffRhythm's g2p/g2p/vocab.json (needed with --lyrics; not shipped)")
    style = g.add_mutually_exclusive_group()
    style.add_argument("--style-audio", type=Path, metavar="FILE", help="style from the middle 10 s of a recording (>= 10 s)")
    style.add_argument("--style-embedding", type=Path, metavar="FILE",
                       help="saved style vector(s): .npy/.safetensors/.pt, [512], [1,512] or [N,512] (row i for prompt i)")
    g.add_argument("--negative-style", type=Path, metavar="FILE",
                   help="negative style vector, e.g. DiffRhythm's infer/example/vocal.npy (default: zeros, with a warning)")
    g.add_argument("--model", choices=["base", "full"], default=None, help="released checkpoint (default base)")
    g.add_argument("--weights", type=Path, default=None, metavar="cfm_model.pt", help="local DiT checkpoint (offline)")
    g.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"], default="auto",
                   help="DiT precision (auto: float16 on CUDA, float32 elsewhere)")
    g.add_argument("--steps", type=int, default=32, help="sampler states (default 32 = 31 Euler steps)")
    g.add_argument("--cfg", type=float, default=4.0, help="classifier-free guidance strength (default 4)")
    g.add_argument("--threshold", type=float, default=0.9, help="convergence threshold on s_t (default 0.9)")
    g.add_argument("--sae", default=None, help="SAE name (default: best pitch probe accuracy)")
    g.add_argument("--no-latents", action="store_true", help="do not store per-state latents (smaller traces)")
    g.add_argument("--no-audio", action="store_true", help="do not decode the final latent to final.wav")
    g.add_argument("--out", type=Path, required=True, metavar="TRACE_DIR")

    gr = sub.add_parser("trace-report", parents=[common], help="plot and summarise a trace or a batch of traces",
                        description="Writes report.png (s_t per attribute with convergence markers; mean and 95% CI "
                                    "bands for a batch) and report.json into TRACE_DIR.")
    gr.add_argument("trace_dir", type=Path)
    gr.add_argument("--threshold", type=float, default=None, help="convergence threshold (default: the trace's)")
    gr.set_defaults(command="trace_report")  # dispatch looks up cmd_<command>; a hyphen cannot be in a name

    xs = sub.add_parser("export-sae", parents=[common], help="export an SAE in the SAELens layout",
                        description="Writes cfg.json + sae_weights.safetensors (SAELens 'standard' layout; cfg.json "
                                    "notes audiosae's RMSNorm on h, which SAELens' forward lacks) into FOLDER.")
    xs.add_argument("workspace", type=Path)
    xs.add_argument("--sae", required=True, help="SAE name in the workspace")
    xs.add_argument("--out", type=Path, required=True, metavar="FOLDER")
    xs.add_argument("--with-probes", action="store_true", help="also write the SAE's probes (probes.safetensors + .json)")
    xs.set_defaults(command="export_sae")

    im = sub.add_parser("import-sae", parents=[common], help="import a SAELens-layout SAE into a workspace",
                        description="Reads FOLDER (cfg.json + sae_weights.safetensors), checks that d_in matches the "
                                    "workspace's latent dim and saves it as saes/NAME (with its probes, if exported).")
    im.add_argument("workspace", type=Path)
    im.add_argument("folder", type=Path)
    im.add_argument("--name", required=True, help="name for the SAE in the workspace")
    im.set_defaults(command="import_sae")

    xl = sub.add_parser("export-lanes", parents=[common], help="per-frame lanes of a clip as CSV and Sonic Visualiser layers",
                        description="Analyses AUDIO with the workspace's SAE and probes and writes lanes.csv, "
                                    "activations.csv and sonic-visualiser/*.csv (File > Import Annotation Layer).")
    xl.add_argument("workspace", type=Path)
    xl.add_argument("audio", type=Path)
    xl.add_argument("--out", type=Path, required=True, metavar="FOLDER")
    xl.add_argument("--sae", default=None, help="SAE name (default: best pitch probe accuracy)")
    xl.set_defaults(command="export_lanes")

    ds = sub.add_parser("describe", parents=[common], help="label every SAE feature with its best attribute classes",
                        description="Streams the corpus through SAE NAME and scores every feature against every "
                                    "pitch / loudness / timbre class (one-vs-rest AUROC of its activation, and the "
                                    "share of its activation mass per class). Cached next to the SAE; recomputed "
                                    "when the SAE, the corpus or the attribute spec changes.")
    ds.add_argument("workspace", type=Path)
    ds.add_argument("--sae", required=True, help="SAE name in the workspace")
    ds.add_argument("--feature", type=int, default=None, metavar="J", help="only feature J (default: all)")
    ds.add_argument("--top", type=int, default=5, metavar="N", help="labels per feature, best first (default 5)")
    ds.add_argument("--neuronpedia", type=Path, default=None, metavar="OUT.json",
                    help="also write a Neuronpedia-style export (explanations, density, top activations)")
    ds.add_argument("--threads", type=int, default=1,
                    help="CPU threads while labelling (default 1: on a busy machine 1 was 2-3x faster than 2)")
    se = sub.add_parser("steer-eval", parents=[common], help="evaluate steering methods x alphas on clips (JSON + PNG)",
                        description="Steers every CLIP toward each target with each method at each alpha and measures, "
                                    "with the label extractors, the target hit rate, the shift of the other attributes, "
                                    "level/clipping and a Frechet/MMD distance to the unsteered audio. Writes "
                                    "steer-eval.json and one PNG matrix per target to --out and prints the tables.")
    se.add_argument("workspace", type=Path)
    se.add_argument("--audio", nargs="+", type=Path, required=True, metavar="CLIP", help="audio files to steer")
    se.add_argument("--sae", default=None, help="SAE name (default: best pitch probe accuracy)")
    se.add_argument("--attribute", action=_EvalAttribute, choices=["pitch", "loudness", "timbre"], default="pitch",
                    help="attribute of the --target values that follow (repeatable; default pitch)")
    se.add_argument("--target", action=_EvalTarget, dest="eval_targets", default=None,
                    help="a target class of the last --attribute (repeatable; default: pitch A4)")
    se.add_argument("--alpha", type=_alpha_list, default=None, metavar="A,B,...",
                    help="steering strengths (default the paper's 1,10,20,30)")
    se.add_argument("--method", type=_method_list, default=None, metavar="all|M1,M2",
                    help="methods (default all; the paper's is always a row)")
    se.add_argument("--start", type=float, default=None, help="steer only from this time (s); measured inside and outside")
    se.add_argument("--end", type=float, default=None, help="steer only until this time (s)")
    se.add_argument("--keep-residual", action="store_true", help="add back x - SAE(x)")
    se.add_argument("--no-limit", dest="limit", action="store_false", help="evaluate the raw decoded level")
    se.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default WORKSPACE/steer/eval)")
    se.set_defaults(command="steer_eval", post_parse=_check_eval_args)
    return p


def _run(args: argparse.Namespace, cancel: CancelToken) -> dict[str, Any]:
    from . import commands

    progress = TqdmProgress(quiet=args.quiet)
    try:
        handler: Callable[..., dict[str, Any]] = getattr(commands, f"cmd_{args.command}")
        return handler(args, progress=progress, cancel=cancel)
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


if __name__ == "__main__":
    sys.exit(main())
