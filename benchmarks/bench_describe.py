"""Speed of ``audiosae describe``: label every feature of a 4,096-feature SAE over one hour of frames.

    python benchmarks/bench_describe.py [--frames 270000] [--features 4096] [--density 0.05]
                                        [--attributes all|paper] [--device cpu] [--json] [--keep DIR]

Writes a synthetic workspace (``--frames`` frames of 128-d float16 latents at 75 Hz, i.e.
270,000 = one hour, in 16,384-frame shards with random pitch / loudness / timbre classes and,
with ``--attributes all`` (the default, as ``audiosae build`` labels), random raw columns of
every registered attribute: 194 classes in all, as a MIDI-corpus workspace has) and a
ReLU + RMSNorm SAE of ``--features`` features whose encoder bias makes each feature active on
about ``--density`` of the frames (trained SAEs of this width: 1-10 %), then times
``describe_features`` (stream + histograms + AUROC, the cache file included).  Goal: <= 120 s
on the development machine (2 CPU cores).

``write_frames_workspace`` is also what tests/core/test_describe.py builds its corpora with.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiosae.attributes import MIDI_MIN, AttributeSpec  # noqa: E402
from audiosae.sae import SAEConfig, SparseAutoencoder  # noqa: E402
from audiosae.storage import SCHEMA_VERSION, save_tensors  # noqa: E402
from audiosae.workspace import Manifest, SourceRecord, Workspace  # noqa: E402

FRAME_RATE = 75.0


def random_extra_columns(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random raw columns of every registered attribute (``x.<column>`` of a shard), for speed runs."""
    return {"onset": (rng.random(n) < 0.1).astype(np.float32), "onset_strength": rng.exponential(0.5, n),
            "beat_phase": rng.uniform(-0.2, 1.0, n), "chroma": rng.random((n, 12)),
            "flatness": rng.normal(-4.0, 1.5, n), "mfcc": rng.standard_normal((n, 13)),
            "instrument": rng.integers(0, 17, n).astype(np.float32)}


def write_frames_workspace(root: Path, latents: np.ndarray, pitch: np.ndarray, loudness: np.ndarray,
                           timbre: np.ndarray, *, n_sources: int = 4, shard_frames: int = 16384,
                           backend: str = "mel", extra: dict[str, np.ndarray] | None = None) -> Workspace:
    """A workspace whose corpus is exactly ``latents [N, D]`` with these class indices.

    The raw columns are chosen so that the default attribute spec classifies them back into
    ``pitch`` (0 = unvoiced, k = MIDI ``MIDI_MIN + k - 1``), ``loudness`` and ``timbre`` (bin
    centres).  Frames are split into ``n_sources`` consecutive sources (every 4th one validation).
    ``extra``: raw columns of registered attributes (``random_extra_columns``): the spec then
    labels every registered attribute, its fittable ones fit on the training split.
    """
    spec = AttributeSpec()
    if extra:
        from audiosae.attribute_registry import registered_names
        spec = spec.with_attributes(registered_names())
    ws = Workspace.create(root, backend, spec=spec)
    n, d = latents.shape
    voiced = pitch > 0
    le, te = spec.loudness_edges, spec.timbre_edges
    raw = {"midi": np.where(voiced, MIDI_MIN + pitch - 1, np.nan).astype(np.float32),
           "periodicity": np.where(voiced, 0.95, 0.0).astype(np.float32),
           "loudness_db": (0.5 * (le[loudness] + le[loudness + 1])).astype(np.float32),
           "centroid_hz": (0.5 * (te[timbre] + te[timbre + 1])).astype(np.float32)}
    bounds = np.linspace(0, n, n_sources + 1).astype(int)
    manifest = Manifest()
    for s0 in range(0, n, shard_frames):
        s1 = min(n, s0 + shard_frames)
        ids, source, frame = [], np.zeros(s1 - s0, np.int32), np.zeros(s1 - s0, np.int32)
        for i in range(n_sources):
            a, b = max(bounds[i], s0), min(bounds[i + 1], s1)
            if a < b:
                source[a - s0:b - s0] = len(ids)
                frame[a - s0:b - s0] = np.arange(a - bounds[i], b - bounds[i])
                ids.append(f"synthetic/src{i:03d}")
        name = f"shard-{len(manifest.shards):05d}.safetensors"
        tensors = {"latents": latents[s0:s1].astype(np.float16), "source": source, "frame": frame,
                   "time": ((frame + 0.5) / FRAME_RATE).astype(np.float32),
                   "gt_midi": raw["midi"][s0:s1].copy(), **{k: v[s0:s1] for k, v in raw.items()},
                   **{f"x.{k}": np.asarray(v[s0:s1], dtype=np.float32) for k, v in (extra or {}).items()}}
        save_tensors(ws.corpus_dir / name, tensors, {"schema_version": SCHEMA_VERSION, "sources": ids,
                                                     "backend": backend, "frame_rate": FRAME_RATE})
        n_val = sum(int((source == k).sum()) for k, sid in enumerate(ids) if int(sid[-3:]) % 4 == 3)
        manifest.shards.append({"file": name, "n_frames": s1 - s0, "n_train": s1 - s0 - n_val, "n_val": n_val})
    for i in range(n_sources):
        count = int(bounds[i + 1] - bounds[i])
        manifest.sources[f"synthetic/src{i:03d}"] = SourceRecord(
            source_id=f"synthetic/src{i:03d}", label=f"synthetic source {i}", path=None,
            split="val" if i % 4 == 3 else "train", shard=int(bounds[i] // shard_frames), n_frames=count,
            seconds=count / FRAME_RATE)
    manifest.complete = True
    ws.write_manifest(manifest)
    ws.meta["corpus"] = {"frames": n, "latent_dim": d, "frame_rate": FRAME_RATE, "seed": 0}
    ws.save_meta()
    if extra:
        from audiosae.workspace import fit_extra_attributes
        fit_extra_attributes(ws, manifest)
    return ws


def save_sae(ws: Workspace, name: str, w_enc: np.ndarray, b_enc: np.ndarray) -> SparseAutoencoder:
    d_in, d_sae = w_enc.shape
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=0.01, name=name))
    with torch.no_grad():
        sae.W_enc.copy_(torch.as_tensor(w_enc, dtype=torch.float32))
        sae.b_enc.copy_(torch.as_tensor(b_enc, dtype=torch.float32))
    sae.save(ws.sae_dir(name))
    return sae


