"""Sparse autoencoders on latent frames: the paper's ReLU + RMSNorm SAE, grid training, evaluation.

Architecture (Paek et al. 2025), per frame ``x`` of a codec latent::

    h     = ReLU(W_enc x + b_enc)          pre-norm code, the L1 term acts on it
    f     = RMSNorm(h) = h / sqrt(mean_j h_j^2 + eps)     parameter-free, the "features"
    x_hat = W_dec f + b_dec
    loss  = ||x - x_hat||^2 + lambda * ||h||_1

Weights are stored in the SAELens layout: ``W_enc`` is ``[d_in, d_sae]`` and ``W_dec`` is
``[d_sae, d_in]``, so ``h = relu(x @ W_enc + b_enc)`` and ``x_hat = f @ W_dec + b_dec``.
The RMSNorm has no gain: a per-feature gain ``g`` is exactly absorbed by the rows of
``W_dec`` (``W_dec^T (g * f) = (g * W_dec)^T f``), so it would add parameters, not capacity.

Training choices (measured figures in the module's benchmark and the project report):

* **Input normalisation.**  Codec latents have arbitrary offset and scale, which would make
  lambda mean something different for every backend.  Training therefore works on
  ``x_n = (x - mu) * s`` with ``mu`` the per-dimension mean and ``s = sqrt(d_in / E||x - mu||^2)``
  (so ``E||x_n||^2 = d_in``: one unit of variance per dimension), both estimated from up to
  ``NORM_SAMPLE_FRAMES`` training frames before the first step.  At export the map is folded
  into the weights (``W_enc <- s W_enc``, ``b_enc <- b_enc - s mu W_enc``, ``W_dec <- W_dec / s``,
  ``b_dec <- b_dec / s + mu``), so a saved SAE takes raw latents and h, f are unchanged.

* **RMSNorm scale invariance.**  ``f`` does not change when ``h`` is multiplied by ``c > 0``
  (until ``mean h^2`` nears eps), so the L1 term can be lowered by shrinking the encoder's
  overall scale without making ``h`` any sparser.  Measured on synthetic latents (d_in 64,
  4x, 2000 Adam steps, lambda 0.005 / 0.05 / 0.15 in the convention below) with free
  weights and eps 1e-6: the encoder's RMS row norm fell from 1 to 0.09 / 0.05 / 0.04 and the
  sparsity ended at 0.65 / 0.74 / 0.74, falling (0.83 -> 0.74) at the larger lambdas while
  the L1 was paid for by shrinking instead; eps = 1 did the same with the decoder growing
  3x.  With the pin below: 0.67 / 0.90 / 0.96.  Once ``mean h^2 << eps`` the model turns into
  a plain ReLU SAE, where shrinking the encoder and growing the decoder again lowers the L1
  for free, so no eps stops the drift; it only moves it.  Training therefore pins the encoder's overall
  scale: after every Adam step, ``(W_enc, b_enc)`` of each SAE are rescaled together so that
  the per-feature encoder vectors (columns of ``W_enc``, normalised units) have RMS norm 1.  In the RMSNorm regime this
  rescaling leaves ``f``, ``x_hat`` and the MSE exactly unchanged; it only removes the one
  direction in which the L1 term could be gamed.  Per-feature scales stay free (they are not a
  symmetry of the model because the RMS mixes features).  The saved SAE is the plain paper
  architecture; the pin is a training constraint only.

* **eps = 1e-6** (``DEFAULT_RMS_EPS``).  With the pinned scale a firing feature has
  ``h ~ O(1)``, so ``mean_j h_j^2 >= ~1e-5`` even for one active feature out of 32768
  (256x of 128): eps is negligible for every frame that has any real activity, so the
  SAE is in the scale-invariant regime the paper describes.  It still bounds the division
  (an all-zero ``h`` gives ``f = 0``) and keeps a frame whose only activity is float noise
  (RMS < 1e-3) from being blown up to full scale.

* **Loss reduction.**  Per batch of ``B`` frames in normalised units::

      mse  = sum (x_n - x_hat_n)^2 / (B * d_in)     per element; about the FVU
      l1   = sum_j h_j / B                          per frame, summed over features
      loss = mse + lambda * l1 / sqrt(d_in)

  This is exactly the paper's per-frame loss ``||x - x_hat||^2 + lambda ||h||_1``, averaged
  over frames, for inputs scaled to ``E||x||^2 = 1`` (with unit-norm encoder vectors, h
  scales with x).  With this convention the paper's grid lambda = 0.005 .. 0.15 gives
  fraction-of-zero sparsity 0.65-0.98 at 4x and 0.90-0.99 at 16x on realistic synthetic
  latents and on log-mel frames, with no dead features (``benchmarks/bench_sae.py --sweep``);
  the paper reports 0.55-0.99.

* Adam (betas 0.9/0.999), constant learning rate with a linear decay to 0 over the last
  ``LR_DECAY_FRACTION`` of steps; lambda ramps linearly from 0 over the first
  ``l1_warmup_fraction`` of steps (fewer features die early).  Initialisation: decoder rows
  are random unit directions scaled by ``sqrt(d_in / d_sae)`` (so ``E||x_hat||^2 = d_in`` at
  start), the encoder is their transpose with unit-norm vectors, biases are zero.  The init depends
  only on (seed, d_in, d_sae), so every lambda of a width starts from the same point and an
  SAE trained in a grid equals the same SAE trained alone.

Grid training reads each batch once and feeds it to every config.  Configs of equal width
are stacked (``[G, ...]`` parameters) and trained with batched matmuls and a hand-written
backward pass on preallocated buffers (in-place ops, no autograd graph), which keeps the
step within ~10-15 % of the time of its five matmuls on CPU.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from .devices import pick_device
from .errors import AudioSAEError, JobCancelled, WorkspaceError
from .frames import FrameStore
from .jobs import CancelToken, Progress, ProgressSink, null_progress
from .storage import (SCHEMA_VERSION, atomic_write_json, check_schema, load_tensors, load_tensors_metadata,
                      read_json_object, require_int, require_number, save_tensors)

__all__ = [
    "DEFAULT_RMS_EPS", "SAEConfig", "SparseAutoencoder", "rms_norm", "grid_configs", "train_sae_grid",
    "evaluate_sae", "evaluate_saes", "normalisation_stats",
]

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


# ---- the model ------------------------------------------------------------------------------
def rms_norm(h: torch.Tensor, eps: float = DEFAULT_RMS_EPS) -> torch.Tensor:
    """``h / sqrt(mean(h^2, last dim) + eps)``: unit RMS per frame, parameter-free."""
    return h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + eps)


def _tensor_fingerprint(tensors: dict[str, torch.Tensor], extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(str(list(t.shape)).encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


class SparseAutoencoder(nn.Module):
    """``h = ReLU(x W_enc + b_enc)``, ``f = RMSNorm(h)``, ``x_hat = f W_dec + b_dec`` on raw latents.

    ``metadata`` carries free-form facts saved with the SAE (backend, training settings,
    the normalisation that was folded in); ``metrics`` is what ``metrics.json`` held at load.
    """

    def __init__(self, cfg: SAEConfig, metadata: dict[str, Any] | None = None):
        super().__init__()
        self.cfg = cfg
        self.W_enc = nn.Parameter(torch.empty(cfg.d_in, cfg.d_sae))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.W_dec = nn.Parameter(torch.empty(cfg.d_sae, cfg.d_in))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.metrics: dict[str, Any] = {}
        with torch.no_grad():
            w_enc, w_dec = _init_weights(cfg.d_in, cfg.d_sae, seed=0)
            self.W_enc.copy_(w_enc)
            self.W_dec.copy_(w_dec)

    # -- forward ---------------------------------------------------------------------------
    def normalize(self, h: torch.Tensor) -> torch.Tensor:
        """The SAE's RMSNorm (its eps), e.g. to re-normalise steered features ``f + alpha w``."""
        return rms_norm(h, self.cfg.rms_eps)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw latents ``[..., d_in]`` -> ``(h, f)``, both ``[..., d_sae]``."""
        h = torch.relu(x @ self.W_enc + self.b_enc)
        return h, self.normalize(h)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Features ``[..., d_sae]`` -> reconstructed latents ``[..., d_in]``."""
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` -> ``(x_hat, h, f)``."""
        h, f = self.encode(x)
        return self.decode(f), h, f

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"W_enc": self.W_enc.detach(), "b_enc": self.b_enc.detach(),
                "W_dec": self.W_dec.detach(), "b_dec": self.b_dec.detach()}

    def fingerprint(self) -> str:
        """SHA-256 of the weights and eps: names the exact SAE that probes were trained on."""
        return _tensor_fingerprint(self._tensors(), extra=f"{SAE_KIND}:{self.cfg.rms_eps!r}")

    # -- files -------------------------------------------------------------------------------
    def save(self, folder: str | Path, metrics: dict[str, Any] | None = None,
             extra: dict[str, Any] | None = None) -> Path:
        """Write ``cfg.json`` + ``sae.safetensors`` + ``metrics.json`` into ``folder`` (atomically each).

        ``extra`` is merged into the saved metadata (e.g. ``{"backend": "encodec24k"}``).
        The weights go first and carry the shape facts and fingerprint in their header, so a
        crash between files leaves a folder whose ``load`` fails loudly, never a mismatched SAE.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if extra:
            self.metadata.update(extra)
        fingerprint = self.fingerprint()
        header = {"kind": SAE_KIND, "d_in": self.cfg.d_in, "d_sae": self.cfg.d_sae, "rms_eps": self.cfg.rms_eps,
                  "fingerprint": fingerprint}
        save_tensors(folder / WEIGHTS_FILE, self._tensors(), metadata=header)
        cfg = {"schema_version": SCHEMA_VERSION, "kind": SAE_KIND, "architecture": "relu-rmsnorm",
               **self.cfg.to_dict(), "expansion": self.cfg.expansion, "dtype": "float32",
               "layout": "h = relu(x @ W_enc + b_enc) [W_enc: d_in x d_sae]; f = h / sqrt(mean(h^2) + rms_eps); "
                         "x_hat = f @ W_dec + b_dec [W_dec: d_sae x d_in]; inputs are raw latents",
               "fingerprint": fingerprint, "metadata": _json_safe(self.metadata)}
        atomic_write_json(folder / CFG_FILE, cfg)
        self.metrics = dict(metrics or {})
        atomic_write_json(folder / METRICS_FILE, {"schema_version": SCHEMA_VERSION, **_json_safe(self.metrics)})
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> "SparseAutoencoder":
        """Load a folder written by ``save``; any missing, truncated, edited or newer file -> WorkspaceError."""
        folder = Path(folder)
        cfg_path, weights_path = folder / CFG_FILE, folder / WEIGHTS_FILE
        raw = read_json_object(cfg_path, kind="SAE config", document_kind=SAE_KIND)
        try:
            kind = "SAE config"
            cfg = SAEConfig(d_in=require_int(raw["d_in"], "d_in", cfg_path, kind, minimum=1),
                            d_sae=require_int(raw["d_sae"], "d_sae", cfg_path, kind, minimum=1),
                            l1_coefficient=require_number(raw["l1_coefficient"], "l1_coefficient", cfg_path, kind),
                            rms_eps=require_number(raw["rms_eps"], "rms_eps", cfg_path, kind), name=str(raw["name"]))
        except KeyError as exc:
            raise WorkspaceError(f"{cfg_path}: SAE config lacks {exc.args[0]!r}; was it edited by hand?") from None
        except WorkspaceError:
            raise
        except (TypeError, ValueError, AudioSAEError) as exc:
            raise WorkspaceError(f"{cfg_path}: SAE config has an invalid value ({exc})") from None
        header = load_tensors_metadata(weights_path, kind="SAE weights")
        check_schema(header, weights_path, kind="SAE weights")
        # Before the tensors: an edited cfg.json is named as such, not as a weights-shape problem.
        for key in ("d_in", "d_sae", "rms_eps"):
            if header.get(key) != getattr(cfg, key):
                where = "the weights' shape in " if key != "rms_eps" else ""
                raise WorkspaceError(f"{cfg_path}: {key} = {getattr(cfg, key)!r} does not match {where}"
                                     f"{weights_path.name} ({header.get(key)!r}); was cfg.json edited?")
        tensors = load_tensors(weights_path, kind="SAE weights", expect={
            "W_enc": (cfg.d_in, cfg.d_sae), "b_enc": (cfg.d_sae,), "W_dec": (cfg.d_sae, cfg.d_in),
            "b_dec": (cfg.d_in,)})
        for name, t in tensors.items():
            if t.dtype != torch.float32:
                raise WorkspaceError(f"{weights_path}: tensor {name!r} is {t.dtype}, expected float32")
            if not torch.isfinite(t).all():
                raise WorkspaceError(f"{weights_path}: tensor {name!r} contains NaN or inf")
        sae = cls(cfg, metadata=raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {})
        with torch.no_grad():
            for name, t in tensors.items():
                getattr(sae, name).copy_(t)
        expected = raw.get("fingerprint")
        if expected is not None and expected != sae.fingerprint():
            raise WorkspaceError(f"{weights_path}: weights do not match the fingerprint in {CFG_FILE}; "
                                 "one of the two files was replaced or edited")
        metrics_path = folder / METRICS_FILE
        if metrics_path.is_file():
            metrics = read_json_object(metrics_path, kind="SAE metrics")
            for key in NUMERIC_METRICS:  # shown in reports and the studio: numbers (or null), never text
                if metrics.get(key) is not None:
                    require_number(metrics[key], key, metrics_path, "SAE metrics")
            sae.metrics = {k: v for k, v in metrics.items() if k != "schema_version"}
        return sae.to(pick_device(str(device)) if not isinstance(device, torch.device) else device)

    def extra_repr(self) -> str:
        return (f"name={self.cfg.name!r}, d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}, "
                f"l1={self.cfg.l1_coefficient:g}, eps={self.cfg.rms_eps:g}")


NUMERIC_METRICS = ("n_frames", "sparsity", "l0", "l1", "dead_features", "dead_fraction", "mse", "fvu",
                   "explained_variance")


def _json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _init_weights(d_in: int, d_sae: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_enc [d_in, d_sae], W_dec [d_sae, d_in]) in normalised units; a function of (seed, d_in, d_sae)."""
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + d_in * 65_537 + d_sae) % (2 ** 62))
    directions = torch.randn(d_sae, d_in, generator=gen, dtype=torch.float64)
    directions /= directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
    w_dec = (directions * math.sqrt(d_in / d_sae)).float()
    w_enc = directions.T.contiguous().float()
    return w_enc, w_dec


# ---- normalisation --------------------------------------------------------------------------
class _MomentAccumulator:
    """Streaming per-dimension mean and total squared deviation (Chan's parallel update, float64)."""

    def __init__(self, d: int):
        self.n = 0
        self.mean = torch.zeros(d, dtype=torch.float64)
        self.m2 = torch.zeros(d, dtype=torch.float64)

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().to("cpu", torch.float64)
        nb = x.shape[0]
        if nb == 0:
            return
        mb = x.mean(0)
        m2b = (x - mb).pow(2).sum(0)
        delta = mb - self.mean
        total = self.n + nb
        self.mean += delta * (nb / total)
        self.m2 += m2b + delta.pow(2) * (self.n * nb / total)
        self.n = total

    @property
    def total_squared_deviation(self) -> float:
        return float(self.m2.sum())


def normalisation_stats(store: FrameStore, *, max_frames: int = NORM_SAMPLE_FRAMES, batch_size: int = 4096,
                        seed: int = 0, cancel: CancelToken | None = None) -> tuple[torch.Tensor, float]:
    """(per-dimension mean [d_in] float64, scale s) with ``E||(x - mean) * s||^2 = d_in``, from a sample."""
    acc = _MomentAccumulator(store.d_in)
    for batch in store.iter_batches("train", batch_size, shuffle=True, seed=seed):
        if cancel is not None:
            cancel.raise_if_cancelled()
        x = batch["latents"]
        acc.add(x[: max_frames - acc.n])
        if acc.n >= max_frames:
            break
    if acc.n == 0:
        raise WorkspaceError("the training split has no frames")
    mean_sq = acc.total_squared_deviation / acc.n
    if not math.isfinite(mean_sq):
        raise WorkspaceError("the training latents contain NaN or inf")
    if mean_sq <= 1e-20:
        raise WorkspaceError("the training latents are constant; an SAE cannot learn anything from them")
    return acc.mean, math.sqrt(store.d_in / mean_sq)


# ---- stacked training of one width ---------------------------------------------------------
_PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


class _WidthGroup:
    """All configs of one width, trained together: parameters stacked on a leading [G] axis.

    Works in normalised units.  ``compute_gradients`` is the hand-written backward of the
    documented loss (checked against autograd in the tests); ``adam_step`` updates and re-pins.
    """

    def __init__(self, configs: list[SAEConfig], indices: list[int], d_in: int, seed: int, device: torch.device):
        self.configs = configs
        self.indices = indices
        self.d_in = d_in
        self.d_sae = configs[0].d_sae
        self.G = len(configs)
        self.device = device
        w_enc, w_dec = _init_weights(d_in, self.d_sae, seed)
        G, N, d = self.G, self.d_sae, d_in
        self.params = {
            "W_enc": w_enc.to(device).unsqueeze(0).repeat(G, 1, 1),
            "b_enc": torch.zeros(G, N, device=device),
            "W_dec": w_dec.to(device).unsqueeze(0).repeat(G, 1, 1),
            "b_dec": torch.zeros(G, d, device=device),
        }
        self.grads = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.adam_m = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.adam_v = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.lams = torch.tensor([c.l1_coefficient for c in configs], dtype=torch.float32, device=device)
        self.eps = torch.tensor([c.rms_eps for c in configs], dtype=torch.float32, device=device).view(G, 1, 1)
        self._buffers: torch.Tensor | None = None
        self.pin()

    @property
    def key(self) -> str:
        return f"w{self.d_sae}"

    def _workspace(self, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = self.G * rows * self.d_sae
        if self._buffers is None or self._buffers.shape[1] < size:
            self._buffers = torch.empty(3, size, device=self.device)
        h, f, g = (self._buffers[i, :size].view(self.G, rows, self.d_sae) for i in range(3))
        return h, f, g

    def chunk_rows(self, batch: int) -> int:
        """Rows of the batch processed at once (gradients accumulate over chunks)."""
        per_row = self.G * self.d_sae
        rows = max(1, MAX_CHUNK_ELEMENTS // per_row)
        if self.device.type == "cpu":
            rows = min(rows, max(MIN_CHUNK_ROWS, CPU_CHUNK_ELEMENTS // per_row))
        return max(1, min(batch, rows))

    def compute_gradients(self, x: torch.Tensor, lam_scale: float, measure: bool,
                          cancel: CancelToken | None = None) -> dict[str, torch.Tensor] | None:
        """Gradients of ``mse + lam * l1 / sqrt(d_in)`` (module docstring) into ``self.grads``.

        ``x``: normalised batch ``[B, d_in]``.  Returns per-config sums (loss parts) when ``measure``.
        ``cancel`` is checked between row chunks: a wide grid's step takes ~1 s on a CPU core,
        too long to wait for a cancel; only ``self.grads`` is touched before ``adam_step``, so
        stopping here leaves the parameters at the last completed step.
        """
        p, gr = self.params, self.grads
        G, N, d = self.G, self.d_sae, self.d_in
        batch = x.shape[0]
        for g in gr.values():
            g.zero_()
        mse_scale = 2.0 / (batch * d)
        l1_grad = (self.lams * (lam_scale / (batch * math.sqrt(d)))).view(G, 1, 1)
        sums = {"sq_err": torch.zeros(G, device=self.device, dtype=torch.float64)} if measure else None
        if measure:
            sums["l1"] = torch.zeros_like(sums["sq_err"])
            sums["active"] = torch.zeros_like(sums["sq_err"])
        rows_per_chunk = self.chunk_rows(batch)
        for start in range(0, batch, rows_per_chunk):
            if cancel is not None:
                cancel.raise_if_cancelled()
            xc = x[start:start + rows_per_chunk]
            rows = xc.shape[0]
            H, F, GF = self._workspace(rows)
            torch.baddbmm(p["b_enc"].unsqueeze(1), xc.expand(G, rows, d), p["W_enc"], out=H)
            H.relu_()
            # r = 1 / sqrt(mean h^2 + eps), per frame and config: [G, rows, 1]
            r = torch.linalg.vector_norm(H, dim=-1, keepdim=True).square_().div_(N).add_(self.eps).rsqrt_()
            torch.mul(H, r, out=F)
            recon = torch.baddbmm(p["b_dec"].unsqueeze(1), F, p["W_dec"])          # [G, rows, d]
            err = recon - xc
            if measure:
                sums["sq_err"] += err.double().pow(2).sum(dim=(1, 2))
                sums["l1"] += H.sum(dim=(1, 2), dtype=torch.float64)
                sums["active"] += torch.count_nonzero(H.view(G, -1), dim=1).double()
            g_recon = err.mul_(mse_scale)                                           # dL/dx_hat
            gr["b_dec"] += g_recon.sum(1)
            gr["W_dec"].baddbmm_(F.transpose(1, 2), g_recon)
            # RMSNorm backward: dL/dh = r * (dL/df - f * <dL/df, f> / N), and <dL/df, f> =
            # <dL/dx_hat, x_hat - b_dec> is a [G, rows] product instead of a pass over [G, rows, N].
            dot = (g_recon * (recon - p["b_dec"].unsqueeze(1))).sum(-1, keepdim=True).div_(N)
            torch.bmm(g_recon, p["W_dec"].transpose(1, 2), out=GF)
            GF.mul_(r).addcmul_(F, dot.mul_(r).neg_())
            GF.add_(l1_grad)                                                        # L1 on h (h >= 0)
            GF.mul_(F.sign_())                                                      # ReLU mask (f > 0 iff h > 0)
            gr["W_enc"].baddbmm_(xc.T.expand(G, d, rows), GF)
            gr["b_enc"] += GF.sum(1)
        return sums

    def adam_step(self, step: int, lr: float) -> None:
        """One Adam update (``step`` counts from 1), then pin the encoder scale."""
        b1, b2 = ADAM_BETAS
        bias1 = 1 - b1 ** step
        bias2_sqrt = math.sqrt(1 - b2 ** step)
        for k, param in self.params.items():
            grad, m, v = self.grads[k], self.adam_m[k], self.adam_v[k]
            m.lerp_(grad, 1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = v.sqrt().div_(bias2_sqrt).add_(ADAM_EPS)
            param.addcdiv_(m, denom, value=-lr / bias1)
        self.pin()

    def pin(self) -> None:
        """Rescale (W_enc, b_enc) of each config so its encoder vectors have RMS norm 1 (module doc)."""
        w, b = self.params["W_enc"], self.params["b_enc"]
        scale = math.sqrt(self.d_sae) / torch.linalg.vector_norm(w.view(self.G, -1), dim=1).clamp_min(1e-12)
        w.mul_(scale.view(self.G, 1, 1))
        b.mul_(scale.view(self.G, 1))

    # -- checkpoint / export ------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for k in _PARAMS:
            out[f"{self.key}.{k}"] = self.params[k]
            out[f"{self.key}.adam_m.{k}"] = self.adam_m[k]
            out[f"{self.key}.adam_v.{k}"] = self.adam_v[k]
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], path: Path) -> None:
        for name, target in self.state_tensors().items():
            t = tensors.get(name)
            if t is None or tuple(t.shape) != tuple(target.shape):
                raise WorkspaceError(f"{path}: checkpoint tensor {name!r} is missing or has the wrong shape")
            target.copy_(t.to(target.device))

    def export(self, j: int, mean: torch.Tensor, scale: float) -> SparseAutoencoder:
        """Config ``j`` of the group as a raw-latent SAE (normalisation folded in, float64 maths)."""
        cfg = self.configs[j]
        w_enc = self.params["W_enc"][j].detach().cpu().double()
        b_enc = self.params["b_enc"][j].detach().cpu().double()
        w_dec = self.params["W_dec"][j].detach().cpu().double()
        b_dec = self.params["b_dec"][j].detach().cpu().double()
        mu = mean.double().cpu()
        sae = SparseAutoencoder(SAEConfig(**cfg.to_dict()))
        with torch.no_grad():
            sae.W_enc.copy_((w_enc * scale).float())
            sae.b_enc.copy_((b_enc - scale * (mu @ w_enc)).float())
            sae.W_dec.copy_((w_dec / scale).float())
            sae.b_dec.copy_((b_dec / scale + mu).float())
        return sae


# ---- grid training ------------------------------------------------------------------------
@dataclass
class _RunState:
    epoch: int = 0                  # current epoch (== epochs when finished)
    batch_in_epoch: int = 0         # batches of ``epoch`` already consumed
    step: int = 0                   # optimizer steps done (all epochs)
    frames: int = 0                 # frames seen (all epochs)
    seconds: float = 0.0            # training time before this process
    epoch_sums: dict[str, list[float]] = field(default_factory=dict)   # metric sums of this epoch
    last_epoch: dict[str, dict[str, float]] = field(default_factory=dict)


def _fingerprint(store: FrameStore, configs: Sequence[SAEConfig], **settings: Any) -> dict[str, Any]:
    return {"configs": [c.to_dict() for c in configs], "d_in": int(store.d_in),
            "n_train": int(store.n_frames("train")), **settings}


def _save_checkpoint(path: Path, groups: list[_WidthGroup], mean: torch.Tensor, scale: float, state: _RunState,
                     fingerprint: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {"norm.mean": mean}
    for grp in groups:
        tensors.update(grp.state_tensors())
    meta = {"kind": CHECKPOINT_KIND, "fingerprint": fingerprint, "norm_scale": scale,
            "state": asdict(state)}
    save_tensors(path, tensors, metadata=meta)


def _load_checkpoint(path: Path, groups: list[_WidthGroup], fingerprint: dict[str, Any]
                     ) -> tuple[torch.Tensor, float, _RunState] | None:
    if not path.is_file():
        return None
    meta = load_tensors_metadata(path, kind="SAE training checkpoint")
    check_schema(meta, path, kind="SAE training checkpoint")
    if meta.get("kind") != CHECKPOINT_KIND:
        raise WorkspaceError(f"{path}: not an SAE grid checkpoint")
    if meta.get("fingerprint") != fingerprint:
        raise WorkspaceError(f"{path}: checkpoint was made with other settings or data; delete it to start "
                             "over, or resume with the same configs, epochs, batch size, lr, warm-up and seed")
    tensors = load_tensors(path, kind="SAE training checkpoint")
    for grp in groups:
        grp.load_state_tensors(tensors, path)
    try:
        state = _RunState(**meta["state"])
        scale = float(meta["norm_scale"])
        mean = tensors["norm.mean"].double()
    except (KeyError, TypeError, ValueError) as exc:
        raise WorkspaceError(f"{path}: checkpoint state is incomplete ({exc})") from None
    return mean, scale, state


def _epoch_summary(sums: dict[str, list[float]], configs: Sequence[SAEConfig],
                   d_in: int) -> dict[str, dict[str, float]]:
    out = {}
    for c in configs:
        s = sums.get(c.name)
        if not s or s[4] == 0:
            continue
        sq_err, l1, active, loss, frames = s
        out[c.name] = {"loss": loss / frames, "mse": sq_err / (frames * d_in), "l1": l1 / frames,
                       "l0": active / frames, "sparsity": 1.0 - active / (frames * c.d_sae)}
    return out


def train_sae_grid(store: FrameStore, configs: list[SAEConfig], *, epochs: int, batch_size: int = 4096,
                   lr: float = 1e-3, l1_warmup_fraction: float = 0.05, seed: int = 0,
                   device: str | torch.device = "cpu", progress: ProgressSink = null_progress,
                   cancel: CancelToken | None = None, checkpoint_dir: Path | None = None,
                   checkpoint_every_s: float = 30) -> list[tuple[SparseAutoencoder, dict]]:
    """Train every config in one pass over the data per epoch; returns ``[(sae, train_metrics)]`` in order.

    Each batch comes from ``store.iter_batches("train", batch_size, shuffle=True, seed=seed + epoch)``
    and feeds all configs (equal widths stacked).  With ``checkpoint_dir`` the full state
    (weights, Adam moments, position in the epoch, normalisation) is written atomically every
    ``checkpoint_every_s`` seconds, at the end and before a cancel takes effect; a later call
    with the same arguments resumes from it and ends with the same weights as an
    uninterrupted run.  ``train_metrics`` are averages over the measured batches of the last
    epoch, in normalised units (``mse`` ~ FVU), plus bookkeeping.
    """
    if not configs:
        raise AudioSAEError("no SAE configs to train")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise AudioSAEError(f"SAE config names must be unique, got {names}")
    for c in configs:
        if c.d_in != store.d_in:
            raise AudioSAEError(f"SAE {c.name!r} has d_in {c.d_in} but the frames are {store.d_in}-d")
    if epochs < 1 or batch_size < 1:
        raise AudioSAEError("epochs and batch_size must be >= 1")
    if not 0 <= l1_warmup_fraction <= 1:
        raise AudioSAEError(f"l1_warmup_fraction must be in [0, 1], got {l1_warmup_fraction}")
    n_train = int(store.n_frames("train"))
    if n_train == 0:
        raise WorkspaceError("the training split has no frames")
    dev = device if isinstance(device, torch.device) else pick_device(str(device))
    d_in = int(store.d_in)

    by_width: dict[int, list[int]] = {}
    for i, c in enumerate(configs):
        by_width.setdefault(c.d_sae, []).append(i)
    groups = [_WidthGroup([configs[i] for i in idx], idx, d_in, seed, dev) for idx in by_width.values()]

    steps_per_epoch = math.ceil(n_train / batch_size)
    total_steps = epochs * steps_per_epoch
    warmup_steps = math.ceil(l1_warmup_fraction * total_steps)
    decay_steps = max(1, int(LR_DECAY_FRACTION * total_steps))
    fingerprint = _fingerprint(store, configs, epochs=epochs, batch_size=batch_size, lr=lr,
                               l1_warmup_fraction=l1_warmup_fraction, seed=seed)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None

    loaded = _load_checkpoint(ckpt_path, groups, fingerprint) if ckpt_path is not None else None
    if loaded is None:
        progress(Progress("SAE input statistics", 0, None, "estimating the latent mean and scale"))
        mean, scale = normalisation_stats(store, batch_size=batch_size, seed=seed, cancel=cancel)
        state = _RunState()
    else:
        mean, scale, state = loaded
    mean_dev = mean.to(dev, torch.float32)
    last_ckpt = time.monotonic()
    last_report = 0.0
    live: dict[str, dict[str, float]] = {}

    def checkpoint() -> None:
        nonlocal last_ckpt
        if ckpt_path is not None:
            state.seconds += time.monotonic() - last_ckpt
            last_ckpt = time.monotonic()
            _save_checkpoint(ckpt_path, groups, mean, scale, state, fingerprint)

    def report(force: bool = False) -> None:
        nonlocal last_report
        now = time.monotonic()
        if force or now - last_report >= PROGRESS_INTERVAL_S:
            last_report = now
            progress(Progress("train SAEs", state.step, total_steps,
                              f"epoch {min(state.epoch + 1, epochs)}/{epochs}",
                              metrics={"epoch": state.epoch, "step": state.step,
                                       "configs": {k: dict(v) for k, v in live.items()}}))

    while state.epoch < epochs:
        batches = store.iter_batches("train", batch_size, shuffle=True, seed=seed + state.epoch)
        seen = 0
        for batch in batches:
            if cancel is not None:
                try:
                    cancel.raise_if_cancelled()
                except JobCancelled:
                    checkpoint()
                    raise
            if seen < state.batch_in_epoch:      # resume: these batches were consumed before the cut
                seen += 1
                continue
            x = (batch["latents"].to(dev, torch.float32) - mean_dev).mul_(scale)
            step = state.step + 1
            lam_scale = min(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0
            lr_now = lr * max(0.0, min(1.0, (total_steps - state.step) / decay_steps))
            measure = step % METRICS_EVERY == 1 or METRICS_EVERY == 1
            # Every group's gradients first (cancellable), then every update (not): a cancel
            # mid-step must not leave some groups one step ahead of the checkpointed state.
            try:
                group_sums = [grp.compute_gradients(x, lam_scale, measure, cancel) for grp in groups]
            except JobCancelled:
                checkpoint()
                raise
            for grp, sums in zip(groups, group_sums):
                grp.adam_step(step, lr_now)
                if measure:
                    rows = x.shape[0]
                    values = torch.stack([sums["sq_err"], sums["l1"], sums["active"]], 1).tolist()
                    for j, (sq_err, l1, active) in enumerate(values):
                        c = grp.configs[j]
                        loss = sq_err / d_in + lam_scale * c.l1_coefficient * l1 / math.sqrt(d_in)
                        acc = state.epoch_sums.setdefault(c.name, [0.0] * 5)
                        for k, v in enumerate((sq_err, l1, active, loss, rows)):
                            acc[k] += v
                        live[c.name] = {"loss": loss / rows, "mse": sq_err / (rows * d_in), "l1": l1 / rows,
                                        "l0": active / rows, "sparsity": 1.0 - active / (rows * c.d_sae),
                                        "l1_coefficient": lam_scale * c.l1_coefficient}
            if not math.isfinite(sum(v["loss"] for v in live.values())):
                raise AudioSAEError("SAE training diverged (loss is NaN or inf); lower the learning rate")
            state.step = step
            state.batch_in_epoch = seen = seen + 1
            state.frames += x.shape[0]
            report(force=state.step == 1)
            if ckpt_path is not None and time.monotonic() - last_ckpt >= checkpoint_every_s:
                checkpoint()
        state.last_epoch = _epoch_summary(state.epoch_sums, configs, d_in)
        state.epoch_sums = {}
        state.epoch += 1
        state.batch_in_epoch = 0
        report(force=True)
    checkpoint()

    results: list[tuple[SparseAutoencoder, dict]] = [None] * len(configs)  # type: ignore[list-item]
    norm_meta = {"mean_norm": float(mean.norm()), "scale": scale, "folded": True}
    for grp in groups:
        for j, i in enumerate(grp.indices):
            sae = grp.export(j, mean, scale).to(dev)
            training = {"epochs": epochs, "steps": state.step, "frames": state.frames, "batch_size": batch_size,
                        "lr": lr, "l1_warmup_fraction": l1_warmup_fraction, "seed": seed,
                        "seconds": round(state.seconds + (time.monotonic() - last_ckpt), 3)}
            sae.metadata.update(normalisation=norm_meta, training=training)
            metrics = {**state.last_epoch.get(configs[i].name, {}), **training,
                       "units": "normalised latents (E||x||^2 = d_in); mse ~ fraction of variance unexplained"}
            results[i] = (sae, metrics)
    return results


# ---- evaluation -----------------------------------------------------------------------------
def evaluate_saes(saes: Sequence[SparseAutoencoder], store: FrameStore, split: str = "val",
                  batch_size: int = 4096, cancel: CancelToken | None = None) -> list[dict[str, Any]]:
    """``evaluate_sae`` for several SAEs in one pass over ``split`` (``cancel`` checked per chunk)."""
    if not saes:
        return []
    n_total = int(store.n_frames(split))  # type: ignore[arg-type]
    if n_total == 0:
        raise WorkspaceError(f"the {split!r} split has no frames to evaluate on")
    moments = _MomentAccumulator(store.d_in)
    acc = [{"sq_err": 0.0, "abs_h": 0.0, "active": 0, "alive": torch.zeros(s.cfg.d_sae, dtype=torch.bool)}
           for s in saes]
    n = 0
    with torch.no_grad():
        for batch in store.iter_batches(split, batch_size, shuffle=False):  # type: ignore[arg-type]
            x_cpu = batch["latents"].float()
            moments.add(x_cpu)
            n += x_cpu.shape[0]
            for sae, a in zip(saes, acc):
                x = x_cpu.to(sae.device)
                rows = max(1, EVAL_CHUNK_ELEMENTS // sae.cfg.d_sae)
                for s in range(0, x.shape[0], rows):
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    xc = x[s:s + rows]
                    x_hat, h, _ = sae(xc)
                    a["sq_err"] += float((x_hat - xc).double().pow(2).sum())
                    a["abs_h"] += float(h.sum(dtype=torch.float64))
                    a["active"] += int(torch.count_nonzero(h))
                    a["alive"] |= (h > 0).any(0).cpu()
    total_dev = moments.total_squared_deviation
    out = []
    for sae, a in zip(saes, acc):
        d_sae = sae.cfg.d_sae
        dead = int((~a["alive"]).sum())
        fvu = a["sq_err"] / total_dev if total_dev > 0 else float("nan")
        out.append({
            "n_frames": n,
            "sparsity": 1.0 - a["active"] / (n * d_sae),
            "l0": a["active"] / n,
            "l1": a["abs_h"] / n,
            "dead_features": dead,
            "dead_fraction": dead / d_sae,
            "mse": a["sq_err"] / (n * sae.cfg.d_in),
            "fvu": fvu,
            "explained_variance": 1.0 - fvu,
        })
    return out


def evaluate_sae(sae: SparseAutoencoder, store: FrameStore, split: str = "val", batch_size: int = 4096,
                 cancel: CancelToken | None = None) -> dict[str, Any]:
    """Streaming metrics of ``sae`` on ``split`` (raw latent units).

    ``sparsity``: fraction of zero entries of h; ``l0``: mean active features per frame;
    ``l1``: mean ||h||_1 per frame; ``dead_features``/``dead_fraction``: features never active
    on these frames; ``mse``: mean squared error per element; ``fvu``: sum of squared errors /
    sum of squared deviations from the split's mean; ``explained_variance = 1 - fvu``.
    """
    return evaluate_saes([sae], store, split, batch_size, cancel)[0]
