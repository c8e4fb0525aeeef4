"""DiffRhythm's DiT velocity model, reimplemented without ``transformers``/``x_transformers``.

The network maps a noisy latent ``x_t`` ``[B, T, 64]`` (plus the cond latent, frame-aligned
lyric tokens, a 512-d style vector and the flow time ``t``) to the flow velocity
(data - noise).  Module and parameter names are chosen so that ``state_dict()`` keys equal
the official ones (``ASLP-lab/DiffRhythm`` ``model/dit.py``; at the ``CFM`` level every key
gets the ``transformer.`` prefix), which lets released checkpoints load with strict key
matching.

Numerical conventions follow the official code (checked against the parity fixture):

* time embeddings: sinusoid of ``1000 * t`` (256-d, ``[sin, cos]``), then Linear-SiLU-Linear;
* lyric embedding: ``Embedding(363 + 1, 512)`` (0 = filler) + a sinusoidal position table
  ``[cos, sin]`` (positions past ``max_frames`` reuse the last row) + ConvNeXtV2 blocks whose
  GRN normalises over the *time* axis;
* Llama decoder blocks: pre-RMSNorm (eps 1e-6, computed in fp32), rotate-half RoPE (theta 1e4,
  positions 0..T-1), bidirectional SDPA, SwiGLU, no biases;
* text fusion ``SiLU(Linear(text_embed))`` added after each of the first ``depth // 2`` blocks;
* ``AdaLayerNormZero_Final`` (scale first, then shift) and ``proj_out``.

The official code ignores its ``heads`` argument and always runs 32 attention heads
(the ``LlamaConfig`` default); ``DiTConfig.num_heads`` makes this explicit and defaults to 32.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Width of the time / style conditioning vectors; hard-coded to 512 in the official DiT
# (the MuQ-MuLan embedding size), so text fusion also needs text_dim == 512.
COND_DIM = 512
TIME_FREQ_DIM = 256
# The duration embedding exists only in the "full" (285 s) model, recognised by this length.
FULL_MODEL_MAX_FRAMES = 6144


@dataclass(frozen=True)
class DiTConfig:
    """Hyper-parameters of the DiT.  Defaults are the released DiffRhythm-1B (v1.2) base model."""

    dim: int = 2048
    depth: int = 16
    num_heads: int = 32
    ff_mult: int = 4
    text_dim: int = 512
    conv_layers: int = 4
    mel_dim: int = 64
    text_num_embeds: int = 363
    max_frames: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if (self.dim // self.num_heads) % 2:
            raise ValueError(f"head size {self.dim // self.num_heads} must be even for rotary embeddings")
        if self.text_dim != COND_DIM and self.depth >= 2:
            # The official text-fusion linears take COND_DIM inputs but receive the text embedding.
            raise ValueError(f"text_dim must be {COND_DIM} (the official text fusion hard-codes it), "
                             f"got {self.text_dim}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def has_duration_embed(self) -> bool:
        return self.max_frames == FULL_MODEL_MAX_FRAMES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DiTConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown DiT config keys: {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_official(cls, model: dict[str, Any], *, max_frames: int, num_heads: int = 32) -> "DiTConfig":
        """Build from the official ``config/*.json`` ``"model"`` block.

        ``heads``/``dim_head``/``dropout`` are accepted and ignored, as the official code does;
        pass ``num_heads`` to run a head count other than the official 32.
        """
        if model.get("long_skip_connection"):
            raise ValueError("long_skip_connection=True is not supported (no released model uses it)")
        ignored = {"heads", "dim_head", "dropout", "long_skip_connection"}
        supported = {"dim", "depth", "ff_mult", "text_dim", "conv_layers", "mel_dim", "text_num_embeds"}
        unsupported = sorted(set(model) - ignored - supported)
        if unsupported:
            raise ValueError(f"unsupported DiT options: {', '.join(unsupported)}")
        values = {k: model[k] for k in supported if k in model}
        if values.get("text_dim") is None:
            values["text_dim"] = values.get("mel_dim", cls.mel_dim)  # official fallback
        return cls(**values, max_frames=max_frames, num_heads=num_heads)


# ---- embeddings -------------------------------------------------------------------------------


def sinusoidal_time_features(t: torch.Tensor, dim: int = TIME_FREQ_DIM, scale: float = 1000.0) -> torch.Tensor:
    """``[B]`` times -> ``[B, dim]`` features ``[sin, cos]`` of ``scale * t`` (fp32 frequencies)."""
    half = dim // 2
    step = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, device=t.device).float() * -step)
    # (scale * t) is taken in t's dtype before meeting the fp32 frequencies, as the official
    # code does; in fp16 this rounding is part of the released model's behaviour.
    angles = (scale * t).unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat((angles.sin(), angles.cos()), dim=-1)


class TimestepEmbedding(nn.Module):
    """Scalar in [0, 1] -> ``COND_DIM`` vector (sinusoid of 1000·t, then an MLP)."""

    def __init__(self, out_dim: int = COND_DIM, freq_dim: int = TIME_FREQ_DIM):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_mlp = nn.Sequential(nn.Linear(freq_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        features = sinusoidal_time_features(t, self.freq_dim).to(t.dtype)
        return self.time_mlp(features)


def text_position_table(dim: int, length: int, theta: float = 10000.0) -> torch.Tensor:
    """Sinusoidal table ``[length, dim]`` laid out as ``[cos | sin]`` (official layout)."""
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
    angles = torch.outer(torch.arange(length), inv).float()
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 GRN; the norm is taken over the time axis (dim 1 of ``[B, T, C]``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norms = torch.norm(x, p=2, dim=1, keepdim=True)
        relative = norms / (norms.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * relative) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    """Depthwise conv (k=7) -> LayerNorm -> Linear -> GELU -> GRN -> Linear, residual."""

    def __init__(self, dim: int, hidden_dim: int, kernel_size: int = 7):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden_dim)
        self.grn = GlobalResponseNorm(hidden_dim)
        self.pwconv2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        h = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(h)))))
        return x + h


class TextEmbedding(nn.Module):
    """Frame-aligned lyric token ids ``[B, T]`` -> ``[B, T, text_dim]``."""

    def __init__(self, num_tokens: int, dim: int, max_positions: int, conv_layers: int, conv_mult: int = 2):
        super().__init__()
        self.text_embed = nn.Embedding(num_tokens + 1, dim)  # id 0 is the filler token
        self.max_positions = max_positions
        self.uses_blocks = conv_layers > 0
        if self.uses_blocks:
            # Not persistent (absent from checkpoints); still a buffer so .half() rounds it like
            # the official model does.
            self.register_buffer("freqs_cis", text_position_table(dim, max_positions), persistent=False)
            self.text_blocks = nn.Sequential(*[ConvNeXtV2Block(dim, dim * conv_mult) for _ in range(conv_layers)])

    def forward(self, tokens: torch.Tensor, drop_text: bool = False) -> torch.Tensor:
        if drop_text:  # unconditional branch: every token becomes the filler, positions still added
            tokens = torch.zeros_like(tokens)
        h = self.text_embed(tokens)
        if self.uses_blocks:
            positions = torch.arange(tokens.shape[1], device=tokens.device).clamp(max=self.max_positions - 1)
            h = h + self.freqs_cis[positions].unsqueeze(0)
            h = self.text_blocks(h)
        return h


class ConvPositionEmbedding(nn.Module):
    """Two grouped convolutions (kernel 31, 16 groups) with Mish; added residually."""

    def __init__(self, dim: int, kernel_size: int = 31, groups: int = 16):
        super().__init__()
        self.conv1d = nn.Sequential(
            nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2),
            nn.Mish(),
            nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1d(x.transpose(1, 2)).transpose(1, 2)


class InputEmbedding(nn.Module):
    """Concatenate ``[x, cond, text, style, c]`` per frame and project to the model width."""

    def __init__(self, mel_dim: int, text_dim: int, dim: int, cond_dim: int = COND_DIM):
        super().__init__()
        self.proj = nn.Linear(2 * mel_dim + text_dim + 2 * cond_dim, dim)
        self.conv_pos_embed = ConvPositionEmbedding(dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, text_embed: torch.Tensor,
                style: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        frames = x.shape[1]
        style = style.unsqueeze(1).expand(-1, frames, -1)
        c = c.unsqueeze(1).expand(-1, frames, -1)
        h = self.proj(torch.cat((x, cond, text_embed, style, c), dim=-1))
        return self.conv_pos_embed(h) + h


# ---- Llama-style blocks --------------------------------------------------------------------


class RMSNorm(nn.Module):
    """Llama RMSNorm: normalise in fp32, cast back, then scale."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Rotate-half RoPE tables ``(cos, sin)`` of shape ``[T, head_dim]`` for positions 0..T-1."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        # A buffer so that .half() rounds it, as it rounds the official LlamaRotaryEmbedding's.
        self.register_buffer("inv_freq", self.frequencies(), persistent=False)

    def frequencies(self) -> torch.Tensor:
        return 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() / self.head_dim))

    def forward(self, frames: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(frames, device=self.inv_freq.device, dtype=torch.float32)
        angles = torch.outer(positions, self.inv_freq.float())
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B, H, T, D]``; ``cos``/``sin`` ``[T, D]``."""
    return x * cos + _rotate_half(x) * sin


class SelfAttention(nn.Module):
    """Bidirectional multi-head attention with RoPE; projections without bias."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        batch, frames, _ = x.shape
        split = (batch, frames, self.num_heads, self.head_dim)
        q = self.q_proj(x).view(split).transpose(1, 2)
        k = self.k_proj(x).view(split).transpose(1, 2)
        v = self.v_proj(x).view(split).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        # No mask: every frame sees every frame (v1.2 passes an all-visible additive mask).
        out = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous(),
                                             is_causal=False, scale=self.head_dim ** -0.5)
        return self.o_proj(out.transpose(1, 2).reshape(batch, frames, -1))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden_dim, bias=False)
        self.up_proj = nn.Linear(dim, hidden_dim, bias=False)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``; no time modulation."""

    def __init__(self, dim: int, num_heads: int, hidden_dim: int, eps: float):
        super().__init__()
        self.self_attn = SelfAttention(dim, num_heads)
        self.mlp = SwiGLU(dim, hidden_dim)
        self.input_layernorm = RMSNorm(dim, eps)
        self.post_attention_layernorm = RMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope)
        return x + self.mlp(self.post_attention_layernorm(x))


class AdaLayerNormFinal(nn.Module):
    """LayerNorm without affine, modulated by ``(scale, shift) = Linear(SiLU(c))``."""

    def __init__(self, dim: int, cond_dim: int = COND_DIM):
        super().__init__()
        self.linear = nn.Linear(cond_dim, 2 * dim)
        self.dim = dim

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(c)).chunk(2, dim=1)
        normed = F.layer_norm(x, (self.dim,), eps=1e-6)
        return normed * (1 + scale)[:, None, :] + shift[:, None, :]


# ---- the model ----------------------------------------------------------------------------------


@dataclass
class DiTContext:
    """The time-invariant part of a forward pass, computed once per sampling run.

    ``text_embed`` ``[B, T, text_dim]``, ``text_residuals`` (one ``[B, T, dim]`` per fused
    block), ``start_emb``/``duration_emb`` ``[B, 512]`` (``duration_emb`` is None unless the
    model has a duration embedding).
    """

    text_embed: torch.Tensor
    text_residuals: list[torch.Tensor]
    start_emb: torch.Tensor
    duration_emb: torch.Tensor | None


class DiT(nn.Module):
    """DiffRhythm's velocity network.  ``forward`` returns the velocity ``[B, T, mel_dim]``."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        self.dim = config.dim
        self.depth = config.depth
        self.time_embed = TimestepEmbedding()
        self.start_time_embed = TimestepEmbedding()
        self.duration_time_embed = TimestepEmbedding() if config.has_duration_embed else None
        self.text_embed = TextEmbedding(config.text_num_embeds, config.text_dim, config.max_frames, config.conv_layers)
        self.input_embed = InputEmbedding(config.mel_dim, config.text_dim, config.dim)
        self.transformer_blocks = nn.ModuleList(
            LlamaBlock(config.dim, config.num_heads, config.dim * config.ff_mult, config.rms_norm_eps)
            for _ in range(config.depth)
        )
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_theta)
        # Linear(COND_DIM -> dim) applied to the text embedding; zero-initialised as upstream.
        self.text_fusion_linears = nn.ModuleList(
            nn.Sequential(nn.Linear(COND_DIM, config.dim), nn.SiLU()) for _ in range(config.depth // 2)
        )
        for layer in self.text_fusion_linears:
            for p in layer.parameters():
                nn.init.zeros_(p)
        self.norm_out = AdaLayerNormFinal(config.dim)
        self.proj_out = nn.Linear(config.dim, config.mel_dim)

    @torch.no_grad()
    def reset_buffers(self) -> None:
        """Recompute the non-persistent tables (after ``to_empty``); values are cast to each
        buffer's current dtype, as ``.half()`` would round them."""
        if self.text_embed.uses_blocks:
            table = text_position_table(self.config.text_dim, self.config.max_frames)
            self.text_embed.freqs_cis.copy_(table)
        self.rotary_emb.inv_freq.copy_(self.rotary_emb.frequencies())

    def encode_context(self, text: torch.Tensor, start_time: torch.Tensor,
                       duration: torch.Tensor | None = None, *, drop_text: bool = False) -> DiTContext:
        """Everything that does not depend on ``x`` or ``t``: lyrics, start and duration embeddings."""
        text_embed = self.text_embed(text, drop_text=drop_text)
        residuals = [layer(text_embed) for layer in self.text_fusion_linears]
        start_emb = self.start_time_embed(start_time)
        duration_emb = None
        if self.duration_time_embed is not None:
            if duration is None:
                raise ValueError("this model has a duration embedding: pass duration (frames / max_frames)")
            duration_emb = self.duration_time_embed(duration)
        return DiTContext(text_embed, residuals, start_emb, duration_emb)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        text: torch.Tensor | None,
        time: torch.Tensor,
        *,
        style_prompt: torch.Tensor,
        start_time: torch.Tensor | None = None,
        duration: torch.Tensor | None = None,
        drop_audio_cond: bool = False,
        drop_text: bool = False,
        drop_prompt: bool = False,
        context: DiTContext | None = None,
        taps: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Velocity at ``(time, x)``.

        ``x``, ``cond``: ``[B, T, mel_dim]``; ``text``: ``[B, T]`` token ids (ignored when
        ``context`` is given); ``time``: 0-d or ``[B]``; ``style_prompt``: ``[B, 512]``;
        ``start_time``/``duration``: ``[B]`` (duration only for the 6144-frame model).
        ``context`` (from ``encode_context``) replaces text/start_time/duration and ``drop_text``.
        ``taps``, when a dict, receives named intermediate tensors (time_emb, start_time_emb,
        c, text_embed, input_embed, block{i}_out, text_fusion{i}_out, norm_out).
        """
        batch, frames = x.shape[0], x.shape[1]
        if time.ndim == 0:
            time = time.repeat(batch)
        if context is None:
            if text is None or start_time is None:
                raise ValueError("pass text and start_time, or a precomputed context")
            context = self.encode_context(text, start_time, duration, drop_text=drop_text)
        time_emb = self.time_embed(time)
        duration_emb = context.duration_emb if context.duration_emb is not None else torch.zeros_like(context.start_emb)
        c = time_emb + context.start_emb + duration_emb
        if drop_prompt:
            style_prompt = torch.zeros_like(style_prompt)
        if drop_audio_cond:
            cond = torch.zeros_like(cond)

        h = self.input_embed(x, cond, context.text_embed, style_prompt, c)
        if taps is not None:
            taps.update(time_emb=time_emb, start_time_emb=context.start_emb, c=c,
                        text_embed=context.text_embed, input_embed=h)
        rope = self.rotary_emb(frames, h.dtype)
        for i, block in enumerate(self.transformer_blocks):
            h = block(h, rope)
            if taps is not None:
                taps[f"block{i}_out"] = h
            if i < len(context.text_residuals):
                h = h + context.text_residuals[i]
                if taps is not None:
                    taps[f"text_fusion{i}_out"] = context.text_residuals[i]
        h = self.norm_out(h, c)
        if taps is not None:
            taps["norm_out"] = h
        return self.proj_out(h)
