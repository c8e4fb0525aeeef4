"""The paper's table on real music, offline: build the corpus, train the SAE grid, print the table.

    python benchmarks/bench_paper_table.py [--quick] [--corpus-dir DIR] [--backend NAME --weights PATH]

1. Corpus: ``benchmarks/realmusic.py`` (Debian game/demo soundtracks, recorded samples and
   FluidSynth MIDI renders; its held-out files are never used here), or ``--corpus-dir DIR``
   (its ``train/`` folder if it has one, else the whole folder; no download).
2. ``audiosae build WS --backend mel --audio DIR/train`` (resumable).  ``mel`` is the only
   backend that runs offline without weights, so by default this table *stands in* for the
   paper's encoders (EnCodec, WavTokenizer, DiffRhythm-VAE); pass ``--backend encodec-24k
   --weights encodec_24khz-d7cc33bc.th`` (etc.) to run it on a real codec.
3. ``audiosae train WS`` on the part of the paper's grid (widths 4x-256x, lambda
   0.005-0.15) that this machine should finish in ``--budget-minutes`` (default 30): the
   widest prefix of the widths with 4 lambdas (else 2), from a cost model scaled by the
   matmul speed measured just before; what is skipped is printed.  The model counts what
   ``train`` runs: the SAE epochs, and per SAE (and for the raw-latent baseline) every probe
   fit: the L2 grid's heads on the inner split, the refit, and, when the corpus has fewer
   than ``PROBE_CV_MAX_SOURCES`` sources, one more fit per cross-validation fold (``1 + k``
   fits; ``--probe-folds 0`` turns that off).  ``--no-build`` trains on an existing
   ``--workspace`` as it is.
4. ``audiosae report WS --json``, printed as the paper's table (sparsity range, pitch /
   loudness / timbre accuracy, FVU by width) with the raw-latent and majority-class
   baselines.  Every metric the report provides is shown, including ones added later
   (``*_accuracy_std``, ``*_within1``, ``*_mae_*``, ``converged``).

Each step runs the public CLI (``audiosae.cli.main``), so this measures exactly what users run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if importlib.util.find_spec("audiosae") is None:  # not installed: use this checkout
    sys.path.insert(0, str(HERE.parent))

from audiosae import defaults as D  # noqa: E402  (light: no torch)

PAPER_WIDTHS = (4, 8, 16, 32, 64, 128, 256)
PAPER_L1 = (0.005, 0.01, 0.02, 0.05, 0.1, 0.15)
# The grid is chosen at run time: the widths (in this order) and lambdas that the measured
# matmul speed says finish within --budget-minutes (default 30), SAEs and probes together.
LAMBDAS_FIRST, LAMBDAS_FALLBACK = (0.005, 0.02, 0.05, 0.15), (0.005, 0.15)
DEFAULT_BUDGET_MINUTES = 30.0
PROBE_CLASSES = 66 + 20 + 20                     # classes of the 3 probes
# The probe schedule of `audiosae train` (audiosae.defaults): the L2 grid compared for
# PROBE_MAX_EPOCHS on every PROBE_SELECTION_STRIDE-th frame, then the refit for PROBE_MAX_EPOCHS.
PROBE_SELECT_EPOCHS = D.PROBE_MAX_EPOCHS / D.PROBE_SELECTION_STRIDE
PROBE_FIT_EPOCHS = D.PROBE_MAX_EPOCHS
MATMUL_EFFICIENCY = 0.5                          # step time / pure-matmul time (bench_sae's measure)
QUICK_WIDTHS, QUICK_L1, QUICK_EPOCHS = (4,), (0.02, 0.15), 3
DEFAULT_ROOT = Path("~/.cache/audiosae/realmusic").expanduser()

# The paper's ranges (arXiv 2510.23802, as summarised in shared/reference/paper.md).
PAPER_ROWS = {"EnCodec": ("0.55-0.95", "0.78-0.87", "0.56-0.63", "0.30-0.46"),
              "WavTokenizer": ("0.993-0.999", "0.75-0.82", "0.17-0.30", "0.17-0.25"),
              "DiffRhythm-VAE": ("0.65-0.98", "0.75-0.87", "0.17-0.40", "0.17-0.35")}
ATTRS = ("pitch", "loudness", "timbre")
# Per-SAE columns: (report key, header, format); a column shows only when some row has it.
SAE_COLUMNS = [("sparsity", "sparsity", ".3f"), ("l0", "L0", ".1f"), ("dead_features", "dead", ".0f"),
               ("fvu", "FVU", ".3f"), ("converged", "conv", "")]
ATTR_SUFFIXES = [("_accuracy", "acc", ".3f"), ("_accuracy_std", "±", ".3f"), ("_balanced_accuracy", "bal", ".3f"),
                 ("_within1", "±1", ".3f"), ("_mae_db", "MAE dB", ".2f"), ("_mae_hz", "MAE Hz", ".0f")]
SHORT = {"pitch": "pitch", "loudness": "loud", "timbre": "timbre"}


def cli(*args: str) -> dict:
    """Run ``audiosae ARGS --json`` (the public CLI, in this process: one torch import, not
    three) and return its JSON summary; exit on failure."""
    from audiosae.cli import main as audiosae_main

    print(f"$ audiosae {' '.join(args)}", file=sys.stderr, flush=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = audiosae_main([*args, "--json"])
    if status != 0:
        raise SystemExit(f"audiosae {args[0]} failed with status {status}")
    return json.loads(out.getvalue())


def _fmt(value, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or spec == "":
        return "yes" if value is True else "no" if value is False else str(value)
    if isinstance(value, (int, float)) and not math.isfinite(value):
        return "nan"
    return format(value, spec)


def _present(rows: list[dict], key: str) -> bool:
    return any(r.get(key) is not None for r in rows)


def _extra_keys(report: dict) -> list[str]:
    """Numeric per-SAE keys the table does not know yet (new metrics from other work)."""
    known = {k for k, _, _ in SAE_COLUMNS} | {a + s for a in ATTRS for s, _, _ in ATTR_SUFFIXES}
    known |= {"sae", "d_sae", "expansion", "l1", "dead_fraction", "explained_variance", "mse"}
    keys: list[str] = []
    for r in report["saes"]:
        for k, v in r.items():
            if k not in known and k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append(k)
    return keys


def format_table(report: dict, *, stand_in: bool, skipped: str) -> str:
    rows, base = report["saes"], report.get("baseline") or {}
    all_rows = rows + [base]
    attr_cols = [(a + s, f"{SHORT[a]} {h}" if h == "acc" else h, f) for a in ATTRS for s, h, f in ATTR_SUFFIXES
                 if _present(all_rows, a + s)]
    sae_cols = [c for c in SAE_COLUMNS if _present(rows, c[0])] + [(k, k, ".4g") for k in _extra_keys(report)]
    cols = sae_cols + attr_cols
    widths = [max(len(h), 6) for _, h, _ in cols]
    head = f"{'SAE':<18} {'width':>6} {'L1':>6} " + " ".join(f"{h:>{w}}" for (_, h, _), w in zip(cols, widths))
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['sae']:<18} {_fmt(r.get('d_sae'), 'd'):>6} {_fmt(r.get('l1'), 'g'):>6} "
                     + " ".join(f"{_fmt(r.get(k), f):>{w}}" for (k, _, f), w in zip(cols, widths)))
    for label, suffix in (("raw latent (x)", None), ("majority class", "_chance")):
        cells = []
        for (k, _, f), w in zip(cols, widths):
            attr = next((a for a in ATTRS if k.startswith(a + "_")), None)
            key = (attr + suffix if suffix and k == f"{attr}_accuracy" else None if suffix else k) if attr else None
            cells.append(f"{_fmt(base.get(key) if key else None, f) if key else '':>{w}}")
        lines.append(f"{label:<18} {'':>6} {'':>6} " + " ".join(cells))

    # The paper's summary form: ranges over the grid, FVU by width.
    def span(key: str) -> str:
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        return f"{min(vals):.3f}-{max(vals):.3f}" if vals else "-"

    backend = report.get("backend", "?")
    name = f"{backend} (stand-in)" if stand_in else backend
    summary = [f"{'encoder':<22} {'sparsity':>12} {'pitch':>12} {'loudness':>12} {'timbre':>12}",
               f"{name:<22} {span('sparsity'):>12} " + " ".join(f"{span(a + '_accuracy'):>12}" for a in ATTRS)]
    summary += [f"{'paper: ' + k:<22} " + " ".join(f"{v:>12}" for v in vals) for k, vals in PAPER_ROWS.items()]
    summary.append(f"{'raw-latent probe':<22} {'':>12} " + " ".join(
        f"{_fmt(base.get(a + '_accuracy'), '.3f'):>12}" for a in ATTRS))
    summary.append(f"{'majority class':<22} {'':>12} " + " ".join(
        f"{_fmt(base.get(a + '_chance'), '.3f'):>12}" for a in ATTRS))
    by_width: dict[int, list[float]] = {}
    for r in rows:
        if isinstance(r.get("fvu"), (int, float)):
            by_width.setdefault(int(r.get("expansion") or 0), []).append(r["fvu"])
    fvu = ["FVU by width (best / worst over lambda):"] + [
        f"  {w:>4}x  {min(v):.3f} / {max(v):.3f}" for w, v in sorted(by_width.items())]
    corpus = report.get("corpus") or {}
    note = ("NOTE: backend 'mel' (log-mel frames) STANDS IN for the paper's encoders (EnCodec, WavTokenizer, "
            "DiffRhythm-VAE); the numbers are not the paper's. Use --backend NAME --weights PATH for a real codec."
            if stand_in else f"backend {backend}")
    return "\n".join([note, f"corpus: {corpus.get('frames', '?')} frames ({corpus.get('train_frames', '?')} train, "
                            f"{corpus.get('val_frames', '?')} validation); accuracies on validation frames", "",
                      *lines, "", *summary, "", *fvu, "", skipped])


def matmul_gflops(seconds: float = 1.0) -> float:
    """This machine's float32 matmul speed right now (under whatever else is running)."""
    import torch

    a, b = torch.randn(4096, 128), torch.randn(128, 2048)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        n += 1
    return 2 * 4096 * 128 * 2048 * n / (time.perf_counter() - t0) / 1e9


