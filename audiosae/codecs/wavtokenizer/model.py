"""WavTokenizer inference: SEANet encoder -> one 512-d VQ codebook -> Vocos backbone -> ISTFT.

Our own implementation of the model described in ``configs.py``; the SEANet encoder and
the VQ are the EnCodec layers of ``audiosae.codecs.seanet``.  Module and parameter
names mirror the official checkpoint (``feature_extractor.encodec.encoder.model.N.conv.conv.
weight_g``, ``backbone.pos_net.2.q.weight``, ``head.istft.window`` ...), so an official state
dict loads strictly and ``state_dict()`` writes the official layout back.  The SEANet
decoder that the official ``EncodecFeatures`` builds but never runs is not built here; its
checkpoint keys are skipped by ``load_official_state_dict``.

Tensor layouts follow the official code: waves ``[B, L]``; encoder output and features
channel-major ``[B, 512, T]``; codes ``[n_q=1, B, T]``; backbone output ``[B, T, dim]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import BackendError
from ...hub import check_state_dict
from ..seanet import ResidualVQ, SeanetEncoder
from .configs import WavTokenizerConfig

# Prefixes the official ``from_pretrained0802`` keeps from a Lightning checkpoint.
KEPT_PREFIXES = ("feature_extractor.", "backbone.", "head.")
# Built and saved by the official code but never run at inference (see module docstring).
UNUSED_PREFIX = "feature_extractor.encodec.decoder."


# ---------------------------------------------------------------------------------------
# SEANet encoder and single-codebook VQ (shared EnCodec layers, ``..seanet``)
# ---------------------------------------------------------------------------------------
def build_encoder(cfg) -> SeanetEncoder:
    """The official ``EncodecFeatures`` encoder: non-causal SEANet with reflect padding, one
    residual unit per stage, ``cfg.downsamples`` in the YAML (decoder-first) order."""
    return SeanetEncoder(channels=1, dimension=cfg.dimension, n_filters=cfg.n_filters,
                         ratios=cfg.downsamples, n_residual_layers=1, lstm=cfg.lstm_layers, causal=False,
                         kernel_size=cfg.kernel_size, last_kernel_size=cfg.last_kernel_size,
                         residual_kernel_size=cfg.residual_kernel_size, compress=cfg.compress)


class CodebookQuantizer(nn.Module):
    """Nearest codebook row by Euclidean distance; codebook ``vq.layers.0._codebook.embed``.

    The official ``LanguageVectorQuantization`` nesting is a one-layer residual VQ.  Untrained,
    the codebook is zeros with ``inited`` 0, like the official one before k-means.
    """

    def __init__(self, bins: int, dim: int):
        super().__init__()
        self.bins = bins
        self.vq = ResidualVQ(1, bins, dim, kaiming_init=False)

    @property
    def codebook(self) -> torch.Tensor:
        """``[bins, dim]``."""
        return self.vq.layers[0].codebook

    def encode(self, emb: torch.Tensor) -> torch.Tensor:
        """``[B, dim, T]`` -> codes ``[B, T]`` (int64)."""
        return self.vq.layers[0].encode(emb)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes ``[B, T]`` -> codebook rows ``[B, dim, T]``."""
        return self.vq.layers[0].decode(codes)


class _EncodecCore(nn.Module):
    def __init__(self, cfg: WavTokenizerConfig):
        super().__init__()
        self.encoder = build_encoder(cfg.encoder)
        self.quantizer = CodebookQuantizer(cfg.vq_bins, cfg.encoder.dimension)


class FeatureExtractor(nn.Module):
    def __init__(self, cfg: WavTokenizerConfig):
        super().__init__()
        self.encodec = _EncodecCore(cfg)


# ---------------------------------------------------------------------------------------
# Vocos backbone
# ---------------------------------------------------------------------------------------
def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class PosResnetBlock(nn.Module):
    """GroupNorm -> swish -> conv3 -> GroupNorm -> swish -> conv3, plus the input."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = _group_norm(dim)
        self.conv1 = nn.Conv1d(dim, dim, 3, padding=1)
        self.norm2 = _group_norm(dim)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))  # dropout (p=0.1) acts only in training
        return x + h


class PosAttention(nn.Module):
    """Single-head self-attention over time with 1x1-conv projections and a residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = _group_norm(dim)
        self.q = nn.Conv1d(dim, dim, 1)
        self.k = nn.Conv1d(dim, dim, 1)
        self.v = nn.Conv1d(dim, dim, 1)
        self.proj_out = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        # [B, 1, T, C], contiguous: strided inputs send CPU SDPA to its O(T^2)-memory fallback
        q, k, v = (proj(h).transpose(1, 2).unsqueeze(1).contiguous() for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        return x + self.proj_out(out.squeeze(1).transpose(1, 2))


class AdaLayerNorm(nn.Module):
    """LayerNorm without affine whose scale/shift are picked by a bandwidth id."""

    def __init__(self, num_embeddings: int, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.dim = dim
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, bandwidth_id: int) -> torch.Tensor:
        x = F.layer_norm(x, (self.dim,), eps=self.eps)
        return x * self.scale.weight[bandwidth_id] + self.shift.weight[bandwidth_id]


class ConvNeXtBlock(nn.Module):
    """Depthwise conv7 -> AdaLayerNorm -> Linear -> GELU -> Linear -> layer scale, residual."""

    def __init__(self, dim: int, intermediate_dim: int, num_embeddings: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = AdaLayerNorm(num_embeddings, dim)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor, bandwidth_id: int) -> torch.Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h, bandwidth_id))))
        return x + (self.gamma * h).transpose(1, 2)


