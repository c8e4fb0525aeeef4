"""Batches of traces: prompt lists, ``summarise_traces`` (mean and 95 % CI over prompts) and
``write_report`` (``report.png`` + ``report.json``).  See ``audiosae.generation.trace``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import AudioSAEError, WorkspaceError
from ..storage import SCHEMA_VERSION, atomic_write_json
from .trace_files import Trace, is_trace_folder, load_trace
from .trace_metric import (BATCH_KIND, CI_METHOD, FORMS, REPORT_JSON, REPORT_PNG, SOURCES, TRACE_FILE, _converged,
                           convergence_step, mean_ci)


def builtin_prompts_path() -> Path:
    """The prompt list shipped with audiosae (about 30 varied music descriptions)."""
    return Path(__file__).resolve().parent / "prompts.txt"


def read_prompts(path: str | Path) -> list[str]:
    """Non-empty lines of a text file, ``#`` comments skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise AudioSAEError(f"{path}: prompt file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AudioSAEError(f"{path}: cannot read prompts ({type(exc).__name__}: {exc})") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise AudioSAEError(f"{path}: no prompts (one per line; '#' starts a comment)")
    return prompts


def _floats(values: np.ndarray | None) -> list[float] | float | None:
    if values is None:
        return None
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        return float(array)
    return [float(v) for v in array]


def summarise_traces(folders_or_traces: Sequence[str | Path | Trace], threshold: float | None = None
                     ) -> dict[str, Any]:
    """Mean ± 95 % CI curves and the convergence table over several traces of the same shape.

    ``threshold`` None: each trace's own.  Convergence steps count a curve that never
    converges as the last state.
    """
    traces = [t if isinstance(t, Trace) else load_trace(t, load_audio=False) for t in folders_or_traces]
    if not traces:
        raise AudioSAEError("no traces to summarise")
    steps, attributes = traces[0].steps, traces[0].attributes
    for t in traces[1:]:
        if t.steps != steps or t.attributes != attributes:
            raise AudioSAEError("the traces differ in steps or attributes; summarise like with like")
    threshold = float(traces[0].meta["threshold"] if threshold is None else threshold)
    curves: dict[str, Any] = {}
    table: dict[str, Any] = {}
    for source in SOURCES:
        curves[source], table[source] = {}, {}
        for form in FORMS:
            curves[source][form], table[source][form] = {}, {}
            for attr in attributes:
                rows = np.stack([t.s_t(attr, source, form) for t in traces])
                mean, lo, hi = mean_ci(rows)
                curves[source][form][attr] = {"mean": _floats(mean), "lo": _floats(lo), "hi": _floats(hi)}
                conv = np.array([convergence_step(r, threshold) for r in rows], dtype=np.float64)
                c_mean, c_lo, c_hi = mean_ci(conv[:, None])
                table[source][form][attr] = {
                    "mean_step": float(c_mean[0]), "lo": None if c_lo is None else float(c_lo[0]),
                    "hi": None if c_hi is None else float(c_hi[0]),
                    "fraction_converged": float(np.mean([_converged(int(c), steps) for c in conv])),
                    "steps": [int(c) for c in conv]}
    return {"schema_version": SCHEMA_VERSION, "kind": BATCH_KIND, "n": len(traces), "steps": steps,
            "attributes": attributes, "threshold": threshold, "ci": CI_METHOD,
            "traces": [{"folder": str(t.folder.name) if t.folder else None, "prompt": t.meta.get("prompt"),
                        "seed": t.meta.get("seed")} for t in traces],
            "curves": curves, "convergence": table}


# ---- report ----------------------------------------------------------------------------------------------


def _batch_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and is_trace_folder(p))


def write_report(folder: str | Path, threshold: float | None = None) -> dict[str, Any]:
    """``report.png`` (s_t curves per attribute with convergence markers; mean ± CI bands for a
    batch) and ``report.json`` for a trace folder or a batch folder.  Returns the JSON."""
    folder = Path(folder)
    if is_trace_folder(folder):
        trace = load_trace(folder, load_audio=False)
        if threshold is not None:
            trace.meta["threshold"] = float(threshold)
        summary = summarise_traces([trace], threshold)
        kind = "trace"
    else:
        subs = _batch_folders(folder) if folder.is_dir() else []
        if not subs:
            raise WorkspaceError(f"{folder}: neither a trace folder ({TRACE_FILE}) nor a batch of trace folders")
        summary = summarise_traces(subs, threshold)
        kind = "batch"
    report = {"schema_version": SCHEMA_VERSION, "kind": f"audiosae.trace_report.{kind}", "folder": str(folder),
              "png": REPORT_PNG, **{k: v for k, v in summary.items() if k not in ("schema_version", "kind")}}
    _plot(summary, folder / REPORT_PNG, batch=kind == "batch")
    atomic_write_json(folder / REPORT_JSON, report)
    return report


def _plot(summary: Mapping[str, Any], path: Path, *, batch: bool) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        from ..errors import DependencyError

        raise DependencyError("trace reports need matplotlib; run: pip install 'matplotlib>=3.7'") from None
    import io

    from ..storage import atomic_write_bytes

    attributes, steps, threshold = summary["attributes"], summary["steps"], summary["threshold"]
    x = np.arange(steps)
    fig, axes = plt.subplots(1, len(attributes), figsize=(4.2 * len(attributes), 3.6), sharey=True, squeeze=False)
    styles = [("x_t", "endpoint", "-", "C0", "X_t"), ("x1", "endpoint", "--", "C1", "x̂1"),
              ("x_t", "paper", ":", "C2", "X_t, paper form")]
    for ax, attr in zip(axes[0], attributes):
        for source, form, line, color, label in styles:
            curve = summary["curves"][source][form][attr]
            ax.plot(x, curve["mean"], line, color=color, label=label, linewidth=1.6)
            if batch and curve["lo"] is not None:
                ax.fill_between(x, curve["lo"], curve["hi"], color=color, alpha=0.18, linewidth=0)
            conv = summary["convergence"][source][form][attr]
            step = conv["mean_step"]
            if form == "endpoint":
                y = float(np.interp(step, x, curve["mean"]))
                ax.plot([step], [y], marker="v" if source == "x_t" else "^", color=color, markersize=8)
                if batch and conv["lo"] is not None:
                    ax.errorbar([step], [y], xerr=[[step - conv["lo"]], [conv["hi"] - step]], color=color,
                                capsize=3, linewidth=1)
        ax.axhline(threshold, color="0.5", linewidth=0.8, linestyle="-.")
        ax.set_title(attr)
        ax.set_xlabel("sampler state (0 = noise)")
        ax.set_xlim(0, steps - 1)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("s_t")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    n = summary["n"]
    title = f"attribute evolution, {n} prompts (mean ± 95% CI)" if batch else \
        f"attribute evolution: {summary['traces'][0].get('prompt') or 'trace'}"[:110]
    fig.suptitle(title + f"; markers: convergence (s_t ≥ {threshold:g})", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
