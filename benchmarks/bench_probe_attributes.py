"""What each attribute beyond the paper's three adds to the probe training of ``audiosae train`` (issue 14).

    python benchmarks/bench_probe_attributes.py WORKSPACE --sae NAME [--attributes a,b|new] [--json]

Trains the probes of one SAE the way ``audiosae train`` does (``probes.train_probes`` with the
defaults' L2 grid, schedule and "auto" class weights; no cross-validation, no saving: the
workspace is not touched): first the paper's three (the baseline the SAE issue's time budget
covers; after one untimed warm-up run), then the paper's three plus each registered attribute alone, then plus all of them.
Per run (the median of ``--repeats`` trainings): wall seconds, process-CPU seconds, epochs, classes scored, and the added time against the
baseline in seconds and percent; the baseline is run again at the end, to show the drift.  Attributes no training frame is labelled with (instrument
without ground truth) are skipped and named.  The SAE grid itself is not retrained: adding an
attribute never changes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiosae import defaults as D  # noqa: E402
from audiosae.attribute_registry import PAPER_ATTRIBUTES  # noqa: E402
from audiosae.probes import train_probes  # noqa: E402
from audiosae.sae import SparseAutoencoder  # noqa: E402
from audiosae.training import TrainSettings, check_labelled, probe_fit_options  # noqa: E402
from audiosae.workspace import Workspace  # noqa: E402


def time_probes(store, sae, spec, attrs: list[str], device: str, repeats: int = 1) -> dict:
    """The median wall / CPU seconds of ``repeats`` trainings of the probes of ``attrs``."""
    n_classes = {a: spec.n_classes(a) for a in attrs}
    walls, cpus, epochs = [], [], 0
    for _ in range(max(1, repeats)):
        wall, cpu = time.perf_counter(), time.process_time()
        probes = train_probes(store, sae=sae, n_classes=n_classes, class_names={a: spec.class_names(a) for a in attrs},
                              seed=D.SEED, **probe_fit_options(TrainSettings(), device))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        epochs = int(probes.metrics.get("epochs", 0))
    return {"attributes": attrs, "classes": sum(n_classes.values()), "epochs": epochs,
            "wall_s": round(statistics.median(walls), 2), "cpu_s": round(statistics.median(cpus), 2),
            "wall_all_s": [round(w, 2) for w in walls]}


def run(workspace: Path, sae_name: str, attributes: str = "new", device: str = "cpu", repeats: int = 3) -> dict:
    ws = Workspace.open(workspace)
    spec = ws.attribute_spec
    wanted = [a for a in spec.attributes if a not in PAPER_ATTRIBUTES] if attributes == "new" else \
        [a.strip() for a in attributes.split(",") if a.strip()]
    store = ws.frame_store(spec)
    extra, skipped = [], []
    for a in wanted:
        try:
            check_labelled(store, [a])
            extra.append(a)
        except Exception:   # noqa: BLE001 - reported as skipped
            skipped.append(a)
    sae = SparseAutoencoder.load(ws.sae_dir(sae_name), device=device)
    paper = list(PAPER_ATTRIBUTES)
    time_probes(store, sae, spec, paper, device)   # warm-up: imports, allocations, caches (not reported)
    runs = [time_probes(store, sae, spec, paper, device, repeats)]
    runs += [time_probes(store, sae, spec, [*paper, a], device, repeats) for a in extra]
    if len(extra) > 1:
        runs.append(time_probes(store, sae, spec, [*paper, *extra], device, repeats))
    again = time_probes(store, sae, spec, paper, device, repeats)   # the baseline again: the drift of the machine
    base = runs[0]["wall_s"]
    for r in runs:
        r["added_s"] = round(r["wall_s"] - base, 2)
        r["added_pct"] = round(100.0 * (r["wall_s"] - base) / base, 1) if base > 0 else None
    return {"workspace": str(workspace), "sae": sae_name, "train_frames": int(store.n_frames("train")),
            "repeats": repeats, "runs": runs, "baseline_again_s": again["wall_s"], "skipped": skipped}


def markdown(res: dict) -> str:
    lines = [f"Workspace `{res['workspace']}`, SAE `{res['sae']}`, {res['train_frames']:,} training frames; "
             f"medians of {res['repeats']} runs.", "",
             "| probes | classes | epochs | wall s | CPU s | added vs the paper's three |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(res["runs"]):
        extra = [a for a in r["attributes"] if a not in PAPER_ATTRIBUTES]
        name = "paper's three (baseline)" if not extra else ("+ all: " if len(extra) > 1 else "+ ") + ", ".join(extra)
        added = "—" if i == 0 else f"{r['added_s']:+.1f} s ({r['added_pct']:+.0f} %)"
        lines.append(f"| {name} | {r['classes']} | {r['epochs']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {added} |")
    lines.append(f"\nThe paper's three again at the end: {res['baseline_again_s']:.1f} s (the machine's drift).")
    if res["skipped"]:
        lines.append(f"No training labels (skipped): {', '.join(res['skipped'])}.")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("workspace", type=Path)
    p.add_argument("--sae", required=True)
    p.add_argument("--attributes", default="new", help="a,b,... | new (default: every registered one it labels)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="trainings per run; the median is reported (default 3)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    res = run(args.workspace, args.sae, args.attributes, args.device, args.repeats)
    print(json.dumps(res, indent=1) if args.json else markdown(res))


if __name__ == "__main__":
    main()
