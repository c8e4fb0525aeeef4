"""``audiosae train``, ``report`` and ``demo``.

``add_train`` builds the train parser in groups (the grid, the budget, the probes) so that a new
group of options (a parallel run...) is one more ``add_argument_group`` here, and
``train_request_from_args`` the one place its values become a ``TrainRequest``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import defaults as D
from ..jobs import CancelToken, ProgressSink
from .options import class_weight_choice, csv, floats, folds, ints, names


def add_train(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    t = sub.add_parser("train", parents=[common], help="train the SAE grid, then the probes",
                       description="Train one SAE per (expansion, L1) pair in one pass over the corpus, then "
                                   "linear probes on each SAE's features and on the raw latent (baseline). "
                                   "Re-running after an interruption resumes from the last checkpoint.")
    t.add_argument("workspace", type=Path)
    t.add_argument("--expansion", type=ints, default=list(D.DEFAULT_EXPANSIONS),
                   help=f"widths as multiples of the latent dim (default {csv(D.DEFAULT_EXPANSIONS)})")
    t.add_argument("--l1", type=floats, default=None,
                   help=f"sparsity coefficients lambda: L1 for relu-rmsnorm (default {csv(D.DEFAULT_L1S)}), "
                        f"L0 for jumprelu (default {csv(D.DEFAULT_L0S)})")
    t.add_argument("--architecture", choices=D.ARCHITECTURE_CHOICES, default=D.DEFAULT_ARCHITECTURE,
                   help="SAE architecture, SAELens' names (default relu-rmsnorm: the paper's ReLU + L1 + RMSNorm)")
    t.add_argument("--k", type=ints, default=None,
                   help=f"active features per frame of topk/batchtopk, a grid like --l1 (default {csv(D.DEFAULT_KS)})")
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
    t.add_argument("--probe-folds", type=folds, default=D.PROBE_FOLDS, metavar="N",
                   help=f"probe evaluation: cross-validate by whole source in N folds when the corpus has fewer "
                        f"than {D.PROBE_CV_MAX_SOURCES} sources (default {D.PROBE_FOLDS}); 0 turns cross-validation "
                        "off (probes are measured on the val split only, and train about N+1 times faster)")
    t.add_argument("--class-weights", choices=D.CLASS_WEIGHT_CHOICES,
                   default=class_weight_choice(D.PROBE_CLASS_WEIGHT),
                   help="probe cross-entropy weights: 'balanced' weighs every class the same (n / (K n_k)); "
                        "'none' every frame; 'auto' leaves the paper's pitch, loudness and timbre unweighted and "
                        "balances the added attributes (onset, chord ...: uneven classes) "
                        f"(default {class_weight_choice(D.PROBE_CLASS_WEIGHT)})")
    t.add_argument("--seed", type=int, default=D.SEED)
    t.add_argument("--attributes", type=names, default=None, metavar="A,B,...",
                   help="attributes to probe (default pitch,loudness,timbre: the time budget covers those; each "
                        "further one adds about one probe head per SAE); 'all' = every one the workspace labels")
    t.add_argument("--checkpoint-seconds", type=float, default=None, help=argparse.SUPPRESS)  # crash tests
    par = t.add_argument_group("under torchrun (torchrun --nproc-per-node N -m audiosae train WS ...)")
    par.add_argument("--parallel", choices=("grid", "data"), default="grid",
                     help="grid (default): the ranks split the grid's SAEs, each reading all the data (the same "
                          "SAEs as one process, bit for bit); data: the ranks split every batch and all-reduce the "
                          "gradients (one very wide SAE, or fewer SAEs than ranks).  Ignored without torchrun")
    t.set_defaults(handler=run_train)
    return t


def train_settings_from_args(args: argparse.Namespace) -> Any:
    """``audiosae train``'s options as ``TrainSettings``: ``workflows.train.train_settings``, the
    wizard's resolution of the defaults too (an option not given is ``audiosae.defaults``' value)."""
    from ..workflows.train import train_settings

    weights = getattr(args, "class_weights", None)
    class_weight = D.PROBE_CLASS_WEIGHT if weights is None else (None if weights == "none" else str(weights))
    n_folds = getattr(args, "probe_folds", None)
    return train_settings(expansions=args.expansion, l1s=args.l1, architecture=getattr(args, "architecture", None),
                          ks=getattr(args, "k", None), rmsnorm=getattr(args, "rmsnorm", None), epochs=args.epochs,
                          frames=getattr(args, "frames", None), batch_size=args.batch_size, seed=args.seed,
                          probe_folds=D.PROBE_FOLDS if n_folds is None else int(n_folds),
                          probe_class_weight=class_weight, **_probe_attributes(args))


def _probe_attributes(args: argparse.Namespace) -> dict[str, Any]:
    """``--attributes`` of train: a list, 'all' (every attribute the workspace labels) or absent."""
    chosen = getattr(args, "attributes", None)
    if chosen is None:
        return {}
    if chosen == ["all"]:
        from ..workspace import Workspace

        return {"probe_attributes": tuple(Workspace.open(args.workspace).attribute_spec.attributes)}
    return {"probe_attributes": tuple(chosen)}


def train_request_from_args(args: argparse.Namespace, device: str) -> Any:
    """``audiosae train``'s options as a ``TrainRequest`` (``device``: already picked)."""
    from ..workflows import train as flow

    return flow.TrainRequest(workspace=Path(args.workspace), settings=train_settings_from_args(args), device=device,
                             checkpoint_every_s=args.checkpoint_seconds, parallel=getattr(args, "parallel", "grid"))


