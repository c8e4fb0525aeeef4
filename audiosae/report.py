"""The paper-style table for a workspace: per SAE sparsity, L0, dead features, FVU and the
probe accuracies per attribute, with the raw-latent probes as the baseline row."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .attributes import ATTRIBUTES
from .errors import AudioSAEError, WorkspaceError
from .storage import read_json_object
from .workspace import Workspace, check_shard_file

RAW_BASELINE = "raw-latent"


def _number(value: Any, key: str, path: Path) -> float | int | None:
    """A metric for the table: a finite number or null; text or NaN means a hand edit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise WorkspaceError(f"{path}: {key} = {value!r:.40} is not a number; was the file edited?")
    return value


def _probe_eval(ws: Workspace, name: str) -> dict[str, dict[str, Any]] | None:
    path = ws.probe_dir(name) / "metrics.json"
    if not path.is_file():
        return None
    evaluation = read_json_object(path, kind="probe metrics").get("evaluation")
    if evaluation is None:
        return None
    if not isinstance(evaluation, dict) or not all(isinstance(v, dict) for v in evaluation.values()):
        raise WorkspaceError(f"{path}: probe metrics 'evaluation' must map attributes to results; was it edited?")
    return {a: {k: _number(r.get(k), f"evaluation.{a}.{k}", path)
                for k in ("accuracy", "balanced_accuracy", "chance")} for a, r in evaluation.items()}


def verify_workspace(ws: Workspace) -> None:
    """Check every file a report stands on: the corpus manifest and each shard's header (no
    shard data is read: corpora can be gigabytes), and each SAE and probe set in full (small).
    Any damage raises ``WorkspaceError`` naming the file."""
    from .probes import ProbeSet
    from .sae import SparseAutoencoder

    manifest = ws.manifest()
    for shard in manifest.shards:
        check_shard_file(ws.corpus_dir / shard["file"], ws.latent_dim)
    for name in ws.sae_names():
        SparseAutoencoder.load(ws.sae_dir(name), device="cpu")
    for name in [*ws.sae_names(), RAW_BASELINE]:
        if (ws.probe_dir(name) / "probes.json").is_file():
            ProbeSet.load(ws.probe_dir(name))


def workspace_report(ws: Workspace, *, verify: bool = False) -> dict[str, Any]:
    """The table's rows from the metrics files; ``verify`` first checks the files behind them
    (``verify_workspace``), so a damaged workspace fails here instead of reporting garbage."""
    if verify:
        verify_workspace(ws)
    rows = []
    for name in ws.sae_names():
        cfg_path, metrics_path = ws.sae_dir(name) / "cfg.json", ws.sae_dir(name) / "metrics.json"
        cfg = read_json_object(cfg_path, kind="SAE config")
        metrics = read_json_object(metrics_path, kind="SAE metrics") if metrics_path.is_file() else {}
        d_sae, d_in = _number(cfg.get("d_sae"), "d_sae", cfg_path), _number(cfg.get("d_in"), "d_in", cfg_path)
        row: dict[str, Any] = {
            "sae": name, "d_sae": d_sae, "expansion": int(d_sae or 0) // max(1, int(d_in or 1)),
            "l1": _number(cfg.get("l1_coefficient"), "l1_coefficient", cfg_path),
            **{k: _number(metrics.get(k), k, metrics_path)
               for k in ("sparsity", "l0", "dead_features", "dead_fraction", "fvu", "explained_variance", "mse")},
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
    corpus = ws.meta.get("corpus") or {}
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
    if value is None:
        return "-"
    return format(int(value) if spec == "d" else value, spec)


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


__all__ = ["workspace_report", "verify_workspace", "format_report", "best_sae", "RAW_BASELINE", "AudioSAEError"]
