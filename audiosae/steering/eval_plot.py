"""The PNG matrix of a steering evaluation: rows = methods (the paper's first), columns = alpha,
one panel per metric, each cell annotated with its number (matplotlib, Agg; written atomically)."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

# (metric, title, colour map, higher is better)
PANELS = (("hit_rate", "target hit rate", "viridis", True),
          ("loudness_shift_db", "loudness |Δ| dB (frames > -50 dB)", "magma_r", False),
          ("centroid_change_pct", "centroid |Δ| % (median)", "magma_r", False),
          ("frechet", "Fréchet distance vs unsteered", "magma_r", False))


def png_name(attribute: str, target: str) -> str:
    """``steer-eval-pitch-A4.png``; characters a file name should not hold become '_'."""
    safe = re.sub(r"[^A-Za-z0-9#.+-]+", "_", str(target)).strip("_") or "target"
    return f"steer-eval-{attribute}-{safe}.png"


def _fmt(metric: str, value: float) -> str:
    if not math.isfinite(value):
        return "–"
    if metric == "hit_rate":
        return f"{value:.2f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"


def write_matrix_png(evaluation: Any, path: str | Path, *, attribute: str, target: str,
                     clip: str | None = None) -> Path:
    """One row of panels (``PANELS``) for ``attribute``/``target`` (the mean over the clips, or
    ``clip`` alone).  A panel of the target's own attribute says so instead of a shift."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from ..storage import atomic_write_bytes

    methods, alphas = evaluation.methods, evaluation.alphas
    fig, axes = plt.subplots(1, len(PANELS), figsize=(3.1 * len(PANELS) + 1.2, 0.5 * len(methods) + 1.6),
                             squeeze=False)
    own = {"loudness_shift_db": "loudness", "centroid_change_pct": "timbre"}
    for ax, (metric, title, cmap, _higher) in zip(axes[0], PANELS):
        mat = evaluation.matrix(metric, clip=clip, attribute=attribute, target=target)
        values = mat.values
        finite = values[np.isfinite(values)]
        if metric == "hit_rate":
            vmin, vmax = 0.0, 1.0
        else:
            vmin, vmax = 0.0, float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        ax.imshow(np.where(np.isfinite(values), values, np.nan), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        for i in range(len(methods)):
            for j in range(len(alphas)):
                v = values[i, j]
                shade = (v - vmin) / (vmax - vmin) if math.isfinite(v) and vmax > vmin else 0.5
                dark = shade < 0.5 if cmap == "viridis" else shade > 0.5
                ax.text(j, i, _fmt(metric, v), ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
        ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_yticks(range(len(methods)), methods if ax is axes[0][0] else [""] * len(methods))
        ax.set_xlabel("alpha")
        label = title + (" (the target)" if own.get(metric) == attribute else "")
        ax.set_title(label, fontsize=9)
    where = f"clip {clip}" if clip else f"{len(evaluation.meta.get('clips', []))} clip(s)"
    fig.suptitle(f"steering {attribute} → {target}; SAE {evaluation.meta.get('sae')}; {where}; "
                 f"vs the unsteered reconstruction", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


__all__ = ["PANELS", "png_name", "write_matrix_png"]


# (metric, heading, format) of the text tables ``format_tables`` prints (the CLI).
TABLES = (("hit_rate", "target hit rate (voiced/labelled frames in the target class)", "{:.2f}"),
          ("loudness_shift_db", "loudness |Δ| dB vs unsteered (frames > -50 dB)", "{:.1f}"),
          ("centroid_change_pct", "centroid |Δ| % vs unsteered (median)", "{:.1f}"),
          ("pitch_shift_semitones", "pitch |Δ| semitones vs unsteered (voiced frames)", "{:.2f}"),
          ("frechet", "Fréchet distance vs unsteered", "{:.2f}"),
          ("clipped_fraction", "fraction of samples at/over full scale", "{:.4f}"),
          ("outside_max_abs_delta_beyond_guard", "outside the selection: max |Δ sample| beyond the guard", "{:.4f}"))


def format_tables(evaluation: Any, *, clip: str | None = None) -> str:
    """Methods x alpha text tables, one per metric and target, and the best method's line."""
    lines: list[str] = []
    width = max(len(m) for m in evaluation.methods) + 2
    for attribute, target in evaluation.targets:
        lines.append(f"== {attribute} -> {target} ({len(evaluation.meta.get('clips', []))} clip(s), "
                     f"SAE {evaluation.meta.get('sae')}) ==")
        for metric, heading, fmt in TABLES:
            mat = evaluation.matrix(metric, clip=clip, attribute=attribute, target=target)
            if not np.isfinite(mat.values).any():
                continue  # the target's own attribute, or no selection
            lines.append(heading)
            lines.append(" " * width + "".join(f"{'a=' + format(a, 'g'):>10}" for a in mat.alphas))
            for method, row in zip(mat.methods, mat.values):
                cells = "".join(f"{(fmt.format(v) if math.isfinite(v) else '-'):>10}" for v in row)
                lines.append(f"{method:<{width}}{cells}")
        best = evaluation.best_method(clip=clip, attribute=attribute, target=target)
        if best["method"] is None:
            lines.append("best: no method reaches a hit rate of 0.5 at these alphas")
        else:
            row = best["ranking"][0]
            lines.append(f"best: {best['method']} at alpha {best['alpha']:g} (hit rate {row['hit_rate']:.2f}, "
                         f"cost {row['cost']:.2f}: " + ", ".join(f"{k} {v:.2f}" for k, v in row["components"].items())
                         + (", meets the goals" if row["meets_goals"] else ", misses a goal") + ")")
        lines.append("")
    return "\n".join(lines).rstrip()


__all__ += ["TABLES", "format_tables"]
