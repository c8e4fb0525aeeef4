"""View-model of the steering evaluation view (no QtWidgets): runs the core's
``steering.evaluate.evaluate_steering`` for the current clip and SAE (methods x alphas for one
attribute/target) in a job with progress and cancel, gives the view its matrix as plain
numbers, auditions any cell and saves the result through the core's writer.

A cell is auditioned exactly as the evaluation steered it: ``SteeringEvaluation.steer_kwargs``
into ``steering.control.steer_wave`` with the method's ``SteeringContext`` (prepared by the
core, class means cached in ``WORKSPACE/steer/``), in a job; the audio plays through
``SnippetPlayer`` (``audiosae.steering.playback.Player``, the audition dock's player: same device
choice, same virtual output in tests).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PySide6.QtCore import QObject, Signal

from audiosae.errors import AudioSAEError
from audiosae.jobs import CancelToken, Progress, ProgressSink, null_progress
from audiosae.steering.control import PAPER_ALPHAS, check_alpha
from audiosae.steering.methods import BASE_METHODS, METHODS, prepare_method
from studio.models.job_slot import JobSlot

# The view's default rows: every base method (the "+match" variants are one tick away).
DEFAULT_EVAL_METHODS: tuple[str, ...] = tuple(BASE_METHODS)


@dataclass
class CellView:
    """What the view shows in one cell (plain numbers; NaN where not measured)."""

    method: str
    alpha: float
    hit_rate: float
    loudness_db: float
    centroid_pct: float
    pitch_semitones: float
    peak_dbfs: float
    frechet: float

    def text(self) -> str:
        def num(value: float, fmt: str) -> str:
            return "–" if not math.isfinite(value) else format(value, fmt)

        shifts = [f"ΔL {num(self.loudness_db, '.1f')} dB" if math.isfinite(self.loudness_db) else "",
                  f"Δc {num(self.centroid_pct, '.0f')} %" if math.isfinite(self.centroid_pct) else "",
                  f"Δp {num(self.pitch_semitones, '.1f')} st" if math.isfinite(self.pitch_semitones) else ""]
        return f"hit {num(self.hit_rate, '.2f')}\n" + " · ".join(s for s in shifts if s)

    def tooltip(self) -> str:
        return (f"{self.method}, α {self.alpha:g}: target hit rate {self.hit_rate:.3f}; non-target shifts "
                f"(vs the unsteered reconstruction): loudness {self.loudness_db:.2f} dB, centroid "
                f"{self.centroid_pct:.1f} %, pitch {self.pitch_semitones:.2f} semitones; peak "
                f"{self.peak_dbfs:.1f} dBFS; Fréchet {self.frechet:.3g}.  Click to hear it.")


def parse_alphas(text: str) -> list[float]:
    """``"1, 10, 20"`` -> ``[1.0, 10.0, 20.0]`` (each checked: finite, >= 0)."""
    parts = [p for p in re.split(r"[,\s;]+", text.strip()) if p]
    if not parts:
        raise AudioSAEError("give at least one alpha (e.g. 1, 10, 20, 30)")
    out = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise AudioSAEError(f"alpha {part!r} is not a number") from None
        out.append(check_alpha(value))
    return list(dict.fromkeys(out))


def run_evaluation(models: Any, clip_name: str, wave: np.ndarray, attribute: str, target: str,
                   methods: Sequence[str], alphas: Sequence[float], *, progress: ProgressSink = null_progress,
                   cancel: CancelToken | None = None) -> Any:
    """The evaluation job: the workflow ``audiosae steer-eval`` runs (``workflows.evaluate``) on
    the open clip with the loaded models; nothing is written until the user saves."""
    from audiosae.steering.evaluate import Clip
    from audiosae.workflows import evaluate as eval_flow

    backend = models.backend
    request = eval_flow.EvaluateRequest(workspace=models.workspace.root,
                                        audio=[Clip(clip_name, np.asarray(wave, np.float32))],
                                        targets=[(attribute, target)], alphas=list(alphas), methods=list(methods),
                                        device=str(backend.device) if backend is not None else "auto", save=False)
    return eval_flow.run_evaluate(request, models=models, progress=progress, cancel=cancel).evaluation


def render_cell(models: Any, wave: np.ndarray, kwargs: dict[str, Any], *, progress: ProgressSink = null_progress,
                cancel: CancelToken | None = None) -> np.ndarray:
    """One cell's steered audio (a job): ``steer_wave`` with ``SteeringEvaluation.steer_kwargs``."""
    from audiosae.steering.control import steer_wave

    cancel = cancel or CancelToken()
    progress(Progress("steer-eval cell", 0, 1, f"steering: {kwargs['method']}, alpha {kwargs['alpha']:g}"))
    context = prepare_method(models.workspace, models.sae.cfg.name, models.sae, models.probes, kwargs["attribute"],
                             kwargs["method"], cancel=cancel)
    cancel.raise_if_cancelled()
    result = steer_wave(models.backend, models.sae, models.probes, models.spec, wave, measure_shift=False,
                        context=context, **kwargs)
    progress(Progress("steer-eval cell", 1, 1, "done"))
    return result.wave


