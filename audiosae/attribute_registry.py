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
``Attribute``, ``ExtractContext`` and ``register`` are defined in ``audiosae.attribute_plugins``
(re-exported here), which plug-ins import, so nothing imports this module back.
The new attributes of the project (onset, beat, harmony, flatness, MFCC timbre, instrument)
live in ``audiosae.attribute_library`` and are registered when this module is imported.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .attribute_plugins import (EXTRA_PREFIX, PAPER_ATTRIBUTES, Attribute, ExtractContext,  # noqa: F401
                                Params, _LOCK, _REGISTRY, mono_of, register, unregister)
from .errors import AudioSAEError

__all__ = ["Attribute", "ExtractContext", "register", "unregister", "get_attribute", "registered_names",
           "measure_extra", "measurable_from_audio", "EXTRA_PREFIX", "PAPER_ATTRIBUTES"]


def get_attribute(name: str) -> Attribute:
    _ensure_library()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise AudioSAEError(f"unknown attribute {name!r}; registered: "
                            f"{', '.join([*PAPER_ATTRIBUTES, *registered_names()])}") from None


def measurable_from_audio(name: str) -> bool:
    """Whether ``name``'s classes can be measured on any audio (so on steered, decoded audio):
    the paper's three and every attribute whose extractor listens; not those labelled from
    ground truth (``instrument``)."""
    return name in PAPER_ATTRIBUTES or get_attribute(name).from_audio


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
