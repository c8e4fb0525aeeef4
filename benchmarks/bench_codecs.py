"""Speed (x real time on CPU) and round-trip quality of the ``mel`` and ``encodec-24k`` backends.

    python benchmarks/bench_codecs.py [--seconds S] [--threads N] [--json]

Runs offline: the test signal is synthesised (harmonic notes with vibrato over noise) and
EnCodec is the full-size 24 kHz architecture with random weights (zero codebooks filled with
Gaussian noise), loaded through the backend's own ``weights=`` path.  Random EnCodec weights
time the network faithfully but say nothing about its audio quality, so only mel quality is
reported.  ``run(seconds)`` returns every figure as a dict for a master benchmark.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from audiosae.codecs import get_backend  # noqa: E402
from audiosae.codecs.encodec_backend import build_encodec_model  # noqa: E402

SAMPLE_RATE = 24_000
CHUNK_SECONDS = (0.5, 1.0, 2.0)


def synth_test_signal(seconds: float, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Harmonic notes (12 partials, 5.5 Hz vibrato of +-0.3 semitone, decaying) over noise, [1, N]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    wave = np.zeros(n)
    midi_notes = [57, 60, 64, 67, 69, 72, 64, 55]
    note_samples = max(1, int(0.5 * sample_rate))
    for index, start in enumerate(range(0, n, note_samples)):
        stop = min(n, start + note_samples)
        local = t[start:stop] - t[start]
        f0 = 440.0 * 2 ** ((midi_notes[index % len(midi_notes)] - 69) / 12)
        f0 = f0 * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * local))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        envelope = np.minimum(1.0, local / 0.02) * np.exp(-1.5 * local)
        partials = sum((0.6 / k) * np.sin(k * phase) for k in range(1, 13) if k * f0.max() < sample_rate / 2)
        wave[start:stop] += 0.5 * envelope * partials
    wave += 0.01 * rng.standard_normal(n)
    return wave.astype(np.float32)[None]


def _median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _magnitudes(wave: np.ndarray) -> np.ndarray:
    """An STFT independent of the backend's (n_fft 1024, hop 256, Hann), [frames, bins]."""
    x = torch.from_numpy(np.ascontiguousarray(wave[0]))
    return torch.stft(x, 1024, 256, window=torch.hann_window(1024), return_complex=True).abs().T.numpy()


def quality(decoded: np.ndarray, original: np.ndarray, backend, latents: np.ndarray) -> dict:
    """SNR (dB), log-spectral distance (dB), spectral convergence and mel-latent L1 (nats)."""
    decoded = decoded[:, :original.shape[1]]
    ref_mag, dec_mag = _magnitudes(original), _magnitudes(decoded)
    floor = 1e-5 * ref_mag.max()
    log_gap = 20 * np.log10(np.maximum(ref_mag, floor)) - 20 * np.log10(np.maximum(dec_mag, floor))
    return {
        "snr_db": float(10 * np.log10(np.sum(original ** 2) / np.sum((decoded - original) ** 2))),
        "lsd_db": float(np.mean(np.sqrt(np.mean(log_gap ** 2, axis=1)))),
        "spectral_convergence": float(np.linalg.norm(ref_mag - dec_mag) / np.linalg.norm(ref_mag)),
        "mel_l1_reencoded": float(np.abs(backend.encode(decoded).latents - latents).mean()),
    }


def _bench_mel(wave: np.ndarray, seconds: float) -> dict:
    mel = get_backend("mel", device="cpu")
    phase_only = get_backend("mel", device="cpu", reference_detail=False)
    latents = mel.encode(wave).latents
    repeats = 3
    out: dict = {"options": mel.options()}
    out["encode_x_realtime"] = seconds / _median_seconds(lambda: mel.encode(wave), repeats)
    out["decode_x_realtime"] = seconds / _median_seconds(lambda: mel.decode(latents), repeats)
    out["decode_seeded_x_realtime"] = seconds / _median_seconds(lambda: mel.decode(latents, reference=wave), repeats)
    chunks = {}
    hop = mel.hop_length
    for chunk_seconds in CHUNK_SECONDS:
        frames = int(round(chunk_seconds * mel.frame_rate))
        if frames > latents.shape[0]:
            continue
        part, ref = latents[:frames], wave[:, :frames * hop]
        chunks[f"{chunk_seconds:g}s_seeded_ms"] = 1000 * _median_seconds(lambda: mel.decode(part, reference=ref), 15, 3)
        chunks[f"{chunk_seconds:g}s_seeded_phase_only_ms"] = 1000 * _median_seconds(
            lambda: phase_only.decode(part, reference=ref), 15, 3)
        chunks[f"{chunk_seconds:g}s_unseeded_ms"] = 1000 * _median_seconds(lambda: mel.decode(part), 5, 1)
    out["chunk_decode"] = chunks
    out["chunk_join"] = _chunk_join(mel, wave, latents)
    out["quality"] = {
        "seeded": quality(mel.decode(latents, reference=wave), wave, mel, latents),
        "seeded_phase_only": quality(phase_only.decode(latents, reference=wave), wave, mel, latents),
        "unseeded": quality(mel.decode(latents), wave, mel, latents),
    }
    return out


