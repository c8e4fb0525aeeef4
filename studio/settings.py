"""The studio's persistent settings: a thin typed wrapper over ``QSettings("audiosae", "studio")``.

Always INI format, so the file is readable, the same on every platform, and tests can move
it wholesale to a temporary folder with ``StudioSettings.redirect(folder)`` (QSettings.setPath)
or by passing an explicit ``path``.  Lists are stored as JSON strings: QSettings' INI backend
returns a one-element list as a bare string, which would corrupt the recent-workspace list.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from audiosae.attributes import CREPE_MODELS
from audiosae.devices import DEVICE_CHOICES

ORGANIZATION = "audiosae"
APPLICATION = "studio"
MAX_RECENT = 10
SETTINGS_ENV = "AUDIOSAE_SETTINGS_FILE"   # an INI path that replaces the user's settings (tests, demos)

_AUDIO_DEVICE = "audio/output_device"
_COMPUTE_DEVICE = "compute/device"
_CREPE_MODEL = "analysis/crepe_model"
_RECENT = "workspaces/recent"
_GEOMETRY = "main_window/geometry"
_WINDOW_STATE = "main_window/state"
_LAST_DIR = "paths/last_directory"


class StudioSettings:
    """Typed access to the app's settings.

    ``StudioSettings()`` uses the user's INI file (or ``$AUDIOSAE_SETTINGS_FILE``);
    ``StudioSettings(path)`` uses the INI file at ``path``.
    """

    def __init__(self, path: str | Path | None = None):
        path = path if path is not None else os.environ.get(SETTINGS_ENV) or None
        if path is not None:
            self._q = QSettings(str(path), QSettings.Format.IniFormat)
        else:
            self._q = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)

    @staticmethod
    def redirect(folder: str | Path) -> None:
        """Make every later default ``StudioSettings()`` live under ``folder`` (tests)."""
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))

    @property
    def qsettings(self) -> QSettings:
        return self._q

    @property
    def file_name(self) -> str:
        return self._q.fileName()

    # ---- raw access ----------------------------------------------------------------------
    def value(self, key: str, default: Any = None) -> Any:
        return self._q.value(key, default)

    def set_value(self, key: str, value: Any) -> None:
        if value is None:
            self._q.remove(key)
        else:
            self._q.setValue(key, value)

    def remove(self, key: str) -> None:
        self._q.remove(key)

    def sync(self) -> None:
        self._q.sync()

    def _text(self, key: str) -> str | None:
        value = self._q.value(key, None)
        if value is None:
            return None
        text = str(value).strip()
        return text or None

    # ---- typed properties ------------------------------------------------------------------
    @property
    def audio_device(self) -> str | None:
        """The output device's NAME (PortAudio indices change between sessions); None = system default."""
        return self._text(_AUDIO_DEVICE)

    @audio_device.setter
    def audio_device(self, name: str | None) -> None:
        self.set_value(_AUDIO_DEVICE, name or None)

    @property
    def compute_device(self) -> str:
        """"auto", "cpu", "cuda" or "mps"; anything else read back becomes "auto"."""
        value = (self._text(_COMPUTE_DEVICE) or "auto").lower()
        return value if value in DEVICE_CHOICES else "auto"

    @compute_device.setter
    def compute_device(self, device: str) -> None:
        device = (device or "auto").lower()
        if device not in DEVICE_CHOICES:
            raise ValueError(f"unknown compute device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}")
        self.set_value(_COMPUTE_DEVICE, device)

    @property
    def crepe_model(self) -> str | None:
        """CREPE model for the clip's measured pitch; None = the workspace's own choice."""
        value = self._text(_CREPE_MODEL)
        return value if value in CREPE_MODELS else None

    @crepe_model.setter
    def crepe_model(self, model: str | None) -> None:
        if model is not None and model not in CREPE_MODELS:
            raise ValueError(f"unknown CREPE model {model!r}; choose one of {', '.join(CREPE_MODELS)}")
        self.set_value(_CREPE_MODEL, model)

    @property
    def recent_workspaces(self) -> list[str]:
        """Most recent first, at most ``MAX_RECENT``; paths may no longer exist (the UI marks them)."""
        raw = self._q.value(_RECENT, None)
        if raw is None:
            return []
        try:
            items = json.loads(str(raw))
        except ValueError:
            return []
        if not isinstance(items, list):
            return []
        return [str(p) for p in items if isinstance(p, str) and p][:MAX_RECENT]

    @recent_workspaces.setter
    def recent_workspaces(self, paths: list[str]) -> None:
        unique: list[str] = []
        for p in paths:
            if p and p not in unique:
                unique.append(str(p))
        self._q.setValue(_RECENT, json.dumps(unique[:MAX_RECENT]))

    def add_recent_workspace(self, path: str | Path) -> None:
        """Move ``path`` (absolute) to the top of the recent list."""
        path = str(Path(path).expanduser().resolve())
        self.recent_workspaces = [path] + [p for p in self.recent_workspaces if p != path]

    def remove_recent_workspace(self, path: str | Path) -> None:
        self.recent_workspaces = [p for p in self.recent_workspaces if p != str(path)]

    def clear_recent_workspaces(self) -> None:
        self._q.remove(_RECENT)

    @property
    def window_geometry(self) -> QByteArray | None:
        value = self._q.value(_GEOMETRY, None)
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    @window_geometry.setter
    def window_geometry(self, data: QByteArray | None) -> None:
        self.set_value(_GEOMETRY, data)

    @property
    def window_state(self) -> QByteArray | None:
        """QMainWindow.saveState(): dock positions and visibility."""
        value = self._q.value(_WINDOW_STATE, None)
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    @window_state.setter
    def window_state(self, data: QByteArray | None) -> None:
        self.set_value(_WINDOW_STATE, data)

    @property
    def last_directory(self) -> str:
        """Where the last file dialog ended; the home folder at first."""
        value = self._text(_LAST_DIR)
        return value if value and Path(value).is_dir() else str(Path.home())

    @last_directory.setter
    def last_directory(self, folder: str | Path) -> None:
        self.set_value(_LAST_DIR, str(folder))
