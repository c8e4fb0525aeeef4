"""The audition dock's controls (a view: no torch).  ``build_controls(panel)`` makes the
widgets on ``panel`` (``studio.widgets.audition.AuditionPanel``) and connects them to its slots;
``arrange(panel, columns)`` lays the rows out in one column or two."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QCompleter, QDoubleSpinBox, QGridLayout,
                               QHBoxLayout, QLabel, QPushButton, QRadioButton, QSizePolicy, QSlider, QStyle,
                               QToolButton, QVBoxLayout, QWidget)

from audiosae.defaults import DEFAULT_STEER_METHOD as STEER_DEFAULT_METHOD
from audiosae.defaults import STEER_METHODS

ALPHA_MAX = 40.0
ALPHA_STEP = 0.1
_ALPHA_TICKS = int(round(ALPHA_MAX / ALPHA_STEP))


class AlphaSpinBox(QDoubleSpinBox):
    """The alpha spin box: it cannot hold a non-finite value (a plain QDoubleSpinBox turns NaN
    and inf into its maximum, 40); ``setValue`` of one keeps the current value.  The range
    (0..40) keeps negative values out; typed "nan"/"inf" never validate."""

    def setValue(self, value: float) -> None:  # noqa: N802 (Qt naming)
        if not math.isfinite(float(value)):
            import logging

            logging.getLogger("studio.audition").info("audition: refused a non-finite alpha %r", value)
            return
        super().setValue(value)


def _wrap(layout: QHBoxLayout) -> QWidget:
    """A row of controls as one widget (so the grid can move it between columns)."""
    layout.setContentsMargins(0, 0, 0, 0)
    widget = QWidget()
    widget.setLayout(layout)
    return widget


def build_controls(panel: Any, *, alpha_unit: float, paper_alphas: tuple[float, ...]) -> None:
    """Every control of the audition dock, on ``panel``, connected to its slots (``alpha_unit``,
    ``paper_alphas``: the core's, passed in so that this view needs no torch)."""
    style = panel.style()
    panel._grid = grid = QGridLayout()
    grid.setHorizontalSpacing(8)
    grid.setVerticalSpacing(6)
    panel._rows: list[tuple[QWidget | None, QWidget]] = []   # (label, field), laid out by _arrange
    panel._columns = 0

    panel.attribute_combo = QComboBox()
    panel.attribute_combo.setToolTip("The attribute whose probe gives the control vector")
    panel.target_combo = QComboBox()
    panel.target_combo.setEditable(True)
    panel.target_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
    panel.target_combo.setMaxVisibleItems(20)
    panel.target_combo.setMinimumContentsLength(10)
    panel.target_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    completer = panel.target_combo.completer()
    completer.setFilterMode(Qt.MatchFlag.MatchContains)
    completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
    completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
    panel.target_combo.setToolTip("Target class: type to search (e.g. 'A4', 'C#5', '-12 dB', '1500 Hz')")
    panel._rows.append((QLabel("Attribute"), panel.attribute_combo))
    panel._rows.append((QLabel("Target"), panel.target_combo))

    panel.method_combo = QComboBox()
    for method in STEER_METHODS:
        panel.method_combo.addItem(method + (" (default)" if method == STEER_DEFAULT_METHOD else ""), method)
    panel.method_combo.setCurrentIndex(STEER_METHODS.index(STEER_DEFAULT_METHOD))
    panel.method_combo.setToolTip("How the features are steered (audiosae.steering.methods): the same method "
                                  "for the audition, the export and the heatmap; '+match' matches the "
                                  "loudness frame by frame")
    panel._rows.append((QLabel("Method"), panel.method_combo))

    panel.alpha_slider = QSlider(Qt.Orientation.Horizontal)
    panel.alpha_slider.setRange(0, _ALPHA_TICKS)
    panel.alpha_slider.setSingleStep(1)
    panel.alpha_slider.setPageStep(int(round(1.0 / ALPHA_STEP)))
    panel.alpha_slider.setTickPosition(QSlider.TickPosition.TicksBelow)
    panel.alpha_slider.setTickInterval(int(round(10.0 / ALPHA_STEP)))
    panel.alpha_slider.setToolTip(f"Steering strength alpha (0-{ALPHA_MAX:g}); one unit adds "
                                 f"{alpha_unit:g} x the feature vector's length")
    panel.alpha_spin = AlphaSpinBox()
    panel.alpha_spin.setRange(0.0, ALPHA_MAX)
    panel.alpha_spin.setSingleStep(ALPHA_STEP)
    panel.alpha_spin.setDecimals(1)
    panel.alpha_spin.setKeyboardTracking(False)
    panel.alpha_spin.setPrefix("α ")
    alpha = QHBoxLayout()
    alpha.addWidget(panel.alpha_slider, 1)
    alpha.addWidget(panel.alpha_spin)
    panel._rows.append((QLabel("Alpha"), _wrap(alpha)))
    panel.level_label = QLabel("level: —")
    panel.level_label.setToolTip("What the level rule did to the steered audio rendered so far: the loudness-"
                                 "match gain, the samples the limiter turned down, the peak before → after")
    panel.level_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    panel.level_label.setWordWrap(True)
    panel.level_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    small = panel.level_label.font()
    small.setPointSizeF(max(6.0, small.pointSizeF() * 0.9))
    panel.level_label.setFont(small)
    panel._rows.append((None, panel.level_label))

    presets = QHBoxLayout()
    presets.setSpacing(4)
    presets.addWidget(QLabel("paper:"))
    panel.preset_buttons: list[QToolButton] = []
    for value in (0.0, *paper_alphas):
        button = QToolButton()
        button.setText(f"{value:g}")
        button.setToolTip(f"alpha = {value:g}" + (" (off)" if value == 0 else " (a value from the paper)"))
        button.clicked.connect(lambda _=False, v=value: panel.set_alpha(v))
        presets.addWidget(button)
        panel.preset_buttons.append(button)
    presets.addStretch(1)
    panel._rows.append((None, _wrap(presets)))

    panel.keep_residual_check = QCheckBox("Keep residual")
    panel.keep_residual_check.setToolTip("Add back what the SAE does not reconstruct (x - SAE(x)), so only "
                                        "the steered direction changes")
    panel.scope_whole = QRadioButton("Whole clip")
    panel.scope_selection = QRadioButton("Selection")
    panel.scope_selection.setToolTip("Steer only the selected time range (drag on the waveform)")
    panel.scope_whole.setChecked(True)
    panel._scope_group = QButtonGroup(panel)
    panel._scope_group.addButton(panel.scope_whole)
    panel._scope_group.addButton(panel.scope_selection)
    scope = QHBoxLayout()
    scope.setSpacing(8)
    scope.addWidget(panel.scope_whole)
    scope.addWidget(panel.scope_selection)
    scope.addStretch(1)
    panel._rows.append((QLabel("Scope"), _wrap(scope)))
    panel._rows.append((None, panel.keep_residual_check))

    panel.original_button = QToolButton()
    panel.original_button.setText("A original")
    panel.steered_button = QToolButton()
    panel.steered_button.setText("B steered")
    for button in (panel.original_button, panel.steered_button):
        button.setCheckable(True)
        button.setToolTip("A/B: hear the input clip or the steered audio (rendering goes on in both)")
    panel.steered_button.setChecked(True)
    panel._ab_group = QButtonGroup(panel)
    panel._ab_group.setExclusive(True)
    panel._ab_group.addButton(panel.original_button)
    panel._ab_group.addButton(panel.steered_button)

    panel.play_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), "Play")
    panel.play_button.setToolTip("Play / pause (Space)")
    panel.loop_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_BrowserReload), "Loop")
    panel.loop_button.setCheckable(True)
    panel.loop_button.setToolTip("Loop the selection, or the whole clip without one (L)")
    panel.export_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton), "Export…")
    panel.export_button.setToolTip("Write the whole steered clip to a WAV/FLAC file with its settings (Ctrl+E)")
    listen = QHBoxLayout()
    listen.setSpacing(4)
    listen.addWidget(panel.original_button)
    listen.addWidget(panel.steered_button)
    listen.addStretch(1)
    panel._rows.append((QLabel("Listen"), _wrap(listen)))
    transport = QHBoxLayout()
    transport.setSpacing(4)
    transport.addWidget(panel.play_button)
    transport.addWidget(panel.loop_button)
    transport.addStretch(1)
    panel.evaluate_button = QPushButton("Evaluate…")
    panel.evaluate_button.setToolTip("Steering evaluation: every method x alpha on this clip, measured; "
                                     "click a cell to hear it")
    transport.addWidget(panel.evaluate_button)
    transport.addWidget(panel.export_button)

    panel.device_combo = QComboBox()
    panel.device_combo.setToolTip("Audio output (remembered by name)")
    panel.device_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    panel.device_combo.setMinimumContentsLength(12)
    panel._rows.append((QLabel("Output"), panel.device_combo))

    panel.status_label = QLabel("no clip loaded")
    panel.status_label.setWordWrap(True)
    panel.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    panel.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    font = panel.status_label.font()
    font.setPointSizeF(max(6.0, font.pointSizeF() * 0.9))
    panel.status_label.setFont(font)

    layout = QVBoxLayout(panel)
    layout.setContentsMargins(8, 8, 8, 8)
    layout.setSpacing(8)
    layout.addLayout(grid)
    layout.addLayout(transport)
    layout.addWidget(panel.status_label)
    layout.addStretch(1)
    arrange(panel, 1)

    panel.attribute_combo.currentIndexChanged.connect(panel._on_attribute_changed)
    panel.target_combo.activated.connect(panel._on_target_picked)
    panel.target_combo.lineEdit().editingFinished.connect(panel._on_target_typed)
    panel.alpha_slider.valueChanged.connect(panel._on_slider)
    panel.alpha_spin.valueChanged.connect(panel._on_spin)
    panel.keep_residual_check.toggled.connect(panel._on_keep_residual)
    panel.scope_selection.toggled.connect(panel._on_scope)
    panel.steered_button.toggled.connect(panel._on_ab)
    panel.play_button.clicked.connect(panel.toggle_play)
    panel.loop_button.clicked.connect(lambda _=False: panel.toggle_loop())
    panel.export_button.clicked.connect(panel._on_export_button)
    panel.device_combo.activated.connect(panel._on_device_picked)
    panel.method_combo.activated.connect(lambda _=0: panel._apply_params())
    panel.evaluate_button.clicked.connect(panel.show_evaluation)


