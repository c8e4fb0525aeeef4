"""DiffRhythm's conditional flow-matching sampler (official ``CFM.sample`` semantics).

Flow time runs from t=0 (Gaussian noise) to t=1 (data); the DiT predicts the velocity
(data - noise).  Sampling is explicit Euler on ``t = linspace(0, 1, steps)`` (32 states,
31 updates by default) with classifier-free guidance

    v = v_c + (v_c - v_u) * cfg_strength            (cfg_strength 4.0 by default)

where the unconditional pass zeroes the cond latent, sets every lyric token to 0 and swaps
the style vector for the *negative* style prompt (it is not zeroed).  Edit mode: frames inside
``latent_pred_segments`` are generated; the others are fed to the model as cond and copied to
the output.

``CFM.iter_sample`` yields every ODE state together with the velocity computed at it and the
predicted end point ``x̂1 = x_t + (1 - t) · v``; these come from the passes the Euler update
needs anyway, so tracing costs no extra model evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from ... import defaults as D
from ...jobs import CancelToken, Progress, ProgressSink, null_progress
from .dit import COND_DIM, DiT, DiTConfig

DEFAULT_STEPS = D.TRACE_STEPS
DEFAULT_CFG_STRENGTH = D.TRACE_CFG_STRENGTH
# Below this the official sampler skips the unconditional pass entirely.
_CFG_OFF = 1e-5


@dataclass(frozen=True)
class SamplerState:
    """One ODE state of a sampling run.

    ``x_t``: the raw state ``[B, T, 64]`` at time ``t`` (index 0 is the noise).  ``velocity``:
    the guided velocity evaluated at this state (None at the final state, where no pass runs);
    ``velocity_cond``/``velocity_uncond`` its two branches (uncond None when guidance is off).
    ``x1_pred``: the end point the sampler heads for, ``x_t + (1 - t) · velocity`` inside the
    predicted segments and the cond latent outside them, so the final state's ``x1_pred``
    equals the returned latent.  Tensors belong to the sampler: do not modify them in place.
    """

    index: int
    steps: int
    t: float
    x_t: torch.Tensor
    x1_pred: torch.Tensor
    velocity: torch.Tensor | None
    velocity_cond: torch.Tensor | None
    velocity_uncond: torch.Tensor | None

    @property
    def is_final(self) -> bool:
        return self.index == self.steps - 1


@dataclass
class SampleResult:
    """``latent``: ``[B, T, 64]`` final latent (edit frames pasted).  With tracing on,
    ``trajectory`` and ``x1_predictions`` are ``[steps, B, T, 64]``; ``t_grid`` is ``[steps]``."""

    latent: torch.Tensor
    t_grid: torch.Tensor
    trajectory: torch.Tensor | None = None
    x1_predictions: torch.Tensor | None = None


def make_noise(frames: int, *, seed: int, batch: int = 1, channels: int = 64) -> torch.Tensor:
    """Initial noise ``[batch, frames, channels]`` float32 on the CPU.

    Item 0 equals ``torch.manual_seed(seed); torch.randn(frames, channels)`` (what the official
    sampler draws with ``seed``); further items continue the same stream.  A private generator
    is used, so the global RNG is untouched and the result is the same on every device.
    """
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.stack([torch.randn(frames, channels, generator=generator) for _ in range(batch)])


def guided_velocity(v_cond: torch.Tensor, v_uncond: torch.Tensor, strength: float) -> torch.Tensor:
    """Classifier-free guidance, in the official operation order."""
    return v_cond + (v_cond - v_uncond) * strength


def prediction_mask(frames: int, segments: Sequence[Sequence[int]] | torch.Tensor | None,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool ``[frames]``: True for frames the sampler generates (``start <= i < end``)."""
    if segments is None:
        return torch.ones(frames, dtype=torch.bool, device=device)
    if isinstance(segments, torch.Tensor):
        segments = segments.reshape(-1, 2).tolist()
    mask = torch.zeros(frames, dtype=torch.bool, device=device)
    for pair in segments:
        if len(pair) != 2:
            raise ValueError(f"latent_pred_segments entries must be (start, end) pairs, got {pair!r}")
        start, end = int(pair[0]), int(pair[1])
        if start < 0 or end <= start:
            raise ValueError(f"bad predicted segment ({start}, {end}): need 0 <= start < end (frames)")
        mask[start:end] = True
    return mask


@dataclass
class _Inputs:
    """Sampler inputs after validation, in the model's dtype and on its device."""

    x0: torch.Tensor
    cond: torch.Tensor  # original cond, pasted outside the predicted segments
    step_cond: torch.Tensor  # cond with the predicted frames zeroed: what the model sees
    mask: torch.Tensor  # [1, T, 1] bool
    text: torch.Tensor
    style: torch.Tensor
    negative_style: torch.Tensor
    start_time: torch.Tensor
    song_duration: torch.Tensor


