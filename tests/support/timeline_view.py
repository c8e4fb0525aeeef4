"""A shown ``TimelineView`` on an ``ExplorerState`` holding a workspace's models, for studio tests."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from studio.settings import StudioSettings
from studio.state import ExplorerState
from studio.widgets.timeline import TimelineView
from studio.workers import JobRunner


@contextmanager
def shown_timeline(qtbot: Any, workspace: Any, models: Any, size: tuple[int, int] = (1200, 820)
                   ) -> Iterator[tuple[TimelineView, ExplorerState]]:
    """The view (closed, and its runner shut down, on exit) and its state; no clip yet."""
    state = ExplorerState()
    runner = JobRunner()
    state.set_workspace(workspace)
    state.set_models(models)
    view = TimelineView(state, runner, StudioSettings())
    qtbot.addWidget(view)
    view.resize(*size)
    view.show()
    qtbot.waitExposed(view)
    try:
        yield view, state
    finally:
        view.close()
        runner.shutdown()
