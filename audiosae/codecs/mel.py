"""Built-in log-mel latent backend ``mel``: the offline default, nothing to download.

24 kHz mono, hop 320 samples (75 frames/s), 128 log-mel bins, continuous latents.

Latent definition
    ``latents[t, m] = ln(max(sum_f M[m, f] * |X[t, f]|, FLOOR))``

    * ``X`` is the STFT with a periodic Hann window of ``n_fft`` samples, scaled by
      ``2 / sum(window)`` so that a full-scale sine on a bin centre has magnitude 1
      (0 dBFS -> 0 nats).
    * ``M`` holds triangular filters with peak 1 on the Slaney mel scale (linear below 1 kHz,
      logarithmic above; the same as librosa ``mel(htk=False, norm=None)``) from ``fmin`` to
      ``fmax``.
    * It is a *magnitude* mel spectrogram, not a power one: one nat is 20*log10(e) = 8.69 dB.
      Magnitudes keep the mel map linear in the quantity that phase reconstruction needs.
    * ``FLOOR = 1e-5`` (-100 dBFS), so digital silence is ln(1e-5) = -11.51.

Framing (agrees exactly with the base class ``n_frames`` and ``frame_centers``)
    A wave of N samples gives T = max(1, ceil(N / hop)) frames.  It is zero-padded at the end to
    T*hop samples, then by ``(n_fft - hop) / 2`` zeros on both sides, and cut every ``hop``
    samples with no further centring.  The window of frame t is thus centred on sample
    ``t*hop + hop/2``, i.e. at ``(t + 0.5) * hop / sample_rate`` seconds, the base-class
    default.  Audio before sample 0 and after the end counts as silence, so hop-aligned
    segments with at least ``(n_fft - hop) / 2`` samples of context (``encode_long``) give the
    same frames as the whole file.

Decoding
    1. Mel -> linear magnitudes ``S >= 0``: start from a smooth spread of each band's level over
       its bins, or, given a ``reference`` wave and ``reference_detail=True``, from the
       reference's own STFT magnitudes (keeping its harmonics inside each band), then run
       ``mel_iters`` multiplicative NNLS updates towards ``M S = exp(latents)``.
    2. Phase by fast Griffin-Lim (Perraudin et al. 2013, momentum 0.99): from a seeded random
       phase with ``griffin_lim_iters`` iterations, or from the reference's STFT phase with only
       ``seeded_iters``.  Unchanged latents plus their reference decode back to the reference
       almost exactly; steered ones keep its phase and fine structure where nothing changed.
    3. Least-squares overlap-add inverse of the framing above: exactly T*hop samples.

``reference`` sample 0 must line up with latent frame 0: for frames ``[a, b)`` of a clip pass
``wave[:, a*hop : b*hop]`` (it is cut or zero-extended to T*hop samples).  A chunk decoded on
its own differs from a whole decode near its edges; for seamless playback decode frames
``[a - c, b + c)`` with ``c = context_frames`` and keep the middle ``(b - a) * hop`` samples.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BackendError
from . import BackendSpec
from .base import Encoded, LatentBackend

SAMPLE_RATE = 24_000
HOP_LENGTH = 320
FLOOR = 1e-5
# Steered latents can be arbitrarily large; exp() of more than this would overflow float32
# in the NNLS products.  exp(20) is +174 dBFS, far louder than anything meaningful.
_MAX_LOG_MAGNITUDE = 20.0
# Fraction of the smooth band estimate mixed into the reference magnitudes, so bins the
# reference leaves silent can still receive energy that steering asks for (-60 dB).
_DETAIL_BLEND = 1e-3
_ENCODE_BLOCK_FRAMES = 4096  # bounds encode memory on long waves (~17 MB of frames)

SPECS = [
    BackendSpec(
        name="mel",
        factory="audiosae.codecs.mel:MelBackend",
        sample_rate=SAMPLE_RATE,
        channels=1,
        hop_length=HOP_LENGTH,
        latent_dim=128,
        kind="continuous",
        description="Built-in 128-bin log-mel spectrogram (24 kHz mono, 75 frames/s); "
                    "no download, decodes with Griffin-Lim.",
        download_bytes=None,
    ),
]


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: 3 mels per 200 Hz below 1 kHz, logarithmic (27 mels per x6.4) above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    log_part = 15.0 + np.log(np.maximum(hz, 1000.0) / 1000.0) * 27.0 / math.log(6.4)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * 200.0 / 3.0
    log_part = 1000.0 * np.exp((np.maximum(mel, 15.0) - 15.0) * math.log(6.4) / 27.0)
    return np.where(mel >= 15.0, log_part, linear)


def mel_band_edges(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """``n_mels + 2`` band edge frequencies (Hz); band m rises from edge m, peaks at m+1, ends at m+2."""
    return _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular mel filters with peak 1, ``[n_mels, n_fft // 2 + 1]`` float64."""
    edges = mel_band_edges(n_mels, fmin, fmax)
    bin_hz = np.arange(n_fft // 2 + 1, dtype=np.float64) * sample_rate / n_fft
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bin_hz[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


class MelBackend(LatentBackend):
    """Log-magnitude mel spectrogram latents with NNLS + Griffin-Lim decoding (see module doc)."""

    name = "mel"
    sample_rate = SAMPLE_RATE
    channels = 1
    hop_length = HOP_LENGTH
    latent_dim = 128
    kind = "continuous"
    description = SPECS[0].description

    def __init__(self, device: torch.device | str = "cpu", n_fft: int = 1024, n_mels: int = 128,
                 fmin: float = 0.0, fmax: float = 12_000.0, griffin_lim_iters: int = 32,
                 seeded_iters: int = 4, mel_iters: int = 8, reference_detail: bool = True,
                 momentum: float = 0.99, seed: int = 0):
        """Build the filterbank and window on ``device``.

        ``griffin_lim_iters``/``seeded_iters``: phase iterations without / with a reference.
        ``mel_iters``: NNLS updates from mel bands to linear magnitudes.
        ``reference_detail``: start the magnitudes from the reference's spectrum (not only its
        phase).  ``seed``: the random initial phase when there is no reference.
        """
        super().__init__(device)
        hop = self.hop_length
        if n_fft % 2 or n_fft < 2 * hop:
            raise BackendError(f"mel: n_fft must be even and at least {2 * hop} (twice the hop), got {n_fft}")
        if not 0.0 <= fmin < fmax <= self.sample_rate / 2:
            raise BackendError(f"mel: need 0 <= fmin < fmax <= {self.sample_rate // 2} Hz, "
                               f"got fmin={fmin}, fmax={fmax}")
        if n_mels < 1:
            raise BackendError(f"mel: n_mels must be positive, got {n_mels}")
        if min(griffin_lim_iters, seeded_iters, mel_iters) < 0 or not 0.0 <= momentum < 1.0:
            raise BackendError("mel: iteration counts must be >= 0 and momentum in [0, 1)")
        filters = mel_filterbank(self.sample_rate, n_fft, n_mels, fmin, fmax)
        empty = np.flatnonzero(filters.sum(axis=1) == 0)
        if empty.size:
            raise BackendError(f"mel: {empty.size} of {n_mels} mel bands fall between FFT bins "
                               f"(first: band {empty[0]}); use fewer mels or a larger n_fft")
        self.n_fft = int(n_fft)
        self.n_mels = int(n_mels)
        self.latent_dim = self.n_mels
        self.fmin = float(fmin)
        self.fmax = float(fmax)
        self.griffin_lim_iters = int(griffin_lim_iters)
        self.seeded_iters = int(seeded_iters)
        self.mel_iters = int(mel_iters)
        self.reference_detail = bool(reference_detail)
        self.momentum = float(momentum)
        self.seed = int(seed)
        self._side_pad = (self.n_fft - hop) // 2

        dev = self.device
        # Triangles overlap pairwise, so each FFT bin feeds at most two bands: the mel map and
        # its transpose become a few gathers / scatters, ~50x fewer flops than dense matmuls.
        per_bin = int((filters > 0).sum(axis=0).max())
        order = np.argsort(-filters, axis=0, kind="stable")[:per_bin]                   # [k, F]
        self._bin_bands = torch.tensor(order, dtype=torch.long, device=dev)
        self._bin_weights = torch.tensor(np.take_along_axis(filters, order, axis=0),
                                         dtype=torch.float32, device=dev)                # [k, F]
        band_weight = torch.tensor(filters.sum(axis=1), dtype=torch.float32, device=dev)  # [M]
        bin_weight = torch.tensor(filters.sum(axis=0), dtype=torch.float32, device=dev)   # [F]
        self._uncovered = (bin_weight == 0).to(torch.float32)
        # Smooth inverse: spread each band's level over its bins, weighted by the triangles.
        self._spread_band_scale = 1.0 / band_weight                                      # [M]
        self._spread_bin_scale = 1.0 / torch.where(bin_weight > 0, bin_weight, 1.0)      # [F]
        self._window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float32, device=dev)
        self._scale = 2.0 / float(self._window.sum())

    # ---- facts ----------------------------------------------------------------------------
    def options(self) -> dict:
        return {"n_fft": self.n_fft, "n_mels": self.n_mels, "fmin": self.fmin, "fmax": self.fmax,
                "griffin_lim_iters": self.griffin_lim_iters, "seeded_iters": self.seeded_iters,
                "mel_iters": self.mel_iters, "reference_detail": self.reference_detail,
                "momentum": self.momentum, "seed": self.seed}

    def mel_frequencies(self) -> np.ndarray:
        """Centre frequency (Hz) of each latent dimension, ``[n_mels]``."""
        return mel_band_edges(self.n_mels, self.fmin, self.fmax)[1:-1].copy()

    @property
    def context_frames(self) -> int:
        """Frames of context to decode on each side of a chunk, then drop, for seamless joins.

        Twice the number of neighbouring frames whose windows reach into the chunk (4 at the
        defaults, raised to 8): Griffin-Lim spreads edge effects a little further each iteration, and with
        this margin chunks match a whole decode to about 70 dB SNR (bench_codecs.py).
        """
        reaching = math.ceil((self._side_pad + self.hop_length) / self.hop_length) - 1
        # Strongly steered chunks need more: 4 frames gave 21 dB against a whole decode,
        # 8 gave 88 dB (bench_realtime.py), so never fewer than 8.
        return max(8, 2 * reaching)

    # ---- STFT with the framing of the module docstring -------------------------------------
    def _padded(self, samples: torch.Tensor, n_frames: int) -> torch.Tensor:
        """``samples`` cut or zero-extended to ``n_frames * hop``, plus the side padding."""
        length = n_frames * self.hop_length
        samples = samples[..., :length]
        return F.pad(samples, (self._side_pad, self._side_pad + length - samples.shape[-1]))

    def _stft_of_padded(self, padded: torch.Tensor) -> torch.Tensor:
        """``[..., L + n_fft - hop]`` padded samples -> complex ``[..., T, F]``."""
        frames = padded.unfold(-1, self.n_fft, self.hop_length)
        return torch.fft.rfft(frames * self._window, dim=-1) * self._scale

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """Sum ``[T, n_fft]`` frames spaced ``hop`` apart, cropped to the ``T * hop`` kept samples."""
        n_frames = frames.shape[0]
        total = (n_frames - 1) * self.hop_length + self.n_fft
        summed = F.fold(frames.T.unsqueeze(0), output_size=(1, total), kernel_size=(1, self.n_fft),
                        stride=(1, self.hop_length)).reshape(total)
        return summed[self._side_pad:self._side_pad + n_frames * self.hop_length]

    def _inverse_envelope(self, n_frames: int) -> torch.Tensor:
        """1 / (sum of squared windows) over the kept samples, for the least-squares inverse."""
        squared = (self._window ** 2).expand(n_frames, self.n_fft)
        # >= 0.6 everywhere in the kept span because n_fft >= 2 hop: no division blows up.
        return 1.0 / self._overlap_add(squared)

    def _istft(self, spectrum: torch.Tensor, inverse_envelope: torch.Tensor) -> torch.Tensor:
        """Least-squares inverse of ``_stft_of_padded``: complex ``[T, F]`` -> ``[T * hop]``."""
        frames = torch.fft.irfft(spectrum, n=self.n_fft, dim=-1) * (self._window / self._scale)
        return self._overlap_add(frames) * inverse_envelope

    # ---- encode ---------------------------------------------------------------------------
    def _encode(self, wave: np.ndarray) -> Encoded:
        if not np.all(np.isfinite(wave)):
            raise BackendError("mel: the wave contains NaN or inf samples")
        n_frames = self.n_frames(wave.shape[1])
        padded = self._padded(torch.from_numpy(np.ascontiguousarray(wave[0])).to(self.device), n_frames)
        parts = []
        for first in range(0, n_frames, _ENCODE_BLOCK_FRAMES):
            count = min(_ENCODE_BLOCK_FRAMES, n_frames - first)
            start = first * self.hop_length
            block = padded[start:start + (count - 1) * self.hop_length + self.n_fft]
            magnitude = self._stft_of_padded(block).abs()
            parts.append(torch.log(self._to_mel(magnitude).clamp_min(FLOOR)))
        return Encoded(latents=torch.cat(parts).cpu().numpy())

    # ---- decode ---------------------------------------------------------------------------
    def _decode(self, latents: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
        target = torch.from_numpy(latents).to(self.device).clamp_max(_MAX_LOG_MAGNITUDE).exp()  # [T, M]
        n_frames = target.shape[0]
        smooth = self._from_mel(target * self._spread_band_scale) * self._spread_bin_scale  # [T, F]
        if reference is None:
            generator = torch.Generator(device="cpu").manual_seed(self.seed)
            angles = torch.rand(smooth.shape, generator=generator, dtype=torch.float32) * (2 * math.pi)
            phase = torch.polar(torch.ones_like(angles), angles).to(self.device)
            magnitude = self._magnitudes_from_mel(target, smooth)
            iterations = self.griffin_lim_iters
        else:
            ref_spectrum = self._reference_spectrum(reference, n_frames)
            ref_magnitude = ref_spectrum.abs()
            phase = torch.where(ref_magnitude > 0, torch.sgn(ref_spectrum), torch.ones_like(ref_spectrum))
            start = ref_magnitude + _DETAIL_BLEND * smooth if self.reference_detail else smooth
            magnitude = self._magnitudes_from_mel(target, start)
            iterations = self.seeded_iters
        inverse_envelope = self._inverse_envelope(n_frames)
        phase = self._griffin_lim(magnitude, phase, iterations, inverse_envelope)
        wave = self._istft(magnitude * phase, inverse_envelope)
        return wave.unsqueeze(0).cpu().numpy()

    def _reference_spectrum(self, reference: np.ndarray, n_frames: int) -> torch.Tensor:
        try:
            reference = self._check_wave(reference)
        except BackendError as exc:
            raise BackendError(f"decode reference: {exc}") from None
        if not np.all(np.isfinite(reference)):
            raise BackendError("mel: decode reference contains NaN or inf samples")
        samples = torch.from_numpy(np.ascontiguousarray(reference[0])).to(self.device)
        return self._stft_of_padded(self._padded(samples, n_frames))

    def _magnitudes_from_mel(self, target: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Non-negative ``S [T, F]`` with ``S @ M.T ~ target``: multiplicative NNLS from ``start``.

        The update ``S *= (Y M) / (S M^T M)`` keeps S >= 0 and leaves exact solutions fixed, so a
        start taken from the matching reference stays put.  Bins no band covers keep ``start``.
        """
        magnitude = start
        numerator = self._from_mel(target)                                                # [T, F]
        for _ in range(self.mel_iters):
            denominator = self._from_mel(self._to_mel(magnitude)).add_(1e-12)
            # Uncovered bins have numerator 0: a ratio of 0 + 1 keeps them as they started.
            magnitude = magnitude * (numerator / denominator + self._uncovered)
        return magnitude

    def _to_mel(self, magnitude: torch.Tensor) -> torch.Tensor:
        """``[T, F] -> [T, M]``: ``magnitude @ M.T`` using the filters' sparsity."""
        mel = magnitude.new_zeros(magnitude.shape[0], self.n_mels)
        for bands, weights in zip(self._bin_bands, self._bin_weights):
            mel.index_add_(1, bands, magnitude * weights)
        return mel

    def _from_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """``[T, M] -> [T, F]``: ``mel @ M`` using the filters' sparsity."""
        out = mel.index_select(1, self._bin_bands[0]) * self._bin_weights[0]
        for bands, weights in zip(self._bin_bands[1:], self._bin_weights[1:]):
            out += mel.index_select(1, bands) * weights
        return out

    def _griffin_lim(self, magnitude: torch.Tensor, phase: torch.Tensor, iterations: int,
                     inverse_envelope: torch.Tensor) -> torch.Tensor:
        """Fast Griffin-Lim: unit-modulus phase ``[T, F]`` consistent with ``magnitude``."""
        n_frames = magnitude.shape[0]
        previous = None
        for _ in range(iterations):
            # Nearest consistent STFT of a signal that is zero outside the T*hop samples.
            signal = self._istft(magnitude * phase, inverse_envelope)
            projected = self._stft_of_padded(self._padded(signal, n_frames))
            accelerated = projected if previous is None else projected + self.momentum * (projected - previous)
            previous = projected
            phase = torch.sgn(accelerated)  # a / |a|; 0 stays 0
        return phase
