"""Distribution distances between steered and unsteered audio, on an embedding that works offline.

``frechet_distance`` (FAD-style: Gaussians fit to two sets of embedding vectors) and ``mmd``
(squared maximum mean discrepancy with KID's polynomial kernel) compare two sets of vectors
``[n, d]``.  ``LogMelMfccEmbedding`` turns audio into such a set with numpy/scipy only, and is
the offline stand-in for the learned embeddings that FAD / KID papers use:

* the mono mix is resampled to 16 kHz; STFT with a 1024-sample Hann window, hop 320 (20 ms);
* per frame: 40 log-mel band powers (0..8 kHz, dB with a -100 dB floor) and MFCCs 1..19 (the
  orthonormal DCT-II of those dB values; c0 is left out, it is the bands' mean, already there);
* both divided by 20 (one unit = 20 dB), so the kernel's dot products stay O(1).

One vector per 20 ms frame (59 numbers), so a 10 s clip gives ~500 vectors: enough for a
59-dimensional covariance.  The statistics the distances use (means, covariances, kernel
means) are taken over those frames.

Plugging in a learned embedding (CLAP, VGGish, ...) when the user has its weights: pass any
object with a ``name`` (str) and ``embed(wave [C, N] float32, sample_rate) -> [n, d]`` (one
row per window of audio) as ``embedding=`` to ``evaluate_steering``; nothing here downloads.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import numpy as np

from ..errors import AudioSAEError

EMBED_RATE = 16000
_N_FFT = 1024
_HOP = 320
_N_MELS = 40
_N_MFCC = 19          # coefficients 1..19
_FLOOR_DB = -100.0
_SCALE_DB = 20.0
MMD_MAX_VECTORS = 1500  # per set: the kernel matrices stay ~ 18 MB


class AudioEmbedding(Protocol):
    """What ``evaluate_steering`` needs of an embedding (see the module docstring)."""

    name: str

    def embed(self, wave: np.ndarray, sample_rate: int) -> np.ndarray: ...


class LogMelMfccEmbedding:
    """Frame-wise log-mel + MFCC vectors (the offline stand-in for CLAP / VGGish)."""

    name = "logmel40-mfcc19-16k-v1"
    dim = _N_MELS + _N_MFCC

    def __init__(self) -> None:
        from ..codecs.mel import mel_filterbank

        self._fb = mel_filterbank(EMBED_RATE, _N_FFT, _N_MELS, 0.0, EMBED_RATE / 2)  # [M, F]
        self._window = np.hanning(_N_FFT + 1)[:-1]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "offline stand-in (numpy/scipy)", "sample_rate": EMBED_RATE,
                "n_fft": _N_FFT, "hop": _HOP, "n_mels": _N_MELS, "mfcc": "1..19", "scale": "dB / 20",
                "floor_db": _FLOOR_DB, "dim": self.dim}

    def embed(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        from scipy.fft import dct

        from ..audio import resample

        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 1:
            wave = wave[None]
        mono = resample(np.mean(wave, axis=0, keepdims=True), int(sample_rate), EMBED_RATE)[0].astype(np.float64)
        mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
        if mono.size < _N_FFT:
            mono = np.pad(mono, (0, _N_FFT - mono.size))
        frames = np.lib.stride_tricks.sliding_window_view(mono, _N_FFT)[::_HOP]
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2 / np.sum(self._window ** 2)
        mel_db = 10 * np.log10(np.maximum(power @ self._fb.T, 10 ** (_FLOOR_DB / 10)))
        mfcc = dct(mel_db, type=2, norm="ortho", axis=1)[:, 1:1 + _N_MFCC]
        return (np.concatenate([mel_db, mfcc], axis=1) / _SCALE_DB).astype(np.float64)


def _check_sets(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise AudioSAEError(f"distances need two sets of vectors [n, d] of one width, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise AudioSAEError(f"distances need at least 2 vectors per set, got {len(a)} and {len(b)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise AudioSAEError("embedding vectors contain NaN or inf")
    return a, b


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` of Gaussians fit to the rows of
    ``a`` and ``b`` (the Fréchet audio distance's formula).

    ``tr((S_a S_b)^(1/2))`` is computed as ``tr((S_a^(1/2) S_b S_a^(1/2))^(1/2))`` with symmetric
    eigendecompositions: the same number as ``scipy.linalg.sqrtm(S_a @ S_b)``'s trace, without
    its complex round-off on the rank-deficient covariances of short clips.  0 for identical
    sets (up to round-off, clamped at 0); a set shifted by ``delta`` gives ``|delta|^2``.
    """
    a, b = _check_sets(a, b)
    mu = a.mean(axis=0) - b.mean(axis=0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _psd_sqrt(sa)
    middle = root_a @ sb @ root_a
    trace_cross = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None))))
    value = float(mu @ mu) + float(np.trace(sa) + np.trace(sb)) - 2.0 * trace_cross
    scale = float(np.trace(sa) + np.trace(sb)) + float(mu @ mu)
    return 0.0 if value < 1e-9 * max(scale, 1e-30) else value


def _subsample(x: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if len(x) <= limit:
        return x
    idx = np.random.default_rng(seed).choice(len(x), size=limit, replace=False)
    return x[np.sort(idx)]


def mmd(a: np.ndarray, b: np.ndarray, *, degree: int = 3, max_vectors: int = MMD_MAX_VECTORS,
        seed: int = 0) -> float:
    """Squared MMD with KID's polynomial kernel ``k(x, y) = (x.y / d + 1)^degree``.

    The biased (V-statistic) estimate ``mean K_aa + mean K_bb - 2 mean K_ab``: never negative
    and exactly 0 for identical sets (the unbiased KID estimate is not, for a set against
    itself).  Sets over ``max_vectors`` rows are subsampled (fixed seed, so repeatable).
    """
    a, b = _check_sets(a, b)
    a, b = _subsample(a, max_vectors, seed), _subsample(b, max_vectors, seed + 1)
    d = a.shape[1]

    def k(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((x @ y.T / d + 1.0) ** degree))

    value = k(a, a) + k(b, b) - 2.0 * k(a, b)
    return max(0.0, value)


class EmbeddingCache:
    """Embeds each distinct wave once (keyed by its bytes): the unsteered reconstruction and
    the original are compared with every cell."""

    def __init__(self, embedding: Any):
        self.embedding = embedding
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def __call__(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        key = (hashlib.sha1(wave.tobytes() + str(wave.shape).encode()).hexdigest(), int(sample_rate))
        if key not in self._cache:
            self._cache[key] = np.asarray(self.embedding.embed(wave, int(sample_rate)), dtype=np.float64)
        return self._cache[key]


def embedding_name(embedding: Any) -> str:
    return str(getattr(embedding, "name", type(embedding).__name__))


__all__ = ["AudioEmbedding", "EMBED_RATE", "EmbeddingCache", "LogMelMfccEmbedding", "MMD_MAX_VECTORS",
           "embedding_name", "frechet_distance", "mmd"]