def probe_fits(n_sources: int | None, probe_folds: int | None = None) -> int:
    """``train_probes`` runs per probe set in ``audiosae train``: one on the train split, plus one
    per fold when it cross-validates (``probe_folds >= 2`` and 2 <= sources < the limit of
    ``audiosae.defaults``).  ``n_sources`` None (not known yet): assume it does."""
    from audiosae import defaults as D

    folds = D.PROBE_FOLDS if probe_folds is None else int(probe_folds)
    if folds < 2:
        return 1
    if n_sources is None:
        return 1 + folds
    return 1 + min(folds, n_sources) if 2 <= n_sources < D.PROBE_CV_MAX_SOURCES else 1


def probe_fit_flops(d_in: int, d_features: int, *, encode: bool) -> float:
    """FLOPs of one ``train_probes`` call per training frame: the L2 grid's heads (forward and
    weight gradient) on the inner split for ``PROBE_SELECT_EPOCHS`` full-frame equivalents (its held-out part
    forward only), then the refit with one head per attribute for ``PROBE_FIT_EPOCHS``; every
    epoch encodes its frames again (SAE features, ``encode``) when the probe reads an SAE."""
    from audiosae.probes import INNER_VAL_FRACTION, L2_GRID

    grid, inner = len(L2_GRID), INNER_VAL_FRACTION
    enc = 2 * d_in * d_features if encode else 0
    train_heads, eval_heads = 4 * PROBE_CLASSES * d_features, 2 * PROBE_CLASSES * d_features
    select = (1 - inner) * (enc + grid * train_heads) + inner * (enc + grid * eval_heads)
    return PROBE_SELECT_EPOCHS * select + PROBE_FIT_EPOCHS * (enc + train_heads)


