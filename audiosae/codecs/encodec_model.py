"""EnCodec (Meta, pip ``encodec`` 0.1.1): our own inference model, no ``encodec`` import.

The pip package imports torchaudio when it is imported, and a torchaudio that does not
match torch fails to load; so the project never imports it at run time.  This module
rebuilds the model from the shared SEANet/RVQ layers in ``seanet.py`` with the official
module names, so the released ``encodec_24khz-d7cc33bc.th`` loads by its own key names
(``encoder.model.0.conv.conv.weight_g``, ``encoder.model.13.lstm.weight_ih_l0``,
``decoder.model.3.convtr.convtr.weight_v``, ``quantizer.vq.layers.0._codebook.embed`` ...)
with a strict ``load_state_dict``.  ``tests/fixtures/make_encodec_fixture.py`` records the
package's outputs and the 24 kHz key layout that ``tests/core/test_codecs.py`` holds this to.

Only what the backends use is built: mono, weight norm, no audio normalisation, no segments.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .seanet import ResidualVQ, SeanetDecoder, SeanetEncoder


class ResidualVectorQuantizer(nn.Module):
    """EnCodec's ``ResidualVectorQuantizer`` at inference: ``n_q`` codebooks of ``bins`` x
    ``dimension``; the bandwidth picks how many are used."""

    def __init__(self, dimension: int = 128, n_q: int = 32, bins: int = 1024):
        super().__init__()
        self.dimension, self.n_q, self.bins = dimension, n_q, bins
        self.vq = ResidualVQ(n_q, bins, dimension)

    def get_bandwidth_per_quantizer(self, frame_rate: float) -> float:
        """kbps one codebook costs: ``log2(bins) * frame_rate / 1000``."""
        return math.log2(self.bins) * frame_rate / 1000

    def get_num_quantizers_for_bandwidth(self, frame_rate: float, bandwidth: float | None = None) -> int:
        """``floor(bandwidth / kbps per codebook)``, at least 1; all ``n_q`` without a bandwidth."""
        if bandwidth and bandwidth > 0.0:
            return int(max(1, math.floor(bandwidth / self.get_bandwidth_per_quantizer(frame_rate))))
        return self.n_q

    def encode(self, emb: torch.Tensor, frame_rate: float, bandwidth: float | None = None) -> torch.Tensor:
        """Encoder output ``[B, D, T]`` -> codes ``[K, B, T]`` (int64) at ``bandwidth`` kbps."""
        return self.vq.encode(emb, self.get_num_quantizers_for_bandwidth(frame_rate, bandwidth))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[K, B, T]`` -> quantized embedding ``[B, D, T]`` (sum of codebook vectors)."""
        return self.vq.decode(codes)


class EncodecModel(nn.Module):
    """SEANet encoder -> residual VQ -> SEANet decoder, with the official attribute names."""

    def __init__(self, *, sample_rate: int = 24_000, channels: int = 1, n_filters: int = 32,
                 dimension: int = 128, ratios: Sequence[int] = (8, 5, 4, 2), lstm: int = 2,
                 n_residual_layers: int = 1, causal: bool = True, n_q: int = 32, bins: int = 1024,
                 target_bandwidths: Sequence[float] = (1.5, 3.0, 6.0, 12.0, 24.0)):
        super().__init__()
        seanet = dict(channels=channels, dimension=dimension, n_filters=n_filters, ratios=list(ratios),
                      n_residual_layers=n_residual_layers, lstm=lstm, causal=causal)
        self.encoder = SeanetEncoder(**seanet)
        self.quantizer = ResidualVectorQuantizer(dimension=dimension, n_q=n_q, bins=bins)
        self.decoder = SeanetDecoder(**seanet)
        self.sample_rate = sample_rate
        self.channels = channels
        self.target_bandwidths = [float(b) for b in target_bandwidths]
        self.hop_length = math.prod(ratios)
        self.frame_rate = math.ceil(sample_rate / self.hop_length)

    def encode(self, wave: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
        """Wave ``[B, C, L]`` -> codes ``[K, B, ceil(L / hop)]``."""
        return self.quantizer.encode(self.encoder(wave), self.frame_rate, bandwidth)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[K, B, T]`` -> wave ``[B, C, T * hop]``."""
        return self.decoder(self.quantizer.decode(codes))


def build_model(arch: dict) -> EncodecModel:
    """An untrained model from a resolved arch dict (``encodec_backend.resolve_arch``)."""
    return EncodecModel(sample_rate=arch["sample_rate"], n_filters=arch["n_filters"],
                        dimension=arch["dimension"], ratios=arch["ratios"], lstm=arch["lstm"],
                        n_residual_layers=arch["n_residual_layers"], causal=arch["causal"],
                        n_q=arch["n_q"], bins=arch["bins"], target_bandwidths=arch["target_bandwidths"])