def run_train(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from ..devices import pick_device
    from ..report import format_report
    from ..workflows import train as flow
    from ..workspace import Workspace

    ws = Workspace.open(args.workspace)
    request = train_request_from_args(args, str(pick_device(args.device)))
    request.workspace = ws.root
    if not args.quiet:
        from ..workflows.train_plan import describe_train_estimate

        print(describe_train_estimate(ws, request.settings, request.device), file=sys.stderr, flush=True)
    report = flow.run_train(request, progress=progress, cancel=cancel)
    return {"text": format_report(report), "json": report}


def add_report(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    r = sub.add_parser("report", parents=[common],
                       help="the paper-style table: sparsity, L0, dead, FVU, probe accuracy")
    r.add_argument("workspace", type=Path)
    r.set_defaults(handler=run_report)
    return r


def run_report(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    from ..report import format_report
    from ..workflows import train as flow

    report = flow.run_report(args.workspace)
    return {"text": format_report(report), "json": report}


def add_demo(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from ..defaults import DEMO_MINUTES, DEMO_WORKSPACE

    d = sub.add_parser("demo", parents=[common], help="offline demo: build, train, report and steer on built-in audio",
                       description="Builds a small workspace from the built-in tones with the mel backend, trains a "
                                   "small SAE grid and probes, prints the report and writes a steered example.")
    d.add_argument("--workspace", type=Path, default=Path(DEMO_WORKSPACE),
                   help=f"where to put it (default ./{DEMO_WORKSPACE})")
    d.add_argument("--minutes", type=float, default=DEMO_MINUTES)
    d.add_argument("--fresh", action="store_true", help="delete an existing demo workspace first")
    d.set_defaults(handler=run_demo)
    return d


def run_demo(args: argparse.Namespace, *, progress: ProgressSink, cancel: CancelToken) -> dict[str, Any]:
    """Offline end to end: built-in tones -> mel -> SAE grid -> probes -> report -> steered example."""
    from ..defaults import DEMO_ALPHA
    from ..report import format_report
    from ..workflows import demo as flow
    from .steering import describe_level, describe_shift

    result = flow.run_demo(flow.DemoRequest(workspace=args.workspace, minutes=args.minutes, fresh=args.fresh,
                                            device=args.device), progress=progress, cancel=cancel)
    steer, seconds = result["steer"], result["seconds"]
    text = "\n".join([
        format_report(result["report"]), "",
        f"steered example: {result['original']} -> {result['steered']} (pitch toward {result['target']}, "
        f"alpha {DEMO_ALPHA:g}, SAE {steer['sae']})",
        describe_level(steer) + describe_shift(steer), "",
        f"demo finished in {seconds['total']:.0f} s (build {seconds['build']:.0f} s, train {seconds['train']:.0f} s); "
        f"workspace: {Path(result['workspace']).resolve()}",
    ])
    return {"text": text, "json": {"report": result["report"], "steer": steer, "build": result["build"],
                                   "seconds": seconds}}