class VocosBackbone(nn.Module):
    """Features ``[B, 512, T]`` -> hidden ``[B, T, dim]``."""

    def __init__(self, cfg) -> None:
        super().__init__()
        dim = cfg.dim
        self.embed = nn.Conv1d(cfg.input_channels, dim, 7, padding=3)
        self.pos_net = nn.Sequential(PosResnetBlock(dim), PosResnetBlock(dim), PosAttention(dim),
                                     PosResnetBlock(dim), PosResnetBlock(dim), _group_norm(dim))
        self.norm = AdaLayerNorm(cfg.adanorm_num_embeddings, dim)
        self.convnext = nn.ModuleList([
            ConvNeXtBlock(dim, cfg.intermediate_dim, cfg.adanorm_num_embeddings, 1.0 / cfg.num_layers)
            for _ in range(cfg.num_layers)])
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, bandwidth_id: int = 0) -> torch.Tensor:
        x = self.pos_net(self.embed(x))
        x = self.norm(x.transpose(1, 2), bandwidth_id).transpose(1, 2)
        for block in self.convnext:
            x = block(x, bandwidth_id)
        return self.final_layer_norm(x.transpose(1, 2))


# ---------------------------------------------------------------------------------------
# ISTFT head
# ---------------------------------------------------------------------------------------
class SameISTFT(nn.Module):
    """Inverse STFT with 'same' padding: output length is exactly ``frames * hop``.

    irfft each frame, apply the (periodic Hann) window, overlap-add, trim
    ``(n_fft - hop) / 2`` samples per side, divide by the overlap-added squared window.
    ``torch.istft`` cannot do this trim because its NOLA check fails at the edges.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(n_fft))

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, n_fft, T]`` -> ``[B, (T - 1) * hop + n_fft]``."""
        n_frames = frames.shape[-1]
        total = (n_frames - 1) * self.hop_length + self.n_fft
        return F.fold(frames, output_size=(1, total), kernel_size=(1, self.n_fft),
                      stride=(1, self.hop_length))[:, 0, 0, :]

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex spectrogram ``[B, n_fft/2+1, T]`` -> wave ``[B, T * hop]``."""
        n_frames = spec.shape[-1]
        frames = torch.fft.irfft(spec, self.n_fft, dim=1) * self.window[None, :, None]
        trim = (self.n_fft - self.hop_length) // 2
        wave = self._overlap_add(frames)
        envelope = self._overlap_add(self.window.square()[None, :, None].expand(1, -1, n_frames))
        end = wave.shape[-1] - trim
        return wave[:, trim:end] / envelope[:, trim:end]


class ISTFTHead(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.out = nn.Linear(cfg.dim, cfg.n_fft + 2)
        self.istft = SameISTFT(cfg.n_fft, cfg.hop_length)

    def synthesize(self, linear_out: torch.Tensor) -> torch.Tensor:
        """``out`` layer output ``[B, T, n_fft+2]`` (log-magnitude | phase) -> wave ``[B, T*hop]``."""
        log_mag, phase = linear_out.transpose(1, 2).chunk(2, dim=1)
        mag = torch.exp(log_mag).clamp(max=100.0)  # the official safeguard against huge magnitudes
        return self.istft(torch.polar(mag, phase))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.synthesize(self.out(x))


# ---------------------------------------------------------------------------------------
# The whole model
# ---------------------------------------------------------------------------------------
class WavTokenizerModel(nn.Module):
    """Inference-only WavTokenizer.  All methods expect ``eval()`` mode and no grad."""

    def __init__(self, config: WavTokenizerConfig):
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureExtractor(config)
        self.backbone = VocosBackbone(config.backbone)
        self.head = ISTFTHead(config.head)

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def quantizer(self) -> CodebookQuantizer:
        return self.feature_extractor.encodec.quantizer

    def encode_continuous(self, wav: torch.Tensor) -> torch.Tensor:
        """Wave ``[B, L]`` -> pre-VQ encoder output ``[B, 512, ceil(L/hop)]``."""
        return self.feature_extractor.encodec.encoder(wav.unsqueeze(1))

    def quantize(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``[B, 512, T]`` -> (codebook rows ``[B, 512, T]``, codes ``[1, B, T]``)."""
        codes = self.quantizer.encode(emb)
        return self.quantizer.decode(codes), codes.unsqueeze(0)

    def encode(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like the official ``encode_infer``: wave ``[B, L]`` -> (features, codes ``[1, B, T]``)."""
        return self.quantize(self.encode_continuous(wav))

    def codes_to_features(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[1, B, T]`` or ``[1, T]`` -> features ``[B, 512, T]``."""
        if codes.dim() == 2:
            codes = codes.unsqueeze(1)
        if codes.shape[0] != 1:
            raise BackendError(f"WavTokenizer has one codebook; got codes for {codes.shape[0]}")
        return self.quantizer.decode(codes[0])

    def decode(self, features: torch.Tensor, bandwidth_id: int = 0) -> torch.Tensor:
        """Features ``[B, 512, T]`` -> wave ``[B, T * hop]``."""
        return self.head(self.backbone(features, bandwidth_id))


# ---------------------------------------------------------------------------------------
# Loading official checkpoints
# ---------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What ``load_official_state_dict`` kept and skipped."""

    loaded: int
    skipped_unused_decoder: int
    dropped_other: list[str] = field(default_factory=list)  # e.g. discriminators, losses


def extract_state_dict(checkpoint: Any) -> Mapping[str, torch.Tensor]:
    """The model state dict inside a Lightning checkpoint (``{'state_dict': ...}``) or a bare one."""
    if isinstance(checkpoint, Mapping):
        inner = checkpoint.get("state_dict")
        if isinstance(inner, Mapping):
            return inner
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return checkpoint
    raise BackendError("not a WavTokenizer checkpoint: expected a dict with a 'state_dict' entry "
                       "(the official Lightning .ckpt) or a plain state dict")


def load_official_state_dict(model: WavTokenizerModel, state_dict: Mapping[str, torch.Tensor]) -> LoadReport:
    """Load official weights by their key names, strictly.

    Keeps the keys the official loader keeps (``feature_extractor.``, ``backbone.``,
    ``head.``), skips the never-run SEANet decoder, and raises ``BackendError`` naming
    missing, unexpected or mis-shaped keys.
    """
    kept: dict[str, torch.Tensor] = {}
    skipped = 0
    dropped = []
    for key, value in state_dict.items():
        if key.startswith(UNUSED_PREFIX):
            skipped += 1
        elif key.startswith(KEPT_PREFIXES):
            kept[key] = value
        else:
            dropped.append(key)
    check_state_dict(model.state_dict(), kept, "this WavTokenizer config")
    model.load_state_dict(kept, strict=True)
    if float(model.quantizer.vq.layers[0]._codebook.inited[0]) == 0.0:
        # The official code would run k-means on the first input it sees: not a trained model.
        raise BackendError("checkpoint's VQ codebook was never initialised (inited = 0): not a trained model")
    return LoadReport(loaded=len(kept), skipped_unused_decoder=skipped, dropped_other=dropped)


def load_model(path: str | Path, config: WavTokenizerConfig, device: torch.device | str = "cpu") -> WavTokenizerModel:
    """Build ``config`` and load the official checkpoint at ``path`` (Lightning ``.ckpt`` or state dict)."""
    from ...hub import load_checkpoint

    checkpoint = load_checkpoint(path)
    model = WavTokenizerModel(config)
    try:
        load_official_state_dict(model, extract_state_dict(checkpoint))
    except BackendError as exc:
        raise BackendError(f"{path}: {exc}") from None
    del checkpoint
    return model.to(device).eval()


def build_random_model(config: WavTokenizerConfig, seed: int = 0) -> WavTokenizerModel:
    """A model with PyTorch's default init and a usable random codebook (tests, benchmarks).

    The codebook rows are drawn around the encoder's typical output so that different
    frames pick different codes, and ``inited`` is set like a trained checkpoint.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = WavTokenizerModel(config).eval()
    with torch.no_grad():
        probe = torch.randn(1, 64 * config.hop_length, generator=gen)
        emb = model.encode_continuous(probe)[0].T  # [T, 512]
        centre, spread = emb.mean(0), emb.std(0).clamp_min(1e-6)
        rows = centre + spread * torch.randn(config.vq_bins, emb.shape[1], generator=gen)
        book = model.quantizer.vq.layers[0]._codebook
        book.embed.copy_(rows)
        book.embed_avg.copy_(rows)
        book.cluster_size.fill_(1.0)
        book.inited.fill_(1.0)
    return model


def save_lightning_checkpoint(model: WavTokenizerModel, path: str | Path,
                              extra_state: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Save ``model`` the way the official training run does: ``{'state_dict': ...}``.

    ``extra_state`` adds keys the official loader drops (discriminators, losses), which
    makes the file a faithful stand-in for a released ``.ckpt``.
    """
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    state.update(extra_state or {})
    path = Path(path)
    torch.save({"state_dict": state, "epoch": 0, "global_step": 0}, path)
    return path


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
