"""Attribute labels at latent frame centres vs plain torchcrepe at 10 ms.

usage: python benchmarks/bench_attributes.py [--seconds S] [--model tiny|full] [--json]

Synthesises pitched audio (harmonic notes G1..B6 with vibrato, attacks and releases, legato
runs, silences, noise bursts, a -75 dBFS noise floor), then for latent frame grids of 75 Hz
(EnCodec) and 21.5 Hz (DiffRhythm-VAE, hop 2048 at 44.1 kHz):

- ours: ``measure_attributes`` at the frame centres (CREPE only on non-silent frames);
- reference: ``torchcrepe.predict(audio16k, 16000, hop_length=160, fmin, fmax, model,
  return_periodicity=True, batch_size=...)`` with its default (Viterbi) decoder, sampled at
  the 10 ms frame nearest each latent centre.  Its wall time includes the resampling to 16
  kHz; ours includes resampling, loudness and centroid.

Both get the same rules: band clamped into CREPE's range, unvoiced when the latent frame's
level is below the silence threshold or the periodicity is below the threshold.  Printed:
wall times, speed-up, pitch-class agreement (all frames, frames both call voiced, voicing
decisions) and each one's accuracy against the synthesis' ground truth (frames >= 40 ms
from a segment edge).  A second reference, ``torchcrepe.predict(..., decoder=
torchcrepe.decode.weighted_argmax)``, separates the effect of Viterbi from that of
sampling at the latent centres: torchcrepe's Viterbi runs on a softmax of the sigmoid
outputs, a nearly flat emission, and drifts to the band edge in weak passages, where it
takes tenths of a second to come back (at most 11 bins per 10 ms).
With ``--model full`` the tiny model's labels are compared with full's too.

The project never imports torchcrepe (it imports torchaudio, which fails to load when it
does not match torch).  This benchmark imports it only for the reference, and only if that
works: otherwise it prints ``reference skipped: ...`` and reports our labels against the
ground truth alone (``reference_skipped`` in the figures).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiosae.attributes import (AttributeSpec, FrameAttributes, clamp_crepe_band, hz_to_midi,  # noqa: E402
                                 load_crepe, measure_attributes, midi_to_hz)
from audiosae.audio import resample  # noqa: E402

SAMPLE_RATE = 44100
GRIDS = {"75 Hz": 75.0, "21.5 Hz": SAMPLE_RATE / 2048}
EDGE_MARGIN_S = 0.040


@dataclass
class Segment:
    start: float
    end: float
    kind: str  # "note", "silence", "noise"
    midi: int = 0


def synthesize(seconds: float, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> tuple[np.ndarray, list[Segment]]:
    """Mono float32 test audio and the segments it was made of."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    wave = np.zeros(n)
    segments: list[Segment] = []
    t = 0.1
    segments.append(Segment(0.0, t, "silence"))
    while t < seconds - 0.3:
        r = rng.random()
        if r < 0.68:
            run_len = int(rng.integers(1, 5))  # legato runs of 1-4 notes
            midi = int(rng.integers(33, 94))
            for _ in range(run_len):
                dur = float(rng.uniform(0.25, 0.8))
                if t + dur > seconds - 0.05:
                    break
                _add_note(wave, sample_rate, t, dur, midi, rng)
                segments.append(Segment(t, t + dur, "note", midi))
                t += dur
                midi = int(np.clip(midi + rng.integers(-5, 6), 31, 95))
        elif r < 0.84:
            dur = float(rng.uniform(0.1, 0.5))
            segments.append(Segment(t, t + dur, "silence"))
            t += dur
        else:
            dur = float(rng.uniform(0.15, 0.5))
            a, b = int(t * sample_rate), min(n, int((t + dur) * sample_rate))
            noise = rng.standard_normal(b - a)
            if rng.random() < 0.5:  # pink-ish: 1/sqrt(f) amplitude
                spec = np.fft.rfft(noise)
                f = np.maximum(np.fft.rfftfreq(b - a), 1.0 / (b - a))
                noise = np.fft.irfft(spec / np.sqrt(f), b - a)
            noise *= 10 ** (rng.uniform(-35, -15) / 20) / (np.std(noise) + 1e-12)
            wave[a:b] += noise * _envelope(b - a, sample_rate, 0.01, 0.02)
            segments.append(Segment(t, t + dur, "noise"))
            t += dur
    segments.append(Segment(t, seconds, "silence"))
    wave += 10 ** (-75 / 20) * rng.standard_normal(n)  # noise floor: no digital silence
    return np.clip(wave, -1, 1).astype(np.float32), segments


