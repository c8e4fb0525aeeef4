"""What the timeline's panes share: a view box with x-only mouse and clicks in view
coordinates, and ``start_job`` (a ``JobRunner`` job whose result slots are connected first)."""

from __future__ import annotations

import threading
from typing import Any, Callable

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal


def start_job(runner: Any, name: str, fn: Callable[..., Any], *args: Any, finished: Callable[[Any], None],
              failed: Callable[[str, str], None] | None = None) -> Any:
    """``runner.submit`` whose job waits until ``finished``/``failed`` are connected.

    A short job can otherwise finish, and emit into the void, before ``submit`` returns.
    ``finished`` / ``failed`` must be methods of QObjects living in the GUI thread, so the
    results arrive there (queued).
    """
    gate = threading.Event()

    def gated(*a: Any, progress: Any = None, cancel: Any = None, **kw: Any) -> Any:
        gate.wait()
        return fn(*a, progress=progress, cancel=cancel, **kw)

    job = runner.submit(name, gated, *args)
    try:
        job.finished.connect(finished)
        if failed is not None:
            job.failed.connect(failed)
    finally:
        gate.set()
    return job


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
