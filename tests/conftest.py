"""Shared test set-up.  Tests never touch the network and build every model themselves.

Tests live in ``tests/core`` (no Qt), ``tests/studio`` (Qt, offscreen) and share helpers from
``tests/support`` (benchmarks may import those, never a test module)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Qt tests (those using qtbot/qapp) fail on leaked QThreads, timers, threads and windows;
# settings and logs go to a temporary folder.  Non-Qt tests are untouched.
from tests.support.qt_fixtures import isolated_settings, main_window, qt_leak_check, qt_leak_guard  # noqa: E402,F401
from tests.support.common import FIXTURES, REPO_ROOT, SHARED, copy_folder, fixture_path, harmonic_tone  # noqa: E402,F401
