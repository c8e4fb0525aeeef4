"""Load DiffRhythm ``cfm_model.pt`` checkpoints into our ``CFM``, with strict key matching.

The released files (``ASLP-lab/DiffRhythm-1_2`` base, ``ASLP-lab/DiffRhythm-1_2-full``) are
``{"model_state_dict": {"transformer.<key>": fp16 tensor, ...}}``; trainer checkpoints add
``ema_model_state_dict`` (prefix ``ema_model.``), optimizer state and ``step``.  The official
loader uses ``strict=False``, which silently leaves mismatched weights at their random init
(garbage audio, e.g. v1 checkpoints with v1.2 code).  Here every key must match, and the error
names the missing and unexpected ones.

Files are always read with ``torch.load(..., map_location="cpu", weights_only=True)``: plain
tensors only, no pickled code runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import torch

from ...errors import BackendError
from ...hub import check_state_dict
from .cfm import CFM
from .dit import DiT, DiTConfig

__all__ = ["DiTConfig", "DIFFRHYTHM_1B_BASE", "DIFFRHYTHM_1B_FULL", "RELEASED_CHECKPOINTS", "tiny_config",
           "released_config", "read_checkpoint", "infer_config", "load_weights", "build_cfm", "load_cfm",
           "download_checkpoint"]

# config/diffrhythm-1b.json with the two released context lengths (95 s and 285 s).
DIFFRHYTHM_1B_BASE = DiTConfig(dim=2048, depth=16, num_heads=32, ff_mult=4, text_dim=512, conv_layers=4,
                               mel_dim=64, text_num_embeds=363, max_frames=2048)
DIFFRHYTHM_1B_FULL = replace(DIFFRHYTHM_1B_BASE, max_frames=6144)

# variant -> (hub repo, file, size in bytes when known)
RELEASED_CHECKPOINTS: dict[str, tuple[str, str, int | None]] = {
    "base": ("ASLP-lab/DiffRhythm-1_2", "cfm_model.pt", 2_218_709_125),
    "full": ("ASLP-lab/DiffRhythm-1_2-full", "cfm_model.pt", None),
}


def released_config(variant: str = "base") -> DiTConfig:
    """Config of a released model: ``"base"`` (2048 frames, 95 s) or ``"full"`` (6144 frames, 285 s)."""
    try:
        return {"base": DIFFRHYTHM_1B_BASE, "full": DIFFRHYTHM_1B_FULL}[variant]
    except KeyError:
        raise BackendError(f"unknown DiffRhythm variant {variant!r}; choose 'base' or 'full'") from None


def tiny_config(**overrides: Any) -> DiTConfig:
    """A tiny random-init model for tests (the parity fixture's shape: dim 64, depth 2, 4 heads)."""
    values = dict(dim=64, depth=2, num_heads=4, ff_mult=2, text_dim=512, conv_layers=1, mel_dim=64,
                  text_num_embeds=363, max_frames=2048)
    values.update(overrides)
    return DiTConfig(**values)


def read_checkpoint(source: str | Path | Mapping[str, Any], *, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The ``transformer.*`` state dict of a checkpoint file or an already loaded checkpoint dict.

    Accepts ``{"model_state_dict": ...}`` (released files), ``use_ema=True`` for trainer files'
    ``ema_model_state_dict``, or a bare state dict.
    """
    if isinstance(source, Mapping):
        blob: Any = source
        where = "checkpoint"
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise BackendError(f"{path}: checkpoint file not found")
        try:
            blob = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors, truncated downloads, non-tensor payloads
            raise BackendError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(blob, Mapping):
        raise BackendError(f"{where}: expected a dict, got {type(blob).__name__}")
    if use_ema:
        if "ema_model_state_dict" not in blob:
            raise BackendError(f"{where}: no ema_model_state_dict (use use_ema=False)")
        raw = {k.removeprefix("ema_model."): v for k, v in blob["ema_model_state_dict"].items()
               if k not in ("initted", "step")}
    elif "model_state_dict" in blob:
        raw = blob["model_state_dict"]
    elif all(isinstance(v, torch.Tensor) for v in blob.values()):
        raw = blob
    else:
        raise BackendError(f"{where}: no model_state_dict; keys are {', '.join(sorted(map(str, blob))[:8])}")
    state = {str(k): v for k, v in raw.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise BackendError(f"{where}: non-tensor entries in the state dict: {', '.join(bad[:5])}")
    return state


def infer_config(state: Mapping[str, torch.Tensor], *, num_heads: int = 32) -> DiTConfig:
    """Read the DiT shape off a ``transformer.*`` state dict (heads cannot be read: default 32)."""
    def shape(key: str) -> tuple[int, ...]:
        try:
            return tuple(state["transformer." + key].shape)
        except KeyError:
            raise BackendError(f"checkpoint lacks transformer.{key}; not a DiffRhythm CFM state dict") from None

    dim, in_width = shape("input_embed.proj.weight")
    mel_dim = shape("proj_out.weight")[0]
    vocab, text_dim = shape("text_embed.text_embed.weight")
    depth = 1 + max((int(k.split(".")[2]) for k in state if k.startswith("transformer.transformer_blocks.")),
                    default=-1)
    conv_layers = 1 + max((int(k.split(".")[3]) for k in state if k.startswith("transformer.text_embed.text_blocks.")),
                          default=-1)
    hidden = shape("transformer_blocks.0.mlp.gate_proj.weight")[0] if depth else dim
    max_frames = 6144 if any(k.startswith("transformer.duration_time_embed.") for k in state) else 2048
    if in_width != 2 * mel_dim + text_dim + 2 * 512:
        raise BackendError(f"input projection width {in_width} does not match mel_dim {mel_dim} / text_dim {text_dim}")
    return DiTConfig(dim=dim, depth=depth, num_heads=num_heads, ff_mult=hidden // dim, text_dim=text_dim,
                     conv_layers=conv_layers, mel_dim=mel_dim, text_num_embeds=vocab - 1, max_frames=max_frames)


def load_weights(model: CFM, state: Mapping[str, torch.Tensor]) -> CFM:
    """Copy ``state`` into ``model`` (strict), casting each tensor to the model's dtype."""
    expected = model.state_dict()
    check_state_dict(expected, state, "the DiffRhythm model (wrong config or version?)")
    converted = {k: state[k].to(dtype=v.dtype) for k, v in expected.items()}
    model.load_state_dict(converted, strict=True)
    return model


def build_cfm(config: DiTConfig, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> CFM:
    """A randomly initialised ``CFM`` for ``config``."""
    return CFM(DiT(config)).to(device=device, dtype=dtype).eval()


def load_cfm(source: str | Path | Mapping[str, Any], config: DiTConfig | None = None, *,
             device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, use_ema: bool = False) -> CFM:
    """Build a ``CFM`` and load a checkpoint into it (strict).

    ``config`` None: read the shape off the checkpoint (32 heads, as the official code runs).
    The released weights are fp16; ``dtype`` picks what the model runs in (the official
    pipeline uses fp16 on every device; fp32 is the safer choice on CPU).
    """
    state = read_checkpoint(source, use_ema=use_ema)
    config = config or infer_config(state)
    # Built on the meta device: no random init and no fp32 copy of a 1B model before the
    # weights arrive; storage is allocated once, in the target dtype, on the target device.
    with torch.device("meta"):
        model = CFM(DiT(config))
    model = model.to(dtype=dtype).to_empty(device=device)
    model.transformer.reset_buffers()
    load_weights(model, state)
    return model.eval()


def download_checkpoint(variant: str = "base", *, revision: str | None = None, progress=None, cancel=None) -> Path:
    """Fetch a released ``cfm_model.pt`` through the hub cache; returns the local path."""
    if variant not in RELEASED_CHECKPOINTS:
        raise BackendError(f"unknown DiffRhythm variant {variant!r}; choose one of {', '.join(RELEASED_CHECKPOINTS)}")
    repo_id, filename, size = RELEASED_CHECKPOINTS[variant]
    from ...hub import download_hub_file  # lazy: keeps hub access out of import time

    extra: dict[str, Any] = {}
    if progress is not None:
        extra["progress"] = progress
    return download_hub_file(repo_id, filename, revision=revision, cancel=cancel, expected_size=size, **extra)

