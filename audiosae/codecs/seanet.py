"""SEANet encoder/decoder and residual VQ shared by the EnCodec and WavTokenizer models.

Our own implementation of the layers of Meta's EnCodec (pip ``encodec`` 0.1.1), written so
that module and parameter names match the official checkpoints: a conv is
``….conv.conv.weight_g/weight_v/bias``, a transposed conv ``….convtr.convtr.*``, an LSTM
``….lstm.weight_ih_l0``, a codebook ``vq.layers.i._codebook.{inited,cluster_size,embed,
embed_avg}``.  An official state dict therefore loads with ``strict=True`` and
``state_dict()`` writes the official layout back.

Padding follows EnCodec's ``SConv1d``/``SConvTranspose1d``:

* a conv pads ``(kernel - 1) * dilation - (stride - 1)`` samples in total, plus on the right
  whatever makes the last window complete (output length ``ceil(L / stride)``).  Causal: all
  of the fixed padding goes to the left.  Non-causal: it is split with the odd sample on the
  left.  The padding mode is ``reflect`` in both cases (EnCodec 24 kHz is causal *and* reflects);
* a transposed conv trims ``kernel - stride`` samples from its output: causal, all of them on
  the right (``trim_right_ratio`` 1); non-causal, split with the odd sample on the left.

Only inference is implemented: no k-means initialisation, EMA codebook updates or losses.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------
# Padding
# ---------------------------------------------------------------------------------------
def pad1d(x: torch.Tensor, left: int, right: int, mode: str = "reflect") -> torch.Tensor:
    """``F.pad`` on the last axis; reflect padding also works on signals shorter than the pad.

    Like EnCodec: zeros are appended first so the reflection has enough samples, then
    removed again, which keeps the output length ``L + left + right``.
    """
    if mode != "reflect":
        return F.pad(x, (left, right), mode=mode)
    length = x.shape[-1]
    widest = max(left, right)
    extra = widest - length + 1 if length <= widest else 0
    if extra:
        x = F.pad(x, (0, extra))
    padded = F.pad(x, (left, right), mode="reflect")
    return padded[..., :padded.shape[-1] - extra] if extra else padded


def extra_padding(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Right padding that makes the last conv window complete (EnCodec's rule)."""
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    return ideal_length - length


# ---------------------------------------------------------------------------------------
# Weight-normalised convolutions
# ---------------------------------------------------------------------------------------
class _WeightNorm(nn.Module):
    """weight = g * v / ||v||, the norm over all axes but the first, stored as
    ``weight_g``/``weight_v`` like ``torch.nn.utils.weight_norm`` (dim=0), which wrote the
    official checkpoints, without depending on that deprecated hook."""

    def _init_from(self, layer: nn.Module) -> None:
        # PyTorch's default init of the plain layer; registered in the order the hook leaves
        # them (bias, weight_g, weight_v), so state_dict() lists keys like the checkpoints.
        with torch.no_grad():
            self.bias = nn.Parameter(layer.bias.detach().clone())
            self.weight_g = nn.Parameter(layer.weight.norm(dim=(1, 2), keepdim=True).detach().clone())
            self.weight_v = nn.Parameter(layer.weight.detach().clone())

    def weight(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / self.weight_v.norm(dim=(1, 2), keepdim=True))


