"""The audition dock's export, output-device and status-line actions (a view: no torch).

``AuditionActions`` is a mixin of ``studio.widgets.audition.AuditionPanel``: it asks for a path, starts
the export job (``studio.models.audition.export_job``: the workflow ``audiosae steer`` runs,
``workflows.steer.run_steer``, with a second renderer built from the live one) and writes the
status line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSignalBlocker
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog

from audiosae.errors import AudioSAEError
from audiosae.jobs import Progress
from audiosae.steering.playback import list_output_devices

if TYPE_CHECKING:
    from audiosae.steering.realtime import SteeringParams

log = logging.getLogger("studio.audition")

_UNAVAILABLE_PREFIX = "audio output unavailable: "
AUDIO_SUFFIXES = (".wav", ".flac")


class AuditionActions:
    """Export, output device and status line of the audition panel (see the module docstring)."""

    def export_steered(self, path: str | None = None) -> str | None:
        """Render the whole steered clip with the current settings and write ``path`` (WAV or
        FLAC, by suffix) plus ``<path>.json`` with the settings.  Runs as a job: returns the
        path at once (None if there is nothing to export or the dialog was cancelled);
        ``export_finished(path)`` / ``export_failed(message)`` follow."""
        renderer, params = self.renderer, self.params
        if renderer is None or params is None:
            self._set_error(self._unavailable or "nothing to export: load a clip first")
            return None
        if self._export_job is not None:
            self._set_error("an export is already running")
            return None
        if path is None:
            path = self._ask_export_path()
            if not path:
                return None
        path = str(path)
        if Path(path).suffix.lower() not in AUDIO_SUFFIXES:
            self._set_error(f"{path}: export as .wav or .flac")
            self.export_failed.emit(f"{path}: export as .wav or .flac")
            return None
        analysis = self.state.analysis
        try:
            self._check_scope(params)
        except AudioSAEError as exc:
            self._set_error(str(exc))
            self.export_failed.emit(str(exc))
            return None
        request = self._steer_request(path, params, renderer)

        def connect(job: Any) -> None:
            job.progress.connect(self._on_export_progress)
            job.finished.connect(self._on_export_finished)
            job.failed.connect(lambda message, tb: self._on_export_ended(message or "export failed"))
            job.cancelled.connect(lambda: self._on_export_ended("cancelled"))

        job = self._submit("export steered audio", self._export_fn, request, renderer, analysis.latents,
                           self._export_workspace(), connect=connect)
        self._export_job, self._export_path = job, path
        self.export_button.setText("Cancel export")
        self._export_note = "exporting… 0%"
        self._show_status()
        return path

    def cancel_export(self) -> None:
        if self._export_job is not None:
            self._export_job.cancel()

    def set_output_device(self, name: str | None) -> bool:
        """Play on the output device called ``name`` (None: the system default) and remember
        it in the settings; True if the player switched."""
        try:
            self.settings.audio_device = name
        except (AttributeError, ValueError):
            pass
        self._refresh_devices()
        player = self.player
        if player is None:
            return True
        ok = player.set_device(name)
        if not ok:
            self._set_error(player.message)
        self._show_status()
        return ok

    # ---- export --------------------------------------------------------------------------
    def _on_export_button(self) -> None:
        if self._export_job is not None:
            self.cancel_export()
        else:
            self.export_steered()

    def _ask_export_path(self) -> str | None:
        folder = getattr(self.settings, "last_directory", None) or str(Path.home())
        clip = Path(self.state.clip_path or "clip").stem
        params = self.params
        name = f"{clip}_{params.attribute}-{self._target_name(params)}_a{params.alpha:g}.wav".replace(" ", "")
        name = "".join(c if c.isalnum() or c in "._-#" else "_" for c in name)
        options = QFileDialog.Option(0)
        if QGuiApplication.platformName() in ("offscreen", "minimal"):
            options |= QFileDialog.Option.DontUseNativeDialog
        path, _ = QFileDialog.getSaveFileName(self, "Export steered audio", str(Path(folder) / name),
                                              "Audio (*.wav *.flac)", options=options)
        if path:
            if not Path(path).suffix:
                path += ".wav"
            try:
                self.settings.last_directory = str(Path(path).parent)
            except (AttributeError, ValueError):
                pass
        return path or None

    def _target_name(self, params: SteeringParams) -> str:
        names = self._class_names(params.attribute)
        return names[params.target] if 0 <= params.target < len(names) else str(params.target)

    def _on_export_progress(self, event: Progress) -> None:
        fraction = event.fraction
        self._export_note = f"exporting… {100 * fraction:.0f}%" if fraction is not None else "exporting…"
        self._show_status()

    def _on_export_finished(self, path: str) -> None:
        self._export_job = None
        self.export_button.setText("Export…")
        self._export_note = f"exported {Path(path).name}"
        self._show_status()
        self.state.status.emit(f"exported steered audio to {path}")
        self.export_finished.emit(path)

    def _on_export_ended(self, message: str) -> None:
        self._export_job = None
        self.export_button.setText("Export…")
        self._export_note = "export cancelled" if message == "cancelled" else ""
        if message != "cancelled":
            self._set_error(f"export failed: {message}")
        self._show_status()
        self.export_failed.emit(message)

    # ---- devices and status --------------------------------------------------------------
    def _refresh_devices(self) -> None:
        remembered = getattr(self.settings, "audio_device", None)
        with QSignalBlocker(self.device_combo):
            self.device_combo.clear()
            self.device_combo.addItem("System default", None)
            for device in list_output_devices():
                self.device_combo.addItem(device.label, device.name)
            index = self.device_combo.findData(remembered) if remembered else 0
            if index < 0:  # remembered but absent now: keep showing it (the player says it fell back)
                self.device_combo.addItem(f"{remembered} (not found)", remembered)
                index = self.device_combo.count() - 1
            self.device_combo.setCurrentIndex(index)

    def _on_device_picked(self, index: int) -> None:
        self.set_output_device(self.device_combo.itemData(index))

    def _set_error(self, message: str) -> None:
        self._error = message
        log.info("audition: %s", message)
        self._show_status()

    def status_text(self) -> str:
        """The status line: last change's latency, underruns, output (or why there is none)."""
        parts = []
        if self._unavailable:
            return self._unavailable
        if self._error:
            parts.append(self._error)
        if self._export_note:
            parts.append(self._export_note)
        player = self.player
        if player is None:
            if self.state.analysis is None:
                parts.append("no clip loaded")
            elif self._build_job is not None:
                parts.append("preparing the audition…")
            return " · ".join(parts)
        latency = "—" if self.last_latency_ms is None else f"{self.last_latency_ms:.0f} ms"
        parts.append(f"latency {latency}")
        under = player.underruns
        parts.append(f"underruns: device {under['device_underflows']}, ring {under['ring_dry']}")
        if player.available:
            parts.append(f"output: {player.device_name}" + (f" ({player.message})" if player.message else ""))
        else:
            reason = player.reason
            if reason.startswith(_UNAVAILABLE_PREFIX):
                reason = reason[len(_UNAVAILABLE_PREFIX):]
            parts.append(f"playback unavailable: {reason}")
        return " · ".join(parts)
