"""What a feature *is*: its automatic labels, the label search and the boost check, without widgets.

Follows ``ExplorerState``: when an SAE is loaded it reads the feature description cached beside
it (``audiosae.describe``; computed on demand in a job, with progress and cancel, when absent or
stale) and the closing-the-loop result (``audiosae.feature_loop``, read when cached; measured on
demand in a job).  For the selected feature it gives the labels best first and a headline; a
search text ("C#4", "onset", "brass", "minor") gives the matching features
(``describe.search_features``), and a hit selects its feature.  The best label of every
feature (``row_labels``) goes to ``ExplorerState.feature_labels``: the heatmap groups and colours
its rows by them when "group by label" is on (``studio.layers.feature_rows.row_order``).  The view is
``studio.widgets.feature_labels``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from audiosae import defaults as D
from audiosae.describe import FeatureDescription, load_description, load_or_describe, search_features
from audiosae.errors import AudioSAEError
from audiosae.feature_loop import entries_for, feature_loop, load_feature_loop

from ..state import ExplorerState
from ..workers import JobRunner
from .job_slot import JobSlot

log = logging.getLogger("studio.labels")

LABELS_SHOWN = 6
SEARCH_LIMIT = 200
__all__ = ["FeatureLabelsModel", "LABELS_SHOWN", "label_text", "loop_text"]


def label_text(label: dict[str, Any]) -> str:
    """"pitch C#4  AUROC 0.97 · 62 % of its mass"."""
    return (f"{label['attribute']} {label['class']}  AUROC {label['score']:.2f} · "
            f"{100 * label['mass_fraction']:.0f} % of its mass")


def loop_text(entry: dict[str, Any] | None) -> str:
    """The boost check of one feature as a sentence (empty when it was not measured)."""
    if not entry:
        return ""
    before, after = entry.get("before"), entry.get("after")
    if before is None or after is None:
        return f"boost check: {entry['attribute']} {entry['class']} could not be measured"
    verdict = "moves it toward the label" if after - before >= 0.05 else "does not move it toward the label"
    return (f"boosting it ({entry.get('boost', 0):.2f} added to f) {verdict}: {entry['attribute']} "
            f"{entry['class']} on {100 * before:.0f} % → {100 * after:.0f} % of the frames")


class FeatureLabelsModel(QObject):
    """Labels of the selected feature, the label search and the boost check (module docstring)."""

    changed = Signal()               # description, feature or loop result: redraw
    state_changed = Signal()         # a job started, ended, failed or was cancelled
    progress = Signal(object)        # Progress of the running job
    hits_changed = Signal()          # new search results
    description_ready = Signal(object)   # FeatureDescription of the current SAE (the heatmap's label order)

    def __init__(self, state: ExplorerState, runner: JobRunner, parent: QObject | None = None):
        super().__init__(parent)
        self.state = state
        self.description: FeatureDescription | None = None
        self.loop: dict[str, Any] | None = None
        self.feature: int | None = None
        self.failed = ""
        self.query = ""
        self.hits: list[dict[str, Any]] = []
        self.search_message = ""
        self.job = JobSlot(runner, "describe")
        self.loop_job = JobSlot(runner, "boost check")
        state.models_changed.connect(self._on_models_changed)
        state.workspace_changed.connect(self._on_models_changed)
        state.feature_selected.connect(self._on_feature)

    # ---- state ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.job.running or self.loop_job.running

    def _sae(self) -> tuple[Any, str] | None:
        models = self.state.models
        return (models.workspace, models.sae.cfg.name) if models is not None else None

    def _on_models_changed(self) -> None:
        self.job.cancel()
        self.loop_job.cancel()
        self.description, self.loop, self.failed = None, None, ""
        self.hits, self.search_message = [], ""
        self.state.set_feature_labels(None)
        models = self.state.models
        if self.feature is not None and (models is None or self.feature >= models.sae.cfg.d_sae):
            self.feature = None
        self.load_cached()
        self.changed.emit()
        self.hits_changed.emit()

    def _on_feature(self, feature: int, _frame: int) -> None:
        self.feature = int(feature)
        self.changed.emit()

    def load_cached(self) -> None:
        """Read the cached description and boost check of the loaded SAE (no computing)."""
        where = self._sae()
        if where is None:
            return
        ws, name = where
        try:
            self.description = load_description(ws, name)
            self.loop = load_feature_loop(ws, name)
        except AudioSAEError as exc:
            self.failed = str(exc)
        if self.description is not None:
            self.state.set_feature_labels(self.row_labels())
            self.description_ready.emit(self.description)
            if self.query:
                self.search(self.query)

    # ---- jobs -------------------------------------------------------------------------------------
    def compute(self) -> None:
        """Label every feature of the loaded SAE in a job (loads the cache when current)."""
        where = self._sae()
        if where is None or self.job.running:
            return
        ws, name = where
        self.failed = ""
        self.job.start(load_or_describe, ws, name, threads=D.DESCRIBE_THREADS, on_progress=self.progress.emit,
                       on_finished=self._on_described, on_failed=self._on_failed,
                       on_cancelled=lambda: self._on_failed("cancelled"))
        self.state_changed.emit()

    def check_loop(self) -> None:
        """Measure the boost check of the top-labelled features in a job (needs the description)."""
        where = self._sae()
        if where is None or self.description is None or self.loop_job.running:
            return
        ws, name = where
        self.failed = ""
        self.loop_job.start(feature_loop, ws, name, desc=self.description, on_progress=self.progress.emit,
                            on_finished=self._on_loop, on_failed=self._on_failed,
                            on_cancelled=lambda: self._on_failed("cancelled"))
        self.state_changed.emit()

    def cancel(self) -> None:
        for slot in (self.job, self.loop_job):
            if slot.handle is not None:
                slot.handle.cancel()

    def _on_described(self, desc: FeatureDescription) -> None:
        self.description = desc
        self.state_changed.emit()
        self.state.set_feature_labels(self.row_labels())
        self.description_ready.emit(desc)
        if self.query:
            self.search(self.query)
        self.changed.emit()

    def _on_loop(self, doc: dict[str, Any]) -> None:
        self.loop = doc
        self.state_changed.emit()
        self.changed.emit()

    def _on_failed(self, message: str) -> None:
        self.failed = message
        if message != "cancelled":
            log.warning("feature labels: %s", message)
        self.state_changed.emit()

    # ---- the selected feature ----------------------------------------------------------------------
    def labels(self, top: int = LABELS_SHOWN) -> list[dict[str, Any]]:
        if self.description is None or self.feature is None or self.feature >= self.description.n_features:
            return []
        return self.description.labels(self.feature, top)

    def headline(self) -> str:
        """One line on top of the inspector: what the feature is, or why nothing is shown."""
        if self.state.models is None:
            return ""
        if self.description is None:
            return "not labelled yet: label every feature of this SAE (once; cached beside it)"
        if self.feature is None:
            return "click a heatmap cell or search a label"
        labels = self.labels(1)
        if not labels:
            return f"feature {self.feature}: never active on the corpus (no label)"
        single = float(self.description.single_label_score()[self.feature])
        return f"feature {self.feature} is {labels[0]['attribute']} {labels[0]['class']} " \
               f"(AUROC {labels[0]['score']:.2f}; single-label score {single:.2f})"

    def loop_entry(self) -> dict[str, Any] | None:
        """The boost check of the selected feature (for its best label's attribute when it was
        measured for several)."""
        if self.loop is None or self.feature is None:
            return None
        entries = entries_for(self.loop, self.feature)
        best = self.labels(1)
        mine = [e for e in entries if best and e["attribute"] == best[0]["attribute"]]
        return (mine or entries or [None])[0]

    def loop_summary(self) -> str:
        """The boost check's line for the card."""
        if self.loop is None:
            return "boost check: not measured for this SAE"
        entry = self.loop_entry()
        if entry is not None:
            return loop_text(entry)
        moved = sum(int(v.get("moved", 0)) for v in (self.loop.get("attributes") or {}).values())
        total = sum(int(v.get("features", 0)) for v in (self.loop.get("attributes") or {}).values())
        return f"boost check: this feature is not among the top-labelled ones measured ({moved} of {total} moved their class by >= 5 points)"

    # ---- search -------------------------------------------------------------------------------------
    def search(self, query: str) -> list[dict[str, Any]]:
        """Features whose labels match ``query``, best first (``describe.search_features``)."""
        self.query = " ".join(str(query).split())
        self.hits, self.search_message = [], ""
        if not self.query:
            pass
        elif self.description is None:
            self.search_message = "label the features first"
        else:
            try:
                self.hits = search_features(self.description, self.query, limit=SEARCH_LIMIT)
            except AudioSAEError as exc:
                self.search_message = str(exc)
            if not self.hits and not self.search_message:
                self.search_message = f"no feature is labelled {self.query!r}"
            elif self.hits:
                more = " (the first shown)" if len(self.hits) >= SEARCH_LIMIT else ""
                self.search_message = f"{len(self.hits)} feature(s) with AUROC >= 0.5{more}, best first"
        self.hits_changed.emit()
        return self.hits

    def open_hit(self, row: int) -> None:
        """Select the feature of search result ``row`` (keeping the clicked frame)."""
        if not 0 <= row < len(self.hits):
            return
        frame = self.state_frame()
        self.state.select_feature(int(self.hits[row]["feature"]), frame)

    def state_frame(self) -> int:
        analysis = self.state.analysis
        playhead = getattr(self.state, "playhead", 0.0) or 0.0
        if analysis is None or not len(analysis.times):
            return 0
        return int(np.clip(np.searchsorted(analysis.times, playhead), 0, len(analysis.times) - 1))

    # ---- for the heatmap ------------------------------------------------------------------------------
    def row_labels(self) -> list[str] | None:
        """Every feature's best label ("pitch C#4"; "" for a dead one), or None before labelling."""
        desc = self.description
        if desc is None:
            return None
        best = desc.ranking()[:, 0]
        cols = desc.columns()
        return ["" if desc.density[j] <= 0 else f"{cols[best[j]][0]} {cols[best[j]][1]}"
                for j in range(desc.n_features)]
