"""1 rank against 2 on the same work (issue 15): speed-up and peak memory per rank, and a
projection of the paper's grid on 31 h for 1 and 8 GPUs.

    flock /work/notes/bench.lock python benchmarks/bench_distributed.py [--work DIR] [--parts short,grid,project]

Parts (each prints a table; ``--json`` prints everything as one document):

* ``short``: ``audiosae train``'s workflow, start-up included (the wall time of the whole
  command: interpreter, torch import, torchrun's agent, the SAEs, the probes, the report), on
  4 min of the built-in tones, grid widths 8, 16 x lambda 0.01, 0.05, the default schedule and
  probes: 1 process x 1 thread, 1 process x 2 threads, 2 ranks x 1 thread (``torchrun
  --nproc-per-node 2``, grid-parallel).  Goal: 2 ranks <= 0.75x the 1-thread process, FVU
  within 0.01 (grid-parallel is bit-equal, so the FVUs are equal).
* ``grid``: the SAE grid alone (``train_sae_grid``: no probes, nothing saved) on the same
  corpus, the default grid (widths 4, 8, 16 x lambda 0.005, 0.02, 0.05), a fixed schedule of
  ``--epochs`` passes: the training loop's time in each arrangement.  Goal: 2 ranks x 1
  thread >= 1.7x the speed of 1 process x 1 thread.
* ``project``: seconds per step of one paper SAE at each width (4x-256x of d_in 128, batch
  512, one thread) measured here, the float32 rate that gives, and the paper's grid (widths
  4x-256x x lambda 0.005, 0.02, 0.05, 0.15) on 8.4 M frames (31 h at 75 Hz) projected to one
  and eight GPUs from FLOP counts at an assumed sustained GPU rate (no GPU was measured: the
  figures say so).

The corpus (4 min of tones, mel) is built once into ``--work`` and reused.  Peak memory is
each process' peak RSS (``getrusage``), which includes torch's own ~0.5 GB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.distributed_worker import REPO, WORKER, _env, free_port, write_job  # noqa: E402

SHORT_GRID = dict(expansions=[8, 16], l1s=[0.01, 0.05])
BENCH_GRID = dict(expansions=[4, 8, 16], l1s=[0.005, 0.02, 0.05])
PAPER_WIDTHS = (4, 8, 16, 32, 64, 128, 256)
PAPER_L1S = (0.005, 0.02, 0.05, 0.15)
PAPER_FRAMES = 31 * 3600 * 75            # 8.37 M latent frames
D_IN = 128                               # EnCodec 24 kHz latent width
# Assumed sustained float32 rate of one modern GPU on these batched matmuls (H100 SXM: 67 TFLOP/s
# FP32 peak, ~990 TF32 tensor-core); 25 TFLOP/s is ~40 % of the FP32 peak, i.e. without TF32.
GPU_TFLOPS = 25.0
GPU_BANDWIDTH_TBS = 2.0                  # sustained HBM bandwidth for the element-wise passes (of ~3.35)


def _command(job: Path, arrangement: str) -> tuple[list[str], dict]:
    if arrangement == "1p1t":
        return [sys.executable, str(WORKER), str(job)], _env(1)
    if arrangement == "1p2t":
        return [sys.executable, str(WORKER), str(job)], _env(2)
    ranks = int(arrangement[0])
    return ([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(ranks),
             "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", str(WORKER), str(job)], _env(1))


def _run(job: Path, arrangement: str) -> dict:
    cmd, env = _command(job, arrangement)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, timeout=3600)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{arrangement} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    out = json.loads(Path(json.loads(job.read_text())["out"]).read_text())
    ranks = sorted(Path(job).parent.glob(Path(json.loads(job.read_text())["out"]).name + ".rank*.json"))
    per_rank = [json.loads(p.read_text()) for p in ranks]
    return {"wall_s": wall, "result": out["result"], "ranks": per_rank}


def corpus(work: Path) -> Path:
    ws = work / "tones4"
    if not (ws / "corpus" / "manifest.json").is_file():
        print("building 4 min of tones (mel), once ...", flush=True)
        job = write_job(work, "build", op="build", workspace=str(ws), minutes=4.0)
        _run(job, "1p2t")
    return ws


def _fresh(ws: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(ws, dest, ignore=shutil.ignore_patterns("saes", "probes", "checkpoints"))
    for sub in ("saes", "probes"):
        (dest / sub).mkdir()
    return dest


def part_short(work: Path, ws: Path, arrangements: list[str]) -> dict:
    rows = {}
    for arr in arrangements:
        for p in work.glob(f"short-{arr}.out*"):
            p.unlink()
        dest = _fresh(ws, work / f"short-{arr}")
        job = write_job(work, f"short-{arr}", op="train", workspace=str(dest), batch_size=512, seed=0,
                        probe_folds=5, parallel="grid", frames=None, **SHORT_GRID)
        rows[arr] = _run(job, arr)
        fvu = {s["sae"]: s["fvu"] for s in rows[arr]["result"]["saes"]}
        print(f"  short {arr}: {rows[arr]['wall_s']:.1f} s wall, peak RSS per rank "
              f"{[round(r['peak_rss_mb']) for r in rows[arr]['ranks']]} MB, FVU {fvu}", flush=True)
    base = rows["1p1t"]
    fvu0 = {s["sae"]: s["fvu"] for s in base["result"]["saes"]}
    summary = {arr: {"wall_s": round(r["wall_s"], 2), "ratio_to_1p1t": round(r["wall_s"] / base["wall_s"], 3),
                     "peak_rss_mb": [round(x["peak_rss_mb"], 1) for x in r["ranks"]],
                     "max_fvu_diff": max(abs(s["fvu"] - fvu0[s["sae"]]) for s in r["result"]["saes"])}
               for arr, r in rows.items()}
    return summary


def part_grid(work: Path, ws: Path, epochs: int, arrangements: list[str], repeat: int) -> dict:
    """Arrangements interleaved ``repeat`` times; each keeps its fastest run (the least disturbed
    by other work on a shared machine)."""
    rows: dict = {}
    for i in range(repeat):
        for arr in arrangements:
            for p in work.glob(f"grid-{arr}.out*"):
                p.unlink()
            job = write_job(work, f"grid-{arr}", op="grid", workspace=str(ws), batch_size=512, seed=0, epochs=epochs,
                            parallel="grid", **BENCH_GRID)
            r = _run(job, arr)
            per_rank = [round(x["result"]["train_s"], 2) for x in r["ranks"]]
            cpu = [round(x.get("cpu_s", 0.0), 1) for x in r["ranks"]]
            train_s = max(per_rank)
            print(f"  grid {arr} (run {i + 1}): training loop {train_s:.1f} s (per rank {per_rank}, wall "
                  f"{r['wall_s']:.1f} s), peak RSS per rank {[round(x['peak_rss_mb']) for x in r['ranks']]} MB, "
                  f"SAEs per rank {[len(x['result']['saes']) for x in r['ranks']]}, CPU s per rank {cpu}; "
                  f"{os.getloadavg()[0]:.1f} load",
                  flush=True)
            if arr not in rows or train_s < rows[arr]["train_s"]:
                rows[arr] = {"wall_s": round(r["wall_s"], 2), "train_s": round(train_s, 2), "train_s_per_rank": per_rank,
                             "peak_rss_mb": [round(x["peak_rss_mb"], 1) for x in r["ranks"]],
                             "saes_per_rank": [len(x["result"]["saes"]) for x in r["ranks"]],
                             "cpu_s_per_rank": cpu, "load_after": round(os.getloadavg()[0], 2)}
    base = rows["1p1t"]["train_s"]
    for arr in rows:
        rows[arr]["speedup_vs_1p1t"] = round(base / rows[arr]["train_s"], 3)
        # what an idle machine allows: the busiest rank's CPU time against one process' (start-up included)
        rows[arr]["cpu_bound_speedup"] = round(rows["1p1t"]["cpu_s_per_rank"][0] / max(rows[arr]["cpu_s_per_rank"]), 3) \
            if rows[arr]["cpu_s_per_rank"] and max(rows[arr]["cpu_s_per_rank"]) > 0 else None
    return rows


def part_project() -> dict:
    """Measured seconds per step of one SAE per paper width on one CPU thread, then FLOP counts."""
    import torch

    from audiosae.sae.config import SAEConfig
    from audiosae.sae.group import make_group

    torch.set_num_threads(1)      # the measurement's own process, not a launcher's worker
    batch, rows = 512, []
    x = torch.randn(batch, D_IN, generator=torch.Generator().manual_seed(0))
    for w in PAPER_WIDTHS:
        cfg = SAEConfig(d_in=D_IN, d_sae=D_IN * w, l1_coefficient=0.02, name=f"x{w}")
        grp = make_group([cfg], [0], D_IN, 0, torch.device("cpu"))
        best = math.inf
        for r in range(3 if w <= 64 else 2):
            t0 = time.perf_counter()
            grp.compute_gradients(x, 1.0, False)
            grp.adam_step(r + 1, 1e-9)
            if r > 0:
                best = min(best, time.perf_counter() - t0)
        flop = 10.0 * batch * D_IN * D_IN * w          # 5 matmuls of B x d_in x d_sae, 2 flop per MAC
        rows.append({"width": w, "d_sae": D_IN * w, "cpu_s_per_step": best, "cpu_gflops": flop / best / 1e9})
        print(f"  x{w}: {best * 1e3:.1f} ms per step of {batch} frames on 1 CPU thread "
              f"({flop / best / 1e9:.1f} GFLOP/s)", flush=True)
    from audiosae import defaults as D
    from audiosae.distributed.plan import balance

    budget = D.default_sae_frames(int(PAPER_FRAMES * 0.9), batch)     # the default budget (plateau stops earlier)
    per_frame_flop = sum(10.0 * D_IN * D_IN * w for w in PAPER_WIDTHS) * len(PAPER_L1S)
    per_frame_bytes = sum(D_IN * w for w in PAPER_WIDTHS) * len(PAPER_L1S) * 4 * 12   # ~12 element-wise passes
    gpu_s = budget * (per_frame_flop / (GPU_TFLOPS * 1e12) + per_frame_bytes / (GPU_BANDWIDTH_TBS * 1e12))
    cpu_rate = min(r["cpu_gflops"] for r in rows[-3:]) * 1e9
    cpu_s = budget * per_frame_flop / cpu_rate
    costs = [w for w in PAPER_WIDTHS for _ in PAPER_L1S]
    owner = balance(costs, 8)
    makespan = max(sum(c for c, o in zip(costs, owner) if o == r) for r in range(8)) / sum(costs)
    out = {"measured_cpu": rows, "budget_frames_per_sae": budget, "grid_saes": len(costs),
           "flop_per_frame_grid": per_frame_flop, "assumed_gpu_tflops": GPU_TFLOPS,
           "assumed_gpu_bandwidth_tbs": GPU_BANDWIDTH_TBS,
           "projected_1gpu_s": gpu_s, "projected_8gpu_grid_s": gpu_s * makespan, "grid_makespan_fraction_8": makespan,
           "projected_1cpu_thread_s": cpu_s,
           "note": "projection from FLOP counts and an assumed GPU rate; no GPU was measured"}
    print(f"  paper grid ({len(costs)} SAEs), {budget / 1e6:.1f} M frames each (default budget on 8.4 M frames): "
          f"{per_frame_flop / 1e9:.2f} GFLOP per frame; projected 1 GPU {gpu_s / 60:.0f} min, 8 GPUs grid-parallel "
          f"{gpu_s * makespan / 60:.1f} min (largest rank {makespan:.3f} of the grid); 1 CPU thread here "
          f"{cpu_s / 86400:.0f} days", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/audiosae-bench-distributed"))
    parser.add_argument("--parts", default="short,grid,project")
    parser.add_argument("--epochs", type=int, default=8, help="passes of the 'grid' part's fixed schedule")
    parser.add_argument("--arrangements", default="1p1t,1p2t,2r1t",
                        help="1p1t = 1 process x 1 thread, 1p2t = 1 process x 2 threads, 2r1t = 2 ranks x 1 thread")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved runs of the 'grid' part (fastest kept)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    arrangements = [a.strip() for a in args.arrangements.split(",") if a.strip()]
    if "1p1t" not in arrangements:
        raise SystemExit("--arrangements must include the baseline 1p1t")
    report: dict = {"uptime_before": os.popen("uptime").read().strip(), "cpus": os.cpu_count()}
    print(report["uptime_before"], flush=True)
    ws = corpus(args.work) if {"short", "grid"} & set(parts) else None
    if "short" in parts:
        report["short"] = part_short(args.work, ws, arrangements)
    if "grid" in parts:
        report["grid"] = part_grid(args.work, ws, args.epochs, arrangements, args.repeat)
    if "project" in parts:
        report["project"] = part_project()
    report["uptime_after"] = os.popen("uptime").read().strip()
    print(report["uptime_after"])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name in ("short", "grid"):
            if name in report:
                print(f"\n{name}:")
                for arr, row in report[name].items():
                    print(f"  {arr}: {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