class EvaluationModel(QObject):
    """State of the steering evaluation view (see the module docstring)."""

    changed = Signal()               # target, methods, alphas, running or result changed
    progress = Signal(float, str)    # fraction (0..1), message
    failed = Signal(str)
    cell_playing = Signal(str, float)  # method, alpha of the cell now sounding

    def __init__(self, state: Any, runner: Any, *, output: str = "auto", device: str | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.state = state
        self.runner = runner
        self._output, self._device = output, device
        self.attribute: str | None = None
        self.target: str | None = None          # class name, as AttributeSpec.parse_target reads it
        self.methods: list[str] = list(DEFAULT_EVAL_METHODS)
        self.alphas: list[float] = [float(a) for a in PAPER_ALPHAS]
        self.evaluation: Any = None             # the last SteeringEvaluation
        self.message = ""
        self._slot = JobSlot(runner, "steering evaluation")
        self._cell_slot = JobSlot(runner, "steering evaluation: audition a cell")
        self._handles: list[Any] = []
        self._rendered: dict[tuple[str, float], np.ndarray] = {}
        self._player: Any = None
        self._signals = [(signal, self._on_clip_changed) for signal in
                         (state.clip_changed, state.models_changed, state.workspace_changed)]
        for signal, slot in self._signals:
            signal.connect(slot)

    def _on_clip_changed(self, *_: Any) -> None:
        """Another clip or other models: the matrix no longer describes what the user hears."""
        self._slot.cancel()
        self._cell_slot.cancel()
        self.stop()
        if self.evaluation is not None or self.message:
            self.evaluation, self._rendered, self.message = None, {}, ""
            self.changed.emit()

    # ---- inputs --------------------------------------------------------------------------
    @property
    def all_methods(self) -> tuple[str, ...]:
        return tuple(METHODS)

    def set_target(self, attribute: str, target: int | str) -> None:
        """The attribute and target class (index or name) to evaluate."""
        models = self.state.models
        if models is not None and not isinstance(target, str):
            names = models.spec.class_names(attribute)
            target = names[int(target)] if 0 <= int(target) < len(names) else str(target)
        if (attribute, str(target)) != (self.attribute, self.target):
            self.attribute, self.target = attribute, str(target)
            self.changed.emit()

    def set_methods(self, methods: Sequence[str]) -> None:
        for method in methods:
            if method not in METHODS:
                raise AudioSAEError(f"unknown steering method {method!r}")
        self.methods = list(dict.fromkeys(methods))
        self.changed.emit()

    def set_alphas(self, alphas: Sequence[float] | str) -> None:
        self.alphas = parse_alphas(alphas) if isinstance(alphas, str) else [check_alpha(a) for a in alphas]
        self.changed.emit()

    @property
    def running(self) -> bool:
        return self._slot.running

    @property
    def ready(self) -> str:
        """Why the evaluation cannot run now ("" when it can)."""
        if self.state.models is None or self.state.analysis is None:
            return "load a workspace and a clip first"
        if self.state.models.backend is None:
            return "the workspace's codec cannot decode here"
        if self.attribute is None or self.target is None:
            return "choose an attribute and a target in the audition dock"
        return ""

    # ---- the evaluation job --------------------------------------------------------------
    def run(self) -> bool:
        """Start the evaluation (a job; ``changed`` when it ends).  False if it cannot run."""
        reason = self.ready
        if reason:
            self._fail(reason)
            return False
        analysis, models = self.state.analysis, self.state.models
        name = Path(self.state.clip_path or getattr(analysis, "source", "") or "clip").name
        self.evaluation, self._rendered, self.message = None, {}, "evaluating…"
        handle = self._slot.start(run_evaluation, models, name, analysis.wave, self.attribute, self.target,
                                  self.methods, self.alphas, on_progress=self._on_progress,
                                  on_finished=self._on_finished, on_failed=self._fail,
                                  on_cancelled=self._on_cancelled)
        self._handles = [h for h in self._handles if h.running] + [handle]
        self.changed.emit()
        return True

    def cancel(self) -> None:
        if self._slot.running:
            self._slot.cancel()
            self._on_cancelled()

    def _on_progress(self, event: Progress) -> None:
        self.message = event.message
        self.progress.emit(float(event.fraction or 0.0), event.message)

    def _on_finished(self, evaluation: Any) -> None:
        self.evaluation = evaluation
        best = self.best()
        self.message = (f"done in {evaluation.meta.get('seconds', 0):.1f} s"
                        + (f"; best by the rule: {best['method']} at α {best['alpha']:g}" if best.get("method")
                           else "; no method reached a hit rate of 0.5"))
        self.changed.emit()

    def _on_cancelled(self) -> None:
        self.message = "cancelled"
        self.changed.emit()

    def _fail(self, message: str) -> None:
        self.message = message
        self.failed.emit(message)
        self.changed.emit()

    # ---- the matrix ----------------------------------------------------------------------
    def best(self) -> dict[str, Any]:
        if self.evaluation is None:
            return {}
        return self.evaluation.best_method(attribute=self.result_target[0], target=self.result_target[1])

    @property
    def result_target(self) -> tuple[str, str]:
        return self.evaluation.targets[0]

    def cells(self) -> list[list[CellView]]:
        """Rows (methods) x columns (alphas) of the last evaluation (empty without one)."""
        ev = self.evaluation
        if ev is None:
            return []
        attribute, target = self.result_target
        mats = {m: ev.matrix(m, attribute=attribute, target=target).values
                for m in ("hit_rate", "loudness_shift_db", "centroid_change_pct", "pitch_shift_semitones",
                          "peak_dbfs", "frechet")}
        return [[CellView(method, alpha, *(float(mats[m][i, j]) for m in mats))
                 for j, alpha in enumerate(ev.alphas)] for i, method in enumerate(ev.methods)]

    # ---- audition a cell -----------------------------------------------------------------
    def cell(self, method: str, alpha: float) -> dict[str, Any]:
        if self.evaluation is None:
            raise AudioSAEError("no evaluation yet: run it first")
        attribute, target = self.result_target
        found = self.evaluation.select(method=method, alpha=float(alpha), attribute=attribute, target=target)
        if not found:
            raise AudioSAEError(f"no cell for {method} at alpha {alpha:g}")
        return found[0]

    def audition(self, method: str, alpha: float) -> bool:
        """Render (a job, once per cell) and play ``method`` at ``alpha`` as the evaluation steered it."""
        try:
            kwargs = self.evaluation_kwargs(method, alpha)
        except AudioSAEError as exc:
            self._fail(str(exc))
            return False
        key = (method, float(alpha))
        if key in self._rendered:
            return self._play(key)
        models, wave = self.state.models, self.state.analysis.wave
        self.message = f"rendering {method} at α {alpha:g}…"
        self.changed.emit()
        handle = self._cell_slot.start(render_cell, models, wave, kwargs,
                                       on_finished=lambda audio, k=key: self._on_cell(k, audio),
                                       on_failed=self._fail)
        self._handles = [h for h in self._handles if h.running] + [handle]
        return True

    def evaluation_kwargs(self, method: str, alpha: float) -> dict[str, Any]:
        """``SteeringEvaluation.steer_kwargs`` of the cell: the ``steer_wave`` arguments that reproduce it."""
        cell = self.cell(method, alpha)
        return self.evaluation.steer_kwargs(cell)

    def _on_cell(self, key: tuple[str, float], audio: np.ndarray) -> None:
        self._rendered[key] = audio
        self._play(key)

    def _play(self, key: tuple[str, float]) -> bool:
        from studio.models.snippets import SnippetPlayer

        if self._player is None:
            self._player = SnippetPlayer(self._device, output=self._output, parent=self)
        models = self.state.models
        ok = self._player.play(self._rendered[key], models.backend.sample_rate, tag=("steer-eval", *key))
        self.message = (f"playing {key[0]} at α {key[1]:g}" if ok else
                        (self._player.reason or "playback unavailable"))
        if ok:
            self.cell_playing.emit(key[0], key[1])
        self.changed.emit()
        return ok

    def stop(self) -> None:
        if self._player is not None:
            self._player.stop()

    # ---- files and teardown --------------------------------------------------------------
    def save(self, folder: str | Path) -> dict[str, Any]:
        """``steer-eval.json`` + the PNG matrix in ``folder`` (the core's writer, atomic)."""
        if self.evaluation is None:
            raise AudioSAEError("nothing to save: run the evaluation first")
        paths = self.evaluation.save(folder)
        self.message = f"saved {Path(paths['json']).name} and {len(paths['png'])} PNG in {folder}"
        self.changed.emit()
        return paths

    def shutdown(self) -> None:
        for signal, slot in self._signals:
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass
        self._signals = []
        self._slot.cancel()
        self._cell_slot.cancel()
        for handle in self._handles:
            handle.wait(10_000)
        self._handles = []
        if self._player is not None:
            self._player.close()
            self._player = None


__all__ = ["CellView", "DEFAULT_EVAL_METHODS", "EvaluationModel", "parse_alphas", "render_cell", "run_evaluation"]
