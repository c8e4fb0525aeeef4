"""What an attribute plug-in is made of, and the table it is registered in.

``Attribute`` (name, extractor, classes, ordinal or not, steering), ``ExtractContext`` (what an
extractor gets), ``register``/``unregister`` and ``mono_of``.  The bottom of the registry: the
plug-in modules (``audiosae.attribute_library``, a test's own) import this and register into it;
``audiosae.attribute_registry`` reads the table (and loads the built-in library first), and
re-exports every name here.  Nothing here imports another attribute module, so the dependency
runs one way: registry -> library -> plugins.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from .errors import AudioSAEError

if TYPE_CHECKING:
    from .jobs import CancelToken

__all__ = ["Attribute", "ExtractContext", "Params", "register", "unregister", "mono_of", "EXTRA_PREFIX",
           "PAPER_ATTRIBUTES"]

EXTRA_PREFIX = "x."   # shard tensor name of a registered attribute's raw column: "x.<column>"
PAPER_ATTRIBUTES = ("pitch", "loudness", "timbre")


@dataclass
class ExtractContext:
    """What an extractor gets: one source's audio and the latent frame times.

    ``mono``: float32 ``[N]`` at ``sample_rate``; ``frame_times``: seconds ``[T]`` (the backend's
    frame centres); ``hop_length``: the latent hop in samples of ``sample_rate``; ``source``: the
    corpus ``Source`` (notes of built-in corpora, the file path) or None; ``cache``: shared by the
    extractors of one call (an STFT computed once).
    """

    mono: np.ndarray
    sample_rate: int
    frame_times: np.ndarray
    hop_length: int
    source: Any = None
    cancel: "CancelToken | None" = None
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(len(self.frame_times))

    def check_cancel(self) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()


Params = dict


@dataclass(frozen=True)
class Attribute:
    name: str
    description: str
    steering: str
    ordinal: bool
    columns: Mapping[str, int]                       # raw column -> width (1: [T])
    extract: Callable[[ExtractContext, Params], dict[str, np.ndarray]]
    # the third argument of classify and fit: the ``AttributeSpec`` asking (audiosae.attribute_spec)
    classify: Callable[[Params, Mapping[str, np.ndarray], Any], np.ndarray]
    class_names: Callable[[Params], list[str]]
    default_params: Callable[[], Params] = dict
    fit: Callable[[Params, Mapping[str, np.ndarray], Any], Params] | None = None
    class_value: Callable[[Params, int], float] | None = None
    check_params: Callable[[Params], None] | None = None
    # False: labels come from ground truth (MIDI programs, a side-car), not from the sound, so
    # decoded (steered) audio cannot be measured for it: no steering evaluation, no boost check
    from_audio: bool = True

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum() or self.name in PAPER_ATTRIBUTES:
            raise AudioSAEError(f"attribute name {self.name!r} must be a new identifier")
        if self.ordinal and self.class_value is None:
            raise AudioSAEError(f"ordinal attribute {self.name!r} needs class_value")
        for col, width in self.columns.items():
            if not col or "." in col or int(width) < 1:
                raise AudioSAEError(f"attribute {self.name!r}: bad raw column {col!r} (width {width})")


_REGISTRY: dict[str, Attribute] = {}
_LOCK = threading.Lock()


def register(attribute: Attribute, *, replace: bool = False) -> Attribute:
    """Add ``attribute`` to the registry; a name already there raises unless ``replace``."""
    with _LOCK:
        if attribute.name in _REGISTRY and not replace:
            raise AudioSAEError(f"attribute {attribute.name!r} is already registered")
        for other in _REGISTRY.values():
            if other.name == attribute.name:
                continue
            for col, width in attribute.columns.items():
                if col in other.columns and (other.columns[col] != width or other.extract is not attribute.extract):
                    raise AudioSAEError(f"attribute {attribute.name!r}: raw column {col!r} belongs to "
                                        f"{other.name!r} with another extractor")
        _REGISTRY[attribute.name] = attribute
    return attribute


def unregister(name: str) -> None:
    with _LOCK:
        _REGISTRY.pop(name, None)




def mono_of(wave: np.ndarray) -> np.ndarray:
    arr = np.asarray(wave, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr.mean(axis=0)
    return np.ascontiguousarray(arr.reshape(-1))
