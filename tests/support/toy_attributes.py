"""Attributes registered by tests (``audiosae.attribute_registry``): trivial extractors whose labels
are known, so a test can follow a new attribute through build, probes, report, exports and lanes.

``toy_level``: categorical, "quiet" / "loud" by the frame's mean square against -35 dB.
``toy_band``: ordinal, three level bands (class values -50, -30, -10 dB).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from audiosae.attribute_registry import Attribute, register, unregister

TOY = "toy_level"
TOY_ORDINAL = "toy_band"
BAND_EDGES = (-40.0, -20.0)          # dB: below, between, above
BAND_VALUES = (-50.0, -30.0, -10.0)  # each band's class value


def toy_extract(ctx, params):
    """Mean square of the hop around each frame centre."""
    half = max(1, ctx.hop_length // 2)
    c = np.clip(np.rint(ctx.frame_times * ctx.sample_rate).astype(int), 0, len(ctx.mono) - 1)
    ms = np.array([np.mean(ctx.mono[max(0, i - half):i + half] ** 2) for i in c])
    return {"toy_ms": ms}


def toy_db(raw) -> np.ndarray:
    return 10 * np.log10(np.maximum(raw["toy_ms"], 1e-12))


def toy_classify(params, raw, spec):
    return (toy_db(raw) > params["threshold_db"]).astype(np.int64)


def band_classify(params, raw, spec):
    return np.searchsorted(np.asarray(BAND_EDGES), toy_db(raw), side="right").astype(np.int64)


def register_toys() -> None:
    register(Attribute(name=TOY, description="frame louder than a threshold", steering="toward 'loud': louder",
                       ordinal=False, columns={"toy_ms": 1}, extract=toy_extract, classify=toy_classify,
                       class_names=lambda p: ["quiet", "loud"], default_params=lambda: {"threshold_db": -35.0}),
             replace=True)
    register(Attribute(name=TOY_ORDINAL, description="frame level in three bands", steering="toward a band",
                       ordinal=True, columns={"toy_ms": 1}, extract=toy_extract, classify=band_classify,
                       class_names=lambda p: ["low", "mid", "high"],
                       class_value=lambda p, k: BAND_VALUES[k]), replace=True)


def toy_attributes() -> Iterator[str]:
    """Body of a fixture: both registered for the test, removed after."""
    register_toys()
    yield TOY
    unregister(TOY_ORDINAL)
    unregister(TOY)
