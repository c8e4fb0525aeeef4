"""Exploring one workspace: what the studio's explorer and the CLI's inspection commands share.

* ``audiosae.explore.decoding``: probe decoding, once: logits, class distributions, argmax
  classes (chunked, cancellable), and the contributions ``c = W[k, j] f_j`` of one feature.
* ``audiosae.explore.sources``: a corpus source found again (its file, or the built-in
  source re-made with the workspace's seed), the first clip a workspace shows.
* ``audiosae.explore.clips``: the models bundle loaded and a clip analysed, as jobs.
* ``audiosae.explore.analysis``: the models bundle (``LoadedModels``: backend, SAE, probes,
  attribute spec) and clip analysis (``ClipAnalysis``); ``audiosae.analysis`` is this module
  under its old name.
* ``audiosae.explore.feature_index``: the corpus feature index (density, histograms, top frames,
  snippets, boost); ``audiosae.feature_index`` is this module under its old name.

The bundle's main names are re-exported here, lazily (importing ``audiosae.explore.sources``
does not load torch models).
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "LoadedModels": "audiosae.explore.analysis", "ClipAnalysis": "audiosae.explore.analysis",
    "FeatureIndex": "audiosae.explore.feature_index",
    "load_or_build_feature_index": "audiosae.explore.feature_index",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
