"""Step 2 of the wizard: the latent backend (with its download size) and the compute device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QHeaderView,
                               QLineEdit, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
                               QWizardPage)

from audiosae import defaults as D
from audiosae.codecs import BackendSpec, available_backends, backend_spec
from audiosae.devices import available_devices, pick_device
from audiosae.errors import AudioSAEError
from audiosae.workflows.audio_plan import WorkspaceStatus
from audiosae.workflows.train_plan import format_download

from ...models.wizard import WizardModel
from ...workers import JobRunner
from .common import ERROR_STYLE, NOTE_STYLE, label, setting


class BackendPage(QWizardPage):
    COLUMNS = ("Backend", "Rate", "Frames/s", "Dim", "Kind", "Download")

    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None,
                 model: WizardModel | None = None):
        super().__init__(parent)
        self.settings = settings
        self.model = model
        self.setTitle("2 \u00b7 Latent backend")
        self.setSubTitle("The autoencoder whose latent space the SAEs will read, and where to compute.")
        self.specs: list[BackendSpec] = available_backends()

        self.table = QTableWidget(len(self.specs), len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        for r, s in enumerate(self.specs):
            values = (s.name, f"{s.sample_rate / 1000:g} kHz", f"{s.frame_rate:.1f}", str(s.latent_dim), s.kind,
                      format_download(s.download_bytes))
            for c, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setToolTip(s.description)
                if c > 0:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(self.COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.resizeRowsToContents()
        self.description = label("", NOTE_STYLE)

        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("optional: a local copy of the weights (used instead of downloading)")
        self.weights_browse = QPushButton("Browse\u2026")
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_edit, 1)
        weights_row.addWidget(self.weights_browse)
        self.device_combo = QComboBox()
        self.device_combo.addItem("auto")
        for d in available_devices():
            self.device_combo.addItem(d)
        preferred = str(setting(settings, "compute_device", "auto"))
        index = self.device_combo.findText(preferred)
        self.device_combo.setCurrentIndex(max(0, index))
        self.device_note = label("", NOTE_STYLE, wrap=False)
        device_row = QHBoxLayout()
        device_row.addWidget(self.device_combo)
        device_row.addWidget(self.device_note, 1)

        form = QFormLayout()
        form.addRow("Local weights file:", weights_row)
        form.addRow("Compute device:", device_row)
        self.lock_note = label("", NOTE_STYLE)
        self.message = label("", ERROR_STYLE)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.description)
        layout.addWidget(self.lock_note)
        layout.addLayout(form)
        layout.addWidget(self.message)

        self.registerField("weights", self.weights_edit)
        self.registerField("device", self.device_combo, "currentText", self.device_combo.currentTextChanged)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.weights_edit.textChanged.connect(self._validate)
        self.weights_browse.clicked.connect(self._browse_weights)
        self.device_combo.currentTextChanged.connect(self._on_device)
        self.select_backend(D.DEFAULT_BACKEND)
        self._on_device()

    # ---- public API ----------------------------------------------------------------------------
    def backend_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.specs[rows[0].row()].name if rows else None

    def spec(self) -> BackendSpec | None:
        name = self.backend_name()
        return backend_spec(name) if name else None

    def select_backend(self, name: str) -> None:
        for r, s in enumerate(self.specs):
            if s.name == name:
                self.table.selectRow(r)
                return
        raise ValueError(f"unknown backend {name!r}")

    def backend_options(self) -> dict[str, Any]:
        weights = self.weights_edit.text().strip()
        return {"weights": str(Path(weights).expanduser().resolve())} if weights else {}

    def device(self) -> str:
        return self.device_combo.currentText()

    # ---- wizard hooks ------------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        status: WorkspaceStatus = self.wizard().audio_page.workspace_status
        locked = status.kind == "existing" and status.backend is not None
        if locked:
            try:
                self.select_backend(status.backend)  # type: ignore[arg-type]
            except ValueError:
                pass
            self.weights_edit.setText(str(status.backend_options.get("weights", "")))
            self.lock_note.setText(f"This workspace was built with {status.backend}; its backend cannot change.")
        else:
            self.lock_note.setText("")
        self.lock_note.setVisible(locked)
        self.table.setEnabled(not locked)
        self.weights_edit.setReadOnly(locked)
        self.weights_browse.setEnabled(not locked and self._downloadable())
        self._validate()

    def cleanupPage(self) -> None:  # noqa: N802
        """Keep the choices when the user goes back (QWizard's default resets the fields)."""

    def isComplete(self) -> bool:  # noqa: N802
        return not self._problem_text()

    # ---- internals -------------------------------------------------------------------------------
    def _downloadable(self) -> bool:
        spec = self.spec()
        return spec is not None and spec.download_bytes is not None

    def _problem_text(self) -> str:
        spec = self.spec()
        if spec is None:
            return "Choose a backend."
        weights = self.weights_edit.text().strip()
        if weights:
            if spec.download_bytes is None:
                return f"{spec.name} is built in and takes no weights file; clear the field."
            if not Path(weights).expanduser().is_file():
                return f"{weights}: weights file not found"
        return ""

    def _validate(self) -> None:
        self.message.setText(self._problem_text())
        if self.model is not None and not self._problem_text():
            self.model.backend = self.backend_name() or D.DEFAULT_BACKEND
            self.model.backend_options = self.backend_options()
            self.model.device = self.device()
        self.completeChanged.emit()

    def _on_selection(self) -> None:
        spec = self.spec()
        if spec is not None:
            size = format_download(spec.download_bytes)
            extra = "" if spec.download_bytes is None else \
                f"  \u2014  Downloads {size} on first use unless a local weights file is given."
            self.description.setText(f"{spec.description.rstrip('.')}{extra}")
        downloadable = self._downloadable()
        self.weights_edit.setEnabled(downloadable)
        self.weights_browse.setEnabled(downloadable and not self.weights_edit.isReadOnly())
        self._validate()

    def _on_device(self) -> None:
        choice = self.device_combo.currentText()
        if self.model is not None:
            self.model.device = choice
        if choice == "auto":
            try:
                resolved = str(pick_device("auto"))
            except AudioSAEError:
                resolved = "cpu"
            self.device_note.setText(f"\u2192 {resolved} on this machine")
        else:
            self.device_note.setText("")

    def _browse_weights(self) -> None:
        start = str(setting(self.settings, "last_directory", str(Path.home())))
        path, _ = QFileDialog.getOpenFileName(self, "Local weights file", start,
                                              "Weights (*.th *.pt *.pth *.ckpt *.safetensors *.bin);;All files (*)")
        if path:
            self.weights_edit.setText(path)
