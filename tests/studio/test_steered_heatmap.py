"""studio.models.steered_heatmap: the heatmap's f' computed in a job, newest request wins, stale results dropped."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("PySide6")

import studio.models.steered_heatmap as sh  # noqa: E402
from studio.workers import JobRunner  # noqa: E402


@pytest.fixture
def slow_steer(monkeypatch):
    """``steered_rows`` replaced by ``f + alpha`` that waits for ``gate`` and records the alphas it ran."""
    gate = threading.Event()
    gate.set()
    ran: list[float] = []
    main = threading.get_ident()
    threads: list[bool] = []

    def fake(context, f, target, alpha, mask):
        threads.append(threading.get_ident() != main)
        assert gate.wait(10)
        ran.append(alpha)
        return np.where(mask[:, None], f + alpha, f).astype(np.float32)

    monkeypatch.setattr(sh, "steered_rows", fake)
    return gate, ran, threads


def _request(f, alpha, lo=0, hi=None, full=True):
    hi = f.shape[0] if hi is None else hi
    return sh.HeatRequest(f, None, 3, alpha, np.ones(f.shape[0], bool), lo, hi, full)


def test_f_prime_is_computed_off_the_gui_thread_and_the_newest_request_wins(qtbot, slow_steer):
    gate, ran, threads = slow_steer
    runner = JobRunner()
    published: list = []
    heat = sh.SteeredHeatmap(runner, published.append)
    f = np.zeros((20, 4), dtype=np.float32)
    try:
        gate.clear()
        heat.request(_request(f, 1.0))
        heat.request(_request(f, 2.0))   # waits for the first
        heat.request(_request(f, 3.0))   # replaces 2.0: a drag never queues a backlog
        assert published == [] and heat.busy
        gate.set()
        qtbot.waitUntil(lambda: len(published) == 2 and not heat.busy, timeout=5000)
        assert ran == [1.0, 3.0] and all(threads)
        assert [float(p[0, 0]) for p in published] == [1.0, 3.0] and heat.shown
        assert published[-1] is not f   # the full path publishes a copy; f is untouched
        assert not f.any()
    finally:
        heat.reset(emit=False)
        runner.shutdown()


def test_hide_drops_the_job_in_flight_and_publishes_f(qtbot, slow_steer):
    gate, ran, _ = slow_steer
    runner = JobRunner()
    published: list = []
    heat = sh.SteeredHeatmap(runner, published.append)
    f = np.zeros((20, 4), dtype=np.float32)
    try:
        heat.request(_request(f, 1.0))
        qtbot.waitUntil(lambda: heat.shown, timeout=5000)
        gate.clear()
        heat.request(_request(f, 5.0))
        heat.hide(f)                      # alpha 0 while a job runs: back to f at once
        assert published[-1] is None and not heat.shown
        gate.set()
        qtbot.waitUntil(lambda: not runner.active, timeout=5000)
        qtbot.wait(50)
        assert published[-1] is None      # the late f' (alpha 5) was dropped
    finally:
        heat.reset(emit=False)
        runner.shutdown()


def test_long_clips_write_only_the_rows_in_view_into_one_buffer(qtbot, slow_steer):
    runner = JobRunner()
    published: list = []
    heat = sh.SteeredHeatmap(runner, published.append)
    f = np.zeros((20, 4), dtype=np.float32)
    try:
        heat.request(_request(f, 1.0, 2, 6, full=False))
        qtbot.waitUntil(lambda: len(published) == 1, timeout=5000)
        first = published[0]
        assert first.shape == f.shape and first[2:6].min() == 1.0 and not first[:2].any() and not first[6:].any()
        heat.request(_request(f, 2.0, 10, 12, full=False))
        qtbot.waitUntil(lambda: len(published) == 2, timeout=5000)
        assert published[1] is first            # the buffer is reused
        assert not first[2:6].any()              # the rows of the earlier view went back to f
        assert first[10:12].min() == 2.0
    finally:
        heat.reset(emit=False)
        runner.shutdown()
