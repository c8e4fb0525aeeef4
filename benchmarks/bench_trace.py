"""Cost of tracing DiffRhythm generation through an SAE + probes, versus plain sampling.

    python benchmarks/bench_trace.py [--seconds 95] [--repeats 3] [--threads 1] [--quick] [--json]

For each configuration, the same sampling run (32 states, CFG 4, batched cond/uncond passes,
same seed) is timed twice, alternately ``repeats`` times, taking the median of each:

* plain: ``CFM.sample`` (no trajectory kept);
* traced: ``trace_generation`` without the final decode: every state's ``X_t`` and ``x̂1``
  through the SAE and the three probes, feature summaries, latents kept, s_t and convergence.

``overhead`` = traced / plain - 1 (goal <= 3 %), from process CPU time on the CPU (wall time
on a shared machine mostly measures the neighbours; ``overhead_wall`` is given too) and from
wall time on CUDA.  ``analysis_share`` is the SAE + probe + summary time over the DiT time,
read from the trace's own timings.  Memory: ``tracemalloc`` peak during a
traced run (NumPy buffers are traced, PyTorch CPU tensors are not), the process's peak RSS
during the run (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``), and the
bytes a saved trace holds.  Models are random (a tiny DiT, a ``64 x E`` SAE, probe rows from a
normal distribution) and the VAE is a TorchScript stand-in, never decoded here: only costs
are meaningful.  On CUDA the 1.1 B-parameter ``DIFFRHYTHM_1B_BASE`` is also timed with random
weights in float16 and bfloat16 (skipped, with a note, without CUDA).  ``run()`` returns
every figure as a dict.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from audiosae.analysis import LoadedModels  # noqa: E402
from audiosae.codecs.diffrhythm_vae import DiffRhythmVAE  # noqa: E402
from audiosae.generation import trace as tr  # noqa: E402
from audiosae.generation.diffrhythm import CFM, DIFFRHYTHM_1B_BASE, DiT, DiTConfig, tiny_config  # noqa: E402
from audiosae.probes import ProbeSet  # noqa: E402
from audiosae.sae import SAEConfig, SparseAutoencoder  # noqa: E402
from audiosae.workspace import Workspace  # noqa: E402

CLASSES = {"pitch": 66, "loudness": 20, "timbre": 20}
STEPS = 32


class _StubVAE(nn.Module):
    """Official export method names and shapes; never run here (no decode is timed)."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv1d(2, 128, 2048, stride=2048)
        self.up = nn.ConvTranspose1d(64, 2, 2048, stride=2048)

    @torch.jit.export
    def encode_export(self, audio: torch.Tensor) -> torch.Tensor:
        return self.down(audio)

    @torch.jit.export
    def decode_export(self, latents: torch.Tensor) -> torch.Tensor:
        return self.up(latents)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.decode_export(self.encode_export(audio)[:, :64])


def _models(root: Path, expansion: int, device: torch.device) -> LoadedModels:
    vae = root / "vae_model.pt"
    if not vae.exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.script(_StubVAE()).save(str(vae))
    ws_root = root / f"ws-x{expansion}"
    ws = Workspace.create(ws_root, "diffrhythm-vae", {"weights": str(vae)})
    sae = SparseAutoencoder(SAEConfig(d_in=64, d_sae=64 * expansion, l1_coefficient=0.02)).to(device)
    g = torch.Generator().manual_seed(expansion)
    probes = ProbeSet(weights={a: torch.randn(k, sae.cfg.d_sae, generator=g) * 0.1 for a, k in CLASSES.items()},
                      bias={a: torch.zeros(k) for a, k in CLASSES.items()}, class_names={}, feature_kind="sae")
    probes.to(device)
    return LoadedModels(ws, DiffRhythmVAE(device, weights=vae), sae, probes, ws.attribute_spec)


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    style, negative = torch.randn(2, 512, generator=g)
    return (style / style.norm())[None], (negative / negative.norm())[None]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _trace_bytes(trace: tr.Trace) -> int:
    return int(sum(a.nbytes for a in tr._tensors(trace).values()))