def _envelope(n: int, sr: int, attack: float, release: float) -> np.ndarray:
    env = np.ones(n)
    na, nr = min(n, int(attack * sr)), min(n, int(release * sr))
    env[:na] = np.linspace(0, 1, na, endpoint=False)
    if nr:
        env[n - nr:] *= np.linspace(1, 0, nr)
    return env


def _add_note(wave: np.ndarray, sr: int, start: float, dur: float, midi: int, rng: np.random.Generator) -> None:
    a = int(start * sr)
    b = min(len(wave), int((start + dur) * sr))
    t = np.arange(b - a) / sr
    depth = rng.uniform(0, 30)  # vibrato depth in cents, well under half a semitone
    f0 = midi_to_hz(midi) * 2 ** (depth / 1200 * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t + rng.uniform(0, 6.3)))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    tilt = rng.uniform(0.7, 2.0)
    odd_only = rng.random() < 0.25
    note = np.zeros(b - a)
    for k in range(1, 40):
        if k * midi_to_hz(midi) * 1.02 > min(sr / 2, 8000) or (odd_only and k % 2 == 0):
            continue
        note += np.sin(k * phase + rng.uniform(0, 6.3)) / k ** tilt
    note /= np.max(np.abs(note)) + 1e-12
    env = _envelope(b - a, sr, rng.uniform(0.01, 0.04), rng.uniform(0.03, 0.1))
    env *= np.exp(-t * rng.uniform(0, 1.5))  # some decay, like plucked/struck notes
    wave[a:b] += 10 ** (rng.uniform(-28, -6) / 20) * note * env


def ground_truth(segments: list[Segment], times: np.ndarray) -> np.ndarray:
    """Pitch class per time: note -> its class, silence/noise -> 0, near a note edge -> -1 (ignored)."""
    truth = np.full(len(times), -1, dtype=np.int64)
    for seg in segments:
        inside = (times >= seg.start + EDGE_MARGIN_S) & (times <= seg.end - EDGE_MARGIN_S)
        truth[inside] = seg.midi - 30 if seg.kind == "note" else 0
    return truth


def reference_torchcrepe() -> tuple[Any, str]:
    """``(torchcrepe, "")`` when it imports, else ``(None, why)``: the reference is optional.

    Imported by name, here only: the project itself never imports torchcrepe (nor the
    torchaudio it imports; tests/core/test_architecture.py checks both).
    """
    import importlib

    try:
        return importlib.import_module("torchcrepe"), ""
    except Exception as exc:  # a mismatched torchaudio fails with OSError/ImportError/RuntimeError
        return None, f"importing torchcrepe failed ({exc.__class__.__name__}: {exc})"


