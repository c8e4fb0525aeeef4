"""Slider-to-audible latency and underruns of the real-time control-vector audition.

    python benchmarks/bench_realtime.py [--backends mel encodec-24k] [--seconds 10] [--run 12]
                                        [--interval 0.3] [--chunk 0.25] [--output virtual|device]
                                        [--device NAME] [--latency S] [--threads 1] [--json]

A ``seconds``-long synthetic clip loops through ``audiosae.steering.playback.Player`` (a silent virtual
device clock by default, or a real output device, e.g. a PulseAudio null sink) while a
simulated user moves alpha every ``interval`` seconds for ``run`` seconds.  A
``RenderWorker`` renders the steered chunks ahead of the playhead; each rendered chunk
requeues the player.  Latency of a change = time from ``set_alpha`` until the sample the
listener hears (output latency included) comes from the new parameter version, read from the
per-sample tags the player carries.  The steered range is the whole clip (the worst case:
every chunk goes stale on every move).

Models are random: a ``d_in x 8`` SparseAutoencoder with its own initialisation, probe rows
drawn from a normal distribution, and for EnCodec the full 24 kHz architecture with random
weights (zero codebooks filled with noise) loaded through the backend's ``weights=`` path.
Random weights time the decoders faithfully; the audio means nothing.
``run(...)`` returns every figure as a dict.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
sys.path.insert(0, str(Path(__file__).resolve().parent))

from audiosae.codecs import get_backend  # noqa: E402
from audiosae.probes import ProbeSet  # noqa: E402
from audiosae.steering.realtime import RenderWorker, SteeredRenderer, SteeringParams  # noqa: E402
from audiosae.sae import SAEConfig, SparseAutoencoder  # noqa: E402
from audiosae.codecs.encodec_backend import build_encodec_model  # noqa: E402
from bench_codecs import synth_test_signal  # noqa: E402
from audiosae.steering.playback import Player  # noqa: E402

PITCH_CLASSES = 66
EXPANSION = 8
POLL_SECONDS = 0.001
# EnCodec 24 kHz decodes causally (its transposed convs trim on the right), so frames after a
# chunk never change it: no right context.  8 frames on the left matched a whole decode to
# 89 dB SNR with random weights (4: 79 dB).  Other backends: the renderer's default.
CONTEXT = {"encodec-24k": (8, 0), "encodec-24k-continuous": (8, 0)}


def _random_encodec_weights(path: Path) -> None:
    """Full-size EnCodec 24 kHz state dict with random weights and non-zero codebooks."""
    torch.manual_seed(0)
    model = build_encodec_model(None)  # our model: the official key names and shapes
    with torch.no_grad():
        for layer in model.quantizer.vq.layers:  # N(0, 1) codebooks: frames pick varied codes
            layer._codebook.embed.normal_()
            layer._codebook.inited.fill_(1.0)
    torch.save(model.state_dict(), path)


def build_backend(name: str):
    if name == "mel":
        return get_backend("mel", device="cpu")
    if name in ("encodec-24k", "encodec-24k-continuous"):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "encodec_24khz_random.th"
            _random_encodec_weights(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return get_backend(name, device="cpu", weights=path)
    raise SystemExit(f"bench_realtime: unsupported backend {name!r} (mel, encodec-24k)")


def build_steering(d_in: int, seed: int = 0) -> tuple[SparseAutoencoder, ProbeSet]:
    """A random SAE (the class's own init) and random unit-norm pitch probe rows on its features."""
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=EXPANSION * d_in, l1_coefficient=1e-3)).eval()
    gen = torch.Generator().manual_seed(seed)
    weights = torch.randn(PITCH_CLASSES, EXPANSION * d_in, generator=gen)
    weights /= weights.norm(dim=1, keepdim=True)
    return sae, ProbeSet(weights={"pitch": weights}, bias={"pitch": torch.zeros(PITCH_CLASSES)},
                         class_names={}, feature_kind="sae")


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def measure(backend_name: str, *, seconds: float = 10.0, run_seconds: float = 12.0, interval: float = 0.3,
            output: str = "virtual", device: str | None = None, chunk_seconds: float = 0.25,
            lead_seconds: float = 0.15, latency: float | None = None, seed: int = 0) -> dict:
    """One backend: build everything, loop the clip, move alpha, return the figures."""
    backend = build_backend(backend_name)
    wave = synth_test_signal(seconds, backend.sample_rate)
    sae, probes = build_steering(backend.latent_dim, seed)
    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    renderer = SteeredRenderer(backend, sae, probes, wave, SteeringParams("pitch", 45, 0.0, keep_residual=True),
                               chunk_seconds=chunk_seconds, context_frames=CONTEXT.get(backend_name))
    setup_seconds = time.perf_counter() - began
    began = time.perf_counter()
    renderer.render_all()
    first_render_seconds = time.perf_counter() - began

    player = Player(lambda s, n: renderer.mix_tagged(s, n, per_sample=True), backend.sample_rate,
                    renderer.n_samples, channels=backend.channels, output=output, device=device,
                    lead_seconds=lead_seconds, **({} if latency is None else {"latency": latency}))
    renderer.add_audio_listener(player.requeue)
    worker = RenderWorker(renderer, player.splice_position, loop=lambda: player.loop)
    heard_at: dict[int, float] = {}
    stop = threading.Event()

    def monitor() -> None:  # first time each version (or a newer one) reaches the listener
        while not stop.is_set():
            tag = player.heard_tag()
            now = time.perf_counter()
            if tag is not None and tag >= 0:
                for version in range(min(heard_at, default=tag), tag + 1):
                    heard_at.setdefault(version, now)
            time.sleep(POLL_SECONDS)

    changes: list[tuple[int, float]] = []
    watcher = threading.Thread(target=monitor, name="bench-monitor", daemon=True)
    try:
        player.set_loop(0, renderer.n_samples)
        player.play()
        player.sync()
        worker.start()
        watcher.start()
        # Steady playback before the first move: a PulseAudio stream stalls ~1.7 s after it
        # opens before audio flows, which is start-up, not slider latency.
        deadline = time.perf_counter() + 10
        while player.position() < 0.2 * backend.sample_rate and time.perf_counter() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        underruns_before = dict(player.underruns)
        start = time.perf_counter()
        alpha = 0.0
        while time.perf_counter() - start < run_seconds:
            alpha = float(rng.choice([a for a in (1.0, 3.0, 6.0, 10.0, 20.0, 30.0) if a != alpha]))
            t0 = time.perf_counter()
            version = renderer.set_alpha(alpha)
            changes.append((version, t0))
            time.sleep(max(0.0, interval * rng.uniform(0.8, 1.2) - (time.perf_counter() - t0)))
        time.sleep(0.5)
        underruns = {k: v - underruns_before[k] for k, v in player.underruns.items()}
    finally:
        stop.set()
        worker.stop()
        if watcher.is_alive():
            watcher.join(2)
        player.close()
    if worker.error is not None:
        raise RuntimeError(f"render worker failed:\n{worker.error_traceback}")
    if player.error is not None:
        raise RuntimeError(f"player failed:\n{player.error_traceback}")

    latencies, missed = [], 0
    for version, t0 in changes:
        if version in heard_at and heard_at[version] >= t0:
            latencies.append(1000 * (heard_at[version] - t0))
        else:
            missed += 1
    stats = renderer.stats()
    renders = [stats.renders_by_version.get(v, 0) for v, _ in changes]
    return {
        "backend": backend_name,
        "output": player.output_kind,
        "output_note": player.message or ("" if player.available else player.reason),
        "device": player.device_name,
        "output_latency_ms": 1000 * player.output_latency,
        "clip_seconds": seconds,
        "chunk_seconds": renderer.chunk_frames * renderer.hop / renderer.sample_rate,
        "chunks": renderer.n_chunks,
        "context_frames": list(renderer.context_frames),
        "setup_seconds": setup_seconds,
        "first_full_render_seconds": first_render_seconds,
        "mean_chunk_render_ms": 1000 * stats.mean_render_seconds,
        "alpha_changes": len(changes),
        "latency_ms_median": statistics.median(latencies) if latencies else float("nan"),
        "latency_ms_p95": _percentile(latencies, 95),
        "latency_ms_max": max(latencies) if latencies else float("nan"),
        "changes_not_heard": missed,
        "renders_per_change_mean": float(np.mean(renders)) if renders else 0.0,
        "stale_renders": stats.stale_renders,
        "underruns": underruns,
        "splice_retries": player.splice_retries,
        "splices_missed": player.splices_missed,
        "latencies_ms": [round(x, 1) for x in latencies],
    }


