"""DiffRhythm v1.2 generator: our DiT velocity model, its CFM Euler sampler and checkpoint loading.

No dependency on ``transformers``, ``torchdiffeq`` or ``x_transformers``; parity with the
official code is checked by ``python -m audiosae.parity shared/fixtures/diffrhythm_tiny.pt``.
The matching latent codec is the ``diffrhythm-vae`` backend (``audiosae.codecs.diffrhythm_vae``).
"""

from .cfm import (CFM, DEFAULT_CFG_STRENGTH, DEFAULT_STEPS, SampleResult, SamplerState, guided_velocity,
                  make_noise, prediction_mask)
from .checkpoint import (DIFFRHYTHM_1B_BASE, DIFFRHYTHM_1B_FULL, RELEASED_CHECKPOINTS, build_cfm,
                         download_checkpoint, infer_config, load_cfm, load_weights, read_checkpoint,
                         released_config, tiny_config)
from .dit import COND_DIM, DiT, DiTConfig, DiTContext

__all__ = [
    "CFM", "COND_DIM", "DEFAULT_CFG_STRENGTH", "DEFAULT_STEPS", "DIFFRHYTHM_1B_BASE", "DIFFRHYTHM_1B_FULL",
    "DiT", "DiTConfig", "DiTContext", "RELEASED_CHECKPOINTS", "SampleResult", "SamplerState", "build_cfm",
    "download_checkpoint", "guided_velocity", "infer_config", "load_cfm", "load_weights", "make_noise",
    "prediction_mask", "read_checkpoint", "released_config", "tiny_config",
]