def estimate_parts(frames: int, d_in: int, widths, l1s, epochs: int, gflops: float, *,
                   n_sources: int | None = None, all_frames: int | None = None,
                   probe_folds: int | None = None) -> dict:
    """Seconds of the SAE grid (5 matmuls of B x d_in x d_sae per step) and of the probes: per SAE
    and for the raw latent, ``probe_fits`` fits, the first on the ``frames`` training frames,
    each fold's on ``(k - 1) / k`` of ``all_frames`` (train + validation; default ``frames``)."""
    feats = [d_in * w for w in widths for _ in l1s]
    sae = epochs * frames * 10 * d_in * sum(feats)
    fits = probe_fits(n_sources, probe_folds)
    folds = fits - 1
    fit_frames = frames + (folds - 1) * (all_frames or frames) if folds else frames   # k x (k-1)/k = k - 1
    probes = fit_frames * (sum(probe_fit_flops(d_in, f, encode=True) for f in feats)
                           + probe_fit_flops(d_in, d_in, encode=False))
    rate = gflops * 1e9 * MATMUL_EFFICIENCY
    return {"sae_s": sae / rate, "probes_s": probes / rate, "probe_fits": fits,
            "seconds": (sae + probes) / rate}


def estimate_seconds(frames: int, d_in: int, widths, l1s, epochs: int, gflops: float, **probe_kw) -> float:
    """SAE training plus probes (``estimate_parts``), in seconds."""
    return estimate_parts(frames, d_in, widths, l1s, epochs, gflops, **probe_kw)["seconds"]