def run(seconds: float = 10.0, run_seconds: float = 12.0, interval: float = 0.3,
        backends: tuple[str, ...] = ("mel", "encodec-24k"), output: str = "virtual",
        device: str | None = None, chunk_seconds: float = 0.25, latency: float | None = None) -> dict:
    """Figures for every backend, as a JSON-ready dict."""
    return {
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "interval_seconds": interval,
        "run_seconds": run_seconds,
        "results": [measure(name, seconds=seconds, run_seconds=run_seconds, interval=interval, output=output,
                            device=device, chunk_seconds=chunk_seconds, latency=latency) for name in backends],
    }


def _print_report(result: dict) -> None:
    print(f"CPU, {result['torch_threads']} torch thread(s), torch {result['torch']}; alpha moved every "
          f"~{1000 * result['interval_seconds']:.0f} ms for {result['run_seconds']:g} s; steered range = whole clip")
    for r in result["results"]:
        print(f"\n{r['backend']}: {r['clip_seconds']:g} s loop, {r['chunks']} chunks of {r['chunk_seconds']:.3f} s, "
              f"context frames (left, right) {tuple(r['context_frames'])}")
        print(f"  output: {r['output']}" + (f" '{r['device']}'" if r["device"] else "")
              + f", {r['output_latency_ms']:.1f} ms output latency"
              + (f" ({r['output_note']})" if r["output_note"] else ""))
        print(f"  chunk render {r['mean_chunk_render_ms']:.1f} ms (mean); whole clip first render "
              f"{r['first_full_render_seconds']:.2f} s; setup {r['setup_seconds']:.2f} s")
        print(f"  slider-to-audible latency over {r['alpha_changes']} changes: median {r['latency_ms_median']:.0f} ms, "
              f"p95 {r['latency_ms_p95']:.0f} ms, max {r['latency_ms_max']:.0f} ms; never heard: "
              f"{r['changes_not_heard']}")
        print(f"  renders per change {r['renders_per_change_mean']:.1f}, stale renders {r['stale_renders']}; "
              f"underruns: device {r['underruns']['device_underflows']}, ring dry {r['underruns']['ring_dry']}; "
              f"splices redone {r['splice_retries']}, missed {r['splices_missed']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["mel", "encodec-24k"])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the looping clip")
    parser.add_argument("--run", type=float, default=12.0, help="seconds of simulated slider movement")
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between alpha changes")
    parser.add_argument("--chunk", type=float, default=0.25, help="render chunk length in seconds")
    parser.add_argument("--output", choices=["virtual", "device"], default="virtual",
                        help="a silent virtual device clock, or a real output device")
    parser.add_argument("--device", default=None, help="output device name (with --output device)")
    parser.add_argument("--latency", type=float, default=None,
                        help="device buffer to ask PortAudio for, seconds (default: the Player's)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(args.seconds, args.run, args.interval, tuple(args.backends), args.output, args.device, args.chunk,
                 args.latency)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
