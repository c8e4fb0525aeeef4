"""Level of steered audio before/after the level rule (audiosae.steering.level).

    python benchmarks/bench_steer_level.py WORKSPACE AUDIO [--attribute pitch --target A4]
        [--alphas 1,10,20,30] [--seconds 10] [--offset 30] [--method paper]

Steers an excerpt of AUDIO with the workspace's best SAE at each alpha, raw (``limit=False``)
and through the rule, and prints per alpha: the sample peak (dBFS), the loudness shift from
the source (gated block RMS, dB) and the largest 50 ms frame loudness shift over the source's
non-silent frames.  Nothing is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiosae.audio import load_audio  # noqa: E402
from audiosae.steering import steer_wave  # noqa: E402
from audiosae.steering.level import loudness_db  # noqa: E402


def frame_shift_db(out: np.ndarray, source: np.ndarray, sr: int, frame: float = 0.05) -> float:
    """Largest per-frame RMS increase (dB) over the frames where the source is above -60 dBFS."""
    n = int(frame * sr)
    k = min(out.shape[1], source.shape[1]) // n

    def rms_db(w: np.ndarray) -> np.ndarray:
        return 10 * np.log10(np.mean(w[:, :k * n].reshape(w.shape[0], k, n) ** 2, axis=(0, 2)) + 1e-20)

    src, dst = rms_db(source), rms_db(out)
    loud = src > -60
    return float(np.max(dst[loud] - src[loud])) if loud.any() else float("nan")


def main() -> None:
    from audiosae.probes import ProbeSet
    from audiosae.report import best_sae
    from audiosae.sae import SparseAutoencoder
    from audiosae.workspace import Workspace

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workspace", type=Path)
    p.add_argument("audio", type=Path)
    p.add_argument("--attribute", default="pitch")
    p.add_argument("--target", default="A4")
    p.add_argument("--alphas", default="1,10,20,30")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--offset", type=float, default=30.0)
    p.add_argument("--method", default=None, help="steering method (default: the library's)")
    args = p.parse_args()

    ws = Workspace.open(args.workspace)
    backend = ws.backend("cpu")
    name = best_sae(ws, args.attribute)
    sae = SparseAutoencoder.load(ws.sae_dir(name))
    probes = ProbeSet.load(ws.probe_dir(name))
    spec = ws.attribute_spec
    target = spec.parse_target(args.attribute, args.target)
    wave = load_audio(args.audio, backend.sample_rate, backend.channels)
    a = int(args.offset * backend.sample_rate)
    wave = wave[:, a:a + int(args.seconds * backend.sample_rate)]
    if wave.shape[1] == 0:
        raise SystemExit("the excerpt is empty: lower --offset")
    sr = backend.sample_rate
    src_db = loudness_db(wave, sr)
    extra: dict = {"method": args.method} if args.method else {}
    if args.method == "mass-mean":
        from audiosae.steering.methods import workspace_class_means

        extra["means"] = workspace_class_means(ws, name, sae, args.attribute)
    print(f"{args.audio.name}: {wave.shape[1] / sr:.1f} s at {sr} Hz, backend {ws.backend_name}, SAE {name}, "
          f"source loudness {src_db:.1f} dB, peak {20 * np.log10(np.abs(wave).max()):+.1f} dBFS")
    print(f"{'alpha':>6} | {'raw peak':>9} {'raw dL':>7} {'raw max frame':>13} | {'peak':>7} {'dL':>6} "
          f"{'max frame':>9} {'gain':>7} {'limited':>8} | s")
    for alpha in (float(x) for x in args.alphas.split(",")):
        t0 = time.perf_counter()
        row = []
        for limit in (False, True):
            res = steer_wave(backend, sae, probes, spec, wave, args.attribute, target, alpha, limit=limit,
                             measure_shift=False, **extra)
            out = res.wave
            peak = 20 * np.log10(max(float(np.abs(out).max()), 1e-12))
            row.append((peak, loudness_db(out, sr) - src_db, frame_shift_db(out, wave, sr), res.report["level"]))
        (rp, rl, rf, _), (lp, ll, lf, lev) = row
        print(f"{alpha:>6g} | {rp:>+8.1f}  {rl:>+6.1f} {rf:>+12.1f}  | {lp:>+6.1f} {ll:>+6.1f} {lf:>+9.1f} "
              f"{lev['gain_db']:>+6.1f} {100 * lev['limited_fraction']:>7.2f}% | {time.perf_counter() - t0:.0f}")


if __name__ == "__main__":
    main()
