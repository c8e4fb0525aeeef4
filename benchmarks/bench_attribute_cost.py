"""Labelling cost per attribute, in seconds per minute of audio (issue 14).

usage: python benchmarks/bench_attribute_cost.py [--minutes M] [--json]

Renders ``M`` minutes of the built-in ``tones`` corpus (harmonic notes with attacks, releases and
gaps) at two latent geometries: 24 kHz / hop 320 (EnCodec, 75 Hz) and 44.1 kHz / hop 2048
(DiffRhythm-VAE, 21.5 Hz).  Times (one warm-up call first, so librosa's import and numba's
compiling are reported apart as ``first_call_s``):

- ``paper``: ``AttributeSpec.measure`` of pitch (CREPE tiny), loudness and timbre;
- ``shared analysis``: the 10 ms STFT, mel, chroma, MFCC and flatness every new attribute reads;
- each registered attribute alone (its own extractor plus the shared analysis, on a fresh context)
  and all of them together (the analysis once).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from audiosae.attribute_library import _analysis
    from audiosae.attribute_registry import ExtractContext, measure_extra, mono_of, registered_names
    from audiosae.attribute_spec import AttributeSpec
    from audiosae.corpus import builtin_sources

    names = registered_names()
    spec = AttributeSpec().with_attributes(names)
    out: dict = {"minutes": args.minutes}
    t0 = time.perf_counter()
    warm = np.random.default_rng(0).standard_normal(24000 * 3).astype(np.float32) * 0.1
    spec.measure_extra(warm, 24000, np.arange(0.01, 3, 0.04), hop_length=320)
    out["first_call_s"] = time.perf_counter() - t0
    for sr, hop in ((24000, 320), (44100, 2048)):
        sources = builtin_sources("tones", minutes=args.minutes)
        wave = np.concatenate([s.load(sr, 1) for s in sources], axis=1)
        minutes = wave.shape[1] / sr / 60
        times = (np.arange(wave.shape[1] // hop) + 0.5) * hop / sr
        row: dict = {}
        t = time.perf_counter()
        AttributeSpec().measure(wave, sr, times, hop_length=hop, device="cpu")
        row["paper (pitch+loudness+timbre)"] = (time.perf_counter() - t) / minutes
        mono = mono_of(wave)

        def ctx() -> ExtractContext:
            return ExtractContext(mono=mono, sample_rate=sr, frame_times=times, hop_length=hop)

        t = time.perf_counter()
        _analysis(ctx())
        row["shared analysis"] = (time.perf_counter() - t) / minutes
        for name in names:
            t = time.perf_counter()
            measure_extra([name], spec.extra, ctx())
            row[name] = (time.perf_counter() - t) / minutes
        t = time.perf_counter()
        measure_extra(names, spec.extra, ctx())
        row["all registered"] = (time.perf_counter() - t) / minutes
        out[f"{sr} Hz hop {hop}"] = row
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"first call (librosa import, numba compile): {out['first_call_s']:.1f} s")
    for key, row in out.items():
        if isinstance(row, dict):
            print(f"\n{key}: seconds per minute of audio")
            for name, value in row.items():
                print(f"  {name:<32} {value:6.2f}")


if __name__ == "__main__":
    main()
