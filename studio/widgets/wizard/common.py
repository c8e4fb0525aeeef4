"""What the wizard's pages share: page ids, label styles and two small widget builders."""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

PAGE_AUDIO, PAGE_BACKEND, PAGE_ATTRIBUTES, PAGE_GRID, PAGE_RUN, PAGE_RESULTS = range(6)
PAGE_TRAINING = PAGE_GRID

ERROR_STYLE = "color: #b3261e;"
NOTE_STYLE = "color: #5f6368;"
OK_STYLE = "color: #1e7d32;"


def label(text: str = "", style: str = "", wrap: bool = True) -> QLabel:
    widget = QLabel(text)
    widget.setWordWrap(wrap)
    widget.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if style:
        widget.setStyleSheet(style)
    return widget


def small_plot(title: str, xlabel: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(background="w")
    item = plot.getPlotItem()
    item.setTitle(title, size="10pt", color="#333")
    item.setLabel("bottom", xlabel)
    item.setLabel("left", "frames")
    item.setMouseEnabled(x=False, y=False)
    item.hideButtons()
    item.setMenuEnabled(False)
    for axis in ("left", "bottom"):
        item.getAxis(axis).setTextPen("#333")
        item.getAxis(axis).setPen("#888")
    plot.setMinimumHeight(150)
    return plot


def setting(settings: Any, name: str, default: Any) -> Any:
    """``settings.name``, or ``default`` when it is missing, None or fails to read."""
    try:
        value = getattr(settings, name, default)
    except Exception:  # a settings object that fails to read must not break the wizard
        return default
    return default if value is None else value
