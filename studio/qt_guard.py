"""A workaround for PySide6 builds that drop references to None/True/False (``guard_singleton_refcounts``).

Its own module, so the window (``main_window``) and the entry point (``app``) both apply it
without importing each other.
"""

from __future__ import annotations

import logging
import sys

_IMMORTAL_BUMP = 1 << 40
_guard_applied = False


def guard_singleton_refcounts() -> bool:
    """Work around PySide6 builds that drop references to None/True/False (True if applied).

    PySide6-Essentials 6.12.0 (abi3 wheels) on Python < 3.12 returns ``None`` from every
    void method and ``True`` from ``Signal.emit`` without a new reference, as if they were
    immortal (they are from Python 3.12 on).  Each call then lowers their refcount by one and
    the interpreter aborts ("deallocating None/True") after a few thousand calls.  Measured
    here, not assumed from the version: when a probe shows the drop, the three singletons get
    a refcount so large it cannot reach zero, which is what Python 3.12 does for them.
    """
    global _guard_applied
    if _guard_applied or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return _guard_applied
    import ctypes

    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    before = (sys.getrefcount(None), sys.getrefcount(True))
    for _ in range(16):
        probe.ping.emit()
        probe.blockSignals(False)
    after = (sys.getrefcount(None), sys.getrefcount(True))
    if after[0] - before[0] > -8 and after[1] - before[1] > -8:
        return False
    for singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(singleton)).value += _IMMORTAL_BUMP
    _guard_applied = True
    logging.getLogger("studio.app").warning(
        "this PySide6 build drops references to None/True/False on Python %d.%d; applied the workaround "
        "(use PySide6 < 6.12 or Python >= 3.12 to avoid it)", *sys.version_info[:2])
    return True
