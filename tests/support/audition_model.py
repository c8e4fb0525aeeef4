"""An ``AuditionModel`` (no widget) on a fresh state and runner, its session built for a clip."""

from __future__ import annotations

from typing import Any


def started_audition(qtbot: Any, workspace: Any, models: Any, analysis: Any, clip_name: str,
                     method: str = "paper") -> tuple[Any, Any, Any]:
    """``(model, state, runner)`` once the session of ``analysis`` is ready (virtual output);
    the caller shuts the model and the runner down."""
    from studio.models.audition_session import AuditionModel
    from studio.state import ExplorerState
    from studio.workers import JobRunner

    state, runner = ExplorerState(), JobRunner()
    model = AuditionModel(state, runner, None, output="virtual")
    model.method = method
    model.connect_state()
    state.set_workspace(workspace)
    state.set_models(models)
    with qtbot.waitSignal(model.session_ready, timeout=60_000):
        state.set_analysis(analysis, clip_name)
    return model, state, runner
