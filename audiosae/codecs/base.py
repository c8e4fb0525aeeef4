"""The interface every audio autoencoder ("latent backend") implements.

A backend turns a waveform at its own sample rate into latent frames ``[T, D]`` (float32,
time-major) and back.  Discrete backends (RVQ / VQ codecs) also return the integer codes
whose codebook vectors make up the latent.  Everything downstream (attributes, SAEs,
probes, steering, the studio) sees only this interface, so EnCodec, the built-in mel
backend, DiffRhythm's VAE and WavTokenizer are interchangeable.

Frame alignment: latent frame ``t`` summarises the audio around ``frame_centers(T)[t]``
seconds.  Attribute labels are measured at exactly those centres.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..errors import BackendError

LatentKind = Literal["continuous", "discrete"]


def frame_count(n_samples: int, hop_length: int) -> int:
    """Number of latent frames for ``n_samples`` input samples (``LatentBackend.n_frames``)."""
    return max(1, math.ceil(n_samples / hop_length))


def frame_centres(n_frames: int, hop_length: int, sample_rate: int) -> np.ndarray:
    """Centre time (s) of each latent frame: the middle of each hop (``LatentBackend.frame_centers``)."""
    return (np.arange(n_frames, dtype=np.float64) + 0.5) * hop_length / sample_rate


@dataclass
class Encoded:
    """Result of ``encode``: latents ``[T, D]`` float32 and, for discrete backends, codes ``[T, K]``."""

    latents: np.ndarray
    codes: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.latents.ndim != 2:
            raise BackendError(f"latents must be [T, D], got shape {self.latents.shape}")


class LatentBackend(ABC):
    """Base class.  Subclasses set the class attributes and implement ``_encode``/``_decode``."""

    name: str
    sample_rate: int
    channels: int
    hop_length: int
    latent_dim: int
    kind: LatentKind = "continuous"
    description: str = ""
    # Frames decoded and dropped on each side of a chunk (or (left, right) for causal
    # decoders) so that chunk-wise decoding joins seamlessly (see audiosae.steering.realtime).
    context_frames: int | tuple[int, int] = 8

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)

    # ---- geometry --------------------------------------------------------------------
    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def n_frames(self, n_samples: int) -> int:
        """Number of latent frames for ``n_samples`` input samples."""
        return frame_count(n_samples, self.hop_length)

    def frame_centers(self, n_frames: int) -> np.ndarray:
        """Centre time (s) of each latent frame; default: the middle of each hop."""
        return frame_centres(n_frames, self.hop_length, self.sample_rate)

    def options(self) -> dict:
        """Constructor options that rebuild this backend (stored in workspace.json)."""
        return {}

    # ---- encode / decode --------------------------------------------------------------
    def encode(self, wave: np.ndarray) -> Encoded:
        """``wave``: float32 ``[channels, N]`` at ``sample_rate`` -> ``Encoded``."""
        wave = self._check_wave(wave)
        with torch.inference_mode():
            encoded = self._encode(wave)
        if encoded.latents.shape[1] != self.latent_dim:
            raise BackendError(f"{self.name}: encoder produced {encoded.latents.shape[1]}-d latents, "
                               f"expected {self.latent_dim}")
        encoded.latents = np.ascontiguousarray(encoded.latents, dtype=np.float32)
        return encoded

    def decode(self, latents: np.ndarray | torch.Tensor, *, reference: np.ndarray | None = None) -> np.ndarray:
        """``latents`` ``[T, D]`` -> float32 wave ``[channels, T * hop_length]``.

        ``reference``: the original wave these latents came from (``[channels, N]``), which a
        backend may use to seed its reconstruction (the mel backend takes its phase).
        """
        lat = latents.detach().cpu().numpy() if isinstance(latents, torch.Tensor) else np.asarray(latents)
        if lat.ndim != 2 or lat.shape[1] != self.latent_dim:
            raise BackendError(f"{self.name}: decode expects [T, {self.latent_dim}] latents, got {list(lat.shape)}")
        if not np.all(np.isfinite(lat)):
            raise BackendError(f"{self.name}: latents contain NaN or inf")
        with torch.inference_mode():
            wave = self._decode(np.ascontiguousarray(lat, dtype=np.float32), reference)
        return np.ascontiguousarray(wave, dtype=np.float32)

    def encode_long(self, wave: np.ndarray, segment_seconds: float = 30.0, context_seconds: float = 1.0,
                    cancel: Any = None) -> Encoded:
        """Encode in overlapping segments so memory stays bounded on long files.

        Each segment carries ``context_seconds`` of audio on both sides, whose frames are
        discarded, so convolutional receptive fields see real neighbours at the joins.
        ``cancel``: an optional ``CancelToken``, checked between segments.
        """
        wave = self._check_wave(wave)
        n = wave.shape[1]
        hop = self.hop_length
        seg = max(1, int(segment_seconds * self.sample_rate) // hop) * hop
        ctx = int(math.ceil(context_seconds * self.sample_rate / hop)) * hop
        if n <= seg + 2 * ctx:
            return self.encode(wave)
        total_frames = self.n_frames(n)
        lat_parts, code_parts = [], []
        start = 0
        while start < n:
            if cancel is not None:
                cancel.raise_if_cancelled()
            a = max(0, start - ctx)
            b = min(n, start + seg + ctx)
            enc = self.encode(wave[:, a:b])
            first = (start - a) // hop
            want = min(seg // hop, total_frames - start // hop)
            lat_parts.append(enc.latents[first:first + want])
            if enc.codes is not None:
                code_parts.append(enc.codes[first:first + want])
            start += seg
        latents = np.concatenate(lat_parts)
        codes = np.concatenate(code_parts) if code_parts else None
        return Encoded(latents=latents, codes=codes)

    def _check_wave(self, wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 1:
            wave = wave[None, :]
        if wave.ndim != 2 or wave.shape[0] != self.channels:
            raise BackendError(f"{self.name}: expected a [{self.channels}, N] wave, got shape {list(wave.shape)}")
        if wave.shape[1] == 0:
            raise BackendError(f"{self.name}: empty wave")
        return wave

    @abstractmethod
    def _encode(self, wave: np.ndarray) -> Encoded: ...

    @abstractmethod
    def _decode(self, latents: np.ndarray, reference: np.ndarray | None) -> np.ndarray: ...

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name}: {self.sample_rate} Hz x{self.channels}, "
                f"hop {self.hop_length} ({self.frame_rate:.2f} frames/s), {self.latent_dim}-d {self.kind}>")
