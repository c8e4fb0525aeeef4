"""Process-wide memory settings for long sessions.

glibc serves large allocations with ``mmap`` only until the first such block is freed; then it
raises its threshold (up to 32 MiB on 64-bit) and serves the next ones from its heap arenas.
The studio frees and reallocates multi-megabyte tensors and arrays from several threads many
times a second (every alpha change re-renders the clip), and those arenas fragment: resident
memory grew by about 7 MiB/s in a two-minute playback benchmark, never coming back.  Pinning
the threshold keeps big blocks on ``mmap``, returned to the system when freed (measured: flat
within a few MiB over the same run).  Elsewhere (macOS, Windows, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
DEFAULT_MMAP_THRESHOLD = 1 << 20


def keep_large_allocations_off_the_heap(threshold: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Serve allocations of ``threshold`` bytes or more with mmap, always; True when applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, int(threshold)))


def settle_long_lived_objects() -> None:
    """Collect garbage once, then exempt every surviving object from future collections.

    A loaded studio holds ~400,000 GC-tracked objects (torch, Qt wrappers, pyqtgraph, numba),
    and each full (generation-2) collection walked all of them holding the GIL for ~200 ms:
    the audio callback, which needs the GIL, missed its deadline (3 underruns per pause in
    the 10-minute soak) and the GUI froze.  After this, full collections only walk objects
    made later.  ``gc.unfreeze`` first, so objects frozen by an earlier call (a workspace that
    has been closed since) become collectable again.
    """
    import gc

    gc.unfreeze()
    gc.collect()
    gc.freeze()