def _chunk_join(mel, wave: np.ndarray, latents: np.ndarray, chunk_frames: int = 75) -> dict:
    """Steered latents decoded in 1 s chunks with ``context_frames`` context vs in one piece."""
    steered = latents.copy()
    steered[:, 30:70] += 1.0  # +8.7 dB on a band of mels, as a control vector might
    hop, n_frames = mel.hop_length, steered.shape[0]
    whole = mel.decode(steered, reference=wave)
    result = {"context_frames": mel.context_frames}
    for label, context in (("no_context", 0), ("with_context", mel.context_frames)):
        pieces = []
        for a in range(0, n_frames, chunk_frames):
            b = min(n_frames, a + chunk_frames)
            lo, hi = max(0, a - context), min(n_frames, b + context)
            decoded = mel.decode(steered[lo:hi], reference=wave[:, lo * hop:hi * hop])
            pieces.append(decoded[:, (a - lo) * hop:(b - lo) * hop])
        error = np.concatenate(pieces, axis=1) - whole
        result[f"{label}_snr_db"] = float(10 * np.log10(np.sum(whole ** 2) / np.sum(error ** 2)))
    return result


def _random_full_encodec_weights(path: Path) -> None:
    torch.manual_seed(0)
    model = build_encodec_model(None)  # our model: the official key names and shapes
    with torch.no_grad():
        for layer in model.quantizer.vq.layers:  # N(0, 1) codebooks: frames pick varied codes
            layer._codebook.embed.normal_()
            layer._codebook.inited.fill_(1.0)
    torch.save(model.state_dict(), path)


def _bench_encodec(wave: np.ndarray, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "encodec_24khz_random.th"
        _random_full_encodec_weights(path)
        backend = get_backend("encodec-24k", device="cpu", weights=path)
    encoded = backend.encode(wave)
    repeats = 2
    return {
        "bandwidth_kbps": backend.bandwidth,
        "codebooks": backend.n_codebooks,
        "latents_shape": list(encoded.latents.shape),
        "encode_x_realtime": seconds / _median_seconds(lambda: backend.encode(wave), repeats),
        "decode_x_realtime": seconds / _median_seconds(lambda: backend.decode(encoded.latents), repeats),
    }


def run(seconds: float = 10.0) -> dict:
    """All figures for ``seconds`` of test signal, as a JSON-ready dict."""
    wave = synth_test_signal(seconds)
    return {
        "seconds": seconds,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "mel": _bench_mel(wave, seconds),
        "encodec-24k": _bench_encodec(wave, seconds),
    }


def _print_report(result: dict) -> None:
    mel, enc = result["mel"], result["encodec-24k"]
    print(f"{result['seconds']:g} s of test signal, CPU, {result['torch_threads']} torch thread(s), "
          f"torch {result['torch']}")
    print("\nspeed (x real time, higher is faster)")
    print(f"  mel          encode {mel['encode_x_realtime']:8.1f}   decode {mel['decode_x_realtime']:6.1f} "
          f"(Griffin-Lim {mel['options']['griffin_lim_iters']} it)   decode seeded "
          f"{mel['decode_seeded_x_realtime']:6.1f} ({mel['options']['seeded_iters']} it)")
    print(f"  encodec-24k  encode {enc['encode_x_realtime']:8.1f}   decode {enc['decode_x_realtime']:6.1f} "
          f"(full size, random weights, {enc['bandwidth_kbps']:g} kbps = {enc['codebooks']} codebooks)")
    print("\nmel chunk decode (median ms)")
    for key, value in mel["chunk_decode"].items():
        print(f"  {key:28s} {value:8.1f}")
    join = mel["chunk_join"]
    print(f"  1 s chunks vs whole decode (steered, seeded): SNR {join['no_context_snr_db']:.1f} dB without "
          f"context, {join['with_context_snr_db']:.1f} dB with {join['context_frames']} frames each side")
    print("\nmel round-trip quality   SNR dB   LSD dB   spec.conv.   mel L1 (nats, re-encoded)")
    for key, q in mel["quality"].items():
        print(f"  {key:22s} {q['snr_db']:7.2f}  {q['lsd_db']:7.2f}  {q['spectral_convergence']:10.4f}"
              f"   {q['mel_l1_reencoded']:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the test signal")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.seconds < 0.5:
        parser.error("--seconds must be at least 0.5")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args.seconds)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
