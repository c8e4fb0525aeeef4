"""The feature inspector (old import path): the view is ``studio.widgets.inspector``, its
view-model ``studio.models.inspector``; the numbers come from ``audiosae.explore.decoding``
and ``audiosae.feature_index``."""

from __future__ import annotations

from .models.inspector import (BETA_RANGE, BOOST_TIP, BOOST_WINDOW_SECONDS, DEFAULT_BETA,  # noqa: F401
                               DISTINCT_SECONDS, HIST_BINS, INDEX_TOP_K, SNIPPET_SECONDS, TOP_CLASSES,
                               VOTES_SHOWN, InspectorModel)
from .widgets.inspector import CORPUS_BARS, NEGATIVE, PLAYING_ROW, POSITIVE, FeatureInspector  # noqa: F401
