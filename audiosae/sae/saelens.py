"""SAELens IO: our SAEs (and their probes) in the SAELens layout, and SAELens SAEs read back.

SAELens layout (``cfg.json`` + ``sae_weights.safetensors`` with ``W_enc [d_in, d_sae]``,
``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]``) is the common exchange format
for SAEs.  Our SAE is ReLU + a parameter-free RMSNorm on ``h``; SAELens has no such
architecture, so the export says ``"architecture": "standard"`` (the weights mean exactly
what SAELens' standard SAE means by them) and adds a ``hidden_norm`` block and a ``note``
saying that the features are ``f = h / sqrt(mean(h^2) + eps)``, which SAELens' own forward
does not compute.  ``import_saelens`` reads both our exports (exactly) and plain SAELens
``standard`` SAEs (adding our RMSNorm, with a warning on the returned SAE).

The other architectures map onto SAELens' as SAELens names them: ``topk`` -> ``"topk"``
(with ``k``), ``jumprelu`` -> ``"jumprelu"`` (with the ``threshold`` tensor), and
``batchtopk`` -> ``"jumprelu"`` with its estimated threshold on every feature (SAELens saves
BatchTopK SAEs for inference that way).  Without RMSNorm (``--no-rmsnorm``) SAELens' own
forward computes exactly our features and reconstruction; with it, the ``hidden_norm``
block and the note say what SAELens leaves out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .. import __version__
from ..errors import AudioSAEError, WorkspaceError
from ..probes import META_FILE as PROBES_META_FILE
from ..probes import WEIGHTS_FILE as PROBES_WEIGHTS_FILE
from ..probes import ProbeSet
from ..storage import SCHEMA_VERSION, atomic_write_json, load_tensors, read_json, save_tensors
from .config import DEFAULT_RMS_EPS, SAEConfig, parse_architecture
from .model import SparseAutoencoder

__all__ = ["SAELENS_CFG_FILE", "SAELENS_WEIGHTS_FILE", "EXPORT_KIND", "RMSNORM_WARNING", "export_saelens",
           "import_saelens", "saelens_import_warning", "load_exported_probes"]

SAELENS_CFG_FILE = "cfg.json"
SAELENS_WEIGHTS_FILE = "sae_weights.safetensors"
EXPORT_KIND = "audiosae.saelens_export"
_PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")
# our architecture -> SAELens' architecture of the saved (inference) SAE
SAELENS_ARCHITECTURE = {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}

FORWARD_NOTE = (
    "audiosae SAE: h = relu(x @ W_enc + b_enc); f = h / sqrt(mean(h^2) + eps) (parameter-free RMSNorm over "
    "the d_sae features of each frame, eps in hidden_norm.eps); x_hat = f @ W_dec + b_dec. SAELens' 'standard' "
    "forward omits the RMSNorm and decodes h directly, so with SAELens' own forward the features and the "
    "reconstruction differ from audiosae's; apply the RMSNorm to SAELens' feature activations yourself, or load "
    "the folder with audiosae.exports.import_saelens.")
RMSNORM_WARNING = (
    "imported a plain SAELens 'standard' SAE: audiosae adds its parameter-free RMSNorm on h "
    "(f = h / sqrt(mean(h^2) + eps)) before decoding, so features and reconstructions differ from SAELens' own "
    "forward")


# ---- SAELens layout ------------------------------------------------------------------------------
def export_saelens(sae: SparseAutoencoder, folder: str | Path, *, probes: ProbeSet | None = None,
                   metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``sae`` into ``folder`` as ``cfg.json`` + ``sae_weights.safetensors`` (SAELens layout).

    ``probes`` (trained on this SAE) go beside them as ``probes.safetensors`` + ``probes.json``
    in our ProbeSet format.  ``metadata`` is merged into cfg's SAELens ``metadata`` block.
    Each file is written atomically; the weights go first, so a crash leaves no cfg for them.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if probes is not None:
        try:
            probes.check_sae(sae)
        except AudioSAEError as exc:
            raise AudioSAEError(f"cannot export these probes with SAE {sae.cfg.name!r}: {exc}") from None
    cfg = sae.cfg
    tensors = {name: getattr(sae, name).detach().to("cpu", torch.float32).contiguous() for name in _PARAMS}
    if sae.threshold is not None:
        tensors["threshold"] = sae.threshold.detach().to("cpu", torch.float32).contiguous()
    fingerprint = sae.fingerprint()
    save_tensors(folder / SAELENS_WEIGHTS_FILE, tensors,
                 metadata={"kind": EXPORT_KIND, "d_in": cfg.d_in, "d_sae": cfg.d_sae, "rms_eps": cfg.rms_eps,
                           "architecture": cfg.label, "fingerprint": fingerprint})
    if probes is not None:
        probes.save(folder)
    sae_meta = _json_safe(dict(sae.metadata))
    saelens_meta: dict[str, Any] = {
        "model_name": str(sae.metadata.get("backend", "")),
        "hook_name": "codec_latent",          # the SAE reads the codec's latent frames, not a transformer hook
        "hook_head_index": None,
        "prepend_bos": False,
        "context_size": None,
        "dataset_path": None,
        "exported_by": f"audiosae {__version__}",
        **_json_safe(dict(metadata or {})),
    }
    out = {
        "architecture": SAELENS_ARCHITECTURE[cfg.architecture],
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": saelens_meta,
        "audiosae": {
            "schema_version": SCHEMA_VERSION, "kind": EXPORT_KIND, "name": cfg.name,
            "architecture": cfg.label, "rmsnorm": cfg.rmsnorm, "k": cfg.k,
            "l1_coefficient": cfg.l1_coefficient, "rms_eps": cfg.rms_eps, "fingerprint": fingerprint,
            "sae_metadata": sae_meta, "metrics": _json_safe(dict(sae.metrics)),
            "probes": ({"weights": PROBES_WEIGHTS_FILE, "meta": PROBES_META_FILE,
                        "attributes": probes.attributes} if probes is not None else None),
        },
    }
    if cfg.architecture == "relu":
        out["l1_coefficient"] = cfg.l1_coefficient
    elif cfg.architecture == "topk":
        out.update(k=cfg.k, rescale_acts_by_decoder_norm=False)
    if cfg.rmsnorm:
        # Ours: the forward pass has a parameter-free RMSNorm that SAELens' SAEs lack.
        out["hidden_norm"] = {"type": "rms", "eps": cfg.rms_eps, "parameters": 0,
                              "applied_to": "h (the SAE's activations), over the d_sae axis, before decoding"}
        out["note"] = FORWARD_NOTE if cfg.architecture == "relu" else (
            f"audiosae {cfg.label} SAE: f = h / sqrt(mean(h^2) + eps) (parameter-free RMSNorm over the d_sae "
            "features of each frame, eps in hidden_norm.eps) is decoded, x_hat = f @ W_dec + b_dec; SAELens' "
            f"'{out['architecture']}' forward decodes h directly, so its reconstruction differs (its feature "
            "activations h are ours before the norm); load the folder with audiosae.exports.import_saelens.")
    atomic_write_json(folder / SAELENS_CFG_FILE, out)
    return folder


def import_saelens(folder: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Read a SAELens-layout folder as our SAE.

    Our own exports come back exactly (same weights, eps and fingerprint).  A plain SAELens
    ``standard`` SAE is accepted too (``apply_b_dec_to_input`` is folded into ``b_enc``); the
    result's ``metadata["import_warning"]`` then holds ``RMSNORM_WARNING`` (see
    ``saelens_import_warning``).  Missing keys, wrong shapes, truncation or an unsupported
    architecture raise ``WorkspaceError`` naming the file.
    """
    folder = Path(folder)
    cfg_path, weights_path = folder / SAELENS_CFG_FILE, folder / SAELENS_WEIGHTS_FILE
    raw = read_json(cfg_path, kind="SAELens config")
    if not isinstance(raw, dict):
        raise WorkspaceError(f"{cfg_path}: SAELens config is not a JSON object")
    ours = raw.get("audiosae") if isinstance(raw.get("audiosae"), dict) else None
    if ours is not None and ours.get("kind") != EXPORT_KIND:
        ours = None
    if ours is not None and isinstance(ours.get("schema_version"), int) and ours["schema_version"] > SCHEMA_VERSION:
        raise WorkspaceError(f"{cfg_path}: written by a newer audiosae (schema {ours['schema_version']}); upgrade")
    architecture = raw.get("architecture", "standard")
    if architecture not in ("standard", "topk", "jumprelu"):
        raise WorkspaceError(f"{cfg_path}: SAELens architecture {architecture!r} is not supported; "
                             "audiosae reads 'standard' (ReLU), 'topk' and 'jumprelu' SAEs")
    if architecture == "topk" and raw.get("rescale_acts_by_decoder_norm"):
        raise WorkspaceError(f"{cfg_path}: TopK with rescale_acts_by_decoder_norm is not supported")
    norm = raw.get("normalize_activations", "none")
    if norm not in (None, "none", "expected_average_only_in"):
        # Input-dependent normalisations cannot be folded into the weights.
        raise WorkspaceError(f"{cfg_path}: normalize_activations {norm!r} is not supported (use 'none')")
    try:
        d_in, d_sae = _positive_int(raw, "d_in"), _positive_int(raw, "d_sae")
    except (KeyError, TypeError, ValueError) as exc:
        raise WorkspaceError(f"{cfg_path}: SAELens config lacks a valid {exc.args[0] if exc.args else 'd_in/d_sae'}"
                             " (positive integers 'd_in' and 'd_sae' are required)") from None
    expect = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if architecture == "jumprelu":
        expect["threshold"] = (d_sae,)
    tensors = load_tensors(weights_path, kind="SAELens weights", expect=expect)
    weights = {}
    for name in expect:
        t = tensors[name].to(torch.float32)
        if not torch.isfinite(t).all():
            raise WorkspaceError(f"{weights_path}: tensor {name!r} contains NaN or inf")
        weights[name] = t
    if raw.get("apply_b_dec_to_input", False):
        # SAELens computes relu((x - b_dec) @ W_enc + b_enc); fold the shift into b_enc.
        weights["b_enc"] = (weights["b_enc"].double() - weights["b_dec"].double() @ weights["W_enc"].double()).float()

    eps, l1, name = DEFAULT_RMS_EPS, 0.0, folder.name or "imported"
    arch = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}[architecture]
    rmsnorm, k = True, raw.get("k") if architecture == "topk" else None
    hidden = raw.get("hidden_norm") if isinstance(raw.get("hidden_norm"), dict) else {}
    try:
        if ours is not None:
            # Exports from before architectures existed have no "architecture" here: relu-rmsnorm.
            arch, rmsnorm = parse_architecture(str(ours.get("architecture", "relu-rmsnorm")))
            rmsnorm = bool(ours.get("rmsnorm", rmsnorm))
            k = ours.get("k")
            eps = _finite(hidden.get("eps", ours.get("rms_eps")), cfg_path, "hidden_norm.eps", positive=True)
            l1 = _finite(ours.get("l1_coefficient", 0.0), cfg_path, "audiosae.l1_coefficient")
            name = str(ours.get("name") or name)
        elif arch == "relu" and isinstance(raw.get("l1_coefficient"), (int, float)) \
                and math.isfinite(raw["l1_coefficient"]) and raw["l1_coefficient"] >= 0:
            l1 = float(raw["l1_coefficient"])
        elif arch == "jumprelu" and isinstance(raw.get("l0_coefficient"), (int, float)) \
                and math.isfinite(raw["l0_coefficient"]) and raw["l0_coefficient"] >= 0:
            l1 = float(raw["l0_coefficient"])
        if arch == "batchtopk" and ours is not None:
            k = ours.get("k")
        sae_cfg = SAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=l1, rms_eps=eps, name=name, architecture=arch,
                            rmsnorm=rmsnorm, k=k)
    except AudioSAEError as exc:
        raise WorkspaceError(f"{cfg_path}: {exc}") from None
    meta = dict(ours.get("sae_metadata") or {}) if ours is not None else {}
    meta["imported_from"] = str(folder)
    if ours is None:
        meta["import_warning"] = RMSNORM_WARNING
        if norm == "expected_average_only_in":
            meta["import_warning"] += ("; normalize_activations 'expected_average_only_in' is assumed to be "
                                       "folded into the saved weights (SAELens does so at save)")
        meta["saelens_metadata"] = _json_safe(raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {})
    sae = SparseAutoencoder(sae_cfg, metadata=meta)
    with torch.no_grad():
        for key, t in weights.items():
            getattr(sae, key).copy_(t)
    if ours is not None and ours.get("fingerprint") not in (None, sae.fingerprint()):
        raise WorkspaceError(f"{weights_path}: weights do not match the fingerprint in {SAELENS_CFG_FILE}; "
                             "one of the two files was replaced or edited")
    if ours is not None and isinstance(ours.get("metrics"), dict):
        sae.metrics = dict(ours["metrics"])
    return sae.to(device)


