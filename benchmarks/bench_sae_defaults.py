"""Old vs new SAE training defaults on a workspace: sparsity, L0, FVU by width and lambda, time.

    python benchmarks/bench_sae_defaults.py WORKSPACE [--which old,new] [--json OUT.json]

WORKSPACE is a built corpus, e.g. ``audiosae build WS --backend mel --builtin tones --minutes 10``.

* old: the fixed schedule before issue 11: 10 epochs, batch 4096, no learning-rate warm-up,
  no plateau stop (``train_sae_grid(epochs=10, batch_size=4096)``);
* new: ``audiosae train``'s defaults (``audiosae.defaults``): the default frame budget for the
  corpus, batch ``SAE_BATCH_SIZE``, warm-ups, stop on a held-out plateau.

Both train the grid x4/x8/x16 x lambda 0.005/0.02/0.05 (``defaults``) in one pass and are
evaluated on the validation split.  Reported per run: wall seconds and process CPU seconds
(on a shared machine the CPU time divided by the threads is the better guide to an idle
machine's wall time), and per SAE the steps, whether it converged, sparsity, L0, dead
features and FVU.  Checks: sparsity >= 0.9 at lambda 0.05, FVU not rising by more than 0.01
from one width to the next at each lambda.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiosae import defaults as D  # noqa: E402
from audiosae.sae import evaluate_saes, grid_configs, train_sae_grid  # noqa: E402
from audiosae.workspace import Workspace  # noqa: E402

SETTINGS = {
    "old": dict(epochs=10, batch_size=4096),
    "new": dict(batch_size=D.SAE_BATCH_SIZE),
}


def run(ws_path: Path, which: str) -> dict:
    ws = Workspace.open(ws_path)
    store = ws.frame_store()
    configs = grid_configs(store.d_in, D.DEFAULT_EXPANSIONS, D.DEFAULT_L1S)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    results = train_sae_grid(store, configs, **SETTINGS[which])
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    evals = evaluate_saes([s for s, _ in results], store, "val")
    rows = []
    for (sae, m), ev in zip(results, evals):
        rows.append({"sae": sae.cfg.name, "expansion": sae.cfg.expansion, "l1": sae.cfg.l1_coefficient,
                     "steps": m["steps"], "frames": m["frames"], "converged": m.get("converged"),
                     "sparsity": ev["sparsity"], "l0": ev["l0"], "dead": ev["dead_features"], "fvu": ev["fvu"]})
    checks = {}
    for lam in D.DEFAULT_L1S:
        fvus = [r["fvu"] for r in rows if r["l1"] == lam]
        checks[f"fvu_rise_max_l1_{lam:g}"] = max(b - a for a, b in zip(fvus, fvus[1:]))
    checks["min_sparsity_at_0.05"] = min(r["sparsity"] for r in rows if r["l1"] == 0.05)
    return {"which": which, "settings": SETTINGS[which], "n_train": store.n_frames("train"), "d_in": store.d_in,
            "wall_s": wall, "cpu_s": cpu, "threads": torch.get_num_threads(), "rows": rows, "checks": checks}


def table(res: dict) -> str:
    lines = [f"{res['which']}: {res['settings']}  train {res['wall_s']:.0f} s wall, {res['cpu_s']:.0f} s CPU "
             f"({res['threads']} threads), {res['n_train']} training frames",
             f"{'SAE':<14} {'steps':>6} {'conv':>5} {'sparsity':>8} {'L0':>7} {'dead':>5} {'FVU':>6}"]
    for r in res["rows"]:
        lines.append(f"{r['sae']:<14} {r['steps']:>6} {str(r['converged']):>5} {r['sparsity']:>8.3f} "
                     f"{r['l0']:>7.1f} {r['dead']:>5} {r['fvu']:>6.3f}")
    lines.append("checks: " + ", ".join(f"{k} {v:.3f}" for k, v in res["checks"].items()))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--which", default="old,new")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    out = []
    for which in args.which.split(","):
        res = run(args.workspace, which)
        print(table(res), flush=True)
        out.append(res)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
