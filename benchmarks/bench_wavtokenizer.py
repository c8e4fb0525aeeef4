"""How fast the WavTokenizer backends run on this machine's CPU (random weights, offline).

Builds the full-size small 40 Hz and 75 Hz models with random weights (speed does not
depend on the values), then times ``encode`` and ``decode`` through the backend interface on
``seconds`` of audio and reports multiples of real time (higher is faster) and the
parameter count of the model that runs (the unused SEANet decoder is not built).

    python benchmarks/bench_wavtokenizer.py [--seconds 10] [--repeats 2] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from audiosae.codecs.wavtokenizer import WavTokenizerBackend
from audiosae.codecs.wavtokenizer.configs import RELEASED
from audiosae.codecs.wavtokenizer.model import build_random_model, count_parameters

MODELS = {"wavtokenizer-40": "small-600-24k-4096", "wavtokenizer-75": "small-320-24k-4096"}


def _best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(seconds: float = 10.0, repeats: int = 2, threads: int | None = None, device: str = "cpu") -> dict:
    """Time encode/decode of ``seconds`` of audio for each small model; returns the figures."""
    if threads:
        torch.set_num_threads(threads)
    results: dict = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "cpu": platform.processor() or platform.machine(), "seconds_of_audio": seconds,
                     "models": {}}
    rng = np.random.default_rng(0)
    for name, key in MODELS.items():
        config = RELEASED[key].config
        model = build_random_model(config, seed=0)
        backend = WavTokenizerBackend.from_model(model, model_key=key, device=device)
        wave = (0.1 * rng.standard_normal((1, int(seconds * config.sample_rate)))).astype(np.float32)
        backend.decode(backend.encode(wave[:, : config.sample_rate]).latents)  # warm-up
        encoded = backend.encode(wave)
        t_encode = _best_time(lambda: backend.encode(wave), repeats)
        t_decode = _best_time(lambda: backend.decode(encoded.latents), repeats)
        results["models"][name] = {
            "parameters": count_parameters(model),
            "frames": int(encoded.latents.shape[0]),
            "encode_s": round(t_encode, 4), "decode_s": round(t_decode, 4),
            "encode_x_realtime": round(seconds / t_encode, 2),
            "decode_x_realtime": round(seconds / t_decode, 2),
        }
        del model, backend
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length to time (default 10)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs; the best is reported (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    res = run(args.seconds, args.repeats, args.threads, args.device)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"WavTokenizer on {res['device']} ({res['threads']} threads, torch {res['torch']}), "
          f"{res['seconds_of_audio']:g} s of audio")
    for name, r in res["models"].items():
        print(f"  {name:16s} {r['parameters'] / 1e6:6.1f} M params  {r['frames']:5d} frames  "
              f"encode {r['encode_x_realtime']:7.2f}x real time ({r['encode_s']:.3f} s)  "
              f"decode {r['decode_x_realtime']:7.2f}x real time ({r['decode_s']:.3f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
