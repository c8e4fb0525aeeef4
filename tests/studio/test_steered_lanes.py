"""studio.models.steered_lanes: the lanes' probe decode of f' (the core's decode_classes), at once when
small, as a job when large; a newer f' drops the decode in flight, whose result is never published."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

pytest.importorskip("PySide6")

import studio.models.steered_lanes as sl  # noqa: E402
from audiosae.explore.decoding import decode_classes  # noqa: E402
from audiosae.probes import ProbeSet  # noqa: E402
from studio.workers import JobRunner  # noqa: E402

N_FEATURES = 6


def _probes() -> ProbeSet:
    g = torch.Generator().manual_seed(0)
    n = {"pitch": 5, "loudness": 3}
    return ProbeSet(weights={a: torch.randn(k, N_FEATURES, generator=g) for a, k in n.items()},
                    bias={a: torch.zeros(k) for a, k in n.items()}, class_names={}, feature_kind="sae")


def _features(seed: int, frames: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).random((frames, N_FEATURES), dtype=np.float32)


def test_small_decodes_publish_the_cores_classes_at_once_and_mismatches_publish_none():
    published: list = []
    lanes = sl.SteeredLanes(JobRunner(), published.append)
    lanes.set_probes(_probes())
    f = _features(1)
    lanes.request(f, ["pitch", "loudness", "timbre"], len(f))   # timbre: no probe, left out
    assert len(published) == 1 and not lanes.pending
    expected = decode_classes(lanes.probes, f, ["pitch", "loudness"])
    assert set(published[0]) == {"pitch", "loudness"}
    for a in expected:
        assert np.array_equal(published[0][a], expected[a])
    lanes.request(f, ["pitch"], len(f) + 1)          # f' of another clip
    lanes.request(f[:, :-1], ["pitch"], len(f))      # another SAE's width
    lanes.request(None, ["pitch"], len(f))           # back to unsteered
    assert published[1:] == [None, None, None]


def test_large_decodes_run_as_jobs_and_a_newer_request_drops_the_older(qtbot, monkeypatch):
    monkeypatch.setattr(sl, "SYNC_DECODE_LIMIT", 0)
    gate = threading.Event()
    ran: list[int] = []
    real = sl.decode_classes

    def slow(probes, f, attributes, cancel=None):
        assert gate.wait(10)
        ran.append(threading.get_ident())
        return real(probes, f, attributes)   # runs to the end: the slot must drop it

    monkeypatch.setattr(sl, "decode_classes", slow)
    runner = JobRunner()
    published: list = []
    lanes = sl.SteeredLanes(runner, published.append)
    lanes.set_probes(_probes())
    old, new = _features(2), _features(3)
    try:
        lanes.request(old, ["pitch"], len(old))
        qtbot.wait(50)                         # the first job's thread is running, held at the gate
        lanes.request(new, ["pitch"], len(new))
        assert published == [] and lanes.pending
        gate.set()
        qtbot.waitUntil(lambda: not lanes.pending and not runner.active, timeout=10000)
        qtbot.wait(50)
        assert len(published) == 1, "the superseded decode's result was published"
        assert np.array_equal(published[0]["pitch"], real(lanes.probes, new, ["pitch"])["pitch"])
        assert threading.get_ident() not in ran
    finally:
        runner.shutdown()
