"""Attributes as plug-ins: one registry of everything a frame can be labelled with.

An ``Attribute`` is

* a **name** (``onset``, ``chord`` ...; the paper's ``pitch``, ``loudness`` and ``timbre`` are
  built into ``AttributeSpec`` and keep their layout exactly);
* an **extractor**, evaluated once per source at the backend's frame centres:
  ``extract(ctx, params) -> {column: array}`` with ``ctx`` an ``ExtractContext`` (the mono wave,
  its sample rate, the frame times in seconds, the latent hop in samples, the corpus ``Source``
  when there is one).  Each column is float, ``[T]`` or ``[T, width]``; the raw values are what
  the corpus shards store (as ``x.<column>``), never the classes;
* a **class spec**: ``default_params()`` (JSON-able; what ``workspace.json`` keeps under
  ``attribute_spec.extra_attributes``), ``class_names(params)`` and ``classify(params, raw, spec)``
  turning the raw columns (plus the paper's raw columns: ``loudness_db`` etc., for silence) into
  int64 classes, ``-1`` where a frame has no label (it is left out of probes and evaluations);
  ``fit(params, raw, spec)`` (optional) refits params on the training split after a build
  (bins ranges, k-means centroids);
* whether it is **ordinal** (``class_value(params, k)`` then gives each class's value, for the
  within-one-bin accuracy and the mean error) and what **steering** toward one of its classes
  means (a sentence shown with the steering controls).

Columns may be shared (``chroma`` and ``chord`` both classify the ``chroma`` column, which is
measured once).  Registering is ``register(Attribute(...))``; tests register their own.
The new attributes of the project (onset, beat, harmony, flatness, MFCC timbre, instrument)
live in ``audiosae.attribute_library`` and are registered when this module is imported.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from .errors import AudioSAEError

if TYPE_CHECKING:
    from .attribute_spec import AttributeSpec
    from .jobs import CancelToken

__all__ = ["Attribute", "ExtractContext", "register", "unregister", "get_attribute", "registered_names",
           "measure_extra", "EXTRA_PREFIX", "PAPER_ATTRIBUTES"]

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
    classify: Callable[[Params, Mapping[str, np.ndarray], "AttributeSpec"], np.ndarray]
    class_names: Callable[[Params], list[str]]
    default_params: Callable[[], Params] = dict
    fit: Callable[[Params, Mapping[str, np.ndarray], "AttributeSpec"], Params] | None = None
    class_value: Callable[[Params, int], float] | None = None
    check_params: Callable[[Params], None] | None = None

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


def get_attribute(name: str) -> Attribute:
    _ensure_library()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise AudioSAEError(f"unknown attribute {name!r}; registered: "
                            f"{', '.join([*PAPER_ATTRIBUTES, *registered_names()])}") from None


def registered_names() -> list[str]:
    """The registered (non-paper) attributes, in registration order."""
    _ensure_library()
    with _LOCK:
        return list(_REGISTRY)


_library_loaded = False


def _ensure_library() -> None:
    global _library_loaded
    if not _library_loaded:
        _library_loaded = True
        from . import attribute_library  # noqa: F401  (registers the built-in new attributes)


def measure_extra(names: Sequence[str], params: Mapping[str, Params], ctx: ExtractContext) -> dict[str, np.ndarray]:
    """The raw columns of the attributes ``names`` (each shared column measured once), float64
    ``[T]`` / ``[T, width]``, checked for shape."""
    out: dict[str, np.ndarray] = {}
    t = ctx.n_frames
    for name in names:
        attr = get_attribute(name)
        if all(c in out for c in attr.columns):
            continue
        ctx.check_cancel()
        cols = attr.extract(ctx, dict(params.get(name) or attr.default_params()))
        for col, width in attr.columns.items():
            if col not in cols:
                raise AudioSAEError(f"attribute {name!r}: extractor returned no column {col!r}")
            arr = np.asarray(cols[col], dtype=np.float64)
            want = (t,) if int(width) == 1 else (t, int(width))
            if arr.shape != want:
                raise AudioSAEError(f"attribute {name!r}: column {col!r} has shape {list(arr.shape)}, "
                                    f"expected {list(want)}")
            out[col] = arr
    return out


def mono_of(wave: np.ndarray) -> np.ndarray:
    arr = np.asarray(wave, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr.mean(axis=0)
    return np.ascontiguousarray(arr.reshape(-1))
