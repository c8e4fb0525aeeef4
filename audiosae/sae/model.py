"""The SAE module: forward pass, fingerprint, save/load."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..devices import pick_device
from ..errors import AudioSAEError, WorkspaceError
from ..storage import (SCHEMA_VERSION, atomic_write_json, check_schema, load_tensors, load_tensors_metadata,
                       read_json_object, require_int, require_number, save_tensors)
from .config import CFG_FILE, DEFAULT_RMS_EPS, METRICS_FILE, SAE_KIND, WEIGHTS_FILE, SAEConfig, parse_architecture

THRESHOLD_ARCHITECTURES = ("jumprelu", "batchtopk")   # saved with a per-feature inference threshold


# ---- the model ------------------------------------------------------------------------------
def rms_norm(h: torch.Tensor, eps: float = DEFAULT_RMS_EPS) -> torch.Tensor:
    """``h / sqrt(mean(h^2, last dim) + eps)``: unit RMS per frame, parameter-free."""
    return h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + eps)


def topk_code(pre: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest pre-activations of each row (ReLU'd), zeros elsewhere (SAELens' TopK)."""
    values, index = torch.topk(pre, k=min(k, pre.shape[-1]), dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter_(-1, index, values.relu())


def _tensor_fingerprint(tensors: dict[str, torch.Tensor], extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(str(list(t.shape)).encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def _layout(cfg: SAEConfig) -> str:
    act = {"relu": "h = relu(pre)",
           "topk": f"h = relu(pre) on the k={cfg.k} largest pre per frame, 0 elsewhere",
           "batchtopk": "h = relu(pre) * (pre > threshold) (BatchTopK at training; its estimated threshold here)",
           "jumprelu": "h = relu(pre) * (pre > threshold) (JumpReLU)"}[cfg.architecture]
    f = "f = h / sqrt(mean(h^2) + rms_eps)" if cfg.rmsnorm else "f = h"
    return (f"pre = x @ W_enc + b_enc [W_enc: d_in x d_sae]; {act}; {f}; x_hat = f @ W_dec + b_dec "
            "[W_dec: d_sae x d_in]; inputs are raw latents")


class SparseAutoencoder(nn.Module):
    """``h = act(x W_enc + b_enc)``, ``f = RMSNorm(h)`` (or ``h``), ``x_hat = f W_dec + b_dec`` on raw latents.

    ``act`` is ReLU (the paper), TopK, or a JumpReLU with the per-feature ``threshold``
    (``jumprelu``, and ``batchtopk`` at inference, as SAELens does); ``cfg.rmsnorm`` says
    whether the paper's parameter-free RMSNorm is applied to the code.

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
        self.threshold: nn.Parameter | None = None
        if cfg.architecture in THRESHOLD_ARCHITECTURES:
            self.threshold = nn.Parameter(torch.zeros(cfg.d_sae))
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.metrics: dict[str, Any] = {}
        with torch.no_grad():
            w_enc, w_dec = _init_weights(cfg.d_in, cfg.d_sae, seed=0)
            self.W_enc.copy_(w_enc)
            self.W_dec.copy_(w_dec)

    # -- forward ---------------------------------------------------------------------------
    def normalize(self, h: torch.Tensor) -> torch.Tensor:
        """The SAE's RMSNorm (its eps), e.g. to re-normalise steered features ``f + alpha w``;
        the identity for an SAE without RMSNorm."""
        return rms_norm(h, self.cfg.rms_eps) if self.cfg.rmsnorm else h

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``x W_enc + b_enc`` -> the code ``h`` (inference form of the architecture)."""
        arch = self.cfg.architecture
        if arch == "relu":
            return torch.relu(pre)
        if arch == "topk":
            return topk_code(pre, int(self.cfg.k))
        assert self.threshold is not None
        return torch.relu(pre) * (pre > self.threshold)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw latents ``[..., d_in]`` -> ``(h, f)``, both ``[..., d_sae]``."""
        h = self.activate(x @ self.W_enc + self.b_enc)
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
        out = {"W_enc": self.W_enc.detach(), "b_enc": self.b_enc.detach(),
               "W_dec": self.W_dec.detach(), "b_dec": self.b_dec.detach()}
        if self.threshold is not None:
            out["threshold"] = self.threshold.detach()
        return out

    def _tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        cfg = self.cfg
        out = {"W_enc": (cfg.d_in, cfg.d_sae), "b_enc": (cfg.d_sae,), "W_dec": (cfg.d_sae, cfg.d_in),
               "b_dec": (cfg.d_in,)}
        if self.threshold is not None:
            out["threshold"] = (cfg.d_sae,)
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the weights, eps and architecture: names the exact SAE that probes were trained on
        (for the paper's ReLU + RMSNorm SAE the same value as before architectures existed)."""
        extra = f"{SAE_KIND}:{self.cfg.rms_eps!r}"
        if not self.cfg.is_default_architecture:
            extra += f":{self.cfg.label}:{self.cfg.k}"
        return _tensor_fingerprint(self._tensors(), extra=extra)

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
        if not self.cfg.is_default_architecture:
            header.update(architecture=self.cfg.label, k=self.cfg.k)
        save_tensors(folder / WEIGHTS_FILE, self._tensors(), metadata=header)
        # "architecture" is the label (relu-rmsnorm as before, topk, jumprelu-rmsnorm, ...);
        # "activation" + "rmsnorm" + "k" say the same in fields.
        cfg_dict = self.cfg.to_dict()
        cfg_dict["activation"] = cfg_dict.pop("architecture")
        cfg = {"schema_version": SCHEMA_VERSION, "kind": SAE_KIND, "architecture": self.cfg.label,
               **cfg_dict, "expansion": self.cfg.expansion, "dtype": "float32",
               "layout": _layout(self.cfg),
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
            # Files from before architectures existed say "relu-rmsnorm" and have no rmsnorm/k.
            arch, norm_default = parse_architecture(str(raw.get("activation") or raw.get("architecture",
                                                                                          "relu-rmsnorm")))
            rmsnorm = raw.get("rmsnorm", norm_default)
            if not isinstance(rmsnorm, bool):
                raise WorkspaceError(f"{cfg_path}: rmsnorm must be true or false, got {rmsnorm!r}")
            k = raw.get("k")
            cfg = SAEConfig(d_in=require_int(raw["d_in"], "d_in", cfg_path, kind, minimum=1),
                            d_sae=require_int(raw["d_sae"], "d_sae", cfg_path, kind, minimum=1),
                            l1_coefficient=require_number(raw["l1_coefficient"], "l1_coefficient", cfg_path, kind),
                            rms_eps=require_number(raw["rms_eps"], "rms_eps", cfg_path, kind), name=str(raw["name"]),
                            architecture=arch, rmsnorm=rmsnorm,
                            k=None if k is None else require_int(k, "k", cfg_path, kind, minimum=1))
        except KeyError as exc:
            raise WorkspaceError(f"{cfg_path}: SAE config lacks {exc.args[0]!r}; was it edited by hand?") from None
        except WorkspaceError:
            raise
        except (TypeError, ValueError, AudioSAEError) as exc:
            raise WorkspaceError(f"{cfg_path}: SAE config has an invalid value ({exc})") from None
        header = load_tensors_metadata(weights_path, kind="SAE weights")
        check_schema(header, weights_path, kind="SAE weights")
        # Before the tensors: an edited cfg.json is named as such, not as a weights-shape problem.
        if (header.get("architecture", "relu-rmsnorm"), header.get("k")) != (cfg.label, cfg.k):
            raise WorkspaceError(f"{cfg_path}: architecture {cfg.label!r} (k={cfg.k}) does not match "
                                 f"{weights_path.name} ({header.get('architecture')!r}, k={header.get('k')}); "
                                 "was cfg.json edited?")
        for key in ("d_in", "d_sae", "rms_eps"):
            if header.get(key) != getattr(cfg, key):
                where = "the weights' shape in " if key != "rms_eps" else ""
                raise WorkspaceError(f"{cfg_path}: {key} = {getattr(cfg, key)!r} does not match {where}"
                                     f"{weights_path.name} ({header.get(key)!r}); was cfg.json edited?")
        sae = cls(cfg, metadata=raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {})
        tensors = load_tensors(weights_path, kind="SAE weights", expect=sae._tensor_shapes())
        for name, t in tensors.items():
            if t.dtype != torch.float32:
                raise WorkspaceError(f"{weights_path}: tensor {name!r} is {t.dtype}, expected float32")
            if not torch.isfinite(t).all():
                raise WorkspaceError(f"{weights_path}: tensor {name!r} contains NaN or inf")
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
        return (f"name={self.cfg.name!r}, {self.cfg.label}, d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}, "
                f"l1={self.cfg.l1_coefficient:g}, k={self.cfg.k}, eps={self.cfg.rms_eps:g}")


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


