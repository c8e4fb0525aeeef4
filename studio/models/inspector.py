"""The feature inspector's view-model: everything about one SAE feature, without widgets.

It follows ``ExplorerState`` (selection, models, clip, steering) and holds what the inspector
shows: the selected feature and frame, the corpus index (loaded or built in a job), the top
corpus frames and the snippet sounding, the probe attribute, β and the boosted window.  The
numbers come from the core: ``audiosae.explore.decoding`` (probe weights, softmax and
contributions), ``audiosae.feature_index`` (index, histograms, snippets, boost).  Jobs run in
``JobSlot``\\ s, so a result that arrives after the models or the selection changed is dropped.
The view (``studio.widgets.inspector``) draws what this gives and calls its methods.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from audiosae.explore.decoding import TOP_CLASSES, feature_contributions, probe_weight_column
from audiosae.explore.feature_index import (FeatureIndex, boost_window, decoder_direction, histogram_counts,
                                            histogram_edges, load_or_build_feature_index, render_boost)

from .snippets import SnippetPlayer
from ..state import ExplorerState
from ..workers import JobRunner
from .job_slot import JobSlot

log = logging.getLogger("studio.inspector")

SNIPPET_SECONDS = 1.0
BOOST_WINDOW_SECONDS = 2.0
BOOST_TIP = (f"Decode a {BOOST_WINDOW_SECONDS:g} s window around the frame with this feature boosted "
             f"(with the workspace's codec) and play it")
BETA_RANGE = 10.0
DEFAULT_BETA = 2.0
VOTES_SHOWN = 3          # strongest positive / negative probe weights named in the text
HIST_BINS = 40
INDEX_TOP_K = 100        # frames kept per feature: a note lasts ~40 frames, so 32 would cover one or two
DISTINCT_SECONDS = 0.3   # "spread out": top frames of one source at least this far apart
__all__ = ["InspectorModel", "Histogram", "TOP_CLASSES", "HIST_BINS", "INDEX_TOP_K"]


def _snippet_job(index: FeatureIndex, workspace: Any, feature: int, rank: int, seconds: float, *,
                 progress: Any, cancel: Any) -> tuple[np.ndarray, int, float]:
    cancel.raise_if_cancelled()
    return index.snippet(workspace, feature, rank, seconds=seconds)


@dataclass
class Histogram:
    """What the activation histogram shows (log10 x): corpus bars, the clip's line, the frame."""

    log_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))
    corpus_share: np.ndarray | None = None      # % of the corpus's active frames per bin
    clip_share: np.ndarray | None = None        # % of the clip's active frames per bin
    value: float | None = None                  # log10 of the frame's f (None: no line)
    x_range: tuple[float, float] | None = None
    legend: str = ""


