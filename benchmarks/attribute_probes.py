"""Goal figures of issue 14: each attribute's probe vs the majority class and the raw-latent probe.

    python benchmarks/attribute_probes.py WORKSPACE --sae NAME [--attributes a,b|new|all]
        [--class-weights none,balanced] [--folds 0] [--json] [--markdown]

For each class weighting, trains the probes of the attributes (on the SAE's features and on
the raw latent) with ``training.train_and_evaluate_probes``, the function ``audiosae train``
runs, and measures them as it does (val split, or cross-validation by source with
``--folds N`` when the corpus has fewer than 20 sources).  The probe sets are saved in the
workspace under ``probes/bench-<weights>-<sae|raw-latent>`` (the workspace's own probes are not
touched).  Per attribute it reports accuracy, balanced accuracy and macro-F1 of both probes
beside the *honest* majority baseline (the training split's majority class answered on every
held-out frame) and ``chance`` (the held-out frames' own majority rate: what no constant answer
can beat, an oracle).

On imbalanced attributes accuracy alone flatters the majority class; balanced accuracy
(majority baseline = 1 / classes present) and macro-F1 say whether the probe tells the classes
apart.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiosae.attribute_registry import PAPER_ATTRIBUTES  # noqa: E402
from audiosae.sae import SparseAutoencoder  # noqa: E402
from audiosae.training import TrainSettings, check_labelled, train_and_evaluate_probes  # noqa: E402
from audiosae.workspace import Workspace  # noqa: E402

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


def _attributes(ws: Workspace, text: str) -> list[str]:
    spec = ws.attribute_spec
    if text == "all":
        return list(spec.attributes)
    if text == "new":
        return [a for a in spec.attributes if a not in PAPER_ATTRIBUTES]
    return [a.strip() for a in text.split(",") if a.strip()]


def run(workspace: Path, sae_name: str, attributes: str = "new", weights: tuple[str, ...] = ("none", "balanced"),
        folds: int = 0, device: str = "cpu") -> dict:
    ws = Workspace.open(workspace)
    attrs = _attributes(ws, attributes)
    store = ws.frame_store(ws.attribute_spec)
    labelled = []
    for a in attrs:   # leave out what no training frame has a label of (instrument without ground truth)
        try:
            check_labelled(store, [a])
            labelled.append(a)
        except Exception:   # noqa: BLE001 - reported as skipped
            pass
    sae = SparseAutoencoder.load(ws.sae_dir(sae_name), device="cpu")
    out: dict = {"workspace": str(workspace), "sae": sae_name, "attributes": labelled,
                 "skipped": [a for a in attrs if a not in labelled], "runs": {}}
    for cw in weights:
        settings = TrainSettings(probe_attributes=labelled, probe_class_weight=None if cw == "none" else cw,
                                 probe_folds=folds)
        for kind, model in (("raw-latent", None), ("sae", sae)):
            t0 = time.perf_counter()
            doc = train_and_evaluate_probes(ws, store, f"bench-{cw}-{kind}", model, settings, device=device)
            ev = doc["evaluation"]
            out["runs"][f"{cw}/{kind}"] = {
                "seconds": round(time.perf_counter() - t0, 1), "method": doc["method"],
                "per_attribute": {a: {k: ev[a].get(k) for k in (*METRICS, "chance", "majority_accuracy",
                                                               "majority_balanced_accuracy", "majority_macro_f1",
                                                               "n_frames", "within1")} for a in labelled}}
    spec = ws.attribute_spec
    out["n_classes"] = {a: spec.n_classes(a) for a in labelled}
    return out


def markdown(res: dict) -> str:
    lines = [f"Workspace `{res['workspace']}`, SAE `{res['sae']}`; probes measured on "
             f"{next(iter(res['runs'].values()))['method']}.", "",
             "| attribute | classes | weights | majority acc / bal / F1 | raw latent acc / bal / F1 | "
             "SAE acc / bal / F1 | held-out own majority |", "|---|---|---|---|---|---|---|"]
    weights = sorted({k.split("/")[0] for k in res["runs"]}, key=lambda w: w != "none")

    def f(v):
        return "-" if v is None else f"{v:.3f}"
    for a in res["attributes"]:
        for cw in weights:
            raw = res["runs"][f"{cw}/raw-latent"]["per_attribute"][a]
            sae = res["runs"][f"{cw}/sae"]["per_attribute"][a]
            maj = " / ".join(f(raw.get(f"majority_{m}")) for m in METRICS)
            lines.append(f"| {a} | {res['n_classes'][a]} | {cw} | {maj} | "
                         f"{' / '.join(f(raw[m]) for m in METRICS)} | {' / '.join(f(sae[m]) for m in METRICS)} | "
                         f"{f(raw['chance'])} |")
    if res["skipped"]:
        lines.append(f"\nNo training labels (skipped): {', '.join(res['skipped'])}.")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("workspace", type=Path)
    p.add_argument("--sae", required=True)
    p.add_argument("--attributes", default="new", help="a,b,... | new (default: the registered ones) | all")
    p.add_argument("--class-weights", default="none,balanced")
    p.add_argument("--folds", type=int, default=0, help="cross-validate by source in N folds (default 0: val split)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    res = run(args.workspace, args.sae, args.attributes, tuple(args.class_weights.split(",")), args.folds, args.device)
    print(json.dumps(res, indent=2) if args.json else markdown(res))


if __name__ == "__main__":
    main()