def measure(cfm: CFM, models: LoadedModels, *, seconds: float, repeats: int) -> dict[str, Any]:
    """Plain vs traced sampling on one model; medians over ``repeats`` alternating runs."""
    device = cfm.device
    style, negative = _inputs()
    frames = int(seconds * 44100 / 2048)
    text = torch.zeros(1, frames, dtype=torch.long)

    def clocks() -> tuple[float, float]:
        _sync(device)
        return time.perf_counter(), time.process_time()

    def plain() -> tuple[float, float]:
        w0, c0 = clocks()
        cfm.sample(text=text, style_prompt=style, negative_style_prompt=negative, frames=frames, steps=STEPS, seed=0)
        w1, c1 = clocks()
        return w1 - w0, c1 - c0

    def traced() -> tuple[float, float, tr.Trace]:
        w0, c0 = clocks()
        trace = tr.trace_generation(models, cfm, style=style, negative_style=negative, seconds=seconds, seed=0,
                                    steps=STEPS, decode_final=False)
        w1, c1 = clocks()
        return w1 - w0, c1 - c0, trace

    plain()  # warm-up: allocator, kernels, lazy inits
    traced()
    plain_wall, plain_cpu, traced_wall, traced_cpu, shares = [], [], [], [], []
    trace = None
    for _ in range(repeats):
        wall, cpu = plain()
        plain_wall.append(wall)
        plain_cpu.append(cpu)
        wall, cpu, trace = traced()
        traced_wall.append(wall)
        traced_cpu.append(cpu)
        shares.append(trace.meta["timings"]["analysis_s"] / trace.meta["timings"]["sampling_s"])
    p, t = statistics.median(plain_wall), statistics.median(traced_wall)
    pc, tc = statistics.median(plain_cpu), statistics.median(traced_cpu)
    figures: dict[str, Any] = {
        "frames": frames, "steps": STEPS, "d_sae": models.sae.cfg.d_sae, "dtype": str(cfm.dtype).removeprefix("torch."),
        "plain_s": round(p, 4), "traced_s": round(t, 4), "overhead_wall": round(t / p - 1, 4),
        "plain_cpu_s": round(pc, 4), "traced_cpu_s": round(tc, 4),
        "overhead": round(tc / pc - 1, 4) if device.type == "cpu" else round(t / p - 1, 4),
        "analysis_share": round(statistics.median(shares), 4),
        "plain_s_per_step": round(p / (STEPS - 1), 5), "traced_s_per_step": round(t / (STEPS - 1), 5),
        "trace_bytes_mb": round(_trace_bytes(trace) / 2**20, 2), "full_features_kept": trace.meta["full_features"],
    }
    # memory of one traced run
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        plain()
        figures["cuda_peak_plain_mb"] = round((torch.cuda.max_memory_allocated(device) - base) / 2**20, 1)
        torch.cuda.reset_peak_memory_stats(device)
        traced()
        figures["cuda_peak_traced_mb"] = round((torch.cuda.max_memory_allocated(device) - base) / 2**20, 1)
    reset = _reset_peak_rss()
    rss_before = _peak_rss_mb()
    plain()
    rss_plain = _peak_rss_mb()
    _reset_peak_rss()
    tracemalloc.start()
    traced()
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_traced = _peak_rss_mb()
    figures["tracemalloc_peak_mb"] = round(py_peak / 2**20, 2)
    if reset and rss_before is not None:
        figures["rss_peak_plain_mb"] = round(rss_plain - rss_before, 1)
        figures["rss_peak_traced_mb"] = round(rss_traced - rss_before, 1)
        figures["rss_note"] = "peak RSS above the RSS before the run (tracemalloc run adds its own bookkeeping)"
    return figures