class InspectorModel(QObject):
    """State and actions of the feature inspector (see the module docstring)."""

    changed = Signal()                # feature, frame, models, clip or index: redraw all
    frame_values_changed = Signal()   # steering or f' changed: the frame's values
    attributes_changed = Signal(list)  # the probes' attributes (models changed)
    index_state_changed = Signal()    # the index job started, failed or was cancelled
    index_progress = Signal(object)   # Progress of the index job
    index_ready = Signal(object)      # FeatureIndex of the current SAE (also for other panes)
    boost_ready = Signal(object)      # BoostedWindow just rendered
    boost_changed = Signal()          # β or the boost job's state: the boost controls
    snippet_loaded = Signal(object)   # (feature, rank, wave, sample_rate, start_time)
    playing_changed = Signal()        # the top frame sounding now
    top_message = Signal(str)         # a line under the top-frames list
    boost_message = Signal(str)       # a line under the boost buttons

    def __init__(self, state: ExplorerState, runner: JobRunner, audio_device: str | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.state = state
        self.runner = runner
        self.feature: int | None = None
        self.frame: int | None = None
        self.index: FeatureIndex | None = None
        self.index_failed = ""
        self.attribute: str | None = None
        self.spread = True
        self.beta = DEFAULT_BETA
        self.boost_text = ""
        self._boost: Any = None       # last BoostedWindow
        self._boost_key: tuple | None = None
        self._playing_rank: int | None = None
        self._pending_rank: int | None = None
        self.index_job = JobSlot(runner, "feature index")
        self.snippet_job = JobSlot(runner, "snippet")
        self.boost_job = JobSlot(runner, "boost")
        self.snippets = SnippetPlayer(device=audio_device, parent=self)
        self.snippets.started.connect(self._on_snippet_started)
        self.snippets.finished.connect(self._on_snippet_finished)
        self.snippets.message.connect(self._on_snippet_message)
        state.feature_selected.connect(self.select)
        state.models_changed.connect(self._on_models_changed)
        state.workspace_changed.connect(self._on_models_changed)
        state.clip_changed.connect(self._on_clip_changed)
        state.steered_features_changed.connect(self.frame_values_changed.emit)
        state.steering_changed.connect(lambda _params: self.frame_values_changed.emit())

    # ---- what the state holds ---------------------------------------------------------------------
    @property
    def models(self) -> Any:
        return self.state.models

    @property
    def analysis(self) -> Any:
        return self.state.analysis

    @property
    def index_running(self) -> bool:
        return self.index_job.running

    @property
    def boost_running(self) -> bool:
        return self.boost_job.running

    def features(self) -> np.ndarray | None:
        """The features the heatmap shows (f' when steering, else f); None without a clip or
        while the clip was analysed with another SAE than the one loaded now."""
        shown = self.state.features_for_display()
        if shown is None or self.models is None or shown.shape[1] != self.models.sae.cfg.d_sae:
            return None
        return shown

    def steered(self) -> bool:
        return self.state.steered_f is not None

    def frame_ok(self) -> bool:
        a = self.analysis
        return (a is not None and self.frame is not None and self.feature is not None
                and self.features() is not None and 0 <= self.frame < a.n_frames
                and self.feature < a.f.shape[1])

    def activation_at_frame(self) -> tuple[float, float, float] | None:
        """(displayed f, h, unsteered f) of the selected feature at the selected frame."""
        if not self.frame_ok():
            return None
        j, t = self.feature, self.frame
        shown = self.features()
        return float(shown[t, j]), float(self.analysis.h[t, j]), float(self.analysis.f[t, j])

    def typical_value(self) -> float:
        """The unit of beta: the feature's mean active f over the corpus (the clip's until the
        index exists; 1 when the feature is silent everywhere we know of)."""
        j = self.feature
        if j is None:
            return 1.0
        if self.index is not None and j < self.index.n_features and self.index.mean_active[j] > 0:
            return float(self.index.mean_active[j])
        if self.analysis is not None and j < self.analysis.f.shape[1]:
            col = self.analysis.f[:, j]
            active = col[col > 0]
            if active.size:
                return float(active.mean())
        return 1.0

    # ---- state reactions -------------------------------------------------------------------------
    def select(self, feature: int, frame: int) -> None:
        changed = feature != self.feature
        self.feature, self.frame = int(feature), int(frame)
        if changed:
            self.snippets.stop()
        self._boost, self._boost_key = None, None
        self.changed.emit()
        self.ensure_index()

    def _cancel_jobs(self) -> None:
        for slot in (self.index_job, self.snippet_job, self.boost_job):
            slot.cancel()
        self._pending_rank = None

    def _on_models_changed(self) -> None:
        self._cancel_jobs()
        self.snippets.stop()
        self.index = None
        self.index_failed = ""
        self._boost, self._boost_key = None, None
        models = self.models
        if self.feature is not None and (models is None or self.feature >= models.sae.cfg.d_sae):
            self.feature, self.frame = None, None
        names = list(models.probes.attributes) if models is not None else []
        if self.attribute not in names:
            self.attribute = names[0] if names else None
        self.attributes_changed.emit(names)
        self.changed.emit()

    def _on_clip_changed(self) -> None:
        # The feature stays (its corpus facts still hold); the frame belonged to the old clip.
        self.frame = None
        self._boost, self._boost_key = None, None
        self.changed.emit()

    def set_attribute(self, name: str | None) -> None:
        self.attribute = name or None

    def set_spread(self, on: bool) -> None:
        self.spread = bool(on)

    def set_beta(self, value: float) -> None:
        self.beta = float(value)
        self.boost_changed.emit()

    # ---- the corpus index (job) ---------------------------------------------------------------
    def ensure_index(self, force: bool = False) -> None:
        """Load or build the corpus index of the current SAE in a job, unless it exists or runs.

        After a cancel or a failure only ``force`` (the "Build corpus statistics" button) starts
        it again, so selecting another feature does not restart what the user stopped."""
        models = self.models
        if models is None or self.index is not None or self.index_job.running:
            return
        if self.index_failed and not force:
            return
        self.index_failed = ""
        self.index_job.start(load_or_build_feature_index, models.workspace, models.sae.cfg.name,
                             device=str(models.sae.device), hist_bins=HIST_BINS, top_k=INDEX_TOP_K,
                             on_progress=self.index_progress.emit, on_finished=self._on_index_finished,
                             on_failed=self._on_index_failed,
                             on_cancelled=lambda: self._on_index_failed("cancelled"))
        self.index_state_changed.emit()

    def cancel_index(self) -> None:
        """Stop building the index; it says "cancelled" and waits for the button."""
        if self.index_job.handle is not None:
            self.index_job.handle.cancel()

    def _on_index_finished(self, index: FeatureIndex) -> None:
        self.index = index
        self.changed.emit()
        self.index_ready.emit(index)

    def _on_index_failed(self, message: str) -> None:
        self.index_failed = message
        if message != "cancelled":
            log.warning("feature index failed: %s", message)
        self.index_state_changed.emit()

    # ---- texts and data for the view --------------------------------------------------------------
    def header(self) -> tuple[str, str]:
        """(title, the line under it)."""
        if self.models is None:
            return "Feature inspector", "Open a workspace and an SAE, then click a cell of the feature heatmap."
        if self.feature is None:
            return "No feature selected", "Click a cell of the feature heatmap to inspect that feature."
        title = f"feature {self.feature}"
        values = self.activation_at_frame()
        if values is None:
            return title, "no frame selected in this clip"
        shown, h, f = values
        t = float(self.analysis.times[self.frame])
        text = f"frame {self.frame} · t = {t:.3f} s    f = {f:.3f}    h = {h:.3f}"
        if self.steered():
            text += f"    steered f′ = {shown:.3f}"
        return title, text

    def stats_text(self) -> str:
        j = self.feature
        if self.models is None or j is None:
            return ""
        if self.index is None:
            if self.index_job.running:
                return "corpus statistics: building…"
            if self.index_failed:
                return f"corpus statistics unavailable ({self.index_failed})"
            return "corpus statistics: not built yet"
        index = self.index
        count = int(index.active_counts()[j])
        top = float(index.top_activation[j, 0])
        return (f"corpus: active on {100 * float(index.density[j]):.2f} % of {index.n_frames:,} frames "
                f"({count:,}) · mean f when active {float(index.mean_active[j]):.3f} · max {top:.3f}")

    def histogram(self) -> Histogram | None:
        """The activation histogram of the selected feature (None: nothing to show)."""
        j, models = self.feature, self.models
        if models is None or j is None:
            return None
        edges = self.index.hist_edges if self.index is not None else histogram_edges(models.sae.cfg.d_sae, HIST_BINS)
        out = Histogram(log_edges=np.log10(edges.astype(np.float64)))
        legend = []
        if self.index is not None:
            counts = self.index.hist[j].astype(np.float64)
            out.corpus_share = 100.0 * counts / counts.sum() if counts.sum() > 0 else counts
            occupied = out.corpus_share >= 0.1  # the view spans bins holding >= 0.1 % of the active frames
            legend.append("bars: corpus")
        else:
            occupied = np.zeros(len(edges) - 1, dtype=bool)
        shown = self.features()
        if shown is not None and j < shown.shape[1]:
            clip = histogram_counts(shown[:, j], edges).astype(np.float64)
            n_active = clip.sum()
            occupied |= clip >= max(1.0, 0.001 * n_active)
            if n_active > 0:
                out.clip_share = 100.0 * clip / n_active
                legend.append(f"line: this clip ({int(n_active)} active frames)")
            else:
                legend.append("this clip: never active")
        values = self.activation_at_frame()
        if values is not None and values[0] > 0:
            out.value = math.log10(max(values[0], float(edges[0])))
            legend.append("red: this frame")
        if self.index is None:
            legend.insert(0, "corpus statistics: building…" if self.index_job.running
                          else "corpus statistics: not available yet")
        # Show the occupied bins (plus one on each side), not the whole possible range.
        if values is not None and values[0] > 0:
            occupied[min(len(occupied) - 1, np.searchsorted(edges[1:-1], values[0], side="right"))] = True
        used = np.flatnonzero(occupied)
        lo, hi = (max(0, used[0] - 1), min(len(occupied), used[-1] + 2)) if used.size else (0, len(occupied))
        out.x_range = (float(out.log_edges[lo]), float(out.log_edges[hi]))
        out.legend = " · ".join(legend)
        return out

    def top_entries(self) -> list[dict[str, Any]]:
        """The rows of the top-frames list (see ``FeatureIndex.top_entries``)."""
        if self.index is None or self.feature is None or self.feature >= self.index.n_features:
            return []
        gap = DISTINCT_SECONDS if self.spread else 0.0
        return self.index.top_entries(self.feature, min_gap_seconds=gap)

    def top_hint(self, n_entries: int) -> str:
        j = self.feature
        if self.index is None or j is None or j >= self.index.n_features:
            return "the list fills once the corpus statistics are ready" if j is not None else ""
        return ("click a row (or press Enter) to hear ~1 s around the frame" if n_entries
                else "this feature is never active on the corpus")

    def probe_weights(self) -> tuple[list[str], np.ndarray] | None:
        """(class names, ``W[:, j]``) of the current attribute's probe for the selected feature."""
        models, j, attr = self.models, self.feature, self.attribute
        if models is None or j is None or attr is None:
            return None
        return probe_weight_column(models.probes, attr, j)

    def votes_text(self) -> str:
        got = self.probe_weights()
        if got is None:
            return ""
        names, w = got
        order = np.argsort(w)
        pos = [f"{names[i]} {w[i]:+.2f}" for i in order[::-1][:VOTES_SHOWN] if w[i] > 0]
        neg = [f"{names[i]} {w[i]:+.2f}" for i in order[:VOTES_SHOWN] if w[i] < 0]
        return f"votes for: {', '.join(pos) or '—'}\nvotes against: {', '.join(neg) or '—'}"

    def contributions(self) -> list[dict[str, Any]]:
        """Rows of the contributions table: the predicted class first, then the most likely ones."""
        models, attr = self.models, self.attribute
        if models is None or attr is None or not self.frame_ok():
            return []
        row = self.features()[self.frame]
        return [c.as_row() for c in feature_contributions(models.probes, row, attr, self.feature, TOP_CLASSES)]

    def contributions_text(self, rows: list[dict[str, Any]]) -> str:
        if not rows:
            return ("click a heatmap cell of this clip to see the contributions at that frame"
                    if self.feature is not None else "")
        attr = self.attribute
        measured = ""
        classes = getattr(self.analysis, "measured_classes", {}) or {}
        if attr in classes:
            k = int(classes[attr][self.frame])
            names = self.models.probes.class_names[attr]
            measured = f" · measured: {names[k]}" if 0 <= k < len(names) else ""
        steer = " (of the steered f′)" if self.steered() else ""
        return f"predicted {attr}: {rows[0]['name']} (p = {rows[0]['p']:.2f}){measured}{steer}"

    def boost_unavailable(self) -> str:
        """Why "Hear boosted" cannot run ("" when it can): it decodes with the codec."""
        reason = getattr(self.models, "codec_unavailable", None)
        return reason('"Hear boosted"') if reason is not None else ""

    def beta_text(self) -> str:
        if self.feature is None:
            return ""
        unit = self.typical_value()
        source = "corpus mean active f" if self.index is not None else "clip mean active f"
        return (f"β in units of the {source} ({unit:.3f}): adds Δf = {self.beta * unit:+.3f} × "
                f"decoder row {self.feature} to the latents of a {BOOST_WINDOW_SECONDS:g} s window")

    # ---- top frames: snippets -----------------------------------------------------------------
    def play_top(self, rank: int) -> None:
        """Load (job) and play ~1 s around top frame ``rank`` of the selected feature."""
        index, j, models = self.index, self.feature, self.models
        if index is None or j is None or models is None:
            return
        if self.snippet_job.running and self._pending_rank == rank:
            return  # a double click: already on its way
        self._pending_rank = rank
        self._say_top(f"loading #{rank + 1}…")
        self.snippet_job.start(_snippet_job, index, models.workspace, j, rank, SNIPPET_SECONDS,
                               on_finished=lambda result, f=j, r=rank: self._on_snippet_loaded(result, f, r),
                               on_failed=self._on_snippet_failed, on_cancelled=self._clear_pending)

    def _clear_pending(self) -> None:
        self._pending_rank = None

    def _on_snippet_loaded(self, result: tuple, feature: int, rank: int) -> None:
        pending, self._pending_rank = self._pending_rank, None
        if feature != self.feature or rank != pending:
            return  # superseded by another selection
        wave, rate, start = result
        self.snippet_loaded.emit((feature, rank, wave, rate, start))
        entry = next((e for e in self.top_entries() if e["rank"] == rank), None)
        where = f"{entry['label']} at {entry['time']:.2f} s" if entry else ""
        if self.snippets.play(wave, rate, tag=("top", feature, rank)):
            self._say_top(f"playing #{rank + 1}: {where}")

    def _on_snippet_failed(self, message: str) -> None:
        self._pending_rank = None
        self._say_top(f"cannot load the snippet: {message}")

    def _say_top(self, text: str) -> None:
        self.top_message.emit(text)

    def _say_boost(self, text: str) -> None:
        self.boost_text = text
        self.boost_message.emit(text)

    def _on_snippet_started(self, tag: Any) -> None:
        self._playing_rank = tag[2] if isinstance(tag, tuple) and tag[:2] == ("top", self.feature) else None
        self.playing_changed.emit()

    def _on_snippet_finished(self, tag: Any) -> None:
        if isinstance(tag, tuple) and tag and tag[0] == "top":
            self._playing_rank = None
            self.playing_changed.emit()
        if isinstance(tag, tuple) and tag and tag[0] in ("boosted", "original"):
            self._say_boost(self.boost_text.replace("playing", "played"))

    def _on_snippet_message(self, text: str) -> None:
        self._say_top(text)
        self._say_boost(text)
        self.state.status.emit(text)

    @property
    def playing_rank(self) -> int | None:
        """Rank of the top frame sounding now (None when none)."""
        return self._playing_rank

    # ---- boost ---------------------------------------------------------------------------------
    def boost_amount(self) -> float:
        """Δf_j that "Hear boosted" adds: β × the feature's typical active value."""
        return float(self.beta) * self.typical_value()

    def hear_boosted(self) -> None:
        """Render (job) and play the ~2 s window with the feature boosted."""
        models, analysis = self.models, self.analysis
        if models is None or not self.frame_ok() or self.boost_job.running:
            return
        if models.backend is None:
            self._say_boost(self.boost_unavailable())
            return
        amount = self.boost_amount()
        key = (id(analysis), self.feature, self.frame, round(amount, 9))
        if self._boost is not None and self._boost_key == key:
            self._play_boost("boosted")
            return
        direction = decoder_direction(models.sae, self.feature)
        self._say_boost("rendering the boosted window…")
        self.boost_job.start(render_boost, models.backend, analysis.latents, analysis.wave, self.frame, direction,
                             amount, window_seconds=BOOST_WINDOW_SECONDS,
                             on_finished=lambda result, k=key: self._on_boost_finished(result, k),
                             on_failed=self._on_boost_failed, on_cancelled=self.boost_changed.emit)
        self.boost_changed.emit()

    def _on_boost_finished(self, result: Any, key: tuple) -> None:
        self._boost, self._boost_key = result, key
        self.boost_changed.emit()
        self.boost_ready.emit(result)
        self._play_boost("boosted")

    def _on_boost_failed(self, message: str) -> None:
        log.warning("boost failed: %s", message)
        self.boost_changed.emit()
        self._say_boost(f"boost failed: {message}")

    def original_window(self) -> tuple[np.ndarray, int, float] | None:
        """The clip's own audio of the boost window: (wave, sample_rate, start_time)."""
        models, analysis = self.models, self.analysis
        if models is None or not self.frame_ok():
            return None
        a, b = boost_window(analysis.n_frames, self.frame, models.frame_rate, BOOST_WINDOW_SECONDS)
        hop = models.hop_length
        return analysis.wave[:, a * hop:b * hop], analysis.sample_rate, a * hop / analysis.sample_rate

    def hear_original(self) -> None:
        """Play the same window unmodified (the A of the A/B)."""
        window = self.original_window()
        if window is None:
            return
        wave, rate, start = window
        if self.snippets.play(wave, rate, tag=("original", self.feature, self.frame)):
            self._say_boost(f"playing the original {start:.2f}–{start + wave.shape[1] / rate:.2f} s")

    def _play_boost(self, which: str) -> None:
        result = self._boost
        if result is None:
            return
        if self.snippets.play(result.boosted, result.sample_rate, tag=(which, self.feature, self.frame)):
            end = result.start_time + result.boosted.shape[1] / result.sample_rate
            from .audition import format_level   # the audition dock's level line

            level = format_level({**result.level, "chunks": 1}) if getattr(result, "level", None) else ""
            self._say_boost(f"playing feature {self.feature} boosted by Δf = {result.amount:+.2f}, "
                            f"{result.start_time:.2f}–{end:.2f} s" + (f"\n{level}" if level else ""))

    # ---- teardown --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel the jobs, wait for them, and release the audio output (call before closing)."""
        handles = [s.handle for s in (self.index_job, self.snippet_job, self.boost_job) if s.handle is not None]
        self._cancel_jobs()
        for handle in handles:
            handle.wait(10000)
        self.snippets.close()
