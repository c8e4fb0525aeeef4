"""The audition dock's export and output-device actions (a view: no torch).

``AuditionActions`` is a mixin of ``studio.widgets.audition.AuditionPanel``: it asks for a path and
hands it to the view-model (``studio.models.audition_session.AuditionModel.export``: the job runs
the workflow ``audiosae steer`` runs, ``workflows.steer.run_steer``, with a second renderer built
from the live one), and fills the output-device combo.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSignalBlocker
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog

from audiosae.steering.playback import list_output_devices
from studio.models.audition_session import AUDIO_SUFFIXES

log = logging.getLogger("studio.audition")

__all__ = ["AUDIO_SUFFIXES", "AuditionActions"]


class AuditionActions:
    """Export and output device of the audition panel (see the module docstring)."""

    def export_steered(self, path: str | None = None) -> str | None:
        """Render the whole steered clip with the current settings and write ``path`` (WAV or
        FLAC, by suffix) plus ``<path>.json`` with the settings.  Runs as a job: returns the
        path at once (None if there is nothing to export or the dialog was cancelled);
        ``export_finished(path)`` / ``export_failed(message)`` follow."""
        model = self.model
        if model.renderer is None or model.params is None:
            model.set_error(model.unavailable or "nothing to export: load a clip first")
            return None
        if model.exporting:
            model.set_error("an export is already running")
            return None
        if path is None:
            path = self._ask_export_path()
            if not path:
                return None
        return model.export(str(path))

    def cancel_export(self) -> None:
        self.model.cancel_export()

    def set_output_device(self, name: str | None) -> bool:
        """Play on the output device called ``name`` (None: the system default) and remember
        it in the settings; True if the player switched."""
        ok = self.model.set_output_device(name)
        self._refresh_devices()
        return ok

    # ---- export --------------------------------------------------------------------------
    def _on_export_button(self) -> None:
        if self.model.exporting:
            self.cancel_export()
        else:
            self.export_steered()

    def _ask_export_path(self) -> str | None:
        folder = getattr(self.settings, "last_directory", None) or str(Path.home())
        clip = Path(self.state.clip_path or "clip").stem
        params = self.params
        name = f"{clip}_{params.attribute}-{self.model.target_name(params)}_a{params.alpha:g}.wav".replace(" ", "")
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

    # ---- devices -------------------------------------------------------------------------
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
