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


# per attribute in a probe metrics file's "evaluation" (schema 1 has only the first three)
_EVAL_KEYS = ("accuracy", "balanced_accuracy", "chance", "accuracy_std", "within1", "within1_std", "mae", "mae_std")
# the report's names for the ordinal attributes' error, with its unit
MAE_KEYS = {"loudness": "loudness_mae_db", "timbre": "timbre_mae_hz"}
ORDINAL = tuple(MAE_KEYS)


def _probe_doc(ws: Workspace, name: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]] | None:
    """(per-attribute numbers, the file's other facts: method, warnings) or None."""
    path = ws.probe_dir(name) / "metrics.json"
    if not path.is_file():
        return None
    doc = read_json_object(path, kind="probe metrics")
    evaluation = doc.get("evaluation")
    if evaluation is None:
        return None
    if not isinstance(evaluation, dict) or not all(isinstance(v, dict) for v in evaluation.values()):
        raise WorkspaceError(f"{path}: probe metrics 'evaluation' must map attributes to results; was it edited?")
    warnings = doc.get("warnings", [])
    if not isinstance(warnings, list):
        raise WorkspaceError(f"{path}: probe metrics 'warnings' must be a list; was it edited?")
    facts = {"method": str(doc.get("method", "val split")), "warnings": [str(w) for w in warnings]}
    return ({a: {k: _number(r.get(k), f"evaluation.{a}.{k}", path) for k in _EVAL_KEYS}
             for a, r in evaluation.items()}, facts)


def _probe_eval(ws: Workspace, name: str) -> dict[str, dict[str, Any]] | None:
    doc = _probe_doc(ws, name)
    return None if doc is None else doc[0]


