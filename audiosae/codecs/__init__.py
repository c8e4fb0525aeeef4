"""Registry of latent backends by name.

Backends register a factory plus static facts (``BackendSpec``) so the CLI and the wizard
can list them, show download sizes and build them lazily: importing this package does not
import any heavy model code.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..devices import pick_device
from ..errors import BackendError
from .base import Encoded, LatentBackend, frame_centres, frame_count

__all__ = ["BackendSpec", "Encoded", "LatentBackend", "register_backend", "get_backend",
           "backend_spec", "available_backends"]


@dataclass(frozen=True)
class BackendSpec:
    """What a user needs to know before building a backend."""

    name: str
    factory: str  # "module:callable", imported on first use
    sample_rate: int
    channels: int
    hop_length: int
    latent_dim: int
    kind: str
    description: str
    download_bytes: int | None = None  # None: nothing to download
    default_options: dict[str, Any] = field(default_factory=dict)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    # The backend's frame geometry, known without building it (no weights): a workspace whose
    # codec cannot load still places measured attributes at the codec's frame centres.
    def n_frames(self, n_samples: int) -> int:
        return frame_count(n_samples, self.hop_length)

    def frame_centers(self, n_frames: int) -> np.ndarray:
        return frame_centres(n_frames, self.hop_length, self.sample_rate)


_REGISTRY: dict[str, BackendSpec] = {}


def register_backend(spec: BackendSpec) -> None:
    _REGISTRY[spec.name] = spec


def available_backends() -> list[BackendSpec]:
    return [ _REGISTRY[k] for k in sorted(_REGISTRY) ]


def backend_spec(name: str) -> BackendSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise BackendError(f"unknown backend {name!r}; known backends: {known}") from None


def get_backend(name: str, device: str | None = "auto", *, progress: Any = None, cancel: Any = None,
                **options: Any) -> LatentBackend:
    """Build backend ``name`` on ``device`` ("auto" = cuda -> mps -> cpu).

    ``progress``/``cancel`` reach backends that download weights (their factories take them);
    backends without downloads never see them.
    """
    spec = backend_spec(name)
    module_name, _, attr = spec.factory.partition(":")
    factory: Callable[..., LatentBackend] = getattr(importlib.import_module(module_name), attr)
    merged = {**spec.default_options, **options}
    accepted = inspect.signature(factory).parameters
    for key, value in (("progress", progress), ("cancel", cancel)):
        if value is not None and key in accepted:
            merged[key] = value
    return factory(device=pick_device(device), **merged)


# Built-in registrations.  Later backends (DiffRhythm-VAE, WavTokenizer) add theirs in
# their own modules, listed here so the registry knows them without importing them.
_BUILTIN_SPEC_MODULES = [
    "audiosae.codecs.mel",
    "audiosae.codecs.encodec_backend",
    "audiosae.codecs.diffrhythm_vae",
    "audiosae.codecs.wavtokenizer",
]
for _mod in _BUILTIN_SPEC_MODULES:
    try:
        _m = importlib.import_module(_mod)
    except ModuleNotFoundError as _exc:  # a module not yet written must not break the registry
        if _exc.name != _mod:
            raise
        continue
    for _spec in getattr(_m, "SPECS", ()):
        register_backend(_spec)
