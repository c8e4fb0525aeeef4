"""Peak memory (RSS) and speed of `audiosae build` on a long corpus (default: 1 hour).

Writes N minutes of synthetic pitched audio as 2-minute FLAC files, runs the real CLI in a
subprocess and reads the child's peak RSS, so the figure covers everything `build` holds:
the backend, CREPE, the audio of the file being encoded and the pending shard.

    python benchmarks/bench_build_memory.py [--minutes 60] [--backend mel] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def write_corpus(folder: Path, minutes: float, sample_rate: int = 24000, file_minutes: float = 2.0) -> int:
    rng = np.random.default_rng(0)
    n_files = max(1, int(round(minutes / file_minutes)))
    for i in range(n_files):
        n = int(file_minutes * 60 * sample_rate)
        t = np.arange(n) / sample_rate
        # A slow random melody: a new note every 0.5 s, harmonic timbre, a little noise.
        notes = rng.integers(40, 85, size=int(file_minutes * 120) + 1)
        f0 = 440.0 * 2 ** ((np.repeat(notes, int(0.5 * sample_rate))[:n] - 69) / 12)
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.1 + 0.002 * rng.standard_normal(n)
        sf.write(str(folder / f"take-{i:03d}.flac"), wave.astype(np.float32), sample_rate)
        del t, wave, phase, f0
    return n_files


def run(minutes: float = 60.0, backend: str = "mel") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "audio"
        audio.mkdir()
        n_files = write_corpus(audio, minutes)
        ws = Path(tmp) / "ws"
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "audiosae.cli", "build", str(ws), "--backend", backend,
                               "--audio", str(audio), "--device", "cpu", "--quiet", "--json"],
                              capture_output=True, text=True)
        elapsed = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"build failed: {proc.stderr[-2000:]}")
        summary = json.loads(proc.stdout)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        shards = sorted((ws / "corpus").glob("shard-*.safetensors"))
        return {"minutes_of_audio": minutes, "files": n_files, "backend": backend,
                "frames": summary["frames"], "build_seconds": round(elapsed, 1),
                "x_real_time": round(minutes * 60 / elapsed, 1),
                "peak_rss_mib": round(peak_kib / 1024, 1), "shards": len(shards),
                "corpus_mib": round(sum(p.stat().st_size for p in shards) / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--backend", default="mel")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = run(args.minutes, args.backend)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>18}: {v}")


if __name__ == "__main__":
    main()
