"""Run every benchmark and print its figures: `python benchmarks/run_all.py [--quick] [--json]`.

Each benchmark module exposes ``run(...) -> dict``; this runner calls them in turn, prints
one block per benchmark and, with ``--json``, writes all figures to
``benchmarks/results/latest.json``.  ``--quick`` uses shorter inputs (for a smoke check,
not for the figures you report).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

# module -> (kwargs for a full run, kwargs for --quick)
BENCHMARKS = {
    "bench_sae": ({}, {}),
    "bench_attributes": ({}, {}),
    "bench_codecs": ({}, {}),
    "bench_wavtokenizer": ({}, {}),
    "bench_realtime": ({}, {}),
    "bench_timeline": ({}, {"minutes": 1.0}),
    "bench_studio": ({}, {"run_seconds": 5.0}),
    "bench_trace": ({}, {"seconds": 10.0, "repeats": 1, "small": False}),
    "bench_build_memory": ({"minutes": 60.0}, {"minutes": 3.0}),
    "bench_soak": ({"minutes": 10.0}, {"minutes": 0.5, "virtual": True}),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", nargs="*", help="run only these benchmark modules")
    args = ap.parse_args()
    results = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
                           "platform": platform.platform()}}
    failed = 0
    for name, (full, quick) in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        try:
            module = importlib.import_module(name)
            figures = module.run(**(quick if args.quick else full))
        except Exception:
            failed += 1
            traceback.print_exc()
            continue
        results[name] = figures
        print(json.dumps(figures, indent=2, default=str))
        print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    if args.json:
        out = HERE / "results" / "latest.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str))
        print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
