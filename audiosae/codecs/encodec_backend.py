"""EnCodec 24 kHz latent backends: ``encodec-24k`` and ``encodec-24k-continuous``.

Both run our own EnCodec model (``encodec_model.py``), which loads the released ``.th`` by
its official key names; the pip ``encodec`` package (which imports torchaudio) is never
imported, it is only the reference the tests hold the model to.  24 kHz mono, hop 320
(75 frames/s), 128-d latents, T = ceil(N / 320) frames; frame t covers samples
``[t*320, (t+1)*320)`` (base-class centres).

* ``encodec-24k`` (discrete): the *quantized* embedding, i.e. the sum of the codebook vectors
  the residual VQ picks at ``bandwidth`` kbps (default 6.0 = 8 codebooks;
  codebooks = floor(bandwidth / (log2(bins) * frame_rate / 1000))).  ``Encoded.codes`` is int64
  ``[T, K]``.  Codes come from ``quantizer.encode`` (per codebook, the nearest vector to the
  residual); our model has no training-time forward (k-means, EMA codebook updates).
* ``encodec-24k-continuous``: the encoder output before quantization.

Decoding always runs ``model.decoder`` on the latent vectors themselves (steered latents are
off the codebook grid; the decoder accepts any vectors) and trims to T*hop samples.

Weights
    * default: the released ``.th`` from Meta's CDN into the torch hub cache
      (``torch.hub.get_dir()/checkpoints``, where the pip package's own download puts it), checked
      against the sha256 prefix in its name, with progress and cancel, then loaded as below
      (the package's own loader would unpickle with ``weights_only=False``);
    * ``weights=PATH``: a local ``.th`` state dict (e.g. ``encodec_24khz-d7cc33bc.th``), loaded
      offline with ``torch.load(weights_only=True)`` and a strict ``load_state_dict``;
    * ``arch=dict(...)``: a non-default SEANet/RVQ architecture (keys in ``ARCH_KEYS``), which
      needs ``weights=``.  Sample rate, hop, latent size and frame rate then follow the arch.

Devices: the model is moved to the chosen device in eval mode.  On Apple MPS, ops that MPS
lacks fall back to the CPU because ``audiosae.devices`` sets ``PYTORCH_ENABLE_MPS_FALLBACK=1``
before torch first uses MPS.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BackendError
from . import BackendSpec
from .base import Encoded, LatentBackend
from .encodec_model import EncodecModel, build_model

CHECKPOINT_NAME = "encodec_24khz-d7cc33bc.th"
CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/encodec/v0/" + CHECKPOINT_NAME
CHECKPOINT_SHA256_PREFIX = CHECKPOINT_NAME.rsplit("-", 1)[1].split(".")[0]  # torch hub convention
# Not published next to the file.  The .th holds the same float32 tensors as the 93.1 MB
# facebook/encodec_24khz model.safetensors on the HF hub (shared/reference/codecs.md §A); the
# state dict of this architecture has 93,092,872 bytes of tensors (measured with
# encodec_model_24khz(pretrained=False)), plus a few kB of pickle framing.
CHECKPOINT_BYTES = 93_100_000

DEFAULT_BANDWIDTH = 6.0
DEFAULT_ARCH: dict[str, Any] = {
    "sample_rate": 24_000,
    "n_filters": 32,
    "dimension": 128,
    "ratios": [8, 5, 4, 2],  # decoder order; the encoder downsamples in reverse, hop = product
    "lstm": 2,
    "n_residual_layers": 1,
    "causal": True,
    "n_q": 32,
    "bins": 1024,
    "target_bandwidths": [1.5, 3.0, 6.0, 12.0, 24.0],
}
ARCH_KEYS = tuple(DEFAULT_ARCH)

_DESCRIPTION_Q = ("Meta EnCodec 24 kHz: quantized embedding (sum of the RVQ codebook vectors, "
                  "6 kbps = 8 codebooks by default)")
_DESCRIPTION_C = "Meta EnCodec 24 kHz: continuous encoder output before quantization"

SPECS = [
    BackendSpec(name="encodec-24k", factory="audiosae.codecs.encodec_backend:EncodecBackend",
                sample_rate=24_000, channels=1, hop_length=320, latent_dim=128, kind="discrete",
                description=_DESCRIPTION_Q, download_bytes=CHECKPOINT_BYTES),
    BackendSpec(name="encodec-24k-continuous",
                factory="audiosae.codecs.encodec_backend:EncodecContinuousBackend",
                sample_rate=24_000, channels=1, hop_length=320, latent_dim=128, kind="continuous",
                description=_DESCRIPTION_C, download_bytes=CHECKPOINT_BYTES),
]


def resolve_arch(arch: Mapping[str, Any] | None) -> dict[str, Any]:
    """``DEFAULT_ARCH`` updated by ``arch``; unknown keys raise ``BackendError``."""
    if arch is None:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULT_ARCH.items()}
    if not isinstance(arch, Mapping):
        raise BackendError(f"encodec: arch must be a dict, got {type(arch).__name__}")
    unknown = sorted(set(arch) - set(ARCH_KEYS))
    if unknown:
        raise BackendError(f"encodec: unknown arch keys {unknown}; allowed: {', '.join(ARCH_KEYS)}")
    merged = {**resolve_arch(None), **arch}
    try:
        merged["ratios"] = [int(r) for r in merged["ratios"]]
        merged["target_bandwidths"] = [float(b) for b in merged["target_bandwidths"]]
        for key in ("sample_rate", "n_filters", "dimension", "lstm", "n_residual_layers", "n_q", "bins"):
            merged[key] = int(merged[key])
        merged["causal"] = bool(merged["causal"])
    except (TypeError, ValueError) as exc:
        raise BackendError(f"encodec: bad arch value ({exc})") from None
    if not merged["ratios"] or min(merged["ratios"]) < 1 or not merged["target_bandwidths"]:
        raise BackendError("encodec: arch needs non-empty positive ratios and target_bandwidths")
    if merged["bins"] < 2 or merged["bins"] & (merged["bins"] - 1):
        raise BackendError(f"encodec: arch bins must be a power of two, got {merged['bins']}")
    return merged


def build_encodec_model(arch: Mapping[str, Any] | None = None) -> EncodecModel:
    """An untrained EnCodec model (mono, weight-norm convs) with architecture ``arch``.

    Untrained codebooks are Kaiming-uniform; a loaded state dict replaces them.
    """
    return build_model(resolve_arch(arch))


def _load_state_dict_file(model: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise BackendError(f"encodec: weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt pickle, foreign objects refused by weights_only, I/O
        raise BackendError(f"encodec: cannot read weights {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackendError(f"encodec: {path} is not a state dict of tensors (expected a pip-encodec "
                           f".th file such as {CHECKPOINT_NAME})")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even with strict=False
        detail = " ".join(str(exc).split())
        raise BackendError(f"encodec: {path} does not fit the architecture (pass arch=... to match "
                           f"it): {detail[:600]}") from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing keys {_name_list(result.missing_keys)}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys {_name_list(result.unexpected_keys)}")
    if problems:
        hint = ""
        if any(k.startswith(("encoder.layers.", "quantizer.layers.")) for k in result.unexpected_keys):
            hint = " (this looks like a transformers checkpoint; use the pip encodec .th file)"
        raise BackendError(f"encodec: {path} does not match the model: {'; '.join(problems)}{hint}")


def _name_list(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{f', ... ({len(names) - limit} more)' if len(names) > limit else ''}]"


def _download_pretrained(progress: Any = None, cancel: Any = None) -> torch.nn.Module:
    """The released 24 kHz model: our own verified download, then a ``weights_only`` load.

    Not ``EncodecModel.encodec_model_24khz(pretrained=True)``: that goes through
    ``torch.hub.load_state_dict_from_url``, which unpickles with ``weights_only=False``.
    The file lands where the package's own download would put it, so either finds it.
    """
    from ..hub import download_url_file  # lazy: only a download needs it

    cache = Path(torch.hub.get_dir()) / "checkpoints"
    extra = {} if progress is None else {"progress": progress}
    try:
        path = download_url_file(CHECKPOINT_URL, cache / CHECKPOINT_NAME, sha256_prefix=CHECKPOINT_SHA256_PREFIX,
                                 cancel=cancel, **extra)
    except BackendError as exc:
        raise BackendError(
            f"encodec: could not get the EnCodec 24 kHz weights ({exc}). Download {CHECKPOINT_URL} "
            f"(about 93 MB) on a machine with internet access, then either copy it into {cache} or "
            f"build the backend with weights=PATH/TO/{CHECKPOINT_NAME}") from None
    model = build_encodec_model(None)
    _load_state_dict_file(model, path)
    return model


class _EncodecBase(LatentBackend):
    """Shared loading, geometry and decoding of both EnCodec backends."""

    channels = 1
    # The decoder is causal: right context changes nothing; 8 frames of left context make
    # chunked decoding match a whole decode to ~89 dB (bench_realtime.py).
    context_frames = (8, 0)

    def __init__(self, device: torch.device | str = "cpu", weights: str | Path | None = None,
                 arch: Mapping[str, Any] | None = None, progress: Any = None, cancel: Any = None):
        super().__init__(device)
        self._arch_option = None if arch is None else resolve_arch(arch)
        spec = resolve_arch(arch)
        self._weights_option = None if weights is None else str(Path(weights).expanduser().resolve())
        if weights is None:
            if spec != resolve_arch(None):
                raise BackendError("encodec: a custom arch has no published weights; pass weights=PATH")
            model = _download_pretrained(progress, cancel)
        else:
            model = build_encodec_model(spec)
            _load_state_dict_file(model, Path(self._weights_option))
        self.model = model.to(self.device).eval()
        self.arch = spec
        self.sample_rate = spec["sample_rate"]
        self.hop_length = int(np.prod(spec["ratios"]))
        self.latent_dim = spec["dimension"]

    def options(self) -> dict:
        return {"weights": self._weights_option, "arch": self._arch_option}

    def _embed(self, wave: np.ndarray) -> torch.Tensor:
        """Encoder output ``[1, D, T]`` for a ``[1, N]`` wave."""
        if not np.all(np.isfinite(wave)):
            raise BackendError(f"{self.name}: the wave contains NaN or inf samples")
        samples = torch.from_numpy(np.ascontiguousarray(wave)).to(self.device).unsqueeze(0)
        emb = self.model.encoder(samples)
        n_frames = self.n_frames(wave.shape[1])
        if emb.shape[-1] < n_frames:  # SEANet pads to whole hops itself; guard against changes
            raise BackendError(f"{self.name}: encoder returned {emb.shape[-1]} frames for "
                               f"{wave.shape[1]} samples, expected {n_frames}")
        return emb[..., :n_frames]

    def _decode(self, latents: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
        emb = torch.from_numpy(latents.T.copy()).to(self.device).unsqueeze(0)  # [1, D, T]
        length = latents.shape[0] * self.hop_length
        wave = self.model.decoder(emb)[0, :, :length]
        if wave.shape[-1] < length:
            wave = torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))
        return wave.cpu().numpy()


class EncodecBackend(_EncodecBase):
    """``encodec-24k``: quantized embeddings (sum of codebook vectors) and codes ``[T, K]``."""

    name = "encodec-24k"
    kind = "discrete"
    description = _DESCRIPTION_Q

    def __init__(self, device: torch.device | str = "cpu", bandwidth: float | None = None,
                 weights: str | Path | None = None, arch: Mapping[str, Any] | None = None,
                 progress: Any = None, cancel: Any = None):
        """``bandwidth`` (kbps) must be one of the arch's target bandwidths; None picks 6.0
        when the arch offers it, else the largest one."""
        super().__init__(device, weights=weights, arch=arch, progress=progress, cancel=cancel)
        choices = self.arch["target_bandwidths"]
        if bandwidth is None:
            bandwidth = DEFAULT_BANDWIDTH if DEFAULT_BANDWIDTH in choices else max(choices)
        if float(bandwidth) not in choices:
            raise BackendError(f"{self.name}: bandwidth {bandwidth} kbps not offered; choose one of "
                               f"{', '.join(f'{b:g}' for b in choices)}")
        self.bandwidth = float(bandwidth)
        self.n_codebooks = self.model.quantizer.get_num_quantizers_for_bandwidth(
            self.model.frame_rate, self.bandwidth)
        if self.n_codebooks > self.arch["n_q"]:
            raise BackendError(f"{self.name}: {self.bandwidth:g} kbps needs {self.n_codebooks} codebooks "
                               f"but the model has {self.arch['n_q']}")

    def options(self) -> dict:
        return {"bandwidth": self.bandwidth, **super().options()}

    def _encode(self, wave: np.ndarray) -> Encoded:
        emb = self._embed(wave)
        codes = self.model.quantizer.encode(emb, self.model.frame_rate, self.bandwidth)  # [K, 1, T]
        quantized = self.model.quantizer.decode(codes)                                    # [1, D, T]
        return Encoded(latents=quantized[0].T.cpu().numpy(),
                       codes=codes[:, 0].T.to(torch.int64).cpu().numpy())

    def latents_from_codes(self, codes: np.ndarray) -> np.ndarray:
        """Codes ``[T, K]`` -> latents ``[T, D]`` (sum of the chosen codebook vectors)."""
        codes = np.asarray(codes)
        if not np.issubdtype(codes.dtype, np.integer):
            raise BackendError(f"{self.name}: codes must be integers, got {codes.dtype}")
        if codes.ndim != 2 or not 1 <= codes.shape[1] <= self.arch["n_q"]:
            raise BackendError(f"{self.name}: codes must be [T, K] with 1 <= K <= {self.arch['n_q']}, "
                               f"got {list(codes.shape)}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.arch["bins"]):
            raise BackendError(f"{self.name}: codes must lie in [0, {self.arch['bins']})")
        with torch.inference_mode():
            indices = torch.from_numpy(codes.astype(np.int64).T.copy()).to(self.device).unsqueeze(1)
            return self.model.quantizer.decode(indices)[0].T.float().cpu().numpy()


class EncodecContinuousBackend(_EncodecBase):
    """``encodec-24k-continuous``: the encoder output before quantization."""

    name = "encodec-24k-continuous"
    kind = "continuous"
    description = _DESCRIPTION_C

    def _encode(self, wave: np.ndarray) -> Encoded:
        return Encoded(latents=self._embed(wave)[0].T.cpu().numpy())