def arrange(panel: Any, columns: int) -> None:
    """The control rows in one column (a narrow dock) or two side by side (a wide one,
    e.g. docked under the timeline), so the panel stays short."""
    if columns == panel._columns:
        return
    panel._columns = columns
    grid = panel._grid
    for label, field in panel._rows:
        if label is not None:
            grid.removeWidget(label)
        grid.removeWidget(field)
    per_column = -(-len(panel._rows) // columns)
    split = 6 if columns == 2 else per_column   # attribute, target, method, alpha, level, presets | the rest
    for index, (label, field) in enumerate(panel._rows):
        column = 0 if index < split else 1
        row = index if column == 0 else index - split
        if label is not None:
            grid.addWidget(label, row, 3 * column)
        grid.addWidget(field, row, 3 * column + 1)
    for column in range(6):
        grid.setColumnStretch(column, 1 if column in (1, 4) and column // 3 < columns else 0)
        grid.setColumnMinimumWidth(column, 16 if column == 2 and columns == 2 else 0)
    panel.updateGeometry()


class TargetControls:
    """The attribute and target combos of the audition panel (a mixin): they show the view-model's
    choices (``panel.model``: ``studio.models.audition_session.AuditionModel``); a typed target is
    parsed by the model (``AttributeSpec.parse_target``)."""

    def _populate_attributes(self) -> None:
        available = self.model.attributes()
        chosen = self.model.attribute
        with QSignalBlocker(self.attribute_combo):
            self.attribute_combo.clear()
            for attribute in available:
                text = "Timbre (centroid)" if attribute == "timbre" else attribute.replace("_", " ").capitalize()
                self.attribute_combo.addItem(text, attribute)
                self.attribute_combo.setItemData(self.attribute_combo.count() - 1,
                                                 self.model.steering_meaning(attribute), Qt.ItemDataRole.ToolTipRole)
            if chosen in available:
                self.attribute_combo.setCurrentIndex(available.index(chosen))
        self.model.set_attribute(self.attribute_combo.currentData())
        self._populate_targets()

    def _populate_targets(self) -> None:
        attribute = self.attribute_combo.currentData()
        with QSignalBlocker(self.target_combo):
            self.target_combo.clear()
            if attribute is None:
                return
            names = self.model.class_names(attribute)
            self.target_combo.addItems(names)
            trained = self.model.trained_classes(attribute)
            model = self.target_combo.model()
            for k in set(range(len(names))) - set(trained):
                item = model.item(k) if hasattr(model, "item") else None
                if item is not None:  # a class the probe never saw has no direction to steer toward
                    item.setEnabled(False)
                    item.setToolTip("not in the probe's training data")
            self.target_combo.setCurrentIndex(self.model.target(attribute))

    def _on_attribute_changed(self, _index: int) -> None:
        self.model.set_attribute(self.attribute_combo.currentData())
        self._populate_targets()
        self._apply_params()

    def _on_target_picked(self, index: int) -> None:
        attribute = self.attribute_combo.currentData()
        if attribute is None or index < 0:
            return
        if self.model.targets.get(attribute) != index:
            self.model.targets[attribute] = index
            self._apply_params()

    def _on_target_typed(self) -> None:
        """Typed text: a class name, or what ``AttributeSpec.parse_target`` understands."""
        attribute = self.attribute_combo.currentData()
        if attribute is None or self.state.models is None:
            return
        text = self.target_combo.currentText().strip()
        index = self.target_combo.findText(text, Qt.MatchFlag.MatchFixedString)
        if index < 0:
            index = self.model.parse_target(attribute, text)
        if not 0 <= index < self.target_combo.count():
            index = self.model.targets.get(attribute, 0)
        with QSignalBlocker(self.target_combo):
            self.target_combo.setCurrentIndex(index)
        self._on_target_picked(index)