class CFM(nn.Module):
    """Wrapper holding the DiT as ``transformer`` (so keys read ``transformer.*``) plus the sampler."""

    def __init__(self, transformer: DiT):
        super().__init__()
        self.transformer = transformer

    @classmethod
    def from_config(cls, config: DiTConfig) -> "CFM":
        return cls(DiT(config))

    @property
    def config(self) -> DiTConfig:
        return self.transformer.config

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- input handling ---------------------------------------------------------------------

    def _prepare(self, *, text, style_prompt, negative_style_prompt, frames, cond, latent_pred_segments,
                 start_time, song_duration, noise, seed) -> _Inputs:
        dtype, device, cfg = self.dtype, self.device, self.config
        text = torch.as_tensor(text, dtype=torch.long)
        if text.ndim == 1:
            text = text.unsqueeze(0)
        if text.ndim != 2:
            raise ValueError(f"text must be [B, T] token ids, got shape {list(text.shape)}")
        if frames is None:
            frames = text.shape[1]
        frames = int(frames)
        if not 1 <= frames <= cfg.max_frames:
            raise ValueError(f"frames must lie in [1, {cfg.max_frames}] for this model, got {frames}")
        if text.shape[1] > frames:
            raise ValueError(f"text has {text.shape[1]} tokens for {frames} frames (tokens are frame-aligned)")
        if text.numel() and (int(text.min()) < 0 or int(text.max()) > cfg.text_num_embeds):
            raise ValueError(f"token ids must lie in [0, {cfg.text_num_embeds}]")
        if text.shape[1] < frames:  # shorter lyrics: the rest is filler (id 0)
            text = torch.nn.functional.pad(text, (0, frames - text.shape[1]))

        style = _as_rows(style_prompt, COND_DIM, "style_prompt")
        negative = _as_rows(negative_style_prompt, COND_DIM, "negative_style_prompt")
        if noise is not None:
            noise = torch.as_tensor(noise)
            if noise.ndim == 2:
                noise = noise.unsqueeze(0)
            if noise.ndim != 3 or noise.shape[1:] != (frames, cfg.mel_dim):
                raise ValueError(f"noise must be [B, {frames}, {cfg.mel_dim}], got {list(noise.shape)}")
        if cond is not None:
            cond = torch.as_tensor(cond)
            if cond.ndim == 2:
                cond = cond.unsqueeze(0)
            if cond.ndim != 3 or cond.shape[2] != cfg.mel_dim or cond.shape[1] < frames:
                raise ValueError(f"cond must be [B, >= {frames}, {cfg.mel_dim}], got {list(cond.shape)}")
            cond = cond[:, :frames]  # the official sampler also cuts a longer cond
        sizes = {t.shape[0] for t in (text, style, negative, noise, cond) if t is not None}
        batch = max(sizes)
        if sizes - {1, batch}:
            raise ValueError(f"inconsistent batch sizes {sorted(sizes)} (each input needs 1 or B rows)")

        def rows(t: torch.Tensor) -> torch.Tensor:
            return t.expand(batch, *t.shape[1:]).to(device=device)

        if noise is None:
            if seed is not None:
                noise = make_noise(frames, seed=seed, batch=batch, channels=cfg.mel_dim)
            else:
                noise = torch.randn(batch, frames, cfg.mel_dim)
        x0 = rows(noise).to(dtype)
        if cond is None:
            cond = torch.zeros(batch, frames, cfg.mel_dim, dtype=dtype, device=device)
        else:
            cond = rows(cond).to(dtype)
        mask = prediction_mask(frames, latent_pred_segments, device)[None, :, None]
        step_cond = torch.where(mask, torch.zeros_like(cond), cond)
        start = _as_batch_scalar(0.0 if start_time is None else start_time, batch, "start_time")
        duration = _as_batch_scalar(frames / cfg.max_frames if song_duration is None else song_duration,
                                    batch, "song_duration")
        return _Inputs(x0=x0, cond=cond, step_cond=step_cond, mask=mask,
                       text=rows(text).contiguous(), style=rows(style).to(dtype),
                       negative_style=rows(negative).to(dtype), start_time=start.to(device=device, dtype=dtype),
                       song_duration=duration.to(device=device, dtype=dtype))

    # ---- sampling -----------------------------------------------------------------------------

    @torch.no_grad()
    def iter_sample(
        self,
        *,
        text: torch.Tensor,
        style_prompt: torch.Tensor,
        negative_style_prompt: torch.Tensor,
        frames: int | None = None,
        cond: torch.Tensor | None = None,
        latent_pred_segments: Sequence[Sequence[int]] | torch.Tensor | None = None,
        start_time: float | torch.Tensor | None = None,
        song_duration: float | torch.Tensor | None = None,
        steps: int = DEFAULT_STEPS,
        cfg_strength: float = DEFAULT_CFG_STRENGTH,
        noise: torch.Tensor | None = None,
        seed: int | None = None,
        batch_cfg: bool = True,
        cancel: CancelToken | None = None,
    ) -> Iterator[SamplerState]:
        """Run the sampler, yielding a ``SamplerState`` for each of the ``steps`` states.

        ``text``: ``[B, L]`` frame-aligned token ids (``L <= frames``; padded with the filler
        id 0); ``frames`` defaults to ``L``.  ``style_prompt``/``negative_style_prompt``:
        ``[B, 512]`` or ``[512]``.  ``cond``: ``[B, >= frames, 64]`` reference latent (default
        zeros).  ``latent_pred_segments``: ``[(start, end), ...]`` frames to generate (default:
        all).  ``start_time``: default 0; ``song_duration``: default ``frames / max_frames`` (only
        the 6144-frame model reads it).  ``noise`` ``[B, frames, 64]`` or ``seed`` (see
        ``make_noise``); neither: the global RNG.  ``batch_cfg`` runs the conditional and
        unconditional branches as one batch-2B forward pass.
        """
        if steps < 2:
            raise ValueError("steps must be at least 2 (the grid includes t=0 and t=1)")
        self.eval()
        inp = self._prepare(text=text, style_prompt=style_prompt, negative_style_prompt=negative_style_prompt,
                            frames=frames, cond=cond, latent_pred_segments=latent_pred_segments,
                            start_time=start_time, song_duration=song_duration, noise=noise, seed=seed)
        guided = cfg_strength >= _CFG_OFF
        velocity_fn = self._velocity_function(inp, guided=guided, batched=batch_cfg and guided)
        t_grid = torch.linspace(0, 1, steps, device=self.device, dtype=self.dtype)

        x = inp.x0
        for k in range(steps):
            t = t_grid[k]
            if k == steps - 1:
                yield SamplerState(k, steps, float(t), x, torch.where(inp.mask, x, inp.cond), None, None, None)
                return
            if cancel is not None:
                cancel.raise_if_cancelled()
            v_cond, v_uncond = velocity_fn(x, t)
            v = guided_velocity(v_cond, v_uncond, cfg_strength) if guided else v_cond
            x1_pred = torch.where(inp.mask, x + (1 - t) * v, inp.cond)
            yield SamplerState(k, steps, float(t), x, x1_pred, v, v_cond, v_uncond)
            x = x + (t_grid[k + 1] - t) * v

    def sample(
        self,
        *,
        return_trajectory: bool = False,
        callback: Callable[[SamplerState], None] | None = None,
        progress: ProgressSink = null_progress,
        **kwargs,
    ) -> SampleResult:
        """Run ``iter_sample(**kwargs)`` to the end and return the final latent.

        ``return_trajectory`` also stacks every state and every ``x1_pred``; ``callback`` sees
        each ``SamplerState``.  ``progress`` gets one report per model step.
        """
        states, predictions = [], []
        steps = int(kwargs.get("steps", DEFAULT_STEPS))
        final: SamplerState | None = None
        for state in self.iter_sample(**kwargs):
            if callback is not None:
                callback(state)
            if return_trajectory:
                states.append(state.x_t)
                predictions.append(state.x1_pred)
            progress(Progress("sampling", done=state.index, total=steps - 1))
            final = state
        assert final is not None
        t_grid = torch.linspace(0, 1, steps, dtype=self.dtype)
        if not return_trajectory:
            return SampleResult(latent=final.x1_pred, t_grid=t_grid)
        return SampleResult(latent=final.x1_pred, t_grid=t_grid,
                            trajectory=torch.stack(states), x1_predictions=torch.stack(predictions))

    def _velocity_function(self, inp: _Inputs, *, guided: bool, batched: bool
                           ) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]:
        """``(x, t) -> (v_cond, v_uncond)``; lyrics and start/duration embeddings are computed once."""
        dit = self.transformer
        null_text = torch.zeros_like(inp.text)
        null_cond = torch.zeros_like(inp.step_cond)
        if batched:
            context = dit.encode_context(torch.cat([inp.text, null_text]),
                                         inp.start_time.repeat(2), inp.song_duration.repeat(2))
            cond = torch.cat([inp.step_cond, null_cond])
            style = torch.cat([inp.style, inp.negative_style])

            def both(x: torch.Tensor, t: torch.Tensor):
                v = dit(torch.cat([x, x]), cond, None, t, style_prompt=style, context=context)
                v_cond, v_uncond = v.chunk(2)
                return v_cond, v_uncond
            return both

        context_cond = dit.encode_context(inp.text, inp.start_time, inp.song_duration)
        context_null = dit.encode_context(null_text, inp.start_time, inp.song_duration) if guided else None

        def separate(x: torch.Tensor, t: torch.Tensor):
            v_cond = dit(x, inp.step_cond, None, t, style_prompt=inp.style, context=context_cond)
            if not guided:
                return v_cond, None
            v_uncond = dit(x, null_cond, None, t, style_prompt=inp.negative_style, context=context_null)
            return v_cond, v_uncond
        return separate


def _as_rows(value, width: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(value)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[1] != width:
        raise ValueError(f"{name} must be [B, {width}], got shape {list(t.shape)}")
    return t.float() if not t.is_floating_point() else t


def _as_batch_scalar(value, batch: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32) if not isinstance(value, torch.Tensor) else value
    t = t.reshape(-1)
    if t.numel() == 1:
        return t.expand(batch).clone()
    if t.numel() != batch:
        raise ValueError(f"{name} must be a scalar or have {batch} values, got {t.numel()}")
    return t
