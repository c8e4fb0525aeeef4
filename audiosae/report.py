"""The paper-style table for a workspace: per SAE sparsity, L0, dead features, FVU and the
probe accuracies per attribute, with the raw-latent probes as the baseline row."""

from __future__ import annotations

from typing import Any

from .attributes import ATTRIBUTES
from .errors import AudioSAEError, WorkspaceError
from .storage import read_json
from .workspace import Workspace

RAW_BASELINE = "raw-latent"


def _probe_eval(ws: Workspace, name: str) -> dict[str, Any] | None:
    path = ws.probe_dir(name) / "metrics.json"
    if not path.is_file():
        return None
    return read_json(path, kind="probe metrics").get("evaluation")


def workspace_report(ws: Workspace) -> dict[str, Any]:
    rows = []
    for name in ws.sae_names():
        cfg = read_json(ws.sae_dir(name) / "cfg.json", kind="SAE config")
        metrics = read_json(ws.sae_dir(name) / "metrics.json", kind="SAE metrics")
        row: dict[str, Any] = {
            "sae": name, "d_sae": cfg.get("d_sae"), "expansion": (cfg.get("d_sae") or 0) // max(1, cfg.get("d_in") or 1),
            "l1": cfg.get("l1_coefficient"),
            **{k: metrics.get(k) for k in ("sparsity", "l0", "dead_features", "dead_fraction", "fvu",
                                           "explained_variance", "mse")},
        }
        ev = _probe_eval(ws, name) or {}
        for a in ATTRIBUTES:
            row[f"{a}_accuracy"] = ev.get(a, {}).get("accuracy")
            row[f"{a}_balanced_accuracy"] = ev.get(a, {}).get("balanced_accuracy")
        rows.append(row)
    baseline = _probe_eval(ws, RAW_BASELINE) or {}
    base_row = {"sae": RAW_BASELINE, **{f"{a}_accuracy": baseline.get(a, {}).get("accuracy") for a in ATTRIBUTES},
                **{f"{a}_balanced_accuracy": baseline.get(a, {}).get("balanced_accuracy") for a in ATTRIBUTES},
                **{f"{a}_chance": baseline.get(a, {}).get("chance") for a in ATTRIBUTES}}
    corpus = ws.meta.get("corpus", {})
    return {"workspace": str(ws.root), "backend": ws.backend_name, "corpus": corpus, "saes": rows,
            "baseline": base_row}


def best_sae(ws: Workspace, attribute: str = "pitch") -> str:
    """The SAE whose probe for ``attribute`` has the best validation accuracy."""
    rows = [r for r in workspace_report(ws)["saes"] if r.get(f"{attribute}_accuracy") is not None]
    if not rows:
        if ws.sae_names():
            raise WorkspaceError(f"{ws.root}: no SAE has trained probes yet; run `audiosae train`")
        raise WorkspaceError(f"{ws.root}: no trained SAE; run `audiosae train` first")
    return max(rows, key=lambda r: r[f"{attribute}_accuracy"])["sae"]


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_report(report: dict[str, Any]) -> str:
    corpus = report.get("corpus", {})
    lines = [f"workspace {report['workspace']}  backend {report['backend']}  "
             f"frames {corpus.get('frames', '?')} (train {corpus.get('train_frames', '?')}, "
             f"val {corpus.get('val_frames', '?')})", ""]
    header = (f"{'SAE':<18} {'width':>6} {'L1':>7} {'sparsity':>8} {'L0':>7} {'dead':>6} {'FVU':>7} "
              f"{'pitch':>6} {'loud':>6} {'timbre':>6}")
    lines += [header, "-" * len(header)]
    for r in report["saes"]:
        lines.append(f"{r['sae']:<18} {_fmt(r['d_sae'], 'd'):>6} {_fmt(r['l1'], 'g'):>7} "
                     f"{_fmt(r['sparsity'], '.3f'):>8} {_fmt(r['l0'], '.1f'):>7} {_fmt(r['dead_features'], 'd'):>6} "
                     f"{_fmt(r['fvu'], '.3f'):>7} {_fmt(r['pitch_accuracy'], '.3f'):>6} "
                     f"{_fmt(r['loudness_accuracy'], '.3f'):>6} {_fmt(r['timbre_accuracy'], '.3f'):>6}")
    b = report["baseline"]
    lines.append(f"{'raw latent (x)':<18} {'':>6} {'':>7} {'':>8} {'':>7} {'':>6} {'':>7} "
                 f"{_fmt(b.get('pitch_accuracy'), '.3f'):>6} {_fmt(b.get('loudness_accuracy'), '.3f'):>6} "
                 f"{_fmt(b.get('timbre_accuracy'), '.3f'):>6}")
    lines.append(f"{'chance (majority)':<18} {'':>6} {'':>7} {'':>8} {'':>7} {'':>6} {'':>7} "
                 f"{_fmt(b.get('pitch_chance'), '.3f'):>6} {_fmt(b.get('loudness_chance'), '.3f'):>6} "
                 f"{_fmt(b.get('timbre_chance'), '.3f'):>6}")
    lines.append("")
    lines.append("sparsity = fraction of zero h; L0 = active features per frame; dead = never active on "
                 "validation frames; FVU = fraction of variance unexplained; accuracies on validation frames.")
    return "\n".join(lines)


__all__ = ["workspace_report", "format_report", "best_sae", "RAW_BASELINE", "AudioSAEError"]
