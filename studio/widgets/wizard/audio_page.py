"""Step 1 of the wizard: the audio (files, folders, drops or a built-in corpus) and the workspace folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QButtonGroup, QComboBox, QDoubleSpinBox, QFileDialog,
                               QGroupBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QProgressBar, QPushButton, QRadioButton, QStackedWidget,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget, QWizardPage)

from audiosae import defaults as D
from audiosae.corpus import BUILTIN_CORPORA, midi_unavailable_reason
from audiosae.errors import printable
from audiosae.jobs import Progress
from audiosae.workflows.audio_plan import AudioChoice, WorkspaceStatus, default_workspace_folder
from audiosae.workflows.train_plan import format_audio_format, format_duration

from ...models.wizard import AudioModel
from ...workers import JobRunner
from .common import ERROR_STYLE, NOTE_STYLE, OK_STYLE, label, setting

DEFAULT_BUILTIN_MINUTES = D.WIZARD_BUILTIN_MINUTES


class AudioPage(QWizardPage):
    """Files, folders, drag-and-drop or a built-in corpus; plus the workspace folder."""

    scan_done = Signal()

    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None,
                 model: AudioModel | None = None):
        super().__init__(parent)
        self.settings = settings
        self.model = model if model is not None else AudioModel(runner, self)
        self._shown_version = -1
        self.setTitle("1 \u00b7 Audio")
        self.setSubTitle("Choose the audio to learn from: your files and folders (or drop them here), "
                         "or a built-in corpus with exact ground truth.")
        self.setAcceptDrops(True)

        self.files_radio = QRadioButton("My audio files")
        self.builtin_radio = QRadioButton("Built-in corpus")
        self.files_radio.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.files_radio)
        group.addButton(self.builtin_radio)
        mode_row = QHBoxLayout()
        mode_row.addWidget(self.files_radio)
        mode_row.addWidget(self.builtin_radio)
        mode_row.addStretch(1)

        # -- user files
        files_panel = QWidget()
        fl = QVBoxLayout(files_panel)
        fl.setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        self.add_files_button = QPushButton("Add files\u2026")
        self.add_folder_button = QPushButton("Add folder\u2026")
        self.remove_button = QPushButton("Remove")
        self.clear_button = QPushButton("Clear")
        for b in (self.add_files_button, self.add_folder_button, self.remove_button, self.clear_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(label("or drop files and folders onto this page", NOTE_STYLE, wrap=False))
        fl.addLayout(buttons)
        self.file_tree = QTreeWidget()
        self.file_tree.setHeaderLabels(["File", "Duration", "Format", "Folder"])
        self.file_tree.setRootIsDecorated(False)
        self.file_tree.setAlternatingRowColors(True)
        self.file_tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.file_tree.setUniformRowHeights(True)
        header = self.file_tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        self.file_tree.setColumnWidth(3, 220)
        fl.addWidget(self.file_tree, 3)
        scan_row = QHBoxLayout()
        self.files_summary = label("No audio yet.")
        self.scan_bar = QProgressBar()
        self.scan_bar.setMaximumWidth(200)
        self.scan_bar.setVisible(False)
        scan_row.addWidget(self.files_summary, 1)
        scan_row.addWidget(self.scan_bar)
        fl.addLayout(scan_row)
        self.skipped_label = label("", NOTE_STYLE)
        fl.addWidget(self.skipped_label)
        self.skipped_list = QListWidget()
        self.skipped_list.setMaximumHeight(90)
        self.skipped_list.setVisible(False)
        fl.addWidget(self.skipped_list, 1)

        # -- built-in corpus
        builtin_panel = QWidget()
        bl = QVBoxLayout(builtin_panel)
        bl.setContentsMargins(0, 4, 0, 0)
        self.corpus_combo = QComboBox()
        self.midi_reason = midi_unavailable_reason()
        for name in BUILTIN_CORPORA:
            self.corpus_combo.addItem(name, name)
        if self.midi_reason:
            index = self.corpus_combo.findData("midi")
            item = self.corpus_combo.model().item(index)
            item.setEnabled(False)
            item.setText("midi (unavailable)")
            item.setToolTip(self.midi_reason)
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.1, 600.0)
        self.minutes_spin.setDecimals(1)
        self.minutes_spin.setSingleStep(0.5)
        self.minutes_spin.setSuffix(" min")
        self.minutes_spin.setValue(DEFAULT_BUILTIN_MINUTES)
        self.minutes_spin.setToolTip("Keep the shortest prefix of the corpus that lasts this long; "
                                     "a short prefix already spreads over the whole pitch range.")
        self.corpus_description = label("", NOTE_STYLE)
        self.midi_note = label("", NOTE_STYLE)
        self.builtin_summary = label("")
        self.corpus_combo.setMinimumContentsLength(16)
        choice_row = QHBoxLayout()
        choice_row.addWidget(QLabel("Corpus:"))
        choice_row.addWidget(self.corpus_combo)
        choice_row.addSpacing(16)
        choice_row.addWidget(QLabel("Length:"))
        choice_row.addWidget(self.minutes_spin)
        choice_row.addStretch(1)
        bl.addLayout(choice_row)
        bl.addWidget(self.corpus_description)
        bl.addWidget(self.builtin_summary)
        bl.addWidget(self.midi_note)
        bl.addStretch(1)

        self.stack = QStackedWidget()
        self.stack.addWidget(files_panel)
        self.stack.addWidget(builtin_panel)

        audio_box = QGroupBox("Audio")
        al = QVBoxLayout(audio_box)
        al.addLayout(mode_row)
        al.addWidget(self.stack, 1)

        # -- workspace folder
        ws_box = QGroupBox("Workspace folder")
        wl = QVBoxLayout(ws_box)
        row = QHBoxLayout()
        self.workspace_edit = QLineEdit()
        self.workspace_edit.setPlaceholderText("a new or empty folder, or an existing workspace to resume")
        self.workspace_browse = QPushButton("Browse\u2026")
        row.addWidget(self.workspace_edit, 1)
        row.addWidget(self.workspace_browse)
        wl.addLayout(row)
        self.workspace_label = label("", NOTE_STYLE)
        wl.addWidget(self.workspace_label)

        self.message = label("", ERROR_STYLE)
        layout = QVBoxLayout(self)
        layout.addWidget(audio_box, 1)
        layout.addWidget(ws_box)
        layout.addWidget(self.message)

        self.registerField("workspace", self.workspace_edit)
        self.registerField("builtin_minutes", self.minutes_spin, "value", self.minutes_spin.valueChanged)
        self.registerField("builtin_corpus", self.corpus_combo, "currentIndex", self.corpus_combo.currentIndexChanged)

        self.files_radio.toggled.connect(self._on_mode_changed)
        self.corpus_combo.currentIndexChanged.connect(self._refresh_builtin)
        self.minutes_spin.valueChanged.connect(self._refresh_builtin)
        self.add_files_button.clicked.connect(self._browse_files)
        self.add_folder_button.clicked.connect(self._browse_folder)
        self.remove_button.clicked.connect(self._remove_selected)
        self.clear_button.clicked.connect(self.clear_files)
        self.model.changed.connect(self._on_model_changed)
        self.model.scan_progress.connect(self._on_scan_progress)
        self.model.scan_done.connect(self.scan_done.emit)
        self.workspace_browse.clicked.connect(self._browse_workspace)
        self.workspace_edit.textChanged.connect(self._on_workspace_changed)
        self.workspace_edit.setText(default_workspace_folder())
        self._refresh_builtin()
        self._on_workspace_changed()

    # ---- public API (also used by tests) -------------------------------------------------
    @property
    def builtin(self) -> str | None:
        return self.corpus_combo.currentData() if self.builtin_radio.isChecked() else None

    @property
    def scanning(self) -> bool:
        """True while headers are being read (``scan_done`` fires when it ends)."""
        return self.model.scanning

    @property
    def workspace_status(self) -> WorkspaceStatus:
        return self.model.workspace_status

    def use_builtin(self, name: str, minutes: float | None = None) -> None:
        """Select built-in corpus ``name`` (``minutes`` long)."""
        index = self.corpus_combo.findData(name)
        if index < 0:
            raise ValueError(f"unknown built-in corpus {name!r}")
        self.builtin_radio.setChecked(True)
        self.corpus_combo.setCurrentIndex(index)
        if minutes is not None:
            self.minutes_spin.setValue(minutes)
        self._refresh_builtin()

    def add_paths(self, paths: Sequence[str | Path]) -> None:
        """Add files and folders (scanned in a job; ``scan_done`` fires when all are read)."""
        self.files_radio.setChecked(True)
        self.scan_bar.setRange(0, 0)
        self.model.add_paths(paths)

    def clear_files(self) -> None:
        self.model.clear()

    def usable_files(self) -> list[str]:
        return self.model.usable_files()

    def skipped_problems(self) -> list[str]:
        """One line per skipped file or folder: the path and its problem."""
        return self.model.skipped_problems()

    def audio_choice(self) -> AudioChoice:
        return self.model.audio_choice()

    def cancel_jobs(self) -> None:
        self.model.cancel_jobs()

    # ---- drag and drop -----------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.add_paths(paths)
        else:
            event.ignore()

    # ---- wizard hooks ------------------------------------------------------------------------
    def isComplete(self) -> bool:  # noqa: N802
        return not self._problem_text()

    def validatePage(self) -> bool:  # noqa: N802
        self._update_message()
        return self.isComplete()

    # ---- internals -----------------------------------------------------------------------------
    def _problem_text(self) -> str:
        return self.model.problem(self.midi_reason)

    def _update_message(self) -> None:
        text = self._problem_text()
        self.message.setText("" if text == "Reading audio headers\u2026" else text)
        self.completeChanged.emit()

    def _on_mode_changed(self) -> None:
        self.stack.setCurrentIndex(0 if self.files_radio.isChecked() else 1)
        self._sync_builtin()

    def _sync_builtin(self) -> None:
        self.model.set_builtin(self.builtin, self.minutes_spin.value())

    def _refresh_builtin(self) -> None:
        name = self.corpus_combo.currentData()
        self.corpus_description.setText(BUILTIN_CORPORA.get(name, ""))
        self.midi_note.setText(f"midi is unavailable: {self.midi_reason}" if self.midi_reason else "")
        self.midi_note.setVisible(bool(self.midi_reason))
        if name == "midi" and self.midi_reason:
            self.builtin_summary.setText("")
        else:
            sources = self.model.builtin_sources(name)
            total = sum(s.seconds for s in sources)
            self.builtin_summary.setText(f"{len(sources)} source(s), {format_duration(total)} of audio")
        self._sync_builtin()

    def _on_scan_progress(self, event: Progress) -> None:
        if event.total:
            self.scan_bar.setRange(0, int(event.total))
            self.scan_bar.setValue(int(event.done))
        self.files_summary.setText(f"Reading headers\u2026 {event.message}")

    def _on_model_changed(self) -> None:
        self.scan_bar.setVisible(self.model.scanning)
        if self.model.version != self._shown_version:
            self._refill_tree()
        self._update_summary()

    def _refill_tree(self) -> None:
        self._shown_version = self.model.version
        self.file_tree.setUpdatesEnabled(False)
        self.file_tree.clear()
        items = []
        for key, info in self.model.files.items():
            path = Path(info.path)
            # printable: Qt silently drops the bytes of a name that is not valid UTF-8
            item = QTreeWidgetItem([printable(path.name), format_duration(info.seconds), format_audio_format(info),
                                    printable(str(path.parent))])
            item.setData(0, Qt.ItemDataRole.UserRole, key)
            item.setToolTip(0, printable(str(path)))
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            items.append(item)
        self.file_tree.addTopLevelItems(items)
        self.file_tree.setUpdatesEnabled(True)
        self.skipped_list.clear()
        for message in self.skipped_problems():
            item = QListWidgetItem(message)
            item.setForeground(QBrush(QColor("#b3261e")))
            item.setToolTip(message)
            self.skipped_list.addItem(item)
        problems = self.model.problems
        self.skipped_list.setVisible(bool(problems))
        self.skipped_label.setText(f"Skipped {len(problems)} file(s):" if problems else "")
        self.skipped_label.setVisible(bool(problems))

    def _update_summary(self) -> None:
        if not self.scanning:
            files = self.model.files
            total = sum(f.seconds for f in files.values())
            self.files_summary.setText(f"{len(files)} file(s), {format_duration(total)} in total" if files
                                       else "No audio yet.")
        self._update_message()

    def _remove_selected(self) -> None:
        self.model.remove([item.data(0, Qt.ItemDataRole.UserRole) for item in self.file_tree.selectedItems()])

    def _start_dir(self) -> str:
        return str(setting(self.settings, "last_directory", str(Path.home())))

    def _remember_dir(self, folder: str | Path) -> None:
        try:
            self.settings.last_directory = str(folder)
        except Exception:  # a plain settings object without the property
            pass

    def _browse_files(self) -> None:
        exts = " ".join(f"*{e}" for e in (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".opus", ".oga"))
        paths, _ = QFileDialog.getOpenFileNames(self, "Add audio files", self._start_dir(),
                                                f"Audio ({exts});;All files (*)")
        if paths:
            self._remember_dir(Path(paths[0]).parent)
            self.add_paths(paths)

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of audio", self._start_dir())
        if folder:
            self._remember_dir(folder)
            self.add_paths([folder])

    def _browse_workspace(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Workspace folder", self._start_dir())
        if folder:
            self.workspace_edit.setText(folder)

    def _on_workspace_changed(self) -> None:
        self.model.set_workspace(self.workspace_edit.text())
        style = {"invalid": ERROR_STYLE, "existing": OK_STYLE}.get(self.workspace_status.kind, NOTE_STYLE)
        self.workspace_label.setStyleSheet(style)
        self.workspace_label.setText(self.workspace_status.message)
        self._update_message()
