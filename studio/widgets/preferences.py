"""Tools > Preferences: compute device, audio output device and CREPE model.

The output device is remembered by NAME (PortAudio's indices change when devices come and
go); a remembered device that is not connected now stays selectable, marked, so choosing
Preferences never silently forgets it.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout,
                               QWidget)

from audiosae.attributes import CREPE_MODELS
from audiosae.devices import DEVICE_CHOICES, available_devices

from ..settings import StudioSettings

SYSTEM_DEFAULT = "System default"


class PreferencesDialog(QDialog):
    """Edits ``StudioSettings``; emits ``changed(list_of_keys)`` after OK for what differs."""

    changed = Signal(list)   # subset of ["compute_device", "audio_device", "crepe_model"]

    def __init__(self, settings: StudioSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("preferences_dialog")
        self.setWindowTitle("Preferences")
        self.settings = settings

        self.compute_combo = QComboBox(objectName="compute_device")
        usable = set(available_devices())
        for choice in DEVICE_CHOICES:
            label = {"auto": "Automatic (CUDA, then MPS, then CPU)", "cpu": "CPU", "cuda": "CUDA GPU",
                     "mps": "Apple GPU (MPS)"}[choice]
            if choice != "auto" and choice not in usable:
                label += " (not available here)"
            self.compute_combo.addItem(label, choice)
        self.compute_combo.setCurrentIndex(max(0, self.compute_combo.findData(settings.compute_device)))

        self.audio_combo = QComboBox(objectName="audio_device")
        self.audio_note = QLabel(wordWrap=True)
        self._fill_audio_devices()

        self.crepe_combo = QComboBox(objectName="crepe_model")
        self.crepe_combo.addItem("As the workspace was built", None)
        for model in CREPE_MODELS:
            self.crepe_combo.addItem({"tiny": "tiny (fast)", "full": "full (accurate, slower)"}.get(model, model),
                                     model)
        self.crepe_combo.setCurrentIndex(max(0, self.crepe_combo.findData(settings.crepe_model)))

        form = QFormLayout()
        form.addRow("Compute device:", self.compute_combo)
        form.addRow("Audio output:", self.audio_combo)
        form.addRow("", self.audio_note)
        form.addRow("Pitch tracker (CREPE):", self.crepe_combo)
        hint = QLabel("Changing the compute device or the pitch tracker reloads the open workspace.",
                      wordWrap=True)
        hint.setEnabled(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint)
        layout.addWidget(buttons)
        # Wide enough for long device names, in text units so it scales with the font (HiDPI).
        self.setMinimumWidth(self.fontMetrics().horizontalAdvance("M") * 40)

    def _fill_audio_devices(self) -> None:
        from audiosae.steering.playback import list_output_devices, sounddevice_or_reason

        self.audio_combo.addItem(SYSTEM_DEFAULT, None)
        names = []
        for device in list_output_devices():
            if device.name not in names:
                names.append(device.name)
                self.audio_combo.addItem(device.label, device.name)
        saved = self.settings.audio_device
        if saved and saved not in names:
            self.audio_combo.addItem(f"{saved} (not connected)", saved)
        self.audio_combo.setCurrentIndex(max(0, self.audio_combo.findData(saved)))
        _, reason = sounddevice_or_reason()
        if reason:
            self.audio_note.setText(reason)
        elif not names:
            self.audio_note.setText("No audio output device found: playback is unavailable, "
                                    "everything else works.")
        self.audio_note.setVisible(bool(self.audio_note.text()))

    def selected(self) -> dict[str, str | None]:
        return {"compute_device": self.compute_combo.currentData(),
                "audio_device": self.audio_combo.currentData(),
                "crepe_model": self.crepe_combo.currentData()}

    def accept(self) -> None:
        values = self.selected()
        before = {"compute_device": self.settings.compute_device, "audio_device": self.settings.audio_device,
                  "crepe_model": self.settings.crepe_model}
        self.settings.compute_device = values["compute_device"] or "auto"
        self.settings.audio_device = values["audio_device"]
        self.settings.crepe_model = values["crepe_model"]
        self.settings.sync()
        diff = [k for k in values if values[k] != before[k] and not (k == "compute_device" and
                                                                     (values[k] or "auto") == before[k])]
        super().accept()
        if diff:
            self.changed.emit(diff)
