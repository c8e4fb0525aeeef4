"""Probe training schedules side by side on one workspace: time and accuracy on its val split.

    python benchmarks/bench_probe_speed.py WORKSPACE [--sae NAME|raw] [--configs 40:0:1,10:1:4]

Each config is ``EPOCHS:DECAY:STRIDE``: at most EPOCHS epochs (Adam, the defaults' batch and rate), the
learning rate constant (DECAY 0, early stop on the inner validation loss, the refit for the
best epoch count) or falling linearly to 0 (DECAY 1, fixed length), and the L2 strengths
compared on every STRIDE-th frame of the inner split.  ``40:0:1`` is the schedule before
this benchmark existed.  Printed per config: wall and process-CPU seconds (on a shared
machine CPU seconds / threads is the better guide to an idle machine's wall time), the L2
chosen per attribute, and accuracy (exact, and within one bin for the ordinal attributes)
on the workspace's val split beside the majority class of that split.
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
from audiosae.attributes import ATTRIBUTES  # noqa: E402
from audiosae.probes import L2_GRID, train_probes  # noqa: E402
from audiosae.sae import SparseAutoencoder  # noqa: E402
from audiosae.training import ordinal_class_values  # noqa: E402
from audiosae.workspace import Workspace  # noqa: E402


def majority(store, attr: str) -> float:
    counts: dict[int, int] = {}
    for b in store.iter_batches("val", 8192, shuffle=False, columns=(attr,)):
        y = b[attr][b[attr] >= 0]
        for k, n in zip(*torch.unique(y, return_counts=True)):
            counts[int(k)] = counts.get(int(k), 0) + int(n)
    return max(counts.values()) / max(1, sum(counts.values())) if counts else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspace")
    ap.add_argument("--sae", default=None, help="SAE name (default: the first), or 'raw' for the raw latent")
    ap.add_argument("--configs", default="40:0:1,10:1:4")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    ws = Workspace.open(args.workspace)
    store, spec = ws.frame_store(), ws.attribute_spec
    name = args.sae or ws.sae_names()[0]
    sae = None if name == "raw" else SparseAutoencoder.load(ws.sae_dir(name))
    n_classes = {a: spec.n_classes(a) for a in ATTRIBUTES}
    base = {a: round(majority(store, a), 3) for a in ATTRIBUTES}
    print(f"workspace {args.workspace}: {store.n_frames('train')} train / {store.n_frames('val')} val frames; "
          f"probes on {name}; torch threads {torch.get_num_threads()}")
    print("majority class of the val split:", base)
    rows = []
    for conf in args.configs.split(","):
        epochs, decay, stride = (int(v) for v in conf.split(":"))
        t0, c0 = time.perf_counter(), time.process_time()
        probes = train_probes(store, sae=sae, n_classes=n_classes, l2=list(L2_GRID), batch_size=D.PROBE_BATCH_SIZE, lr=D.PROBE_LR,
                              max_epochs=epochs, patience=D.PROBE_PATIENCE, lr_decay=bool(decay), selection_stride=stride)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        ev = probes.evaluate(store, split="val", sae=sae, class_values=ordinal_class_values(spec))
        row = {"config": conf, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "l2": probes.metrics["l2"],
               **{f"{a}_acc": round(ev[a]["accuracy"], 3) for a in ATTRIBUTES},
               **{f"{a}_within1": round(ev[a]["within1"], 3) for a in ("loudness", "timbre")}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"majority": base, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