def reference_pitch(tc: Any, mono: np.ndarray, sample_rate: int, spec: AttributeSpec, model: str, batch_size: int,
                    device: str, decoder: Any = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Plain torchcrepe at 100 frames/s: (Hz, periodicity, seconds); decoder None = its default."""
    fmin, fmax = clamp_crepe_band(spec.fmin_hz, spec.fmax_hz)
    extra = {} if decoder is None else {"decoder": decoder}
    t0 = time.perf_counter()
    audio16 = torch.from_numpy(resample(mono[None], sample_rate, 16000))
    pitch, periodicity = tc.predict(audio16, 16000, hop_length=160, fmin=fmin, fmax=fmax, model=model,
                                    return_periodicity=True, batch_size=batch_size, device=device, **extra)
    seconds = time.perf_counter() - t0
    return pitch[0].cpu().numpy().astype(np.float64), periodicity[0].cpu().numpy().astype(np.float64), seconds


def _agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    both_voiced = (a > 0) & (b > 0)
    return {"all": float(np.mean(a == b)),
            "both_voiced": float(np.mean(a[both_voiced] == b[both_voiced])) if both_voiced.any() else float("nan"),
            "voicing": float(np.mean((a > 0) == (b > 0)))}


def _truth_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    known = truth >= 0
    return float(np.mean(pred[known] == truth[known]))


def run(seconds: float = 30.0, model: str = "tiny", *, batch_size: int = 256, device: str = "cpu",
        seed: int = 0, spec: AttributeSpec | None = None) -> dict[str, Any]:
    """Run the comparison; returns the figures as a JSON-able dict."""
    spec = dataclasses.replace(spec or AttributeSpec(), crepe_model=model)
    wave, segments = synthesize(seconds, SAMPLE_RATE, seed)
    tc, skipped = reference_torchcrepe()
    # Warm both paths (weights loaded, kernels initialised) so timings are steady-state.
    load_crepe(model, device)
    if tc is not None:
        tc.predict(torch.zeros(1, 16000), 16000, 160, 50.0, 1000.0, model, batch_size=batch_size, device=device)
    spec.measure(wave[:SAMPLE_RATE // 2], SAMPLE_RATE, np.array([0.25]), hop_length=588, device=device)

    result: dict[str, Any] = {
        "model": model, "audio_seconds": seconds, "device": device, "torch_threads": torch.get_num_threads(),
        "batch_size": batch_size, "reference_skipped": skipped or None,
        "periodicity_threshold": spec.periodicity_threshold, "silence_db": spec.silence_db, "grids": {},
    }
    if tc is not None:
        ref_hz, ref_per, ref_seconds = reference_pitch(tc, wave, SAMPLE_RATE, spec, model, batch_size, device)
        wam_hz, wam_per, wam_seconds = reference_pitch(tc, wave, SAMPLE_RATE, spec, model, batch_size, device,
                                                       tc.decode.weighted_argmax)
        result.update({"reference_frames": int(len(ref_hz)), "reference_seconds": ref_seconds,
                       "reference_weighted_argmax_seconds": wam_seconds})
    for label, rate in GRIDS.items():
        hop = int(round(SAMPLE_RATE / rate))
        times = (np.arange(int(math.ceil(len(wave) / hop))) + 0.5) * hop / SAMPLE_RATE
        t0 = time.perf_counter()
        ours = spec.measure(wave, SAMPLE_RATE, times, hop_length=hop, device=device, batch_size=batch_size)
        our_seconds = time.perf_counter() - t0
        ours_cls = spec.classify(ours)["pitch"]
        truth = ground_truth(segments, times)
        silent = ours.loudness_db < spec.silence_db
        grid = {
            "frames": int(len(times)), "crepe_frames": int((~silent).sum()), "ours_seconds": our_seconds,
            "truth_frames": int((truth >= 0).sum()),
            "truth_accuracy": {"ours": _truth_accuracy(ours_cls, truth)},
            "voiced_fraction": float(np.mean(ours_cls > 0)),
        }
        if tc is not None:
            idx = np.clip(np.rint(times * 100).astype(np.int64), 0, len(ref_hz) - 1)

            def labels(hz: np.ndarray, per: np.ndarray) -> np.ndarray:
                midi = np.where(per[idx] >= spec.periodicity_threshold, hz_to_midi(hz[idx]), np.nan)
                fa = FrameAttributes(midi=midi, periodicity=per[idx], loudness_db=ours.loudness_db,
                                     centroid_hz=ours.centroid_hz)
                return spec.classify(fa)["pitch"]

            ref_cls, wam_cls = labels(ref_hz, ref_per), labels(wam_hz, wam_per)
            grid.update({"speedup": ref_seconds / our_seconds, "agreement": _agreement(ours_cls, ref_cls),
                         "agreement_weighted_argmax_reference": _agreement(ours_cls, wam_cls)})
            grid["truth_accuracy"].update({"reference": _truth_accuracy(ref_cls, truth),
                                           "reference_weighted_argmax": _truth_accuracy(wam_cls, truth)})
        if model == "full" and label == "75 Hz":
            tiny = measure_attributes(wave, SAMPLE_RATE, times, hop_length=hop, crepe_model="tiny", device=device,
                                      batch_size=batch_size, periodicity_threshold=spec.periodicity_threshold,
                                      silence_db=spec.silence_db, fmin_hz=spec.fmin_hz, fmax_hz=spec.fmax_hz)
            tiny_cls = spec.classify(tiny)["pitch"]
            grid["tiny_vs_full"] = {"agreement": _agreement(tiny_cls, ours_cls),
                                    "tiny_truth_accuracy": _truth_accuracy(tiny_cls, truth)}
        result["grids"][label] = grid
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"CREPE {result['model']} on {result['device']} ({result['torch_threads']} threads), "
          f"{result['audio_seconds']:.0f} s of synthetic audio, batch {result['batch_size']}")
    if result["reference_skipped"]:
        print(f"reference skipped: {result['reference_skipped']}")
    else:
        print(f"reference torchcrepe.predict @100 Hz: {result['reference_frames']} frames, "
              f"{result['reference_seconds']:.2f} s (default Viterbi decoder), "
              f"{result['reference_weighted_argmax_seconds']:.2f} s (weighted_argmax)")
    for label, g in result["grids"].items():
        t = g["truth_accuracy"]
        if result["reference_skipped"]:
            print(f"  {label:>7}: ours {g['ours_seconds']:.2f} s for {g['frames']} frames "
                  f"({g['crepe_frames']} through CREPE); ground truth ({g['truth_frames']} frames): "
                  f"ours {100 * t['ours']:.1f}%")
        else:
            _print_reference(label, g)
        if "tiny_vs_full" in g:
            tv = g["tiny_vs_full"]
            print(f"           tiny vs full (ours): agreement {100 * tv['agreement']['all']:.1f}% "
                  f"(voiced both {100 * tv['agreement']['both_voiced']:.1f}%); tiny vs truth "
                  f"{100 * tv['tiny_truth_accuracy']:.1f}%")


def _print_reference(label: str, g: dict[str, Any]) -> None:
    a, w, t = g["agreement"], g["agreement_weighted_argmax_reference"], g["truth_accuracy"]
    print(f"  {label:>7}: ours {g['ours_seconds']:.2f} s for {g['frames']} frames "
          f"({g['crepe_frames']} through CREPE) -> speed-up {g['speedup']:.1f}x")
    print(f"           pitch-class agreement with Viterbi reference {100 * a['all']:.1f}% "
          f"(voiced both {100 * a['both_voiced']:.1f}%, voicing {100 * a['voicing']:.1f}%); "
          f"with weighted_argmax reference {100 * w['all']:.1f}% "
          f"(voiced both {100 * w['both_voiced']:.1f}%, voicing {100 * w['voicing']:.1f}%)")
    print(f"           ground truth ({g['truth_frames']} frames): ours {100 * t['ours']:.1f}%, "
          f"Viterbi reference {100 * t['reference']:.1f}%, "
          f"weighted_argmax reference {100 * t['reference_weighted_argmax']:.1f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the synthetic audio")
    parser.add_argument("--model", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = run(args.seconds, args.model, batch_size=args.batch_size, device=args.device, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
