"""Issue 14: automatic labels on the attributes beyond the paper's three, on a corpus whose right
labels are known (tests/support/labelled_corpus.py), the label search, the JSON output."""

from __future__ import annotations

import numpy as np
import pytest

from audiosae.describe import describe_features, search_features
from audiosae.feature_loop import mean_active_value, top_labelled
from tests.support.labelled_corpus import (BRASS_FEATURE, DEAD_FEATURE, MINOR_FEATURE, NOTE_FEATURE, ONSET_FEATURE,
                                           RANDOM_FEATURE, make_labelled_workspace)


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    ws, classes = make_labelled_workspace(tmp_path_factory.mktemp("labelled") / "ws")
    return ws, classes, describe_features(ws, "labelled", chunk_elements=600)


def test_each_feature_gets_its_known_label_first(described):
    _, _, desc = described
    assert {"onset", "chord", "instrument"} <= set(desc.attributes)
    expect = {ONSET_FEATURE: ("onset", "onset"), MINOR_FEATURE: ("chord", "Am"),
              BRASS_FEATURE: ("instrument", "brass"), NOTE_FEATURE: ("pitch", "C#4")}
    for j, (attribute, cls) in expect.items():
        best = desc.labels(j, top=1)[0]
        assert (best["attribute"], best["class"]) == (attribute, cls), (j, desc.labels(j, top=3))
        assert best["score"] > 0.99 and best["mass_fraction"] > 0.99
    # a random feature: no label near 1; a dead one: none at all
    assert desc.labels(RANDOM_FEATURE, top=1)[0]["score"] < 0.6
    assert desc.labels(DEAD_FEATURE) == []


def test_search_finds_features_by_new_attribute_labels(described):
    _, _, desc = described
    assert search_features(desc, "onset", min_score=0.9)[0]["feature"] == ONSET_FEATURE
    assert [h["feature"] for h in search_features(desc, "brass", min_score=0.9)] == [BRASS_FEATURE]
    minor = search_features(desc, "Am", min_score=0.9)
    assert [h["feature"] for h in minor] == [MINOR_FEATURE] and minor[0]["class"] == "Am"
    assert [h["feature"] for h in search_features(desc, "c#4", min_score=0.9)] == [NOTE_FEATURE]
    assert search_features(desc, "Bm", min_score=0.9) == []       # no feature of B minor
    # chord qualities in words: every minor triad, one named triad
    assert [h["feature"] for h in search_features(desc, "minor", min_score=0.9)] == [MINOR_FEATURE]
    assert [h["feature"] for h in search_features(desc, "A minor", min_score=0.9)] == [MINOR_FEATURE]
    assert search_features(desc, "major", min_score=0.9) == []    # the A-major frames have no feature


def test_top_labelled_and_typical_value(described):
    _, classes, desc = described
    top = top_labelled(desc, "chord", 1, min_active=10)
    assert top[0]["feature"] == MINOR_FEATURE and top[0]["class"] == "Am"
    assert top_labelled(desc, "instrument", 1, min_active=10)[0]["class"] == "brass"
    # feature 1 = x1 - 0.5 = 0.5 where active, RMS-normalised over the frame's active features
    assert 0.0 < mean_active_value(desc, MINOR_FEATURE) < 10.0
    assert mean_active_value(desc, DEAD_FEATURE) == 1.0
