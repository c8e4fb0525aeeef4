"""SAE training speed, grid-in-one-pass gain, and lambda -> sparsity on realistic synthetic latents.

    python benchmarks/bench_sae.py [--json] [--sweep] [--device cpu|cuda] [--quick]

1. Throughput: ``train_sae_grid`` on one SAE per shape (d_in 128 and 64, expansion 4..32,
   batch 4096), steady-state frames/s and GFLOP/s.  The work of one step is five matmuls of
   ``B x d_in x d_sae`` (encoder, decoder, and the three backward products), i.e.
   ``10 B d_in d_sae`` flops; the reference is those five ``torch.mm`` calls alone, on the
   same shapes with preallocated outputs.  ``efficiency`` = reference time / step time (goal
   >= 0.6): the share of the step spent on useful matmul work, everything else (ReLU, RMSNorm
   and its backward, L1, Adam, the encoder pin, batch loading and normalisation) counted as
   overhead.
2. Grid: a 3 x 3 grid (expansion 4/8/16 x lambda 0.01/0.05/0.15) trained in one pass,
   versus the nine SAEs trained one after another on the same data.  The store here is in
   memory; with the on-disk store each extra pass also re-reads the shards, so the measured
   gain is a lower bound.
3. ``--sweep``: lambda -> sparsity / L0 / FVU / dead features on two kinds of realistic
   synthetic frames (``realistic_latents``: sparse dictionary + dense low-rank part + offset +
   per-frame gain, like a codec latent; ``logmel_frames``: log-mel frames of synthetic
   harmonic notes).  Evaluated on held-out frames.

``run()`` returns the same figures as a dict.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiosae.devices import pick_device  # noqa: E402
from audiosae.frames import ArrayFrames  # noqa: E402
from audiosae.sae import SAEConfig, evaluate_saes, grid_configs, train_sae_grid  # noqa: E402

PAPER_LAMBDAS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.15)


# ---- data ----------------------------------------------------------------------------------
def realistic_latents(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """Codec-like frames: a few of ``8 d`` unit atoms active per frame (Zipf-like frequencies,
    log-normal magnitudes, ~8 active on average), a dense rank-``d/4`` part with a decaying
    spectrum, a non-zero mean, a log-normal per-frame gain (loudness) and a little noise."""
    g = torch.Generator().manual_seed(seed)
    k = 8 * d
    atoms = torch.randn(k, d, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    freq = 1.0 / torch.arange(1, k + 1, dtype=torch.float64) ** 0.7
    freq = (freq * 8.0 / freq.sum()).clamp(max=0.5).float()
    rank = max(1, d // 4)
    basis = torch.linalg.qr(torch.randn(d, rank, generator=g))[0]
    spectrum = 0.8 / torch.arange(1, rank + 1).float() ** 0.7
    offset = 0.7 * torch.randn(d, generator=g)
    out = torch.empty(n, d)
    for s in range(0, n, 8192):
        b = min(8192, n - s)
        active = torch.rand(b, k, generator=g) < freq
        codes = torch.exp(0.5 * torch.randn(b, k, generator=g)) * active
        dense = (torch.randn(b, rank, generator=g) * spectrum) @ basis.T
        gain = torch.exp(0.6 * torch.randn(b, 1, generator=g))
        out[s:s + b] = offset + gain * (codes @ atoms + dense) + 0.05 * torch.randn(b, d, generator=g)
    return out


def _power_mel(sample_rate: int, n_fft: int, hop_length: int, n_mels: int):
    """A power mel spectrogram ``[n_mels, frames]`` with torchaudio's ``MelSpectrogram`` defaults
    (periodic Hann, centred frames with reflect padding, HTK mel scale 0..Nyquist, triangles
    of peak 1), written with torch alone: the project never imports torchaudio."""
    def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + hz / 700.0)

    n_freqs = n_fft // 2 + 1
    freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    mel_pts = torch.linspace(0.0, float(hz_to_mel(torch.tensor(sample_rate / 2))), n_mels + 2)
    f_pts = 700.0 * (10.0 ** (mel_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fbank = torch.clamp(torch.minimum(down, up), min=0.0)  # [n_freqs, n_mels]
    window = torch.hann_window(n_fft)

    def transform(wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, n_fft, hop_length, window=window, center=True, pad_mode="reflect",
                          return_complex=True).abs() ** 2
        return (spec.T @ fbank).T

    return transform


def logmel_frames(n: int, n_mels: int = 64, seed: int = 0, sample_rate: int = 24000, hop: int = 320) -> torch.Tensor:
    """Log-mel frames of random harmonic notes (MIDI 36-96, 1-12 partials with random tilt,
    40 dB of loudness range, some noise), 0.2-1 s each."""
    g = torch.Generator().manual_seed(seed)
    mel = _power_mel(sample_rate, n_fft=1024, hop_length=hop, n_mels=n_mels)
    pieces, frames = [], 0
    while frames < n + 8:
        dur = int(sample_rate * (0.2 + 0.8 * float(torch.rand(1, generator=g))))
        t = torch.arange(dur) / sample_rate
        f0 = 440.0 * 2 ** ((float(torch.randint(36, 97, (1,), generator=g)) - 69) / 12)
        tilt = 0.5 + 2.5 * float(torch.rand(1, generator=g))
        n_partials = int(torch.randint(1, 13, (1,), generator=g))
        wave = torch.zeros(dur)
        for p in range(1, n_partials + 1):
            if f0 * p < sample_rate / 2:
                wave += p ** -tilt * torch.sin(2 * math.pi * f0 * p * t + 6.283 * float(torch.rand(1, generator=g)))
        wave = wave / wave.abs().max().clamp_min(1e-6) * 10 ** (-40 * float(torch.rand(1, generator=g)) / 20)
        wave += 1e-3 * float(torch.rand(1, generator=g)) * torch.randn(dur, generator=g)
        pieces.append(wave)
        frames += dur // hop
    spec = mel(torch.cat(pieces))
    return torch.log(spec + 1e-5).T[:n].contiguous()


# ---- 1. throughput --------------------------------------------------------------------------
def _median_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def matmul_reference(d_in: int, d_sae: int, batch: int, device: torch.device, repeat: int = 5) -> float:
    """Median seconds for the five plain ``torch.mm`` calls of one training step (outputs preallocated)."""
    mk = lambda *s: torch.randn(*s, device=device)  # noqa: E731
    x, w_enc, w_dec, f, g_out = mk(batch, d_in), mk(d_in, d_sae), mk(d_sae, d_in), mk(batch, d_sae), mk(batch, d_in)
    out_h, out_x, out_wd, out_we = mk(batch, d_sae), mk(batch, d_in), mk(d_sae, d_in), mk(d_in, d_sae)

    def five() -> None:
        torch.mm(x, w_enc, out=out_h)           # encoder
        torch.mm(f, w_dec, out=out_x)           # decoder
        torch.mm(f.T, g_out, out=out_wd)        # dL/dW_dec
        torch.mm(g_out, w_dec.T, out=out_h)     # dL/df
        torch.mm(x.T, f, out=out_we)            # dL/dW_enc
        if device.type == "cuda":
            torch.cuda.synchronize()

    return _median_time(five, repeat)


def training_step_time(configs: list[SAEConfig], batch: int, steps: int, device: torch.device) -> float:
    """Median seconds per step of ``train_sae_grid`` (the whole loop: data, step, Adam, metrics)."""
    d_in = configs[0].d_in
    store = ArrayFrames({"train": {"latents": realistic_latents(batch * steps, d_in, seed=1)}})
    marks: list[tuple[int, float]] = []

    def on_progress(event) -> None:
        if event.stage == "train SAEs" and event.done:
            if device.type == "cuda":
                torch.cuda.synchronize()
            marks.append((int(event.done), time.perf_counter()))

    import audiosae.sae.config as sae_mod  # the constant is read from the config module
    interval = sae_mod.PROGRESS_INTERVAL_S
    sae_mod.PROGRESS_INTERVAL_S = 0.0  # a mark after every step
    try:
        train_sae_grid(store, configs, epochs=1, batch_size=batch, device=device, progress=on_progress)
    finally:
        sae_mod.PROGRESS_INTERVAL_S = interval
    first = {}
    for done, t in marks:
        first.setdefault(done, t)
    steps_done = sorted(first)
    durations = [first[b] - first[a] for a, b in zip(steps_done, steps_done[1:]) if b == a + 1]
    return sorted(durations)[len(durations) // 2]  # median: robust to other load on a shared machine


def throughput(device: torch.device, batch: int = 4096, quick: bool = False) -> list[dict]:
    rows = []
    for d_in in (128, 64):
        for expansion in ((4, 32) if quick else (4, 8, 16, 32)):
            d_sae = d_in * expansion
            steps = 4 if quick else max(6, min(24, int(3e9 / (10 * batch * d_in * d_sae)) + 3))
            ref_before = matmul_reference(d_in, d_sae, batch, device)
            step = training_step_time([SAEConfig(d_in, d_sae, 0.05)], batch, steps, device)
            ref = min(ref_before, matmul_reference(d_in, d_sae, batch, device))
            flops = 10 * batch * d_in * d_sae
            rows.append({"d_in": d_in, "expansion": expansion, "d_sae": d_sae, "batch": batch,
                         "frames_per_s": round(batch / step), "step_ms": round(step * 1e3, 2),
                         "gflops": round(flops / step / 1e9, 1), "mm_gflops": round(flops / ref / 1e9, 1),
                         "efficiency": round(ref / step, 3)})
    return rows


# ---- 2. grid in one pass vs one by one -------------------------------------------------------
class DiskFrames:
    """A minimal on-disk ``FrameStore`` like the workspace's: safetensors shards of 16384 frames,
    read two at a time, rows shuffled within the buffer (a stand-in for the real corpus)."""

    def __init__(self, x: torch.Tensor, folder: Path, shard_frames: int = 16384):
        from safetensors.torch import save_file

        self.d_in = int(x.shape[1])
        self.files = []
        for i, start in enumerate(range(0, x.shape[0], shard_frames)):
            path = folder / f"shard{i:04d}.safetensors"
            save_file({"latents": x[start:start + shard_frames].half().contiguous()}, str(path))
            self.files.append(path)
        self.n = int(x.shape[0])

    def n_frames(self, split):
        return self.n if split == "train" else 0

    def iter_batches(self, split, batch_size, *, shuffle, seed=0, columns=("latents",)):
        from safetensors.torch import load_file

        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self.files), generator=gen).tolist() if shuffle else range(len(self.files))
        order = list(order)
        carry = None
        for start in range(0, len(order), 2):
            buf = torch.cat([load_file(str(self.files[i]))["latents"].float() for i in order[start:start + 2]])
            if shuffle:
                buf = buf[torch.randperm(buf.shape[0], generator=gen)]
            if carry is not None:
                buf = torch.cat([carry, buf])
            full = (buf.shape[0] // batch_size) * batch_size
            for b in range(0, full, batch_size):
                yield {"latents": buf[b:b + batch_size]}
            carry = buf[full:] if full < buf.shape[0] else None
        if carry is not None and carry.shape[0]:
            yield {"latents": carry}


def grid_vs_sequential(device: torch.device, d_in: int = 64, n_frames: int = 4096 * 12) -> list[dict]:
    import tempfile

    x = realistic_latents(n_frames, d_in, seed=2)
    configs = grid_configs(d_in, (4, 8, 16), (0.01, 0.05, 0.15))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        stores = {"in memory": ArrayFrames({"train": {"latents": x}}), "on disk (shards)": DiskFrames(x, Path(tmp))}
        for (store_name, store), batch in [(("in memory", stores["in memory"]), 4096),
                                           (("in memory", stores["in memory"]), 512),
                                           (("on disk (shards)", stores["on disk (shards)"]), 4096)]:
            one_pass, sequential = math.inf, math.inf
            for _ in range(2):  # best of two, alternating, against other load on the machine
                start = time.perf_counter()
                train_sae_grid(store, configs, epochs=1, batch_size=batch, device=device)
                one_pass = min(one_pass, time.perf_counter() - start)
                start = time.perf_counter()
                for cfg in configs:
                    train_sae_grid(store, [cfg], epochs=1, batch_size=batch, device=device)
                sequential = min(sequential, time.perf_counter() - start)
            start = time.perf_counter()
            for _ in store.iter_batches("train", batch, shuffle=True, seed=0):
                pass
            data_pass = time.perf_counter() - start
            rows.append({"store": store_name, "d_in": d_in, "grid": "expansion 4/8/16 x lambda 0.01/0.05/0.15",
                         "frames": n_frames, "batch": batch, "one_pass_s": round(one_pass, 2),
                         "one_by_one_s": round(sequential, 2), "speedup": round(sequential / one_pass, 2),
                         "data_pass_s": round(data_pass, 3)})
    return rows


# ---- 3. lambda -> sparsity -------------------------------------------------------------------
def sparsity_sweep(device: torch.device, quick: bool = False) -> list[dict]:
    n_train, n_val = (30_000, 5_000) if quick else (100_000, 20_000)
    epochs = 4 if quick else 20
    datasets = [("realistic_latents d64", realistic_latents(n_train + n_val, 64, seed=3), (4, 16)),
                ("realistic_latents d128", realistic_latents(n_train + n_val, 128, seed=4), (4,)),
                ("logmel_frames d64", logmel_frames(n_train + n_val, 64, seed=5), (4, 16))]
    rows = []
    for name, x, expansions in datasets:
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
        x = x[perm]
        store = ArrayFrames({"train": {"latents": x[:n_train]}, "val": {"latents": x[n_train:]}})
        configs = grid_configs(x.shape[1], expansions, PAPER_LAMBDAS)
        start = time.perf_counter()
        results = train_sae_grid(store, configs, epochs=epochs, batch_size=1024, device=device)
        seconds = time.perf_counter() - start
        for (sae, _), m in zip(results, evaluate_saes([r[0] for r in results], store, "val")):
            rows.append({"data": name, "expansion": sae.cfg.expansion, "lambda": sae.cfg.l1_coefficient,
                         "sparsity": round(m["sparsity"], 4), "l0": round(m["l0"], 1),
                         "fvu": round(m["fvu"], 4), "dead_fraction": round(m["dead_fraction"], 4),
                         "steps": results[0][1]["steps"], "grid_seconds": round(seconds, 1)})
    return rows


def run(device: str = "cpu", sweep: bool = False, quick: bool = False) -> dict:
    dev = pick_device(device)
    out = {"device": str(dev), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
           "throughput": throughput(dev, quick=quick), "grid_vs_one_by_one": grid_vs_sequential(dev)}
    if sweep:
        out["lambda_sweep"] = sparsity_sweep(dev, quick=quick)
    return out


def _print(result: dict) -> None:
    print(f"device {result['device']}, torch {result['torch']}, {result['threads']} threads")
    print("\nthroughput (one SAE, batch 4096):")
    print(f"{'d_in':>5} {'exp':>4} {'d_sae':>6} {'frames/s':>10} {'step ms':>8} {'GFLOP/s':>8} {'mm GFLOP/s':>10} "
          f"{'eff':>5}")
    for r in result["throughput"]:
        print(f"{r['d_in']:>5} {r['expansion']:>4} {r['d_sae']:>6} {r['frames_per_s']:>10} {r['step_ms']:>8} "
              f"{r['gflops']:>8} {r['mm_gflops']:>10} {r['efficiency']:>5}")
    print("\n3 x 3 grid (expansion 4/8/16 x lambda 0.01/0.05/0.15), one epoch:")
    for g in result["grid_vs_one_by_one"]:
        print(f"  {g['store']:<17} d_in {g['d_in']}, {g['frames']} frames, batch {g['batch']:>4}: one pass "
              f"{g['one_pass_s']} s, one by one {g['one_by_one_s']} s, speedup {g['speedup']}x "
              f"(one data pass alone {g['data_pass_s']} s)")
    if "lambda_sweep" in result:
        print("\nlambda -> sparsity (held-out frames):")
        print(f"{'data':<24} {'exp':>4} {'lambda':>7} {'sparsity':>9} {'L0':>7} {'FVU':>7} {'dead':>6}")
        for r in result["lambda_sweep"]:
            print(f"{r['data']:<24} {r['expansion']:>4} {r['lambda']:>7} {r['sparsity']:>9} {r['l0']:>7} "
                  f"{r['fvu']:>7} {r['dead_fraction']:>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--sweep", action="store_true", help="also run the lambda -> sparsity sweep (minutes)")
    parser.add_argument("--quick", action="store_true", help="fewer shapes and steps (smoke test)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    result = run(args.device, sweep=args.sweep, quick=args.quick)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)


if __name__ == "__main__":
    main()
