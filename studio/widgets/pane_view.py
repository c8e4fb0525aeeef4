"""What the timeline's panes share: a view box with x-only mouse and clicks in view coordinates.

(Their jobs run in ``studio.models.job_slot.JobSlot``: one per kind, stale results dropped.)"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal


class PaneViewBox(pg.ViewBox):
    """A time pane's view box: x-only mouse, clicks reported in view coordinates.

    With ``select_drag`` (the waveform), a plain left drag reports a selection drag
    instead of panning; shift + left drag still pans.
    """

    sigClicked = Signal(float, float, bool)          # x, y (view coords), double click
    sigSelectDrag = Signal(float, float, bool)       # start x, current x, finished

    def __init__(self, select_drag: bool = False, **kw):
        super().__init__(**kw)
        self.select_drag = select_drag
        self.setMouseEnabled(x=True, y=False)
        self.setMenuEnabled(False)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 (Qt naming)
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            self.sigClicked.emit(p.x(), p.y(), bool(ev.double()))
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802
        if (self.select_drag and ev.button() == Qt.MouseButton.LeftButton
                and not ev.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            ev.accept()
            a = self.mapSceneToView(ev.buttonDownScenePos()).x()
            b = self.mapSceneToView(ev.scenePos()).x()
            self.sigSelectDrag.emit(a, b, bool(ev.isFinish()))
        else:
            super().mouseDragEvent(ev, axis)
