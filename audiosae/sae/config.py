"""SAE configuration: architectures, constants, ``SAEConfig`` and grids."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from ..errors import AudioSAEError

DEFAULT_RMS_EPS = 1e-6
NORM_SAMPLE_FRAMES = 1 << 18      # frames used to estimate the input mean and scale
LR_DECAY_FRACTION = 0.2           # final fraction of steps over which the learning rate decays to 0
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
METRICS_EVERY = 10                # measure l1/l0 on every N-th step (two extra passes over h)
PROGRESS_INTERVAL_S = 0.5
MAX_CHUNK_ELEMENTS = 1 << 25      # memory bound: elements of one [G, rows, d_sae] buffer (128 MiB float32)
CPU_CHUNK_ELEMENTS = 1 << 20      # on CPU, cache-sized chunks make the element-wise passes ~10 % faster
MIN_CHUNK_ROWS = 256              # ...but never so few rows that the matmuls lose efficiency
# Evaluation: frames x features per pass, ~0.1 s on a CPU core so a cancel is seen soon
# (MAX_CHUNK_ELEMENTS took ~0.45 s at 8192 features); unchanged chunks up to 2048 features.
EVAL_CHUNK_ELEMENTS = 1 << 23

SAE_KIND = "audiosae.sae"
CHECKPOINT_KIND = "audiosae.sae_grid_checkpoint"
CHECKPOINT_FILE = "sae_grid_checkpoint.safetensors"
WEIGHTS_FILE = "sae.safetensors"
CFG_FILE = "cfg.json"
METRICS_FILE = "metrics.json"


# ---- configuration ------------------------------------------------------------------------
@dataclass
class SAEConfig:
    """One SAE: input width, dictionary width, L1 coefficient (lambda), RMSNorm eps, name."""

    d_in: int
    d_sae: int
    l1_coefficient: float
    rms_eps: float = DEFAULT_RMS_EPS
    name: str = ""

    def __post_init__(self) -> None:
        if int(self.d_in) != self.d_in or self.d_in < 1:
            raise AudioSAEError(f"SAE d_in must be a positive integer, got {self.d_in!r}")
        if int(self.d_sae) != self.d_sae or self.d_sae < 1:
            raise AudioSAEError(f"SAE d_sae must be a positive integer, got {self.d_sae!r}")
        self.d_in, self.d_sae = int(self.d_in), int(self.d_sae)
        self.l1_coefficient = float(self.l1_coefficient)
        self.rms_eps = float(self.rms_eps)
        if not math.isfinite(self.l1_coefficient) or self.l1_coefficient < 0:
            raise AudioSAEError(f"L1 coefficient must be >= 0, got {self.l1_coefficient!r}")
        if not math.isfinite(self.rms_eps) or self.rms_eps <= 0:
            raise AudioSAEError(f"rms_eps must be > 0, got {self.rms_eps!r}")
        if not self.name:
            self.name = f"x{self.expansion:g}-l1_{self.l1_coefficient:g}"

    @property
    def expansion(self) -> float:
        """``d_sae / d_in`` (an integer for the usual grids)."""
        ratio = self.d_sae / self.d_in
        return int(ratio) if ratio == int(ratio) else ratio

    @classmethod
    def with_expansion(cls, d_in: int, expansion: int, l1_coefficient: float, *,
                       rms_eps: float = DEFAULT_RMS_EPS, name: str = "") -> "SAEConfig":
        return cls(d_in=d_in, d_sae=int(d_in * expansion), l1_coefficient=l1_coefficient, rms_eps=rms_eps,
                   name=name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def grid_configs(d_in: int, expansions: Iterable[int], l1_coefficients: Iterable[float]) -> list[SAEConfig]:
    """Every (expansion, lambda) pair as an ``SAEConfig``, widths outermost."""
    lams = list(l1_coefficients)
    return [SAEConfig.with_expansion(d_in, e, lam) for e in expansions for lam in lams]