def saelens_import_warning(sae: SparseAutoencoder) -> str | None:
    """The warning ``import_saelens`` attached (a plain SAELens SAE: features differ), else None."""
    warning = sae.metadata.get("import_warning")
    return str(warning) if warning else None


def load_exported_probes(folder: str | Path, sae: SparseAutoencoder | None = None,
                         device: str | torch.device = "cpu") -> ProbeSet | None:
    """The probes exported beside an SAE (None if there are none); checked against ``sae`` when given."""
    folder = Path(folder)
    if not (folder / PROBES_META_FILE).is_file() and not (folder / PROBES_WEIGHTS_FILE).is_file():
        return None
    probes = ProbeSet.load(folder, device=device)
    if sae is not None:
        try:
            probes.check_sae(sae)
        except AudioSAEError as exc:
            raise WorkspaceError(f"{folder / PROBES_META_FILE}: {exc}") from None
    return probes


def _positive_int(raw: Mapping[str, Any], key: str) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise ValueError(key)
    return int(value)


def _finite(value: Any, path: Path, key: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value <= 0):
        raise WorkspaceError(f"{path}: {key} must be a {'positive' if positive else 'non-negative'} number, "
                             f"got {value!r}")
    return float(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return _json_safe(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


# ---- per-frame CSVs --------------------------------------------------------------------------------
