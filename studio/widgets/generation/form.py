"""The generation view's form: prompt or style, lyrics, seed, duration, generator weights and
negative style, Run / Cancel, progress and status (``GenerationForm``, a part of ``GenerationView``).

``form_values`` turns the fields into ``TraceRequest`` fields; ``None`` or an empty field is the
default (``audiosae.defaults``), as on the CLI.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QScrollArea, QSpinBox, QToolButton, QWidget)

from audiosae import defaults as D

from ...models.generation import DIFFRHYTHM_GITHUB, INSTALL_HINT, download_note, muq_available


class _PathRow(QWidget):
    """A line edit with a "…" button opening a file dialog."""

    def __init__(self, placeholder: str, dialog_title: str, name_filter: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.edit = QLineEdit(self)
        self.edit.setPlaceholderText(placeholder)
        self.edit.setClearButtonEnabled(True)
        self.button = QToolButton(self)
        self.button.setText("…")
        self.button.setToolTip(dialog_title)
        self._title, self._filter = dialog_title, name_filter
        self.button.clicked.connect(self._choose)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)

    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, self._title, self.edit.text(), self._filter)
        if path:
            self.edit.setText(path)

    def path(self) -> str | None:
        text = self.edit.text().strip()
        return text or None


class GenerationForm:
    """The form half of ``GenerationView`` (a mixin: the widgets are the view's attributes)."""

    def _build_form(self) -> QScrollArea:
        """The left column: the form, Run / Cancel, progress and status, in a scroll area."""
        form_box = QWidget(self)
        form = QFormLayout(form_box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.prompt_edit = QLineEdit(form_box, placeholderText="e.g. calm piano with soft strings")
        self.prompt_edit.setObjectName("prompt")
        form.addRow("Prompt", self.prompt_edit)
        self.muq_note = QLabel(form_box, objectName="muq_note", wordWrap=True)
        self.muq_note.setText("MuQ-MuLan (package <i>muq</i>) is not installed, so a text prompt or style audio "
                              "cannot be embedded; choose a saved style embedding file (.npy / .safetensors / "
                              f".pt) below, or install it: <code>{INSTALL_HINT}</code>. The prompt is "
                              "still recorded as the trace's label.")
        self.muq_note.setStyleSheet("color: #e0a040;")
        self.muq_note.setVisible(not muq_available())
        form.addRow(self.muq_note)
        self.style_file = _PathRow("none", "Style embedding file…", "Embeddings (*.npy *.safetensors *.pt *.pth)")
        self.style_file.setObjectName("style_file")
        form.addRow("Style embedding file…", self.style_file)
        self.style_audio = _PathRow("none", "Style audio…", "Audio (*.wav *.flac *.mp3 *.ogg *.m4a)")
        self.style_audio.setObjectName("style_audio")
        if not muq_available():
            self.style_audio.setEnabled(False)
            self.style_audio.setToolTip("style audio is embedded by MuQ-MuLan, which is not installed")
        form.addRow("Style audio…", self.style_audio)
        self.lyrics = _PathRow("instrumental", "Lyrics (.lrc)…", "Timed lyrics (*.lrc)")
        self.lyrics.setObjectName("lyrics")
        form.addRow("Lyrics (.lrc)", self.lyrics)
        self.g2p_vocab = _PathRow("needed with lyrics", "Phoneme vocabulary (vocab.json)…", "JSON (*.json)")
        form.addRow("G2P vocab", self.g2p_vocab)
        self.seed_spin = QSpinBox(form_box, objectName="seed")
        self.seed_spin.setRange(0, 2 ** 31 - 1)
        form.addRow("Seed", self.seed_spin)
        self.seconds_spin = QDoubleSpinBox(form_box, objectName="seconds")
        self.seconds_spin.setRange(1.0, 285.0)
        self.seconds_spin.setDecimals(1)
        self.seconds_spin.setSuffix(" s")
        self.seconds_spin.setValue(D.TRACE_SECONDS)
        form.addRow("Duration", self.seconds_spin)
        self.weights = _PathRow("download the base model", "Generator weights (cfm_model.pt)…",
                                "Checkpoints (*.pt *.pth *.safetensors)")
        self.weights.setObjectName("weights")
        form.addRow("Generator weights", self.weights)
        self.weights_note = QLabel(download_note(), form_box, objectName="weights_note", wordWrap=True)
        self.weights_note.setStyleSheet("color: #9aa0a6;")
        form.addRow(self.weights_note)
        self.negative = _PathRow("zero vector", "Negative style (vocal.npy)…", "Embeddings (*.npy *.safetensors *.pt)")
        self.negative.setObjectName("negative_style")
        form.addRow("Negative style", self.negative)
        self.negative_note = QLabel(form_box, objectName="negative_note", wordWrap=True)
        self.negative_note.setStyleSheet("color: #9aa0a6;")
        form.addRow(self.negative_note)
        self.negative.edit.textChanged.connect(self._update_negative_note)
        self._update_negative_note()
        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run", form_box, objectName="run")
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel", form_box, objectName="cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        self.progress_bar = QProgressBar(form_box, objectName="progress")
        self.progress_bar.setRange(0, D.TRACE_STEPS)
        self.progress_bar.setValue(0)
        form.addRow(self.progress_bar)
        self.status_label = QLabel(form_box, objectName="status", wordWrap=True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.status_label)
        scroll = QScrollArea(self)
        scroll.setWidget(form_box)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(300)
        scroll.setMaximumWidth(380)
        return scroll

    def _update_negative_note(self) -> None:
        if self.negative.path():
            self.negative_note.setText("")
            self.negative_note.setVisible(False)
        else:
            self.negative_note.setText("none: the unconditional branch uses a zero style vector, so guidance differs "
                                       "from the official pipeline (it uses infer/example/vocal.npy from "
                                       f"{DIFFRHYTHM_GITHUB})")
            self.negative_note.setVisible(True)

    def form_values(self, **overrides: Any) -> dict[str, Any]:
        """The form's values as ``TraceRequest`` fields (keyword arguments override them; a
        ``style=`` embedding wins over the files)."""
        values = dict(prompt=self.prompt_edit.text().strip(), seed=self.seed_spin.value(),
                      seconds=float(self.seconds_spin.value()), style_file=self.style_file.path(),
                      style_audio=self.style_audio.path() if self.style_audio.isEnabled() else None,
                      lyrics=self.lyrics.path(), g2p_vocab=self.g2p_vocab.path(), weights=self.weights.path(),
                      negative_style=self.negative.path())
        values.update({k: v for k, v in overrides.items() if v is not None or k == "style"})
        return values