def flop_ratio(config: DiTConfig, frames: int, d_sae: int) -> float:
    """Estimated multiply-adds of the tracing analysis over those of the DiT, per state.

    DiT, per frame and branch (x2 for the batched guidance): the linear layers (input
    projection, grouped position convolutions, attention and SwiGLU projections, output
    head) plus attention scores and values (``2 * frames * dim`` per block).  Analysis, per
    frame and source (x2: X_t and x1): the SAE encoder ``64 * d_sae`` and the probes
    ``d_sae * 106``.  Element-wise work is left out on both sides.
    """
    dim, depth, hidden = config.dim, config.depth, config.dim * config.ff_mult
    per_frame = ((2 * config.mel_dim + config.text_dim + 1024) * dim + 2 * dim * dim // 16 * 31
                 + depth * (4 * dim * dim + 3 * dim * hidden + 2 * frames * dim) + dim * config.mel_dim)
    analysis = 2 * (config.mel_dim * d_sae + d_sae * sum(CLASSES.values()))
    return analysis / (2 * per_frame)


def _random_cfm(config: DiTConfig, device: torch.device, dtype: torch.dtype) -> CFM:
    torch.manual_seed(0)
    with torch.device(device):
        model = CFM(DiT(config))
    return model.to(dtype).eval()


def run(seconds: float = 95.0, repeats: int = 3, threads: int = 1, expansions: tuple[int, ...] = (4, 16),
        small: bool = True) -> dict[str, Any]:
    """Every figure of the benchmark as a dict."""
    torch.set_num_threads(threads)
    results: dict[str, Any] = {"threads": threads, "seconds": seconds, "repeats": repeats,
                               "goal": "overhead <= 0.03"}
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # (config, seconds, expansions, repeats): the "small" DiT (~27 M parameters) runs ~40x slower
        # than the tiny one on a CPU core, so it gets a short clip, one width and one repeat.
        configs = {"tiny": (tiny_config(), seconds, expansions, repeats)}
        if small:
            configs["small"] = (DiTConfig(dim=512, depth=4, num_heads=8, ff_mult=4, conv_layers=2, max_frames=2048),
                                min(seconds, 10.0), expansions[-1:], 1)
        for name, (config, length, widths, reps) in configs.items():
            cfm = _random_cfm(config, cpu, torch.float32)
            params = sum(p.numel() for p in cfm.parameters())
            for e in widths:
                key = f"cpu_{name}_x{e}"
                results[key] = {"dit_params": params, "seconds": length,
                                **measure(cfm, _models(root, e, cpu), seconds=length, repeats=reps),
                                "flop_ratio_estimate": round(flop_ratio(config, int(length * 44100 / 2048),
                                                                        64 * e), 5)}
                print(key, json.dumps(results[key]), flush=True)
        frames_95 = int(95.0 * 44100 / 2048)
        results["estimate_1b_95s"] = {
            f"x{e}": {"flop_ratio": float(f"{flop_ratio(DIFFRHYTHM_1B_BASE, frames_95, 64 * e):.3g}")}
            for e in expansions}
        results["estimate_1b_95s"]["note"] = ("analysis multiply-adds / DiT multiply-adds per state; the tracing "
                                              "overhead on the released model is this plus fixed per-state costs "
                                              "(host copies of latents and distributions)")
        if torch.cuda.is_available():
            gpu = torch.device("cuda")
            for dtype in (torch.float16, torch.bfloat16):
                cfm = _random_cfm(DIFFRHYTHM_1B_BASE, gpu, dtype)
                params = sum(p.numel() for p in cfm.parameters())
                for e in expansions:
                    key = f"cuda_1b_{str(dtype).removeprefix('torch.')}_x{e}"
                    try:
                        results[key] = {"dit_params": params, "device": torch.cuda.get_device_name(gpu),
                                        **measure(cfm, _models(root, e, gpu), seconds=95.0, repeats=repeats)}
                    except Exception as exc:  # report, keep the other figures
                        results[key] = {"error": f"{type(exc).__name__}: {exc}"}
                    print(key, json.dumps(results[key]), flush=True)
                del cfm
                torch.cuda.empty_cache()
        else:
            results["cuda_1b"] = "skipped: CUDA is not available on this machine"
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=95.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="10 s, one repeat, tiny model only (smoke check)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        figures = run(seconds=10.0, repeats=1, threads=args.threads, small=False)
    else:
        figures = run(seconds=args.seconds, repeats=args.repeats, threads=args.threads)
    print(json.dumps(figures, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