def choose_grid(frames: int, d_in: int, epochs: int, budget_s: float, gflops: float, **probe_kw):
    """The widest prefix of the paper's widths that fits the budget with 4 lambdas (or 2);
    ``probe_kw``: ``n_sources``, ``all_frames``, ``probe_folds`` (``estimate_parts``)."""
    for l1s in (LAMBDAS_FIRST, LAMBDAS_FALLBACK):
        widths = [w for k, w in enumerate(PAPER_WIDTHS)
                  if estimate_seconds(frames, d_in, PAPER_WIDTHS[:k + 1], l1s, epochs, gflops, **probe_kw) <= budget_s]
        if widths:
            return widths, list(l1s)
    return [PAPER_WIDTHS[0]], list(LAMBDAS_FALLBACK)


def skipped_text(widths, l1s, epochs, estimate_s: float | None = None) -> str:
    sk_w = [w for w in PAPER_WIDTHS if w not in widths]
    sk_l = [v for v in PAPER_L1 if v not in l1s]
    trained = f"trained {len(widths) * len(l1s)} SAEs: widths {','.join(map(str, widths))}x x lambda " \
              f"{','.join(f'{v:g}' for v in l1s)}, {epochs} epochs"
    if estimate_s is not None:
        trained += f" (estimated {estimate_s / 60:.0f} min here)"
    skip = f"skipped from the paper's grid: widths {','.join(map(str, sk_w)) or 'none'}x; " \
           f"lambda {','.join(f'{v:g}' for v in sk_l) or 'none'} (run them with --expansion/--l1)"
    return trained + "\n" + skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few minutes of audio and 2 SAEs (smoke run)")
    p.add_argument("--corpus-dir", type=Path, help="use this audio folder instead of building the real-music corpus")
    p.add_argument("--corpus", type=Path, default=None, help="where realmusic.py builds (default ~/.cache/...)")
    p.add_argument("--cache", type=Path, default=DEFAULT_ROOT, help=".deb cache for realmusic.py")
    p.add_argument("--workspace", type=Path, default=None, help="the workspace (default next to the corpus)")
    p.add_argument("--backend", default="mel")
    p.add_argument("--weights", type=Path, default=None, help="checkpoint for --backend (offline)")
    p.add_argument("--expansion", default=None, help="widths, e.g. 4,8,16 (default: the CPU part of the grid)")
    p.add_argument("--l1", default=None, help="lambdas, e.g. 0.005,0.05")
    p.add_argument("--epochs", type=int, default=None, help="default: audiosae train's default (quick: 3)")
    p.add_argument("--budget-minutes", type=float, default=DEFAULT_BUDGET_MINUTES,
                   help="choose the grid that should train in about this long here (default 30)")
    p.add_argument("--probe-folds", type=int, default=None,
                   help="passed to audiosae train (default: its default; 0 = no cross-validation, 6x cheaper probes)")
    p.add_argument("--no-build", action="store_true", help="train and report on --workspace as it is")
    p.add_argument("--report-only", action="store_true", help="only print the table of --workspace (no build/train)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the report JSON instead of the table")
    args = p.parse_args(argv)

    from audiosae.workspace import Workspace

    if args.report_only:
        if args.workspace is None:
            p.error("--report-only needs --workspace")
        report = cli("report", str(args.workspace))
        rows = report["saes"]
        widths = sorted({int(r.get("expansion") or 0) for r in rows})
        l1s = sorted({float(r["l1"]) for r in rows if r.get("l1") is not None})
        ws = Workspace.open(args.workspace)
        metrics = [ws.sae_dir(r["sae"]) / "metrics.json" for r in rows]
        epochs = json.loads(metrics[0].read_text()).get("epochs", "?") if metrics else "?"
        print(json.dumps(report, indent=2) if args.json else format_table(
            report, stand_in=report.get("backend") == "mel", skipped=skipped_text(widths, l1s, epochs)))
        return 0
    t0 = time.monotonic()
    if args.no_build:
        if args.workspace is None:
            p.error("--no-build needs --workspace")
        ws, audio = args.workspace, None
    elif args.corpus_dir is not None:
        corpus = args.corpus_dir
    else:
        import realmusic

        corpus = args.corpus or DEFAULT_ROOT / ("corpus-quick" if args.quick else "corpus")
        realmusic.build(corpus, args.cache.expanduser(), quick=args.quick)
    if not args.no_build:
        audio = corpus / "train" if (corpus / "train").is_dir() else corpus
        ws = args.workspace or corpus.parent / f"{corpus.name}-ws-{args.backend}"
    t_corpus = time.monotonic() - t0

    if args.no_build:
        built = Workspace.open(ws).meta.get("corpus") or {}
    else:
        build = ["build", str(ws), "--backend", args.backend, "--audio", str(audio), "--device", args.device]
        built = cli(*build, *(["--weights", str(args.weights)] if args.weights else []))
    t_build = time.monotonic() - t0 - t_corpus

    epochs = args.epochs or (QUICK_EPOCHS if args.quick else 10)
    opened = Workspace.open(ws)
    frames, d_in = int(built["train_frames"]), int(opened.latent_dim or 128)
    probe_kw = {"n_sources": len(opened.frame_store().source_table()), "probe_folds": args.probe_folds,
                "all_frames": int(built.get("frames") or frames)}
    gflops = matmul_gflops()
    if args.quick:
        widths, l1s = list(QUICK_WIDTHS), list(QUICK_L1)
    else:
        widths, l1s = choose_grid(frames, d_in, epochs, 60 * args.budget_minutes, gflops, **probe_kw)
    widths = [int(v) for v in args.expansion.split(",")] if args.expansion else widths
    l1s = [float(v) for v in args.l1.split(",")] if args.l1 else l1s
    parts = estimate_parts(frames, d_in, widths, l1s, epochs, gflops, **probe_kw)
    estimate = parts["seconds"]
    print(f"grid: widths {widths} x lambda {l1s}, {epochs} epochs on {frames} frames; matmul {gflops:.0f} GFLOP/s "
          f"now -> estimated {estimate / 60:.1f} min (SAEs {parts['sae_s'] / 60:.1f}, probes "
          f"{parts['probes_s'] / 60:.1f}: {parts['probe_fits']} fits per probe set, {probe_kw['n_sources']} sources)",
          file=sys.stderr, flush=True)
    if estimate > 60 * args.budget_minutes and not (args.quick or args.expansion or args.l1):
        print(f"warning: even the smallest grid is estimated at {estimate / 60:.1f} min, over the "
              f"{args.budget_minutes:g}-min budget" + (" (--probe-folds 0 skips the cross-validation folds)"
                                                        if parts["probe_fits"] > 1 else ""), file=sys.stderr)
    folds = ["--probe-folds", str(args.probe_folds)] if args.probe_folds is not None else []
    cli("train", str(ws), "--expansion", ",".join(map(str, widths)), "--l1", ",".join(f"{v:g}" for v in l1s),
        "--epochs", str(epochs), "--device", args.device, *folds)
    t_train = time.monotonic() - t0 - t_corpus - t_build
    report = cli("report", str(ws))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(format_table(report, stand_in=report.get("backend") == "mel", skipped=skipped_text(widths, l1s, epochs, estimate)))
    print(f"\naudio {audio or 'as built'} ({built.get('seconds_of_audio', 0) / 60:.1f} min); workspace {ws}\n"
          f"times: corpus {t_corpus:.0f} s, build {t_build:.0f} s, train+probes {t_train:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
