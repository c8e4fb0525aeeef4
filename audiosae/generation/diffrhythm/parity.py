"""Parity check of our DiT + sampler against the official DiffRhythm outputs in a fixture.

``check(fixture)`` rebuilds the model from ``fixture['config']``, loads
``fixture['checkpoint']`` strictly through ``checkpoint.py`` and returns one ``ParityRow`` per
recorded output (forward outputs and taps, the 32-head outputs, every sampler state).
Format of the fixture: ``shared/fixtures/README.md``.
"""

from __future__ import annotations

from typing import Any

import torch

from ...parity import ParityRow, compare
from .cfm import CFM, guided_velocity, make_noise
from .checkpoint import load_cfm
from .dit import DiTConfig

# fixture tap name -> our tap name, for the conditional and the unconditional forward
_COND_TAPS = {"time_emb": "time_emb", "start_time_emb": "start_time_emb", "c": "c", "text_embed": "text_embed",
              "input_embed": "input_embed", "norm_out": "norm_out"}
_UNCOND_TAPS = {"uncond_text_embed": "text_embed", "uncond_c": "c", "uncond_input_embed": "input_embed"}


def build_from_fixture(fixture: dict[str, Any], *, official_heads: bool = False) -> CFM:
    """Our model for the fixture's config, with its checkpoint loaded (strict, fp32)."""
    cfg = fixture["config"]
    heads = 32
    if not official_heads and cfg.get("patch_llama_heads"):
        heads = int(cfg["llama_config"]["num_attention_heads"])
    config = DiTConfig.from_official(cfg["model"], max_frames=int(cfg["max_frames"]), num_heads=heads)
    return load_cfm(fixture["checkpoint"], config, dtype=torch.float32)


def _forward(model: CFM, fx: dict[str, Any], *, conditional: bool, taps: dict | None = None) -> torch.Tensor:
    style = fx["fwd_style_prompt"] if conditional else fx["fwd_negative_style_prompt"]
    return model.transformer(fx["fwd_x"], fx["fwd_cond"], fx["fwd_text"], fx["fwd_time"], style_prompt=style,
                             start_time=fx["fwd_start_time"], duration=fx["fwd_duration"],
                             drop_audio_cond=not conditional, drop_text=not conditional, taps=taps)


def _sampler_kwargs(fx: dict[str, Any], *, edit: bool) -> dict[str, Any]:
    prefix = "sample_edit_" if edit else "sample_"
    return dict(text=fx["sample_text"], style_prompt=fx["sample_style_prompt"],
                negative_style_prompt=fx["sample_negative_style_prompt"], frames=int(fx["sample_duration"]),
                cond=fx[prefix + "cond"], latent_pred_segments=fx[prefix + "latent_pred_segments"].tolist(),
                start_time=fx["sample_start_time"], song_duration=fx["sample_song_duration"],
                steps=int(fx["config"].get("sample_steps", 32)),
                cfg_strength=float(fx["config"].get("sample_cfg_strength", 4.0)),
                noise=fx["sample_noise"])


def check(fixture: dict[str, Any]) -> list[ParityRow]:
    """One row per recorded output of the official code."""
    rows: list[ParityRow] = []
    model = build_from_fixture(fixture)
    cfg_strength = float(fixture["config"].get("sample_cfg_strength", 4.0))

    with torch.no_grad():
        taps_c: dict[str, torch.Tensor] = {}
        taps_u: dict[str, torch.Tensor] = {}
        out_c = _forward(model, fixture, conditional=True, taps=taps_c)
        out_u = _forward(model, fixture, conditional=False, taps=taps_u)
        rows.append(compare("fwd_out_cond", out_c, fixture["fwd_out_cond"]))
        rows.append(compare("fwd_out_uncond", out_u, fixture["fwd_out_uncond"]))
        rows.append(compare("fwd_out_cfg", guided_velocity(out_c, out_u, cfg_strength), fixture["fwd_out_cfg"]))
        for ref_name, ours in _COND_TAPS.items():
            rows.append(compare(f"fwd_int_{ref_name}", taps_c[ours], fixture[f"fwd_int_{ref_name}"]))
        for i in range(model.config.depth):
            if f"fwd_int_block{i}_out" in fixture:
                rows.append(compare(f"fwd_int_block{i}_out", taps_c[f"block{i}_out"], fixture[f"fwd_int_block{i}_out"]))
            if f"fwd_int_text_fusion{i}_out" in fixture:
                rows.append(compare(f"fwd_int_text_fusion{i}_out", taps_c[f"text_fusion{i}_out"],
                                    fixture[f"fwd_int_text_fusion{i}_out"]))
        for ref_name, ours in _UNCOND_TAPS.items():
            rows.append(compare(f"fwd_int_{ref_name}", taps_u[ours], fixture[f"fwd_int_{ref_name}"]))

        # Both branches as one batch of 2, the way the sampler runs them by default.
        batched = model.transformer(
            torch.cat([fixture["fwd_x"]] * 2), torch.cat([fixture["fwd_cond"], torch.zeros_like(fixture["fwd_cond"])]),
            torch.cat([fixture["fwd_text"], torch.zeros_like(fixture["fwd_text"])]), fixture["fwd_time"],
            style_prompt=torch.cat([fixture["fwd_style_prompt"], fixture["fwd_negative_style_prompt"]]),
            start_time=fixture["fwd_start_time"].repeat(2), duration=fixture["fwd_duration"].repeat(2))
        rows.append(compare("fwd_out_cond (batched cfg)", batched[:1], fixture["fwd_out_cond"]))
        rows.append(compare("fwd_out_uncond (batched cfg)", batched[1:], fixture["fwd_out_uncond"]))

        if "fwd_out_cond_official32heads" in fixture:
            model32 = build_from_fixture(fixture, official_heads=True)
            rows.append(compare("fwd_out_cond_official32heads", _forward(model32, fixture, conditional=True),
                                fixture["fwd_out_cond_official32heads"]))
            rows.append(compare("fwd_out_uncond_official32heads", _forward(model32, fixture, conditional=False),
                                fixture["fwd_out_uncond_official32heads"]))

    seed = fixture["config"].get("seed_noise")
    if seed is not None:
        noise = make_noise(int(fixture["sample_duration"]), seed=int(seed))
        rows.append(compare(f"sample_noise (seed={seed})", noise, fixture["sample_noise"]))
    for edit in (False, True):
        prefix = "sample_edit_" if edit else "sample_"
        result = model.sample(return_trajectory=True, **_sampler_kwargs(fixture, edit=edit))
        if not edit:
            rows.append(compare("sample_t_grid", result.t_grid, fixture["sample_t_grid"]))
        reference = fixture[prefix + "trajectory"]
        for k in range(reference.shape[0]):
            rows.append(compare(f"{prefix}trajectory[{k}]", result.trajectory[k], reference[k]))
        rows.append(compare(prefix + "out", result.latent, fixture[prefix + "out"]))
    for edit in (False, True):
        # The same runs with the two branches as separate passes (no batching).
        prefix = "sample_edit_" if edit else "sample_"
        separate = model.sample(batch_cfg=False, **_sampler_kwargs(fixture, edit=edit))
        rows.append(compare(f"{prefix}out (unbatched cfg)", separate.latent, fixture[prefix + "out"]))
    return rows
