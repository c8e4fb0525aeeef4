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


# Architectures (SAELens names; "relu" is SAELens' "standard").  Each may have the paper's
# parameter-free RMSNorm on the code (``rmsnorm``); "relu" with it is the paper's SAE.
ARCHITECTURES = ("relu", "topk", "batchtopk", "jumprelu")
DEFAULT_ARCHITECTURE = "relu"
TOPK_FAMILY = ("topk", "batchtopk")
JUMPRELU_BANDWIDTH = 0.05         # rectangle-kernel width of the pseudo-derivative (SAELens' default)
JUMPRELU_INIT_THRESHOLD = 0.01    # SAELens' default, in normalised units
BATCHTOPK_THRESHOLD_LR = 0.01     # EMA rate of the inference threshold (SAELens' topk_threshold_lr)
AUXK_COEFFICIENT = 1.0 / 32       # AuxK weight (Gao et al.; dictionary_learning), TopK family only
DEAD_WINDOW_FRAMES = 1 << 17      # a feature that fired on none of the last min(this, n_train) frames is dead


def parse_architecture(name: str) -> tuple[str, bool]:
    """A CLI/file architecture name -> (architecture, rmsnorm default).

    ``relu-rmsnorm`` (the paper's SAE; the name in files written before architectures
    existed) -> ("relu", True); ``standard`` (SAELens) -> ("relu", False); the others keep
    their RMSNorm default (True) and are switched off with ``--no-rmsnorm``."""
    key = str(name).strip().lower().replace("_", "-")
    if key in ("relu-rmsnorm", "relu"):
        return "relu", True
    if key == "standard":
        return "relu", False
    for arch in ARCHITECTURES:
        if key == arch:
            return arch, True
        if key == f"{arch}-rmsnorm":
            return arch, True
    raise AudioSAEError(f"unknown SAE architecture {name!r}; choose relu-rmsnorm, topk, batchtopk or jumprelu")


def architecture_label(architecture: str, rmsnorm: bool) -> str:
    """The display/file name: ``relu-rmsnorm``, ``topk``, ``topk-rmsnorm`` ... (``relu`` without norm)."""
    return f"{architecture}-rmsnorm" if rmsnorm else architecture


# ---- configuration ------------------------------------------------------------------------
@dataclass
class SAEConfig:
    """One SAE: input width, dictionary width, sparsity coefficient (lambda), RMSNorm eps, name,
    architecture, whether the code is RMS-normalised, and k (TopK family).

    ``l1_coefficient`` is lambda of the sparsity penalty: L1 on h for ``relu``, L0 for
    ``jumprelu`` (SAELens' ``l0_coefficient``, see ``group``); the TopK family has none (0).
    """

    d_in: int
    d_sae: int
    l1_coefficient: float
    rms_eps: float = DEFAULT_RMS_EPS
    name: str = ""
    architecture: str = DEFAULT_ARCHITECTURE
    rmsnorm: bool = True
    k: int | None = None

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
        arch, _ = parse_architecture(self.architecture)
        self.architecture = arch
        self.rmsnorm = bool(self.rmsnorm)
        if arch in TOPK_FAMILY:
            if self.k is None or int(self.k) != self.k or not 1 <= int(self.k) <= self.d_sae:
                raise AudioSAEError(f"{arch} SAE needs an integer k in 1..d_sae ({self.d_sae}), got {self.k!r}")
            self.k = int(self.k)
            if self.l1_coefficient != 0:
                raise AudioSAEError(f"{arch} SAEs have no L1 term; lambda must be 0, got {self.l1_coefficient!r}")
        elif self.k is not None:
            raise AudioSAEError(f"k is only for topk/batchtopk SAEs, not {arch}")
        if not self.name:
            self.name = default_name(self.expansion, self.l1_coefficient, arch, self.rmsnorm, self.k)

    @property
    def expansion(self) -> float:
        """``d_sae / d_in`` (an integer for the usual grids)."""
        ratio = self.d_sae / self.d_in
        return int(ratio) if ratio == int(ratio) else ratio

    @property
    def label(self) -> str:
        """``relu-rmsnorm``, ``topk``, ``jumprelu-rmsnorm``, ... (``architecture_label``)."""
        return architecture_label(self.architecture, self.rmsnorm)

    @property
    def is_default_architecture(self) -> bool:
        """The paper's ReLU + RMSNorm SAE (the only one before architectures existed)."""
        return self.architecture == "relu" and self.rmsnorm

    @classmethod
    def with_expansion(cls, d_in: int, expansion: int, l1_coefficient: float, *,
                       rms_eps: float = DEFAULT_RMS_EPS, name: str = "", architecture: str = DEFAULT_ARCHITECTURE,
                       rmsnorm: bool = True, k: int | None = None) -> "SAEConfig":
        return cls(d_in=d_in, d_sae=int(d_in * expansion), l1_coefficient=l1_coefficient, rms_eps=rms_eps,
                   name=name, architecture=architecture, rmsnorm=rmsnorm, k=k)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_name(expansion: float, lam: float, architecture: str = DEFAULT_ARCHITECTURE, rmsnorm: bool = True,
                 k: int | None = None) -> str:
    """``x8-l1_0.05`` (the paper's SAE, as before), ``x8-topk32``, ``x8-jumprelu_l0_1``; ``-nonorm``
    when the code is not RMS-normalised."""
    arch, _ = parse_architecture(architecture)
    if arch == "relu":
        base = f"x{expansion:g}-l1_{lam:g}"
    elif arch == "jumprelu":
        base = f"x{expansion:g}-jumprelu_l0_{lam:g}"
    else:
        base = f"x{expansion:g}-{arch}{k}"
    return base if rmsnorm else f"{base}-nonorm"


def grid_configs(d_in: int, expansions: Iterable[int], l1_coefficients: Iterable[float] = (), *,
                 architecture: str = DEFAULT_ARCHITECTURE, rmsnorm: bool | None = None,
                 ks: Iterable[int] = ()) -> list[SAEConfig]:
    """Every (expansion, lambda) pair -- or (expansion, k) for the TopK family -- as an
    ``SAEConfig``, widths outermost."""
    arch, norm_default = parse_architecture(architecture)
    norm = norm_default if rmsnorm is None else bool(rmsnorm)
    if arch in TOPK_FAMILY:
        kk = list(ks)
        if not kk:
            raise AudioSAEError(f"a {arch} grid needs at least one k")
        return [SAEConfig.with_expansion(d_in, e, 0.0, architecture=arch, rmsnorm=norm, k=k)
                for e in expansions for k in kk]
    lams = list(l1_coefficients)
    return [SAEConfig.with_expansion(d_in, e, lam, architecture=arch, rmsnorm=norm) for e in expansions for lam in lams]

