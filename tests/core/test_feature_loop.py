"""Issue 14, closing the loop: audiosae.feature_loop boosts the top-labelled features and
measures their class share with the steering evaluation's measuring; cached beside the SAE."""

from __future__ import annotations

import json

import pytest

from audiosae.describe import describe_features
from audiosae.feature_loop import feature_loop, load_feature_loop, loop_path
from tests.core.test_feature_index import make_tiny_workspace


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    ws, name = make_tiny_workspace(tmp_path_factory.mktemp("loop") / "ws")
    return ws, name, describe_features(ws, name)


def test_boost_zero_changes_nothing_and_a_boost_is_measured_and_cached(tiny):
    ws, name, desc = tiny
    zero = feature_loop(ws, name, desc=desc, attributes=["pitch", "loudness"], per_attribute=1, clips=1,
                        clip_seconds=2.0, amount=0.0, save=False)
    assert len(zero["features"]) == 2 and not loop_path(ws, name).exists()
    for e in zero["features"]:
        # same decode path for the reference and the boosted audio: a zero boost moves nothing
        assert e["before"] == pytest.approx(e["after"], abs=1e-9) and e["delta"] == pytest.approx(0.0, abs=1e-9)
        assert e["class"] not in ("unvoiced",)
    doc = feature_loop(ws, name, desc=desc, attributes=["pitch", "loudness", "instrument"], per_attribute=1,
                       clips=1, clip_seconds=2.0, amount=8.0)
    assert set(doc["attributes"]) <= {"pitch", "loudness"} and doc["clips"]
    loud = [e for e in doc["features"] if e["attribute"] == "loudness"]
    assert loud and 0.0 <= loud[0]["before"] <= 1.0 and 0.0 <= loud[0]["after"] <= 1.0 and loud[0]["boost"] > 0
    cached = load_feature_loop(ws, name)
    assert cached is not None and cached["features"] == json.loads(json.dumps(doc["features"]))
    # another SAE's weights: the cache is stale
    cfg = ws.sae_dir(name) / "cfg.json"
    text = cfg.read_text()
    data = json.loads(text)
    data["fingerprint"] = "0" * 64
    cfg.write_text(json.dumps(data))
    try:
        assert load_feature_loop(ws, name) is None
    finally:
        cfg.write_text(text)
