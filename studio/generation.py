"""The DiffRhythm generation view: run a traced generation and scrub through its 32 sampler states.

Left, a form (prompt or style embedding, lyrics, seed, duration, generator weights, negative
style) whose Run submits ``generation_job`` (the same ``audiosae.generation`` calls as
``audiosae trace``) to the ``JobRunner``.  Right, at the state ``t`` chosen on the slider:

- the SAE features of ``X_t`` as a time x feature image (all features when the trace kept
  the full ``f``, else its top features), with colour levels fixed over the whole trace so
  that change across states shows as change of colour;
- the probe decode of ``X_t`` per frame (argmax class) for each attribute, with the final
  state's decode as a grey ghost;
- the ``s_t`` curves per attribute (endpoint form, or the paper's per-class form), their
  convergence markers and a cursor at ``t``;
- playback of ``X_t`` or ``x̂1`` decoded by the workspace backend (a job; cached per state).

While a run is under way each state arrives through ``trace_generation``'s ``on_step``
callback, which runs in the worker thread: it only emits a queued signal, and the GUI thread
adds the state to the display (the slider range grows with it).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QProgressBar, QPushButton, QScrollArea, QSizePolicy, QSlider,
                               QSpinBox, QSplitter, QToolButton, QVBoxLayout, QWidget)

from audiosae.errors import AudioSAEError, WorkspaceError
from audiosae.generation import conditioning as cond
from audiosae.generation import trace as tr
from audiosae.generation.diffrhythm import DEFAULT_STEPS
from audiosae.jobs import CancelToken, Progress, ProgressSink, null_progress

from .curves import PALETTE
from .heatmap import COLOR_MAP, display_levels
from .lanes import DECODED_PEN, GHOST_PEN, as_steps
from .snippets import SnippetPlayer

log = logging.getLogger("studio.generation")

SOURCE_LABELS = {"x_t": "X_t", "x1": "x̂1"}
BACKGROUND = "#141619"
CURSOR_PEN = pg.mkPen("#ff4d4d", width=1.5)
THRESHOLD_PEN = pg.mkPen("#9aa0a6", width=1, style=Qt.PenStyle.DashLine)
LANE_HEIGHT = 96
DECODE_CACHE_LIMIT = 16   # decoded states kept (95 s of stereo float32 is ~33 MB each)


def muq_available() -> bool:
    """Whether MuQ-MuLan (package ``muq``) can be imported: text prompts and style audio need it."""
    return importlib.util.find_spec("muq") is not None


def download_note() -> str:
    """What Run does without a weights file: download the released base model, size first."""
    from audiosae.generation.diffrhythm import RELEASED_CHECKPOINTS

    repo, filename, size = RELEASED_CHECKPOINTS["base"]
    size_text = f"{size / 1e9:.1f} GB" if size else "size unknown"
    return f"empty: downloads {repo}/{filename} ({size_text}) into the Hugging Face cache on the first run"


# ---- the job (worker thread: no widgets) ------------------------------------------------------------
@dataclass
class GenerationRequest:
    """What the form asks for.  ``style`` (a ``StyleEmbedding`` or ``[1, 512]`` array) wins over
    ``style_file``, which wins over ``style_audio``, which wins over the text ``prompt``."""

    prompt: str = ""
    seed: int = 0
    seconds: float = 95.0
    style: Any = None
    style_file: str | None = None
    style_audio: str | None = None
    lyrics: str | None = None
    g2p_vocab: str | None = None
    weights: str | None = None
    negative_style: str | None = None
    steps: int = DEFAULT_STEPS


def generation_job(request: GenerationRequest, models: Any, workspace: Any, device: str,
                   on_step: Callable[[Any], None] | None, *, progress: ProgressSink = null_progress,
                   cancel: CancelToken | None = None) -> tuple[tr.Trace, Any]:
    """Resolve the conditioning, load what is missing and run ``trace_generation``.

    ``models``: ``LoadedModels`` of a diffrhythm-vae workspace, or None to load them from
    ``workspace``.  Returns ``(trace, models)``.  Cheap inputs are read first, so a bad path
    fails before gigabytes are loaded.
    """
    from audiosae.analysis import LoadedModels

    cancel = cancel or CancelToken()
    negative = cond.load_negative_style(request.negative_style or None)
    notes = [negative.note] if negative.note else []
    lines = cond.read_lrc(request.lyrics) if request.lyrics else []
    tokenizer = cond.PhonemeTokenizer(request.g2p_vocab) if lines else None
    if request.style is not None:
        style = request.style
    elif request.style_file:
        style = cond.style_from_file(request.style_file)
    else:
        progress(Progress("style", 0, 1, "loading MuQ-MuLan"))
        mulan = cond.load_mulan(device if device != "auto" else "cpu")
        if request.style_audio:
            style = cond.style_from_audio(request.style_audio, mulan)
        elif request.prompt.strip():
            style = cond.style_from_text(request.prompt.strip(), mulan)
        else:
            raise AudioSAEError("give a prompt, a style embedding file or a style audio file")
    cancel.raise_if_cancelled()
    if models is None:
        if workspace is None:
            raise WorkspaceError("open a workspace built with the diffrhythm-vae backend first")
        progress(Progress("load", 0, 1, "loading the workspace's backend, SAE and probes"))
        models = LoadedModels.load(workspace, device=device)
    cancel.raise_if_cancelled()
    progress(Progress("load", 0, 1, "loading the DiffRhythm generator"))
    backend = models.require_backend("generation")   # it decodes the trace with the codec
    cfm = tr.load_generator(weights=request.weights or None, device=backend.device,
                            progress=progress, cancel=cancel)
    frames = cond.frames_for_seconds(request.seconds, cfm.config.max_frames)
    lyrics = None
    if lines:
        lyrics = cond.lyrics_to_tokens(lines, frames, max_frames=cfm.config.max_frames, tokenizer=tokenizer)
    trace = tr.trace_generation(models, cfm, style=style, negative_style=negative, lyrics_tokens=lyrics,
                                seconds=request.seconds, seed=request.seed, steps=request.steps,
                                prompt=request.prompt, extra_meta={"warnings": notes} if notes else None,
                                on_step=on_step, progress=progress, cancel=cancel)
    return trace, models


def load_trace_job(path: str, *, progress: ProgressSink = null_progress, cancel: CancelToken | None = None) -> tr.Trace:
    progress(Progress("open", 0, 1, f"reading {path}"))
    return tr.load_trace(path)


def save_trace_job(trace: tr.Trace, path: str, *, progress: ProgressSink = null_progress,
                   cancel: CancelToken | None = None) -> str:
    progress(Progress("save", 0, 1, f"writing {path}"))
    return str(tr.save_trace(trace, path))


def decode_job(trace: tr.Trace, backend: Any, index: int, which: str, device: str, *,
               progress: ProgressSink = null_progress, cancel: CancelToken | None = None
               ) -> tuple[np.ndarray, int, Any]:
    """Decode state ``index`` (``which`` = "x_t" / "x1"); the backend is loaded from the trace's
    workspace when none is given.  Returns ``(audio [C, N], sample_rate, backend)``."""
    if backend is None:
        from audiosae.workspace import Workspace

        root = trace.meta.get("workspace") or ""
        if not root or not Path(root).is_dir():
            raise WorkspaceError(f"the trace's workspace {root!r} is not available: open it to decode states")
        progress(Progress("decode", 0, 1, "loading the diffrhythm-vae backend"))
        backend = Workspace.open(root).backend(None if device == "auto" else device)
    cancel = cancel or CancelToken()
    cancel.raise_if_cancelled()
    progress(Progress("decode", 0, 1, f"decoding {SOURCE_LABELS[which]} of state {index}"))
    audio = tr.decode_state(trace, backend, index, which)
    return np.asarray(audio, dtype=np.float32), int(backend.sample_rate), backend


# ---- pure display helpers ---------------------------------------------------------------------------
def feature_stack(summary: tr.FeatureSummary) -> tuple[np.ndarray, np.ndarray]:
    """``(values [S, T, R], row feature ids [R])`` to show: the full ``f`` when kept (features
    ordered like ``top_index``: highest per-state mean first, the rest after), else ``top``."""
    if summary.full is not None:
        order = np.argsort(-np.asarray(summary.mean, dtype=np.float64).max(axis=0), kind="stable").astype(np.int64)
        return summary.full[:, :, order], order
    return summary.top, np.asarray(summary.top_index, dtype=np.int64)


def step_image(stack: np.ndarray, step: int) -> np.ndarray:
    """Row-major float32 image ``[R, T]`` (rows = features) of one state, NaN-free."""
    image = np.ascontiguousarray(np.asarray(stack[step], dtype=np.float32).T)
    return np.nan_to_num(image, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def class_ticks(attribute: str, names: list[str]) -> list[tuple[float, str]]:
    """Sparse y ticks for a class-index axis: every C for pitch, about six bins otherwise."""
    if attribute == "pitch":
        return [(float(k), n) for k, n in enumerate(names) if k == 0 and n == "unvoiced" or n[:1] == "C" and
                n[1:2].isdigit() or n[:1] == "C" and n[1:2] == "-"]
    every = max(1, len(names) // 5)
    return [(float(k), names[k].split("..")[0] + (" " + names[k].split(" ")[-1] if " " in names[k] else ""))
            for k in range(0, len(names), every)]


# ---- the view --------------------------------------------------------------------------------------
class _PathRow(QWidget):
    """A line edit with a "…" button opening a file dialog."""

    def __init__(self, placeholder: str, dialog_title: str, name_filter: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.edit = QLineEdit(self)
        self.edit.setPlaceholderText(placeholder)
        self.edit.setClearButtonEnabled(True)
        self.button = QToolButton(self)
        self.button.setText("…")
        self.button.setToolTip(dialog_title)
        self._title, self._filter = dialog_title, name_filter
        self.button.clicked.connect(self._choose)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)

    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, self._title, self.edit.text(), self._filter)
        if path:
            self.edit.setText(path)

    def path(self) -> str | None:
        text = self.edit.text().strip()
        return text or None


class GenerationView(QWidget):
    """Run, watch and scrub a traced DiffRhythm generation (see the module docstring)."""

    step_received = Signal(int)      # a live state was added to the display (its index)
    trace_changed = Signal()         # a finished or opened trace is shown
    run_finished = Signal(str)       # "finished" | "cancelled" | "failed"
    trace_saved = Signal(str)        # folder written
    playback_requested = Signal(int, str)   # state index, which: decoded audio handed to the player
    _live_step = Signal(object)      # worker thread -> GUI thread (queued)

    def __init__(self, state: Any, runner: Any, settings: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("generation_view")
        self.state, self.runner, self.settings = state, runner, settings
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.trace: tr.Trace | None = None
        self.step = 0
        self.lane_classes: dict[str, np.ndarray] = {}
        self.row_features = np.zeros(0, dtype=np.int64)
        self.levels = (0.0, 1.0)
        self._stack: np.ndarray | None = None
        self._image_rect = QRectF(0.0, 0.0, 1.0, 1.0)
        self._live: list[dict[str, np.ndarray]] = []       # x_t distributions per live state
        self._live_l0: list[float] = []
        self._live_steps = 0
        self._attributes: list[str] = []
        self._class_names: dict[str, list[str]] = {}
        self._frame_rate = cond.LATENT_SAMPLE_RATE / cond.LATENT_HOP
        self._frames = 0
        self._models: Any = None
        self._backend: Any = None
        self._run_job: Any = None
        self._io_job: Any = None
        self._decode_job: Any = None
        self._decoded: dict[tuple[str, int, str], tuple[np.ndarray, int]] = {}
        self._closed = False
        self.snippets = SnippetPlayer(getattr(settings, "audio_device", None), parent=self)
        self.snippets.message.connect(self._set_status)
        self._live_step.connect(self._on_live_step, Qt.ConnectionType.QueuedConnection)
        self._build()
        self._show_empty()

    # ---- construction ---------------------------------------------------------------------------
    def _build(self) -> None:
        form_box = QWidget(self)
        form = QFormLayout(form_box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.prompt_edit = QLineEdit(form_box, placeholderText="e.g. calm piano with soft strings")
        self.prompt_edit.setObjectName("prompt")
        form.addRow("Prompt", self.prompt_edit)
        self.muq_note = QLabel(form_box, objectName="muq_note", wordWrap=True)
        self.muq_note.setText("MuQ-MuLan (package <i>muq</i>) is not installed, so a text prompt or style audio "
                              "cannot be embedded; choose a saved style embedding file (.npy / .safetensors / "
                              f".pt) below, or install it: <code>{cond.INSTALL_HINT}</code>. The prompt is "
                              "still recorded as the trace's label.")
        self.muq_note.setStyleSheet("color: #e0a040;")
        self.muq_note.setVisible(not muq_available())
        form.addRow(self.muq_note)
        self.style_file = _PathRow("none", "Style embedding file…", "Embeddings (*.npy *.safetensors *.pt *.pth)")
        self.style_file.setObjectName("style_file")
        form.addRow("Style embedding file…", self.style_file)
        self.style_audio = _PathRow("none", "Style audio…", "Audio (*.wav *.flac *.mp3 *.ogg *.m4a)")
        self.style_audio.setObjectName("style_audio")
        if not muq_available():
            self.style_audio.setEnabled(False)
            self.style_audio.setToolTip("style audio is embedded by MuQ-MuLan, which is not installed")
        form.addRow("Style audio…", self.style_audio)
        self.lyrics = _PathRow("instrumental", "Lyrics (.lrc)…", "Timed lyrics (*.lrc)")
        self.lyrics.setObjectName("lyrics")
        form.addRow("Lyrics (.lrc)", self.lyrics)
        self.g2p_vocab = _PathRow("needed with lyrics", "Phoneme vocabulary (vocab.json)…", "JSON (*.json)")
        form.addRow("G2P vocab", self.g2p_vocab)
        self.seed_spin = QSpinBox(form_box, objectName="seed")
        self.seed_spin.setRange(0, 2 ** 31 - 1)
        form.addRow("Seed", self.seed_spin)
        self.seconds_spin = QDoubleSpinBox(form_box, objectName="seconds")
        self.seconds_spin.setRange(1.0, 285.0)
        self.seconds_spin.setDecimals(1)
        self.seconds_spin.setSuffix(" s")
        self.seconds_spin.setValue(95.0)
        form.addRow("Duration", self.seconds_spin)
        self.weights = _PathRow("download the base model", "Generator weights (cfm_model.pt)…",
                                "Checkpoints (*.pt *.pth *.safetensors)")
        self.weights.setObjectName("weights")
        form.addRow("Generator weights", self.weights)
        self.weights_note = QLabel(download_note(), form_box, objectName="weights_note", wordWrap=True)
        self.weights_note.setStyleSheet("color: #9aa0a6;")
        form.addRow(self.weights_note)
        self.negative = _PathRow("zero vector", "Negative style (vocal.npy)…", "Embeddings (*.npy *.safetensors *.pt)")
        self.negative.setObjectName("negative_style")
        form.addRow("Negative style", self.negative)
        self.negative_note = QLabel(form_box, objectName="negative_note", wordWrap=True)
        self.negative_note.setStyleSheet("color: #9aa0a6;")
        form.addRow(self.negative_note)
        self.negative.edit.textChanged.connect(self._update_negative_note)
        self._update_negative_note()
        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run", form_box, objectName="run")
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel", form_box, objectName="cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        self.progress_bar = QProgressBar(form_box, objectName="progress")
        self.progress_bar.setRange(0, 32)
        self.progress_bar.setValue(0)
        form.addRow(self.progress_bar)
        self.status_label = QLabel(form_box, objectName="status", wordWrap=True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.status_label)
        scroll = QScrollArea(self)
        scroll.setWidget(form_box)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(300)
        scroll.setMaximumWidth(380)

        # -- the display --
        display = QWidget(self)
        column = QVBoxLayout(display)
        column.setContentsMargins(4, 0, 0, 0)
        bar = QHBoxLayout()
        self.slider = QSlider(Qt.Orientation.Horizontal, display, objectName="step_slider")
        self.slider.setRange(0, 0)
        self.slider.setPageStep(4)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(1)
        self.slider.valueChanged.connect(self.set_step)
        self.step_label = QLabel(display, objectName="step_label")
        self.step_label.setMinimumWidth(self.fontMetrics().horizontalAdvance("state 31/31 · t = 1.000 · L0 9999.9"))
        bar.addWidget(QLabel("State"))
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.step_label)
        self.source_combo = QComboBox(display, objectName="play_source")
        for key, label in SOURCE_LABELS.items():
            self.source_combo.addItem(label, key)
        self.source_combo.setToolTip("Play the sampler state X_t or its predicted end point x̂1 = X_t + (1 - t) v")
        self.play_button = QPushButton("Play", display, objectName="play_step")
        self.play_button.setToolTip("Decode this state with the workspace backend and play it")
        self.play_button.clicked.connect(lambda: self.play_step())
        bar.addWidget(self.source_combo)
        bar.addWidget(self.play_button)
        column.addLayout(bar)

        pg.setConfigOptions(antialias=False)
        splitter = QSplitter(Qt.Orientation.Vertical, display)
        self.heatmap_plot = pg.PlotWidget(background=BACKGROUND)
        self.heatmap_plot.setObjectName("heatmap")
        item = self.heatmap_plot.getPlotItem()
        item.setMouseEnabled(x=True, y=False)
        item.setLabel("left", "feature (rank)")
        item.getAxis("left").setWidth(72)
        item.setTitle("SAE features of X_t")
        self.heatmap_plot.getViewBox().invertY(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.colormap = pg.colormap.get(COLOR_MAP)
        self.image.setColorMap(self.colormap)
        item.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=self.colormap, interactive=False,
                                        width=10, label="f")
        self.colorbar.setImageItem(self.image, insert_in=item)
        self.heatmap_note = pg.TextItem("", color="#c8c8c8", anchor=(0.5, 0.5))
        item.addItem(self.heatmap_note)
        splitter.addWidget(self.heatmap_plot)

        self.lanes_box = pg.GraphicsLayoutWidget()
        self.lanes_box.setBackground(BACKGROUND)
        self.lanes_box.setObjectName("lanes")
        self.lanes_box.setMinimumHeight(3 * LANE_HEIGHT // 2)
        self.lane_plots: dict[str, pg.PlotItem] = {}
        self.lane_curves: dict[str, pg.PlotDataItem] = {}
        self.ghost_curves: dict[str, pg.PlotDataItem] = {}
        splitter.addWidget(self.lanes_box)

        self.curves_plot = pg.PlotWidget(background=BACKGROUND)
        self.curves_plot.setObjectName("s_t")
        citem = self.curves_plot.getPlotItem()
        citem.setLabel("left", "s_t")
        citem.setLabel("bottom", "sampler state (0 = noise)")
        citem.getAxis("left").setWidth(72)
        citem.setYRange(-0.02, 1.05)
        citem.setMouseEnabled(x=False, y=False)
        citem.addLegend(offset=(10, 5), labelTextSize="8pt")  # top left: s_t starts at 0 there
        self.cursor = pg.InfiniteLine(0, angle=90, pen=CURSOR_PEN, movable=False)
        citem.addItem(self.cursor)
        self.threshold_line = pg.InfiniteLine(tr.DEFAULT_THRESHOLD, angle=0, pen=THRESHOLD_PEN, movable=False)
        citem.addItem(self.threshold_line)
        self.st_curves: dict[str, pg.PlotDataItem] = {}
        self.markers: dict[str, pg.ScatterPlotItem] = {}
        curves_box = QWidget(display)
        curves_layout = QVBoxLayout(curves_box)
        curves_layout.setContentsMargins(0, 0, 0, 0)
        self.paper_form = QCheckBox("paper form (per-class progress from the start, §6)", curves_box,
                                    objectName="paper_form")
        self.paper_form.toggled.connect(lambda _on: self._draw_curves())
        self.convergence_label = QLabel(curves_box, objectName="convergence", wordWrap=True)
        row = QHBoxLayout()
        row.addWidget(self.paper_form)
        row.addWidget(self.convergence_label, 1)
        curves_layout.addLayout(row)
        curves_layout.addWidget(self.curves_plot, 1)
        splitter.addWidget(curves_box)
        splitter.setSizes([340, 260, 220])
        column.addWidget(splitter, 1)

        outer = QHBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(scroll)
        outer.addWidget(display, 1)
        display.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def _update_negative_note(self) -> None:
        if self.negative.path():
            self.negative_note.setText("")
            self.negative_note.setVisible(False)
        else:
            self.negative_note.setText("none: the unconditional branch uses a zero style vector, so guidance differs "
                                       "from the official pipeline (it uses infer/example/vocal.npy from "
                                       f"{cond.DIFFRHYTHM_GITHUB})")
            self.negative_note.setVisible(True)

    # ---- the layout of a trace ------------------------------------------------------------------
    def _set_layout(self, attributes: list[str], class_names: dict[str, list[str]], frames: int,
                    frame_rate: float) -> None:
        """(Re)build the lanes and curves for these attributes (only when they change)."""
        seconds = frames / frame_rate
        self._frames, self._frame_rate = frames, frame_rate
        if attributes != self._attributes or class_names != self._class_names:
            self._attributes, self._class_names = list(attributes), {a: list(class_names[a]) for a in attributes}
            self.lanes_box.clear()
            self.lane_plots.clear()
            self.lane_curves.clear()
            self.ghost_curves.clear()
            first = None
            for i, attr in enumerate(attributes):
                plot = self.lanes_box.addPlot(row=i, col=0)
                plot.setMouseEnabled(x=True, y=False)
                plot.hideButtons()
                plot.getAxis("left").setWidth(72)
                plot.setLabel("left", attr)
                names = self._class_names[attr]
                plot.getAxis("left").setTicks([class_ticks(attr, names), []])
                plot.setYRange(-0.5, len(names) - 0.5, padding=0.02)
                plot.showAxis("bottom", i == len(attributes) - 1)
                if i == len(attributes) - 1:
                    plot.setLabel("bottom", "time (s)")
                self.ghost_curves[attr] = plot.plot(pen=GHOST_PEN, connect="finite")
                self.lane_curves[attr] = plot.plot(pen=DECODED_PEN, connect="finite")
                if first is None:
                    first = plot
                    plot.setTitle("<span style='color:#ff9f40'>probe argmax of X_t at state t</span>"
                                  " &nbsp; <span style='color:#9aa0a6'>final state (ghost)</span>", size="9pt")
                else:
                    plot.setXLink(first)
                self.lane_plots[attr] = plot
            if first is not None:
                first.setXLink(self.heatmap_plot.getPlotItem())
            citem = self.curves_plot.getPlotItem()
            for curve in list(self.st_curves.values()) + list(self.markers.values()):
                citem.removeItem(curve)
            if citem.legend is not None:
                citem.legend.clear()
            self.st_curves.clear()
            self.markers.clear()
            for i, attr in enumerate(attributes):
                color = PALETTE[i % len(PALETTE)]
                self.st_curves[attr] = citem.plot(pen=pg.mkPen(color, width=2), name=attr)
                marker = pg.ScatterPlotItem(size=11, symbol="t", pen=pg.mkPen(color), brush=pg.mkBrush(color))
                citem.addItem(marker)
                self.markers[attr] = marker
        self.heatmap_plot.getPlotItem().setXRange(0, seconds, padding=0)

    # ---- showing a trace or the live states -----------------------------------------------------
    def _show_empty(self) -> None:
        self.image.clear()
        self._stack = None
        self.heatmap_note.setText("Run a generation or open a trace (File ▸ Open trace…)")
        self.heatmap_note.setPos(0.5, 0.5)
        self.heatmap_plot.getPlotItem().setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
        self.step_label.setText("no trace")
        self.play_button.setEnabled(False)

    def show_trace(self, trace: tr.Trace) -> None:
        """Show a finished (or opened) trace at its last state."""
        self.trace = trace
        self._live, self._live_l0, self._live_steps = [], [], 0
        self._decoded = {k: v for k, v in self._decoded.items() if k[0] == trace.meta.get("trace_id")}
        self._set_layout(trace.attributes, trace.meta["class_names"], trace.frames,
                         float(trace.meta.get("frame_rate", self._frame_rate)))
        self._stack, self.row_features = feature_stack(trace.features["x_t"])
        rows = self._stack.shape[2]
        flat = np.asarray(self._stack, dtype=np.float32).reshape(-1, max(rows, 1))
        self.levels = display_levels(flat)   # one pair for every state: change shows as colour
        self.colorbar.setLevels(self.levels)
        self._image_rect = QRectF(0.0, 0.0, trace.frames / self._frame_rate, float(rows))
        self.heatmap_plot.getPlotItem().setRange(xRange=(0, trace.frames / self._frame_rate), yRange=(0, rows),
                                                 padding=0)
        self.heatmap_plot.getPlotItem().setTitle(
            f"SAE features of X_t ({'all' if trace.features['x_t'].full is not None else 'top'} {rows}, "
            f"fixed levels 0–{self.levels[1]:.3g})")
        self.heatmap_note.setText("")
        finals = {a: trace.distributions["x_t"][a][-1] for a in trace.attributes}
        self._draw_ghosts(finals)
        self.slider.blockSignals(True)
        self.slider.setRange(0, trace.steps - 1)
        self.slider.blockSignals(False)
        self.progress_bar.setRange(0, trace.steps)
        self._draw_curves()
        self.play_button.setEnabled(True)
        prompt = trace.meta.get("prompt") or "(no prompt)"
        self._set_status(f"trace: {prompt!r}, seed {trace.meta.get('seed')}, {trace.meta.get('seconds')} s, "
                         f"{trace.steps} states" + (f" — {trace.folder}" if trace.folder else ""))
        self.set_step(trace.steps - 1, force=True)
        self.trace_changed.emit()

    def _draw_ghosts(self, finals: dict[str, np.ndarray] | None) -> None:
        for attr, curve in self.ghost_curves.items():
            if finals is None or attr not in finals:
                curve.setData([], [])
                continue
            x, y = self._lane_xy(attr, np.asarray(finals[attr], dtype=np.float32).argmax(-1))
            curve.setData(x, y)

    def _lane_xy(self, attr: str, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dt = 1.0 / self._frame_rate
        x = (np.arange(classes.shape[0]) + 0.5) * dt
        y = classes.astype(np.float64)
        if attr == "pitch" and self._class_names.get(attr, [""])[0] == "unvoiced":
            y = np.where(classes == 0, np.nan, y)   # unvoiced is a gap, as in the explorer's lanes
        return as_steps(x, y, dt)

    def _draw_curves(self) -> None:
        trace = self.trace
        form = "paper" if self.paper_form.isChecked() else "endpoint"
        texts = []
        for attr in self._attributes:
            curve, marker = self.st_curves.get(attr), self.markers.get(attr)
            if curve is None or marker is None:
                continue
            if trace is None:
                curve.setData([], [])
                marker.setData([], [])
                continue
            s = trace.s_t(attr, "x_t", form)
            curve.setData(np.arange(s.shape[0]), s)
            step = trace.convergence_step(attr, "x_t", form)
            if step < trace.steps - 1:
                marker.setData([step], [float(s[step])])
                texts.append(f"{attr}: step {step}")
            else:
                marker.setData([], [])
                texts.append(f"{attr}: not converged")
        if trace is not None:
            self.curves_plot.getPlotItem().setXRange(0, trace.steps - 1, padding=0.02)
            threshold = float(trace.meta.get("threshold", tr.DEFAULT_THRESHOLD))
            self.threshold_line.setValue(threshold)
            self.convergence_label.setText(f"convergence (s_t ≥ {threshold:g} from then on): " + ", ".join(texts))
        else:
            self.convergence_label.setText("")

    @property
    def available_steps(self) -> int:
        """States that can be shown now (all of a trace, or those that arrived so far)."""
        return self.trace.steps if self.trace is not None else len(self._live)

    def set_step(self, index: int, force: bool = False) -> None:
        """Show sampler state ``index`` (clamped to the states available)."""
        n = self.available_steps
        if n == 0:
            return
        index = int(min(max(int(index), 0), n - 1))
        if index == self.step and not force and self.slider.value() == index:
            return
        self.step = index
        if self.slider.value() != index:
            self.slider.blockSignals(True)
            self.slider.setValue(index)
            self.slider.blockSignals(False)
        if self.trace is not None:
            dists = {a: self.trace.distributions["x_t"][a][index] for a in self._attributes}
            t = float(self.trace.t_grid[index])
            l0 = float(np.mean(self.trace.features["x_t"].l0[index]))
            steps = self.trace.steps
            if self._stack is not None:
                self.image.setImage(step_image(self._stack, index), levels=self.levels, autoLevels=False)
                self.image.setRect(self._image_rect)   # after setImage: the rect scales the image's own size
        else:
            dists = self._live[index]
            steps = self._live_steps
            t = index / max(steps - 1, 1)
            l0 = self._live_l0[index]
        self.lane_classes = {a: np.asarray(d, dtype=np.float32).argmax(-1) for a, d in dists.items()}
        for attr, classes in self.lane_classes.items():
            if attr in self.lane_curves:
                self.lane_curves[attr].setData(*self._lane_xy(attr, classes))
        self.cursor.setValue(index)
        self.step_label.setText(f"state {index}/{steps - 1} · t = {t:.3f} · L0 {l0:.1f}")

    # ---- running -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._run_job is not None

    def request(self, **overrides: Any) -> GenerationRequest:
        """The form's values as a ``GenerationRequest`` (keyword arguments override fields)."""
        values = dict(prompt=self.prompt_edit.text().strip(), seed=self.seed_spin.value(),
                      seconds=float(self.seconds_spin.value()), style_file=self.style_file.path(),
                      style_audio=self.style_audio.path() if self.style_audio.isEnabled() else None,
                      lyrics=self.lyrics.path(), g2p_vocab=self.g2p_vocab.path(), weights=self.weights.path(),
                      negative_style=self.negative.path())
        values.update({k: v for k, v in overrides.items() if v is not None or k == "style"})
        return GenerationRequest(**values)

    def _models_for_run(self) -> tuple[Any, Any]:
        models = getattr(self.state, "models", None)
        workspace = getattr(self.state, "workspace", None)
        backend = getattr(getattr(models, "workspace", None), "backend_name", None)
        if models is not None and backend == "diffrhythm-vae":
            return models, workspace
        if workspace is not None and getattr(workspace, "backend_name", None) != "diffrhythm-vae":
            raise WorkspaceError(f"{workspace.root}: tracing DiffRhythm needs a workspace built with the "
                                 f"diffrhythm-vae backend; this one uses {workspace.backend_name!r}")
        return None, workspace

    def run(self, **overrides: Any) -> Any:
        """Start a traced generation from the form (``overrides``: ``GenerationRequest`` fields,
        e.g. ``style=`` an embedding).  Returns the ``JobHandle``, or None when it cannot start."""
        if self.running or self._closed:
            return None
        try:
            models, workspace = self._models_for_run()
            if models is None and workspace is None:
                raise WorkspaceError("open a workspace built with the diffrhythm-vae backend first")
            request = self.request(**overrides)
        except AudioSAEError as exc:
            self._set_status(str(exc), error=True)
            self.run_finished.emit("failed")
            return None
        self.trace = None
        self._live, self._live_l0, self._live_steps = [], [], request.steps
        self.image.clear()
        self._stack = None
        seconds = request.seconds
        self.heatmap_note.setText("SAE features appear when the run finishes\n(live states carry the probe outputs)")
        self.heatmap_note.setPos(seconds / 2, 0.5)
        self.heatmap_plot.getPlotItem().setRange(xRange=(0, seconds), yRange=(0, 1), padding=0)
        self.curves_plot.getPlotItem().setXRange(0, request.steps - 1, padding=0.02)
        self._draw_curves()
        self.convergence_label.setText("s_t and convergence need the final state: shown when the run finishes")
        self._draw_ghosts(None)
        self.slider.blockSignals(True)
        self.slider.setRange(0, 0)
        self.slider.blockSignals(False)
        self.progress_bar.setRange(0, request.steps)
        self.progress_bar.setValue(0)
        self.play_button.setEnabled(False)
        device = str(getattr(self.settings, "compute_device", "auto") or "auto")
        job = self.runner.submit("generation", generation_job, request, models, workspace, device,
                                 self._live_step.emit)
        job.progress.connect(self._on_progress)
        job.finished.connect(self._on_run_finished)
        job.failed.connect(self._on_run_failed)
        job.cancelled.connect(self._on_run_cancelled)
        job.done.connect(self._on_run_done)
        self._run_job = job
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._set_status("starting…")
        return job

    def cancel(self) -> None:
        """Cancel the running generation (it stops after the current state)."""
        if self._run_job is not None:
            self._run_job.cancel()
            self._set_status("cancelling…")

    def _on_live_step(self, step: Any) -> None:
        if self._run_job is None or self.trace is not None:
            return   # a late state of a run that has ended
        if not self._live:
            frames = next(iter(step.distributions["x_t"].values())).shape[0]
            names = {a: self._class_names.get(a, [str(k) for k in range(d.shape[-1])])
                     if len(self._class_names.get(a, [])) == d.shape[-1] else
                     [str(k) for k in range(d.shape[-1])] for a, d in step.distributions["x_t"].items()}
            models = getattr(self.state, "models", None)
            probes = getattr(models, "probes", None)
            if probes is not None:
                try:
                    names = {a: list(probes.class_names[a]) for a in names}
                except (KeyError, AttributeError):
                    pass
            self._set_layout(list(step.distributions["x_t"]), names, frames, self._frame_rate)
        self._live_steps = step.steps
        self._live.append({a: np.array(d, dtype=np.float32) for a, d in step.distributions["x_t"].items()})
        self._live_l0.append(float(step.mean_l0.get("x_t", 0.0)))
        follow = self.step >= len(self._live) - 2
        self.slider.blockSignals(True)
        self.slider.setRange(0, len(self._live) - 1)
        self.slider.blockSignals(False)
        self.progress_bar.setValue(len(self._live))
        if follow:
            self.set_step(len(self._live) - 1, force=True)
        self.step_received.emit(step.index)

    def _on_progress(self, event: Progress) -> None:
        self._set_status(event.message or event.stage)

    def _on_run_finished(self, result: tuple[tr.Trace, Any]) -> None:
        trace, models = result
        self._models = models
        self._backend = getattr(models, "backend", None)
        self._run_job = None
        self.show_trace(trace)
        notes = trace.meta.get("warnings") or []
        if notes:
            self._set_status("finished; note: " + " ".join(notes))
        self.run_finished.emit("finished")

    def _on_run_failed(self, message: str, _traceback: str) -> None:
        self._run_job = None
        self._set_status(message, error=True)
        self.run_finished.emit("failed")

    def _on_run_cancelled(self) -> None:
        self._run_job = None
        shown = len(self._live)
        self._set_status(f"cancelled after {shown} state(s); the states that arrived stay visible")
        self.run_finished.emit("cancelled")

    def _on_run_done(self) -> None:
        self._run_job = None
        self.run_button.setEnabled(not self._closed)
        self.cancel_button.setEnabled(False)

    # ---- files ---------------------------------------------------------------------------------
    def open_trace(self, path: str | Path) -> Any:
        """Read a trace folder in a job and show it; returns the ``JobHandle``."""
        job = self.runner.submit("open trace", load_trace_job, str(path))
        job.finished.connect(self._on_opened)
        job.failed.connect(lambda message, _tb: self._set_status(message, error=True))
        job.done.connect(self._io_done)
        self._io_job = job
        return job

    def _on_opened(self, trace: tr.Trace) -> None:
        if self._models is not None and str(getattr(self._models.workspace, "root", "")) != trace.meta.get("workspace"):
            self._backend = None   # another workspace's backend would decode another latent space
        self.show_trace(trace)

    def save_trace(self, path: str | Path) -> Any:
        """Write the shown trace to folder ``path`` in a job; returns the ``JobHandle`` (None: no trace)."""
        if self.trace is None:
            self._set_status("no finished trace to save", error=True)
            return None
        job = self.runner.submit("save trace", save_trace_job, self.trace, str(path))
        job.finished.connect(self._on_saved)
        job.failed.connect(lambda message, _tb: self._set_status(message, error=True))
        job.done.connect(self._io_done)
        self._io_job = job
        return job

    def _on_saved(self, folder: str) -> None:
        self._set_status(f"saved the trace to {folder}")
        self.trace_saved.emit(folder)

    def _io_done(self) -> None:
        self._io_job = None

    def choose_and_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open trace folder")
        if folder:
            self.open_trace(folder)

    def choose_and_save(self) -> None:
        if self.trace is None:
            self._set_status("no finished trace to save", error=True)
            return
        folder = QFileDialog.getExistingDirectory(self, "Save the trace into a new or trace folder")
        if folder:
            self.save_trace(folder)

    # ---- playback ------------------------------------------------------------------------------
    @property
    def play_source(self) -> str:
        return str(self.source_combo.currentData())

    def set_play_source(self, which: str) -> None:
        self.source_combo.setCurrentIndex(list(SOURCE_LABELS).index(which))

    def play_step(self, index: int | None = None, which: str | None = None) -> Any:
        """Decode state ``index`` (default: the shown one) as ``which`` ("x_t" / "x1"; default: the
        toggle) and play it.  Decoded states are cached.  Returns the decode ``JobHandle`` or None."""
        if self.trace is None:
            self._set_status("playback needs a finished or opened trace", error=True)
            return None
        index = self.step if index is None else int(index)
        which = which or self.play_source
        key = (str(self.trace.meta.get("trace_id")), index, which)
        if key in self._decoded:
            audio, rate = self._decoded[key]
            self._play(audio, rate, index, which)
            return None
        if self._decode_job is not None:
            self._decode_job.cancel()
        device = str(getattr(self.settings, "compute_device", "auto") or "auto")
        job = self.runner.submit("decode state", decode_job, self.trace, self._backend, index, which, device)
        job.finished.connect(lambda result, key=key: self._on_decoded(key, result))
        job.failed.connect(lambda message, _tb: self._set_status(message, error=True))
        job.progress.connect(self._on_progress)
        job.done.connect(lambda job=job: self._decode_done(job))
        self._decode_job = job
        return job

    def _decode_done(self, job: Any) -> None:
        if self._decode_job is job:
            self._decode_job = None

    def _on_decoded(self, key: tuple[str, int, str], result: tuple[np.ndarray, int, Any]) -> None:
        audio, rate, backend = result
        self._backend = backend
        if len(self._decoded) >= DECODE_CACHE_LIMIT:
            self._decoded.pop(next(iter(self._decoded)))
        self._decoded[key] = (audio, rate)
        if self.trace is not None and str(self.trace.meta.get("trace_id")) == key[0] and not self._closed:
            self._play(audio, rate, key[1], key[2])

    def _play(self, audio: np.ndarray, rate: int, index: int, which: str) -> None:
        if self.snippets.play(audio, rate, tag=(index, which)):
            self._set_status(f"playing {SOURCE_LABELS[which]} of state {index}")
        self.playback_requested.emit(index, which)

    # ---- misc ------------------------------------------------------------------------------------
    def _set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setStyleSheet("color: #ff6b6b;" if error else "")
        self.status_label.setText(text)
        emit = getattr(getattr(self.state, "status", None), "emit", None)
        if emit is not None and error:
            emit(text)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt naming)
        key = event.key()
        moves = {Qt.Key.Key_Left: self.step - 1, Qt.Key.Key_Right: self.step + 1,
                 Qt.Key.Key_Home: 0, Qt.Key.Key_End: self.available_steps - 1}
        if key in moves and self.available_steps:
            self.set_step(moves[key])
            event.accept()
            return
        super().keyPressEvent(event)

    def shutdown(self) -> None:
        """Cancel this view's jobs, wait for them, and release the audio output (idempotent)."""
        if self._closed:
            return
        self._closed = True
        jobs = [j for j in (self._run_job, self._io_job, self._decode_job) if j is not None]
        for job in jobs:
            job.cancel()
        for job in jobs:
            job.wait(30000)
        self.snippets.close()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        self.shutdown()
        super().closeEvent(event)
