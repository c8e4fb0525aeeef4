"""The explorer's panes: where each lives, and a labelled placeholder for one that cannot be built.

``build_pane(name, parent, make)`` imports ``PANES[name]``'s class and calls ``make(cls)``, a
function written by the window with the pane's explicit constructor arguments.  A pane whose
module cannot be imported yet (or fails to build) is replaced by a clearly labelled
placeholder, so the shell runs while the panes are being written; the failure is logged.
"""

from __future__ import annotations

import importlib
import logging
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from .logging_setup import one_line

log = logging.getLogger("studio.main_window")

# name -> (module, class, title); the order of the docks in the View menu
PANES = {
    "timeline": ("studio.widgets.timeline", "TimelineView", "Timeline"),
    "inspector": ("studio.widgets.inspector", "FeatureInspector", "Feature inspector"),
    "audition": ("studio.widgets.audition", "AuditionPanel", "Audition"),
    "generation": ("studio.widgets.generation.view", "GenerationView", "Generation"),
}


class PanePlaceholder(QFrame):
    """Stands in for a pane that is not available in this build; says which and why."""

    is_placeholder = True

    def __init__(self, title: str, module: str, class_name: str, reason: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(f"placeholder_{class_name}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.reason = reason
        label = QLabel(f"<b>{title}: placeholder</b><br>{module}.{class_name} is not available yet:<br>"
                       f"<i>{one_line(reason)}</i>")
        label.setWordWrap(True)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(label)


def build_pane(name: str, parent: QWidget, make: Callable[[type], QWidget]) -> QWidget:
    """``make(cls)`` for ``PANES[name]``'s class, or a placeholder saying why it is missing."""
    module_name, class_name, title = PANES[name]
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        log.warning("%s.%s not available: %s", module_name, class_name, exc)
        return PanePlaceholder(title, module_name, class_name, f"ImportError: {exc}", parent)
    except Exception as exc:  # a half-written module must not take the whole app down
        log.exception("importing %s failed", module_name)
        return PanePlaceholder(title, module_name, class_name, f"{exc.__class__.__name__}: {exc}", parent)
    try:
        return make(cls)
    except Exception as exc:
        log.exception("building %s failed", class_name)
        return PanePlaceholder(title, module_name, class_name, f"{exc.__class__.__name__}: {exc}", parent)


def is_placeholder(widget: QWidget | None) -> bool:
    return bool(getattr(widget, "is_placeholder", False))
