"""Long sessions must not grow resident memory through heap fragmentation (see audiosae/memory.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc behaviour (Linux)")

# The studio's allocation pattern in miniature: several threads allocating and freeing
# arrays of 0.2-4 MB (rendered chunks, steered features), keeping a few alive.
CHURN = textwrap.dedent("""
    import random, sys, threading
    import numpy as np
    if sys.argv[1] == "pinned":
        from audiosae.memory import keep_large_allocations_off_the_heap
        assert keep_large_allocations_off_the_heap()

    def rss_mib():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * 4096 / 2**20

    def churn(seed):
        rng, alive = random.Random(seed), []
        for i in range(800):
            alive.append(np.ones(rng.randint(200_000, 4_000_000) // 8))
            if len(alive) > 6:
                alive.pop(rng.randrange(len(alive)))
            garbage = [bytes(rng.randint(100, 5000)) for _ in range(20)]
            if i % 50 == 0:
                alive.append(np.ones(10))  # a small survivor pins the heap top

    start = rss_mib()
    threads = [threading.Thread(target=churn, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(rss_mib() - start)
""")


def _growth(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip())


def test_pinned_mmap_threshold_keeps_memory_flat_under_allocation_churn():
    pinned, default = _growth("pinned"), _growth("default")
    assert default > pinned + 30, f"the churn no longer fragments the heap ({default:.0f} vs {pinned:.0f} MiB)"
    assert pinned < 40, f"resident memory grew {pinned:.0f} MiB with the threshold pinned"


def test_the_cli_pins_it_at_start(monkeypatch):
    import audiosae.memory as memory

    calls = []
    monkeypatch.setattr(memory, "keep_large_allocations_off_the_heap", lambda *a: calls.append("x") or True)
    from audiosae import cli

    assert cli.main(["backends", "--json"]) == 0
    assert calls, "audiosae's CLI did not pin the mmap threshold"
