"""Qt test fixtures: fail a test that leaves Qt work running, and keep settings away from the user's.

``qt_leak_check`` (napari-style) records what the test starts and fails it, at teardown, on:

- a ``QThread`` it started that is still running (after a short grace period), or busy
  ``QThreadPool.globalInstance()`` runnables;
- a ``QTimer`` it started (``QTimer.start``) that is still active, or a pending
  ``QTimer.singleShot`` call that has not fired within the grace period;
- a Python thread it started that is still alive (the player's feeder, render workers);
- a new top-level widget still visible (a window or dialog not closed).

pytest-qt closes the widgets registered with ``qtbot.addWidget`` before fixtures are torn
down, so those count as closed.  Leaked things are stopped/closed after the failure is
recorded, so one leaky test does not make the next ones fail.

``isolated_settings`` points QSettings (INI, user scope) and ``$AUDIOSAE_SETTINGS_FILE`` at a
temporary folder, so no test reads or writes the user's settings.

Enable both for every test that uses Qt, without touching the others, by adding to
``tests/conftest.py``::

    from tests.support.qt_fixtures import isolated_settings, qt_leak_check, qt_leak_guard  # noqa: F401

``qt_leak_guard`` is autouse but activates only for tests that request ``qtbot``/``qapp``.
Importing this module also applies ``studio.app.guard_singleton_refcounts()`` (PySide6 6.12.0
on Python 3.11 drops references to None/True and aborts the interpreter after a few
thousand calls), which is why every Qt test process should import it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

try:  # PySide6 6.12.0 on Python 3.11 drops references to None/True; see studio.app
    from studio.app import guard_singleton_refcounts

    guard_singleton_refcounts()
except ImportError:  # no PySide6: the Qt tests skip themselves
    pass

QT_FIXTURES = frozenset({"qtbot", "qapp", "qtmodeltester", "qtlog"})
# For threads finishing and short single-shots firing; $QT_LEAK_GRACE_S overrides it.
GRACE_SECONDS = float(os.environ.get("QT_LEAK_GRACE_S", "2.0"))
PYTHON_THREAD_ALLOWLIST = ("TMonitor",)   # tqdm's monitor: process-wide, by design


def _valid(obj: Any) -> bool:
    import shiboken6

    try:
        return shiboken6.isValid(obj)
    except TypeError:
        return False


class _Recorder:
    """What the test started: QThreads, QTimers, single-shots, Python threads, windows."""

    def __init__(self) -> None:
        self.qthreads: list[Any] = []
        self.timers: list[Any] = []
        self.single_shots: dict[int, tuple[Callable, int, Any, str]] = {}
        self._next_id = 0

    def add_single_shot(self, fn: Callable, msec: int, context: Any) -> int:
        self._next_id += 1
        self.single_shots[self._next_id] = (fn, msec, context, getattr(fn, "__qualname__", repr(fn)))
        return self._next_id

    def pending_single_shots(self) -> list[str]:
        out = []
        for fn, msec, context, name in self.single_shots.values():
            owner = getattr(fn, "__self__", None)
            # A call bound to a destroyed QObject (context or method owner) is dropped by Qt.
            from PySide6.QtCore import QObject

            if context is not None and not _valid(context):
                continue
            if isinstance(owner, QObject) and not _valid(owner):
                continue
            out.append(f"QTimer.singleShot({msec}, {name})")
        return out


@pytest.fixture
def qt_leak_check(qapp, monkeypatch) -> Iterator[_Recorder]:
    """Fail the test if it leaves QThreads, QTimers, Python threads or open windows behind."""
    from PySide6.QtCore import QCoreApplication, QEvent, QObject, QThread, QThreadPool, QTimer

    rec = _Recorder()
    original_thread_start = QThread.start
    original_timer_start = QTimer.start
    original_single_shot = QTimer.singleShot

    def thread_start(self, *args, **kwargs):
        rec.qthreads.append(self)
        return original_thread_start(self, *args, **kwargs)

    def timer_start(self, *args, **kwargs):
        rec.timers.append(self)
        return original_timer_start(self, *args, **kwargs)

    def single_shot(*args, **kwargs):
        args = list(args)
        if args and callable(args[-1]) and not isinstance(args[-1], (str, bytes)):
            fn = args[-1]
            context = args[1] if len(args) == 3 and isinstance(args[1], QObject) else None
            key = rec.add_single_shot(fn, int(args[0]) if isinstance(args[0], (int, float)) else 0, context)

            def fire(*a, _fn=fn, _key=key):
                rec.single_shots.pop(_key, None)
                return _fn(*a)

            args[-1] = fire
        return original_single_shot(*args, **kwargs)

    monkeypatch.setattr(QThread, "start", thread_start)
    monkeypatch.setattr(QTimer, "start", timer_start)
    monkeypatch.setattr(QTimer, "singleShot", staticmethod(single_shot))
    windows_before = {id(w) for w in qapp.topLevelWidgets()}
    python_threads_before = {t.ident for t in threading.enumerate()}

    yield rec

    def running_qthreads() -> list[Any]:
        return [t for t in rec.qthreads if _valid(t) and t.isRunning()]

    def new_python_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate()
                if t.ident not in python_threads_before and t.is_alive()
                and not isinstance(t, threading._DummyThread)    # a QThread running Python code
                and not t.name.startswith(PYTHON_THREAD_ALLOWLIST)]

    # Grace period: let finished jobs deliver their last queued signals, deferred deletes
    # happen and short single-shots fire.
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline:
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        qapp.processEvents()
        if not running_qthreads() and not new_python_threads() and not rec.pending_single_shots():
            break
        time.sleep(0.01)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    qapp.processEvents()

    problems: list[str] = []
    threads = running_qthreads()
    if threads:
        problems.append("QThreads still running: " + ", ".join(t.objectName() or type(t).__name__ for t in threads))
    pool = QThreadPool.globalInstance()
    if not pool.waitForDone(200):
        problems.append(f"QThreadPool still has {pool.activeThreadCount()} active runnables")
    timers = [t for t in rec.timers if _valid(t) and t.isActive()]
    if timers:
        problems.append("QTimers still active: " + ", ".join(
            f"{t.objectName() or 'QTimer'}(interval={t.interval()} ms, parent="
            f"{type(t.parent()).__name__ if t.parent() is not None else None})" for t in timers))
    shots = rec.pending_single_shots()
    if shots:
        problems.append("single-shot timers not fired: " + ", ".join(shots))
    py_threads = new_python_threads()
    if py_threads:
        problems.append("Python threads still alive: " + ", ".join(t.name for t in py_threads))
    windows = [w for w in qapp.topLevelWidgets() if id(w) not in windows_before and _valid(w) and w.isVisible()]
    if windows:
        problems.append("top-level widgets left open: " + ", ".join(
            f"{type(w).__name__}({w.objectName() or w.windowTitle()!r})" for w in windows))

    # Clean up so the next test starts clean, whatever happened here.
    for t in timers:
        t.stop()
    for w in windows:
        w.close()
        w.deleteLater()
    for t in threads:
        t.requestInterruption()
        t.quit()
        t.wait(5000)
    rec.single_shots.clear()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    if problems:
        pytest.fail("Qt resources leaked by the test:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def isolated_settings(tmp_path_factory, monkeypatch) -> Path:
    """QSettings (INI, user scope) and ``StudioSettings()`` in a fresh temporary folder; returns it."""
    from PySide6.QtCore import QSettings

    folder = tmp_path_factory.mktemp("qsettings")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    monkeypatch.setenv("AUDIOSAE_SETTINGS_FILE", str(folder / "studio.ini"))
    monkeypatch.setenv("AUDIOSAE_LOG_DIR", str(folder / "logs"))
    return folder


@pytest.fixture
def main_window(qtbot, isolated_settings):
    """The studio's MainWindow, shown at a laptop size, with fresh settings; closed afterwards
    (with any error dialogs it opened)."""
    from studio.main_window import MainWindow
    from studio.settings import StudioSettings

    win = MainWindow(StudioSettings())
    qtbot.addWidget(win)
    win.resize(1100, 750)
    win.show()
    qtbot.waitExposed(win)
    yield win
    for dialog in list(win.error_dialogs):
        dialog.close()
    win.close()


@pytest.fixture(autouse=True)
def qt_leak_guard(request) -> Iterator[None]:
    """Autouse switch: ``qt_leak_check`` + ``isolated_settings`` for tests that use Qt fixtures only."""
    if QT_FIXTURES & set(request.fixturenames):
        request.getfixturevalue("isolated_settings")
        request.getfixturevalue("qt_leak_check")
    yield
    # The studio freezes long-lived objects out of the collector (audiosae.memory); between
    # tests they must become collectable again, or every test's windows would stay in memory.
    import gc

    gc.unfreeze()
