"""``diffrhythm-vae``: DiffRhythm's latent codec (44.1 kHz stereo, hop 2048, 64-d continuous).

The released ``vae_model.pt`` (hub repo ``ASLP-lab/DiffRhythm-vae``) is a TorchScript export of
a Stable-Audio-Open ("Oobleck") VAE with two methods:

* ``encode_export(audio[B, 2, N]) -> [B, 128, N / 2048]``: posterior mean (64) then scale (64);
* ``decode_export(z[B, 64, T]) -> [B, 2, T * 2048]``.

Latents here are the posterior **mean** (deterministic, what an SAE should see); the DiT was
trained on samples ``mean + (softplus(scale) + 1e-4) * eps`` of the same posterior.  Audio is
encoded as given (the official edit mode peak-normalises its reference to -6 dBFS first; that
is a caller's choice, and it would erase the loudness the probes measure).

Long audio is processed in chunks of 128 latent frames overlapping by 32, as the official
helpers do: at internal boundaries 16 frames are cut from each side (no cross-fade) and the
last chunk is aligned to the end, so memory stays bounded for whole songs.

Trust model: a TorchScript file is a *program*, not just weights: ``torch.jit.load`` does not
run pickled Python, but the saved methods run whatever TorchScript code the file contains.
Load only files from sources you trust (the official hub repo, or your own copy of it).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BackendError
from ..jobs import CancelToken
from . import BackendSpec
from .base import Encoded, LatentBackend

VAE_REPO = "ASLP-lab/DiffRhythm-vae"
VAE_FILE = "vae_model.pt"
SAMPLE_RATE = 44100
HOP = 2048
LATENT_DIM = 64
DEFAULT_CHUNK_FRAMES = 128
DEFAULT_OVERLAP_FRAMES = 32

SPECS = [
    BackendSpec(
        name="diffrhythm-vae",
        factory="audiosae.codecs.diffrhythm_vae:DiffRhythmVAE",
        sample_rate=SAMPLE_RATE,
        channels=2,
        hop_length=HOP,
        latent_dim=LATENT_DIM,
        kind="continuous",
        description="DiffRhythm's VAE (Stable Audio Open 'Oobleck', decoder fine-tuned): 44.1 kHz stereo, "
                    "21.5 frames/s, 64-d posterior mean. TorchScript file from ASLP-lab/DiffRhythm-vae.",
        download_bytes=625_000_000,  # approximate: the hub lists vae_model.pt as 625 MB
    ),
]


def chunk_plan(total: int, chunk: int, overlap: int) -> list[tuple[int, int, int]]:
    """How to cover ``total`` frames with chunks of ``chunk`` frames overlapping by ``overlap``.

    Returns ``(start, keep_from, keep_to)`` per chunk: the chunk spans frames
    ``[start, start + chunk)`` and its frames ``[keep_from, keep_to)`` (absolute) are kept.
    Chunks are written in order, so a later chunk overwrites an earlier one where the
    end-aligned last chunk overlaps it (the official behaviour).  One chunk when it all fits.
    """
    if chunk < 1 or not 0 <= overlap < chunk:
        raise BackendError(f"bad chunking: chunk {chunk} frames, overlap {overlap} (need 0 <= overlap < chunk)")
    if total <= chunk:
        return [(0, 0, total)]
    starts = list(range(0, total - chunk + 1, chunk - overlap))
    if starts[-1] + chunk != total:
        starts.append(total - chunk)  # last chunk aligned to the end
    trim = overlap // 2
    plan = []
    for i, start in enumerate(starts):
        keep_from = start + (trim if i > 0 else 0)
        keep_to = start + chunk - (trim if i < len(starts) - 1 else 0)
        plan.append((start, keep_from, keep_to))
    return plan


class DiffRhythmVAE(LatentBackend):
    """The DiffRhythm VAE as a latent backend.

    ``weights``: a local ``vae_model.pt`` (offline use); otherwise it is downloaded from
    ``ASLP-lab/DiffRhythm-vae`` (``revision`` pins a commit).  ``chunked``: process long audio in
    ``chunk_frames`` chunks overlapping by ``overlap_frames`` latent frames.  On Apple MPS the
    decoder runs on the CPU (the MPS backend rejects its > 65536-channel convolution).
    """

    name = "diffrhythm-vae"
    sample_rate = SAMPLE_RATE
    channels = 2
    hop_length = HOP
    latent_dim = LATENT_DIM
    kind = "continuous"
    description = SPECS[0].description

    def __init__(self, device: torch.device | str = "cpu", *, weights: str | Path | None = None,
                 revision: str | None = None, chunked: bool = True, chunk_frames: int = DEFAULT_CHUNK_FRAMES,
                 overlap_frames: int = DEFAULT_OVERLAP_FRAMES, progress: Any = None, cancel: CancelToken | None = None):
        super().__init__(device)
        chunk_plan(2 * chunk_frames, chunk_frames, overlap_frames)  # validates the chunk settings
        self.chunked = bool(chunked)
        self.chunk_frames = int(chunk_frames)
        self.overlap_frames = int(overlap_frames)
        self.revision = revision
        self._weights_option = str(weights) if weights is not None else None
        self.weights_path = self._resolve_weights(weights, revision, progress, cancel)
        self.module = self._load(self.device)
        self._cpu_decoder: torch.jit.ScriptModule | None = None

    # ---- loading --------------------------------------------------------------------------------

    @staticmethod
    def _resolve_weights(weights, revision, progress, cancel) -> Path:
        if weights is not None:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise BackendError(f"{path}: DiffRhythm VAE weights (vae_model.pt) not found")
            return path
        try:
            from ..hub import download_hub_file  # lazy: only a download needs the hub client
        except ModuleNotFoundError as exc:
            if exc.name != "audiosae.hub":
                raise
            raise BackendError("diffrhythm-vae: no hub downloader available; "
                               "pass weights=PATH to vae_model.pt") from None
        extra: dict[str, Any] = {}
        if progress is not None:
            extra["progress"] = progress
        return Path(download_hub_file(VAE_REPO, VAE_FILE, revision=revision, cancel=cancel, **extra))

    def _load(self, device: torch.device) -> torch.jit.ScriptModule:
        try:
            with warnings.catch_warnings():
                # torch >= 2.10 deprecates TorchScript; the released VAE exists only in that form.
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(self.weights_path), map_location="cpu")
        except Exception as exc:  # not a TorchScript archive, truncated file, ...
            raise BackendError(f"{self.weights_path}: cannot load the DiffRhythm VAE as TorchScript "
                               f"({type(exc).__name__}: {exc})") from exc
        for method in ("encode_export", "decode_export"):
            if not hasattr(module, method):
                raise BackendError(f"{self.weights_path}: TorchScript module has no {method}(); "
                                   "not a DiffRhythm VAE export")
        return module.to(device).eval()

    def _decoder(self) -> tuple[torch.jit.ScriptModule, torch.device]:
        if self.device.type != "mps":
            return self.module, self.device
        if self._cpu_decoder is None:
            self._cpu_decoder = self._load(torch.device("cpu"))
        return self._cpu_decoder, torch.device("cpu")

    def options(self) -> dict:
        opts: dict[str, Any] = {"chunked": self.chunked, "chunk_frames": self.chunk_frames,
                                "overlap_frames": self.overlap_frames}
        if self._weights_option is not None:
            opts["weights"] = self._weights_option
        if self.revision is not None:
            opts["revision"] = self.revision
        return opts

    # ---- encode / decode -----------------------------------------------------------------------

    def _encode(self, wave: np.ndarray) -> Encoded:
        frames = math.ceil(wave.shape[1] / HOP)
        audio = torch.zeros(1, 2, frames * HOP)
        audio[0, :, : wave.shape[1]] = torch.from_numpy(wave)  # zero-pad to whole hops
        audio = audio.to(self.device)
        moments = self._run_chunked(audio, frames, self.module.encode_export, in_scale=HOP, out_scale=1,
                                    out_channels=2 * LATENT_DIM)
        mean = moments[0, :LATENT_DIM]  # [64, T]; the other half is the posterior scale
        return Encoded(latents=mean.transpose(0, 1).float().cpu().numpy())

    def _decode(self, latents: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
        module, device = self._decoder()
        z = torch.from_numpy(latents).transpose(0, 1).unsqueeze(0).contiguous().to(device)  # [1, 64, T]
        audio = self._run_chunked(z, latents.shape[0], module.decode_export, in_scale=1, out_scale=HOP,
                                  out_channels=2)
        return audio[0].float().cpu().numpy()

    def _run_chunked(self, x: torch.Tensor, frames: int, fn, *, in_scale: int, out_scale: int,
                     out_channels: int) -> torch.Tensor:
        """Apply ``fn`` chunk by chunk along time; ``in_scale``/``out_scale``: samples per frame."""
        chunk = self.chunk_frames if self.chunked else max(frames, 1)
        plan = chunk_plan(frames, chunk, self.overlap_frames if self.chunked else 0)
        out: torch.Tensor | None = None
        for start, keep_from, keep_to in plan:
            width = min(chunk, frames)
            piece = fn(x[:, :, start * in_scale:(start + width) * in_scale])
            expected = (x.shape[0], out_channels, width * out_scale)
            if tuple(piece.shape) != expected:
                raise BackendError(f"{self.name}: VAE returned shape {list(piece.shape)}, expected {list(expected)}")
            if out is None:
                out = piece.new_zeros(x.shape[0], out_channels, frames * out_scale)
            out[:, :, keep_from * out_scale:keep_to * out_scale] = \
                piece[:, :, (keep_from - start) * out_scale:(keep_to - start) * out_scale]
        assert out is not None
        return out