class WeightNormConv1d(_WeightNorm):
    """Conv1d with weight norm; ``weight_v`` is ``[out, in, kernel]``, ``weight_g`` ``[out, 1, 1]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1):
        super().__init__()
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self._init_from(nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight(), self.bias, self.stride, dilation=self.dilation)


class WeightNormConvTranspose1d(_WeightNorm):
    """ConvTranspose1d with weight norm; ``weight_v`` is ``[in, out, kernel]``, ``weight_g`` ``[in, 1, 1]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self._init_from(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose1d(x, self.weight(), self.bias, self.stride)


class _NormConv(nn.Module):
    """Holder giving the official ``….conv.conv.weight_g`` nesting (conv + identity norm)."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.conv = WeightNormConv1d(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _NormConvTranspose(nn.Module):
    """Holder giving the official ``….convtr.convtr.weight_g`` nesting."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.convtr = WeightNormConvTranspose1d(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convtr(x)


class PaddedConv1d(nn.Module):
    """EnCodec's ``SConv1d`` with weight norm: output length ``ceil(L / stride)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, causal: bool = False, pad_mode: str = "reflect"):
        super().__init__()
        self.conv = _NormConv(in_channels, out_channels, kernel_size, stride, dilation)
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.causal, self.pad_mode = causal, pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size, self.stride
        total = (k - 1) * self.dilation - (s - 1)
        extra = extra_padding(x.shape[-1], k, s, total)
        if self.causal:
            left, right = total, 0
        else:
            right = total // 2
            left = total - right
        return self.conv(pad1d(x, left, right + extra, self.pad_mode))


class PaddedConvTranspose1d(nn.Module):
    """EnCodec's ``SConvTranspose1d`` with weight norm: output length ``L * stride``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 causal: bool = False, trim_right_ratio: float = 1.0):
        super().__init__()
        if not causal and trim_right_ratio != 1.0:
            raise ValueError("trim_right_ratio != 1 only makes sense for causal transposed convs")
        self.convtr = _NormConvTranspose(in_channels, out_channels, kernel_size, stride)
        self.kernel_size, self.stride = kernel_size, stride
        self.causal, self.trim_right_ratio = causal, trim_right_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convtr(x)
        total = self.kernel_size - self.stride
        if self.causal:
            right = math.ceil(total * self.trim_right_ratio)
        else:
            right = total // 2
        left = total - right
        return y[..., left:y.shape[-1] - right]


# ---------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------
class ResidualUnit(nn.Module):
    """ELU -> conv k (to dim/compress, dilated) -> ELU -> conv 1 (back), plus a 1x1-conv
    shortcut (EnCodec's ``true_skip=False``, the setting of every released model)."""

    def __init__(self, dim: int, kernel_size: int, compress: int, dilation: int = 1,
                 causal: bool = False):
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(nn.ELU(), PaddedConv1d(dim, hidden, kernel_size, dilation=dilation, causal=causal),
                                   nn.ELU(), PaddedConv1d(hidden, dim, 1, causal=causal))
        self.shortcut = PaddedConv1d(dim, dim, 1, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class SkipLSTM(nn.Module):
    """Multi-layer LSTM over time on a channel-major tensor, with a residual connection."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x.permute(2, 0, 1))  # [T, B, C]: the official LSTM is not batch_first
        return y.permute(1, 2, 0) + x


class SeanetEncoder(nn.Module):
    """Wave ``[B, channels, L]`` -> ``[B, dimension, ceil(L / hop)]``.

    ``ratios`` are given in decoder order (as EnCodec and the WavTokenizer YAML list them);
    the encoder downsamples in reverse order.
    """

    def __init__(self, *, channels: int = 1, dimension: int = 128, n_filters: int = 32,
                 ratios: Sequence[int] = (8, 5, 4, 2), n_residual_layers: int = 1, lstm: int = 2,
                 causal: bool = False, kernel_size: int = 7, last_kernel_size: int = 7,
                 residual_kernel_size: int = 3, dilation_base: int = 2, compress: int = 2):
        super().__init__()
        self.ratios = list(reversed(ratios))
        self.hop_length = math.prod(self.ratios)
        width = n_filters
        layers: list[nn.Module] = [PaddedConv1d(channels, width, kernel_size, causal=causal)]
        for ratio in self.ratios:
            layers += [ResidualUnit(width, residual_kernel_size, compress, dilation_base ** j, causal)
                       for j in range(n_residual_layers)]
            layers += [nn.ELU(), PaddedConv1d(width, width * 2, 2 * ratio, ratio, causal=causal)]
            width *= 2
        if lstm:
            layers.append(SkipLSTM(width, lstm))
        layers += [nn.ELU(), PaddedConv1d(width, dimension, last_kernel_size, causal=causal)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SeanetDecoder(nn.Module):
    """Latents ``[B, dimension, T]`` -> wave ``[B, channels, T * hop]`` (no final activation)."""

    def __init__(self, *, channels: int = 1, dimension: int = 128, n_filters: int = 32,
                 ratios: Sequence[int] = (8, 5, 4, 2), n_residual_layers: int = 1, lstm: int = 2,
                 causal: bool = False, kernel_size: int = 7, last_kernel_size: int = 7,
                 residual_kernel_size: int = 3, dilation_base: int = 2, compress: int = 2,
                 trim_right_ratio: float = 1.0):
        super().__init__()
        self.ratios = list(ratios)
        self.hop_length = math.prod(self.ratios)
        width = n_filters * 2 ** len(self.ratios)
        layers: list[nn.Module] = [PaddedConv1d(dimension, width, kernel_size, causal=causal)]
        if lstm:
            layers.append(SkipLSTM(width, lstm))
        for ratio in self.ratios:
            layers += [nn.ELU(), PaddedConvTranspose1d(width, width // 2, 2 * ratio, ratio, causal=causal,
                                                       trim_right_ratio=trim_right_ratio)]
            layers += [ResidualUnit(width // 2, residual_kernel_size, compress, dilation_base ** j, causal)
                       for j in range(n_residual_layers)]
            width //= 2
        layers += [nn.ELU(), PaddedConv1d(n_filters, channels, last_kernel_size, causal=causal)]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)


# ---------------------------------------------------------------------------------------
# Residual vector quantization (nested like EnCodec's ResidualVectorQuantization)
# ---------------------------------------------------------------------------------------
class Codebook(nn.Module):
    """The buffers of EnCodec's EMA ``EuclideanCodebook``; only ``embed`` is used at inference.

    ``inited``/``cluster_size``/``embed_avg`` are training state kept so checkpoints load
    strictly and save back unchanged.  Untrained, ``embed`` is Kaiming-uniform and ``inited``
    1, like the package's codebook without k-means initialisation; with ``kaiming_init=False``
    it is zeros and ``inited`` 0, like a codebook waiting for k-means (nothing random drawn).
    """

    def __init__(self, bins: int, dim: int, kaiming_init: bool = True):
        super().__init__()
        embed = torch.zeros(bins, dim)
        if kaiming_init:
            nn.init.kaiming_uniform_(embed)
        self.register_buffer("inited", torch.full((1,), float(kaiming_init)))
        self.register_buffer("cluster_size", torch.zeros(bins))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Rows ``[N, dim]`` -> index of the nearest codebook vector ``[N]`` (int64)."""
        embed = self.embed.t()
        # EnCodec's own expression, so that near-ties resolve identically.
        dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ embed + embed.pow(2).sum(0, keepdim=True))
        return dist.max(dim=-1).indices


class VectorQuantizer(nn.Module):
    """One codebook on channel-major tensors: ``[B, dim, T]`` <-> codes ``[B, T]``."""

    def __init__(self, bins: int, dim: int, kaiming_init: bool = True):
        super().__init__()
        self._codebook = Codebook(bins, dim, kaiming_init)

    @property
    def codebook(self) -> torch.Tensor:
        """``[bins, dim]``."""
        return self._codebook.embed

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.transpose(1, 2).reshape(-1, x.shape[1])
        return self._codebook.encode(rows).view(x.shape[0], x.shape[2])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.codebook).transpose(1, 2)


class ResidualVQ(nn.Module):
    """``layers[i]`` quantizes what the layers before it left over."""

    def __init__(self, n_q: int, bins: int, dim: int, kaiming_init: bool = True):
        super().__init__()
        self.layers = nn.ModuleList([VectorQuantizer(bins, dim, kaiming_init) for _ in range(n_q)])

    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """``[B, dim, T]`` -> codes ``[n_q, B, T]``: per layer, the nearest codebook vector
        to the residual, which is then reduced by that vector."""
        residual = x
        codes = []
        for layer in self.layers[:n_q or len(self.layers)]:
            indices = layer.encode(residual)
            residual = residual - layer.decode(indices)
            codes.append(indices)
        return torch.stack(codes)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes ``[K, B, T]`` -> the sum of the K layers' codebook vectors ``[B, dim, T]``."""
        if codes.shape[0] > len(self.layers):
            raise ValueError(f"codes for {codes.shape[0]} codebooks, the quantizer has {len(self.layers)}")
        out = self.layers[0].decode(codes[0])
        for layer, indices in zip(self.layers[1:], codes[1:]):
            out = out + layer.decode(indices)
        return out
