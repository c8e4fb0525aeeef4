"""WavTokenizer latent backends (24 kHz mono, one 4096-entry codebook of 512-d vectors).

Two latent choices per released checkpoint:

* ``wavtokenizer-40`` etc. ("discrete"): the codebook vector chosen for each frame, with
  the code index as ``codes [T, 1]``.  These are what the official decoder consumes.
* ``…-continuous``: the SEANet encoder output before vector quantisation.

``decode`` runs the Vocos backbone + ISTFT head (bandwidth id 0, as the official
``infer.py``) on whatever 512-d frames it gets, so edited or SAE-reconstructed latents can
be heard; the output is ``T * hop`` samples.  Importing this module is cheap: the model
code loads when a backend is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ...errors import BackendError
from ...jobs import CancelToken, ProgressSink, null_progress
from ..base import Encoded, LatentBackend
from .configs import RELEASED, ReleasedModel, WavTokenizerConfig, released_model

__all__ = ["SPECS", "WavTokenizerBackend", "BACKEND_VARIANTS"]

_FACTORY = "audiosae.codecs.wavtokenizer:WavTokenizerBackend"

# backend name stem -> (released model key, description)
BACKEND_VARIANTS: dict[str, tuple[str, str]] = {
    "wavtokenizer-40": ("small-600-24k-4096", "WavTokenizer small, 40 frames/s (LibriTTS speech)"),
    "wavtokenizer-75": ("small-320-24k-4096", "WavTokenizer small, 75 frames/s (LibriTTS speech)"),
    "wavtokenizer-medium-speech-75": ("medium-speech-75token",
                                      "WavTokenizer medium, 75 frames/s (speech, audio, music)"),
    "wavtokenizer-large-unify-40": ("large-unify-40token",
                                    "WavTokenizer large, 40 frames/s (speech, audio, music)"),
    "wavtokenizer-large-speech-75": ("large-speech-75token",
                                     "WavTokenizer large, 75 frames/s (speech, audio, music)"),
}


def _backend_name(model_key: str, continuous: bool) -> str:
    for stem, (key, _) in BACKEND_VARIANTS.items():
        if key == model_key:
            return stem + ("-continuous" if continuous else "")
    return f"wavtokenizer-{model_key}" + ("-continuous" if continuous else "")


def _make_specs() -> list:
    from .. import BackendSpec  # the registry imports this module while it is being set up

    specs = []
    for stem, (key, description) in BACKEND_VARIANTS.items():
        released = RELEASED[key]
        cfg = released.config
        for continuous in (False, True):
            specs.append(BackendSpec(
                name=stem + ("-continuous" if continuous else ""),
                factory=_FACTORY,
                sample_rate=cfg.sample_rate, channels=1, hop_length=cfg.hop_length,
                latent_dim=cfg.latent_dim, kind="continuous" if continuous else "discrete",
                description=description + (": encoder output before quantisation" if continuous
                                           else ": codebook vectors (codes [T, 1])"),
                download_bytes=released.approx_size_bytes,
                default_options={"model": key, "continuous": continuous},
            ))
    return specs


class WavTokenizerBackend(LatentBackend):
    """A WavTokenizer checkpoint as a latent backend.

    Options: ``model`` (a key of ``configs.RELEASED``), ``continuous`` (pre-VQ latents),
    ``weights`` (a local ``.ckpt``/state-dict file: no download), ``config`` (a
    ``WavTokenizerConfig`` or its dict, replacing the released one, e.g. a tiny test
    model; it then needs ``weights``), ``revision`` (hub revision), and ``progress``/
    ``cancel`` for the download.
    """

    channels = 1

    def __init__(self, device: torch.device | str = "cpu", *, model: str = "small-600-24k-4096",
                 continuous: bool = False, weights: str | Path | None = None,
                 config: WavTokenizerConfig | Mapping[str, Any] | None = None, revision: str | None = None,
                 progress: ProgressSink = null_progress, cancel: CancelToken | None = None):
        super().__init__(device)
        self.released: ReleasedModel = released_model(model)
        self.continuous = bool(continuous)
        self.custom_config = config is not None
        self.config = WavTokenizerConfig.from_dict(config) if config is not None else self.released.config
        self.revision = revision
        self.weights = None if weights is None else Path(weights)
        self.name = _backend_name(model, self.continuous)
        self.sample_rate = self.config.sample_rate
        self.hop_length = self.config.hop_length
        self.latent_dim = self.config.latent_dim
        self.kind = "continuous" if self.continuous else "discrete"
        self.description = dict(BACKEND_VARIANTS.values()).get(model, "WavTokenizer")
        if self.weights is None and self.custom_config:
            raise BackendError(f"{self.name}: a custom config needs weights=PATH (there is no hub file for it)")

        from ...hub import download_hub_file
        from .model import load_model

        path = download_hub_file(self.released.repo_id, self.released.filename, revision=revision,
                                 local_path=self.weights, progress=progress, cancel=cancel)
        if cancel is not None:
            cancel.raise_if_cancelled()
        self.model = load_model(path, self.config, self.device)

    @classmethod
    def from_model(cls, model: Any, *, model_key: str = "small-600-24k-4096",
                   continuous: bool = False, device: torch.device | str = "cpu") -> "WavTokenizerBackend":
        """Wrap an already built ``WavTokenizerModel`` (benchmarks, experiments); no file involved."""
        self = cls.__new__(cls)
        LatentBackend.__init__(self, device)
        self.released = released_model(model_key)
        self.continuous = bool(continuous)
        self.config = model.config
        self.custom_config = model.config != self.released.config
        self.revision = None
        self.weights = None
        self.name = _backend_name(model_key, self.continuous)
        self.sample_rate = self.config.sample_rate
        self.hop_length = self.config.hop_length
        self.latent_dim = self.config.latent_dim
        self.kind = "continuous" if self.continuous else "discrete"
        self.description = dict(BACKEND_VARIANTS.values()).get(model_key, "WavTokenizer")
        self.model = model.to(self.device).eval()
        return self

    def options(self) -> dict:
        opts: dict[str, Any] = {"model": self.released.key, "continuous": self.continuous}
        if self.weights is not None:
            opts["weights"] = str(self.weights)
        if self.revision is not None:
            opts["revision"] = self.revision
        if self.custom_config:
            opts["config"] = self.config.to_dict()
        return opts

    def _encode(self, wave: np.ndarray) -> Encoded:
        x = torch.from_numpy(np.ascontiguousarray(wave[0])).to(self.device)[None, :]
        emb = self.model.encode_continuous(x)
        if self.continuous:
            return Encoded(latents=emb[0].T.float().cpu().numpy())
        features, codes = self.model.quantize(emb)
        return Encoded(latents=features[0].T.float().cpu().numpy(),
                       codes=codes[:, 0, :].T.cpu().numpy().astype(np.int64))

    def _decode(self, latents: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
        features = torch.from_numpy(latents).to(self.device).T[None]
        wave = self.model.decode(features, bandwidth_id=0)
        return wave.float().cpu().numpy()

    def codes_to_latents(self, codes: np.ndarray) -> np.ndarray:
        """Codes ``[T, 1]`` (as ``encode`` returns them) -> codebook vectors ``[T, 512]``."""
        codes = np.asarray(codes)
        if codes.ndim == 1:
            codes = codes[:, None]
        if codes.ndim != 2 or codes.shape[1] != 1:
            raise BackendError(f"{self.name}: expected codes [T, 1], got {list(codes.shape)}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.config.vq_bins):
            raise BackendError(f"{self.name}: codes must lie in 0..{self.config.vq_bins - 1}")
        with torch.inference_mode():
            idx = torch.from_numpy(codes.T.astype(np.int64)).to(self.device)  # [1, T]
            feats = self.model.codes_to_features(idx)
        return feats[0].T.float().cpu().numpy()


SPECS = _make_specs()