def _probe_columns(ev: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A row's probe columns: accuracy (mean over folds when cross-validated) and its spread,
    balanced accuracy; within-one-bin accuracy and the mean error in dB / Hz (ordinal).
    Attributes beyond the paper's three (issue 14's registry) that were probed add the same
    columns under their names (``{a}_mae`` in the attribute's own unit)."""
    row: dict[str, Any] = {}
    for a in [*ATTRIBUTES, *(a for a in ev if a not in ATTRIBUTES)]:
        r = ev.get(a, {})
        row[f"{a}_accuracy"] = r.get("accuracy")
        row[f"{a}_accuracy_std"] = r.get("accuracy_std")
        row[f"{a}_balanced_accuracy"] = r.get("balanced_accuracy")
        row[f"{a}_macro_f1"] = r.get("macro_f1")
        if a not in ATTRIBUTES and r.get("within1") is not None:
            row[f"{a}_within1"] = r.get("within1")
            row[f"{a}_mae"] = r.get("mae")
    for a in ORDINAL:
        r = ev.get(a, {})
        row[f"{a}_within1"] = r.get("within1")
        row[MAE_KEYS[a]] = r.get("mae")
    return row


def _probed_attributes(ws: Workspace, docs: list[dict[str, dict[str, Any]]]) -> list[str]:
    """The attributes some probe set was evaluated on, in the workspace spec's order."""
    seen = {a for ev in docs for a in ev}
    try:
        order = list(ws.attribute_spec.attributes)
    except AudioSAEError:
        order = list(ATTRIBUTES)
    return [a for a in order if a in seen] + sorted(seen - set(order))


def attribute_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per probed attribute: classes, the majority-class rate (``chance``: the evaluated
    frames' own majority; ``majority_*``: the training majority class answered everywhere), the
    raw-latent probe and the best SAE probe (accuracy, balanced accuracy, macro-F1, and within-1 /
    mean error for ordinal attributes)."""
    out = []
    base = report["baseline"]
    for a in report.get("attributes") or ATTRIBUTES:
        saes = [r for r in report["saes"] if r.get(f"{a}_accuracy") is not None]
        best = max(saes, key=lambda r: r[f"{a}_accuracy"]) if saes else None
        mae_key = MAE_KEYS.get(a, f"{a}_mae")
        out.append({"attribute": a, "chance": base.get(f"{a}_chance"), "raw_latent": base.get(f"{a}_accuracy"),
                    "best_sae": best["sae"] if best else None,
                    "best_accuracy": best.get(f"{a}_accuracy") if best else None,
                    "best_within1": best.get(f"{a}_within1") if best else None,
                    "best_mae": best.get(mae_key) if best else None,
                    "majority": base.get(f"{a}_majority_accuracy"),
                    "majority_balanced": base.get(f"{a}_majority_balanced_accuracy"),
                    "majority_macro_f1": base.get(f"{a}_majority_macro_f1"),
                    "raw_balanced": base.get(f"{a}_balanced_accuracy"), "raw_macro_f1": base.get(f"{a}_macro_f1"),
                    "best_balanced": best.get(f"{a}_balanced_accuracy") if best else None,
                    "best_macro_f1": best.get(f"{a}_macro_f1") if best else None,
                    "n_classes": (report.get("n_classes") or {}).get(a)})
    return out


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
    evals: list[dict[str, dict[str, Any]]] = []
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
            **_training_columns(cfg, metrics, metrics_path),
        }
        ev, facts = _probe_doc(ws, name) or ({}, {})
        evals.append(ev)
        row.update(_probe_columns(ev))
        row["probe_method"] = facts.get("method")
        row["probe_warnings"] = facts.get("warnings", [])
        rows.append(row)
    baseline, base_facts = _probe_doc(ws, RAW_BASELINE) or ({}, {})
    probed = _probed_attributes(ws, [*evals, baseline])
    base_row = {"sae": RAW_BASELINE, **_probe_columns(baseline),
                **{f"{a}_chance": baseline.get(a, {}).get("chance") for a in [*ATTRIBUTES, *probed]},
                **{f"{a}_majority_{m}": baseline.get(a, {}).get(f"majority_{m}") for a in [*ATTRIBUTES, *probed]
                   for m in ("accuracy", "balanced_accuracy", "macro_f1")},
                "probe_method": base_facts.get("method"), "probe_warnings": base_facts.get("warnings", [])}
    corpus = ws.meta.get("corpus") or {}
    methods = {r["probe_method"] for r in [*rows, base_row] if r.get("probe_method")}
    # the split's warnings are the same for every probe set trained on it: list each once
    warnings = list(dict.fromkeys(w for r in [*rows, base_row] for w in r.get("probe_warnings", [])))
    try:
        n_classes = {a: ws.attribute_spec.n_classes(a) for a in probed}
    except AudioSAEError:
        n_classes = {}
    return {"workspace": str(ws.root), "backend": ws.backend_name, "corpus": corpus, "saes": rows,
            "baseline": base_row, "probe_method": "; ".join(sorted(methods)) or None, "probe_warnings": warnings,
            "attributes": probed, "n_classes": n_classes}


def _training_columns(cfg: dict[str, Any], metrics: dict[str, Any], path: Path) -> dict[str, Any]:
    """Architecture and how training ended: ``converged`` is False for an SAE whose held-out loss
    was still improving when its budget ran out, None for SAEs trained before it was recorded."""
    converged = metrics.get("converged")
    if converged is not None and not isinstance(converged, bool):
        raise WorkspaceError(f"{path}: converged = {converged!r:.40} is not true/false; was the file edited?")
    return {"architecture": str(cfg.get("architecture", "relu-rmsnorm")), "k": cfg.get("k"), "converged": converged,
            **{k: _number(metrics.get(k), k, path) for k in ("steps", "frames", "dead_features_train")}}


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
              f"{'pitch':>11} {'loud':>11} {'l±1':>5} {'l dB':>5} {'timbre':>11} {'t±1':>5} {'t Hz':>5}")
    lines += [header, "-" * len(header)]

    def probe_cells(r: dict[str, Any]) -> str:
        def acc(a: str) -> str:
            value, std = r.get(f"{a}_accuracy"), r.get(f"{a}_accuracy_std")
            return _fmt(value, ".3f") + (f"±{std:.2f}" if value is not None and std else "")
        return (f"{acc('pitch'):>11} {acc('loudness'):>11} {_fmt(r.get('loudness_within1'), '.2f'):>5} "
                f"{_fmt(r.get('loudness_mae_db'), '.1f'):>5} {acc('timbre'):>11} "
                f"{_fmt(r.get('timbre_within1'), '.2f'):>5} {_fmt(r.get('timbre_mae_hz'), '.0f'):>5}")

    for r in report["saes"]:
        name = r["sae"] + (" *" if r.get("converged") is False else "")
        lines.append(f"{name:<18} {_fmt(r['d_sae'], 'd'):>6} {_fmt(r['l1'], 'g'):>7} "
                     f"{_fmt(r['sparsity'], '.3f'):>8} {_fmt(r['l0'], '.1f'):>7} {_fmt(r['dead_features'], 'd'):>6} "
                     f"{_fmt(r['fvu'], '.3f'):>7} {probe_cells(r)}")
    b = report["baseline"]
    blank = f"{'':>6} {'':>7} {'':>8} {'':>7} {'':>6} {'':>7}"
    lines.append(f"{'raw latent (x)':<18} {blank} {probe_cells(b)}")
    lines.append(f"{'chance (majority)':<18} {blank} {_fmt(b.get('pitch_chance'), '.3f'):>11} "
                 f"{_fmt(b.get('loudness_chance'), '.3f'):>11} {'':>5} {'':>5} {_fmt(b.get('timbre_chance'), '.3f'):>11}")
    extra = [r for r in attribute_rows(report) if r["attribute"] not in ATTRIBUTES] \
        if any(a not in ATTRIBUTES for a in report.get("attributes") or ()) else []
    if extra or len(report.get("attributes") or ()) > len(ATTRIBUTES):
        lines += ["", f"{'attribute':<16} {'classes':>7} {'majority':>8} {'raw x':>7} {'best SAE':>8} "
                      f"{'±1':>5} {'MAE':>6} {'bal maj/x/SAE':>17} {'F1 maj/x/SAE':>17}  SAE"]
        for r in attribute_rows(report):
            bal = "/".join(_fmt(r[k], '.2f') for k in ("majority_balanced", "raw_balanced", "best_balanced"))
            f1 = "/".join(_fmt(r[k], '.2f') for k in ("majority_macro_f1", "raw_macro_f1", "best_macro_f1"))
            lines.append(f"{r['attribute']:<16} {_fmt(r['n_classes'], 'd'):>7} "
                         f"{_fmt(r['majority'] if r['majority'] is not None else r['chance'], '.3f'):>8} "
                         f"{_fmt(r['raw_latent'], '.3f'):>7} {_fmt(r['best_accuracy'], '.3f'):>8} "
                         f"{_fmt(r['best_within1'], '.2f'):>5} {_fmt(r['best_mae'], '.2f'):>6} {bal:>17} {f1:>17}  "
                         f"{r['best_sae'] or '-'}")
    lines.append("")
    method = report.get("probe_method") or "val split"
    lines.append("sparsity = fraction of zero h; L0 = active features per frame; dead = never active on "
                 "validation frames; FVU = fraction of variance unexplained; probe accuracies: " + method +
                 (" (mean ± std over folds)" if "cross" in method else "") +
                 "; l±1 / t±1 = within one bin; l dB / t Hz = mean error between bin centres.")
    if any(r.get("converged") is False for r in report["saes"]):
        lines.append("* did not converge: its held-out loss was still improving when the budget ran out "
                     "(train again with a larger --frames)")
    for w in report.get("probe_warnings") or []:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


__all__ = ["workspace_report", "verify_workspace", "format_report", "best_sae", "attribute_rows", "RAW_BASELINE", "AudioSAEError"]
