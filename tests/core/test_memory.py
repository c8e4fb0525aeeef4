"""Long sessions must not grow resident memory through heap fragmentation (see audiosae/memory.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc behaviour (Linux)")

# The mechanism behind the studio's growth, made deterministic (a thread-scheduled churn gave
# 31 MiB one run and 60 the next): once one mmapped block is freed, glibc serves the next
# multi-megabyte arrays from its heap; a longer-lived block allocated after each one (a
# rendered chunk kept for the waveform) pins the heap above it, so freeing the big ones
# returns nothing to the system.  Pinned, the big arrays live on mmap and go back when freed.
CHURN = textwrap.dedent("""
    import sys
    import numpy as np
    if sys.argv[1] == "pinned":
        from audiosae.memory import keep_large_allocations_off_the_heap
        assert keep_large_allocations_off_the_heap()

    def rss_mib():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * 4096 / 2**20

    np.ones(4_000_000 // 8).sum()  # one 4 MB block made and freed raises glibc's threshold
    start = rss_mib()
    big, kept = [], []
    for i in range(60):
        big.append(np.ones((1_000_000 + 30_000 * i) // 8))  # 1.0-2.8 MB, every page touched
        kept.append(np.ones(12_000))  # 96 KB: too big for any free hole, so it lands above
    del big
    print(rss_mib() - start)
""")


def _growth(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip())


def test_pinned_mmap_threshold_keeps_memory_flat_under_allocation_churn():
    pinned, default = _growth("pinned"), _growth("default")
    # 107 MB of big arrays are freed; 5.6 MB of kept blocks stay (measured: 111 vs 5.5 MiB)
    assert default > 80, f"the control no longer fragments the heap ({default:.0f} MiB kept)"
    assert pinned < 15, f"resident memory kept {pinned:.0f} MiB with the threshold pinned"


def test_the_cli_pins_it_at_start(monkeypatch):
    import audiosae.memory as memory

    calls = []
    monkeypatch.setattr(memory, "keep_large_allocations_off_the_heap", lambda *a: calls.append("x") or True)
    from audiosae import cli

    assert cli.main(["backends", "--json"]) == 0
    assert calls, "audiosae's CLI did not pin the mmap threshold"
