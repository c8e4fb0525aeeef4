"""Check ``audiosae describe`` labels on a real corpus: the top labelled features, and for the
features whose best pitch label is a note, the precision of that note among their most active frames.

    python benchmarks/describe_precision.py WORKSPACE --sae NAME [--k 50] [--show 15] [--json]
                                            [--attributes pitch,instrument]

Goal (issue "every feature labelled automatically"): for an SAE of width >= 1,024, at least 50
features whose best pitch label is a note (or whose best instrument label is a family) have
precision >= 0.8 among their 50 most active corpus frames.  Features count when they are active
on at least ``--k`` frames and their best AUROC is at least ``--min-auroc`` (0.5: every such
feature with a note / family as best class).  ``--attributes``: the attributes checked (default
pitch, plus instrument when the workspace labels it); a feature counts once even when both
its note and its family reach 0.8 (``union_ge_0.8``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiosae.describe import load_or_describe, top_frame_precision  # noqa: E402
from audiosae.workspace import Workspace  # noqa: E402


SKIP = {"pitch": ("unvoiced",), "instrument": ("none",)}   # classes that are no note / no family


def run(workspace: Path, sae: str, k: int = 50, show: int = 15, min_auroc: float = 0.5,
        device: str = "cpu", voiced_only: bool = False, attributes: tuple[str, ...] | None = None,
        ground_truth: bool = False) -> dict:
    ws = Workspace.open(workspace)
    t0 = time.perf_counter()
    desc = load_or_describe(ws, sae, device=device)
    describe_s = time.perf_counter() - t0
    single = desc.single_label_score()
    best = [desc.labels(j, top=1) for j in range(desc.n_features)]
    live = [j for j in range(desc.n_features) if best[j]]
    active = np.rint(desc.density * desc.n_frames)
    # features active on fewer than k frames are left out: a feature seen on 3 frames is "pure" by chance
    order = sorted((j for j in live if active[j] >= k), key=lambda j: (-best[j][0]["score"] * single[j], j))
    top = [{**desc.describe(j, top=3)} for j in order[:show]]
    t0 = time.perf_counter()
    prec = top_frame_precision(ws, sae, desc, k=k, device=device, among_classes_only=voiced_only)
    precision_s = time.perf_counter() - t0
    attributes = attributes or tuple(a for a in ("pitch", "instrument") if a in desc.attributes)
    per_attr: dict[str, dict] = {}
    union: set[int] = set()
    for att in attributes:
        if att not in desc.attributes:
            continue
        if att == "pitch" and ground_truth:
            res = top_frame_precision(ws, sae, desc, k=k, device=device, among_classes_only=voiced_only,
                                      ground_truth=True)
        else:
            res = prec if att == "pitch" else top_frame_precision(
                ws, sae, desc, attribute=att, k=k, device=device, skip_classes=SKIP.get(att, ()),
                among_classes_only=voiced_only)
        rows_a = [r for r in res.values() if r["auroc"] >= min_auroc and r["frames"] >= k]
        good_a = [r for r in rows_a if r["precision"] >= 0.8]
        union |= {r["feature"] for r in good_a}
        per_attr[att] = {"features": len(rows_a), "precision_ge_0.8": len(good_a),
                         "median_precision": float(np.median([r["precision"] for r in rows_a])) if rows_a else None,
                         "distinct_classes_ge_0.8": sorted({r["class"] for r in good_a}),
                         "mode_ge_0.8": sum(1 for r in res.values() if r["mode_precision"] >= 0.8 and r["frames"] >= k
                                            and r["mode_class"] not in SKIP.get(att, ()))}
    precision_s = time.perf_counter() - t0
    rows = [r for r in prec.values() if r["auroc"] >= min_auroc and r["frames"] >= k]
    good = [r for r in rows if r["precision"] >= 0.8]
    by_prec = sorted(rows, key=lambda r: (-r["precision"], -r["auroc"]))
    return {"workspace": str(workspace), "sae": sae, "features": desc.n_features, "frames": desc.n_frames,
            "live_features": len(live), "describe_seconds": round(describe_s, 1),
            "precision_seconds": round(precision_s, 1), "k": k, "voiced_only": voiced_only,
            "note_features": len(rows), "note_features_precision_ge_0.8": len(good),
            "median_precision": float(np.median([r["precision"] for r in rows])) if rows else None,
            "distinct_notes_ge_0.8": sorted({r["class"] for r in good}),
            "mode_note_features_ge_0.8": sum(1 for r in prec.values() if r["mode_precision"] >= 0.8
                                             and r["mode_class"] != "unvoiced" and r["frames"] >= k),
            "features_under_k_frames": sum(1 for r in prec.values() if r["frames"] < k),
            "median_mode_precision": float(np.median([r["mode_precision"] for r in rows])) if rows else None,
            "mode_unvoiced_features": sum(1 for r in prec.values() if r["mode_class"] == "unvoiced"),
            "per_attribute": per_attr, "union_ge_0.8": len(union), "pitch_judged_by": "ground-truth notes (gt_midi)"
            if ground_truth else "measured pitch classes (CREPE)",
            "goal_met": desc.n_features >= 1024 and len(union) >= 50,
            "max_auroc_error_bound": float(np.nanmax(desc.auroc_error)),
            "top_features": top, "best_precision": by_prec[:show]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("workspace", type=Path)
    p.add_argument("--sae", required=True)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--show", type=int, default=15)
    p.add_argument("--min-auroc", type=float, default=0.5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--voiced-only", action="store_true",
                   help="rank only pitched frames: of the feature's k most active voiced frames, how many are the note")
    p.add_argument("--attributes", default=None, help="a,b: attributes checked (default pitch, and instrument "
                                                      "when labelled)")
    p.add_argument("--ground-truth", action="store_true",
                   help="judge pitch precision by the built-in corpus' ground-truth notes, not the measured pitch")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    res = run(args.workspace, args.sae, args.k, args.show, args.min_auroc, args.device, args.voiced_only,
              tuple(args.attributes.split(",")) if args.attributes else None, args.ground_truth)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"{res['sae']}: {res['features']} features ({res['live_features']} live) over {res['frames']} frames; "
          f"describe {res['describe_seconds']} s, precision pass {res['precision_seconds']} s")
    print(f"top labelled features active on >= {res['k']} frames (best AUROC x single-label score):")
    for f in res["top_features"]:
        labels = ", ".join(f"{x['attribute']} {x['class']} {x['score']:.3f} (mass {x['mass_fraction']:.2f})"
                           for x in f["labels"])
        print(f"  {f['feature']:>5} density {f['density']:.4f} single {f['single_label_score']:.2f}: {labels}")
    print(f"features whose best pitch label is a note, active on >= {res['k']} frames: {res['note_features']} "
          f"({res['features_under_k_frames']} more are active on fewer); precision@{res['k']}"
          f"{' (voiced frames only)' if res['voiced_only'] else ''} >= 0.8: "
          f"{res['note_features_precision_ge_0.8']} (median {res['median_precision']}); "
          f"notes: {', '.join(res['distinct_notes_ge_0.8'])}")
    for att, r in res["per_attribute"].items():
        print(f"  {att}: {r['features']} features with a {att} class as best label, {r['precision_ge_0.8']} at "
              f"precision >= 0.8 (median {r['median_precision']}; upper bound {r['mode_ge_0.8']}); classes: "
              f"{', '.join(r['distinct_classes_ge_0.8'])}")
    print(f"(pitch judged by {res['pitch_judged_by']})")
    print(f"features at precision >= 0.8 on their note or family: {res['union_ge_0.8']}; goal >= 50: "
          f"{'met' if res['goal_met'] else 'NOT met'}")
    print(f"upper bound (most common class among the top {res['k']} frames, any label): "
          f"{res['mode_note_features_ge_0.8']} features with a note at >= 0.8; median share "
          f"{res['median_mode_precision']}; {res['mode_unvoiced_features']} features whose top frames are mostly unvoiced")
    for r in res["best_precision"]:
        print(f"  {r['feature']:>5} {r['class']:>4} AUROC {r['auroc']:.3f} precision@{res['k']} {r['precision']:.2f}"
              f" (most common: {r['mode_class']} {r['mode_precision']:.2f})")


if __name__ == "__main__":
    main()