def synthetic_hour(root: Path, frames: int, features: int, density: float, d_in: int = 128,
                   seed: int = 0, attributes: str = "all") -> Workspace:
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((frames, d_in), dtype=np.float32)
    ws = write_frames_workspace(root, latents, rng.integers(0, 66, frames), rng.integers(0, 20, frames),
                                rng.integers(0, 20, frames), n_sources=48,
                                extra=random_extra_columns(frames, rng) if attributes == "all" else None)
    w = rng.standard_normal((d_in, features), dtype=np.float32) / math.sqrt(d_in)
    z = -float(torch.distributions.Normal(0, 1).icdf(torch.tensor(density)))   # P(N(0,1) > z) = density
    save_sae(ws, "bench", w, np.full(features, -z, np.float32))
    return ws


def run(frames: int = 270_000, features: int = 4096, density: float = 0.05, device: str = "cpu",
        keep: Path | None = None, threads: int | None = None, attributes: str = "all") -> dict:
    import resource

    from audiosae.describe import describe_features


    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="bench-describe-"))
    t0 = time.perf_counter()
    ws = synthetic_hour(folder / "ws", frames, features, density, attributes=attributes)
    setup = time.perf_counter() - t0
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    desc = describe_features(ws, "bench", device=device, threads=threads)
    seconds, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    out = {"frames": frames, "features": features, "target_density": density, "attributes": list(desc.attributes),
           "measured_density": float(desc.density.mean()), "classes": int(desc.auroc.shape[1]),
           "bins": desc.bins, "seconds": round(seconds, 2), "setup_seconds": round(setup, 2),
           "cpu_user_seconds": round(r1.ru_utime - r0.ru_utime, 2), "cpu_sys_seconds": round(r1.ru_stime - r0.ru_stime, 2),
           "frames_per_second": round(frames / seconds), "max_auroc_error_bound": float(np.nanmax(desc.auroc_error)),
           "mean_auroc_error_bound": float(np.nanmean(desc.auroc_error)),
           "torch_threads": threads or torch.get_num_threads(),
           "goal_seconds": 120, "ok": seconds <= 120}
    if not keep:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=270_000)
    p.add_argument("--features", type=int, default=4096)
    p.add_argument("--density", type=float, default=0.05)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads while describing (default 1, as `audiosae describe`; 0 = torch's default). "
                        "On the shared 2-core machine 1 thread was 2-3x faster than 2: idle OpenMP workers spin")
    p.add_argument("--attributes", choices=("all", "paper"), default="all",
                   help="label every registered attribute (default, 194 classes) or the paper's three (106)")
    p.add_argument("--keep", type=Path, default=None, help="build the workspace here and keep it")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    res = run(args.frames, args.features, args.density, args.device, args.keep, args.threads or None,
              args.attributes)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"describe: {res['features']} features x {res['frames']} frames x {res['classes']} classes "
              f"(density {res['measured_density']:.3f}, {res['torch_threads']} torch threads): {res['seconds']:.1f} s "
              f"(CPU {res['cpu_user_seconds']:.1f} s user + {res['cpu_sys_seconds']:.1f} s sys) "
              f"({res['frames_per_second']:,} frames/s; goal <= {res['goal_seconds']} s: "
              f"{'ok' if res['ok'] else 'MISSED'}); AUROC error bound max {res['max_auroc_error_bound']:.4f}, "
              f"mean {res['mean_auroc_error_bound']:.5f}")


if __name__ == "__main__":
    main()
