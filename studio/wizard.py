"""The training wizard: audio -> backend -> attributes -> SAE grid -> run -> results.

The run step drives exactly the jobs of the CLI: ``Workspace.create`` + ``build_corpus``
(``audiosae build``) then ``train_workspace`` (``audiosae train``), in a ``JobRunner``
thread.  Both resume from what is on disk, so "Resume" after a cancel or an error runs the
same job again.  Steps 1, 3 and 4 run small side jobs (scanning audio headers, previewing
the attribute bins, timing a calibration) that never write anything.

``TrainingWizard.workspace_ready(path, sae_name)`` fires when the user finishes on the
results page with an SAE selected.
"""

from __future__ import annotations

import html
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (QAbstractItemView, QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox,
                               QFileDialog, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QListWidget, QListWidgetItem, QPlainTextEdit, QProgressBar,
                               QPushButton, QRadioButton, QSpinBox, QStackedWidget, QTableWidget,
                               QTableWidgetItem, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget, QWizard,
                               QWizardPage)

from audiosae.attributes import ATTRIBUTES, CREPE_MODELS, DEFAULT_CREPE_MODEL, AttributeSpec, FrameAttributes
from audiosae.audio import AudioInfo, load_audio, probe_audio, scan_audio
from audiosae.codecs import BackendSpec, available_backends, backend_spec
from audiosae.corpus import BUILTIN_CORPORA, Source, builtin_sources, midi_unavailable_reason, user_sources
from audiosae.devices import available_devices, pick_device
from audiosae.errors import AudioInputError, AudioSAEError, JobCancelled, WorkspaceError, printable
from audiosae.frames import ArrayFrames
from audiosae.jobs import CancelToken, Progress, ProgressSink, null_progress
from audiosae import defaults as D
from audiosae.training import TrainSettings, sae_name, train_workspace
from audiosae.workspace import RAW_COLUMNS, WORKSPACE_FILE, Workspace, build_corpus

from .curves import FVU_TOOLTIP, LiveCurves
from .workers import JobHandle, JobRunner

log = logging.getLogger("studio.wizard")

WIDTH_CHOICES = (4, 8, 16, 32, 64, 128, 256)     # the paper's expansion range
# The grid and the SAE budget are the CLI's (``audiosae.defaults``); epochs 0 = "auto": the
# default frame budget with the plateau stop.
DEFAULT_WIDTHS = D.DEFAULT_EXPANSIONS
DEFAULT_L1S = D.DEFAULT_L1S
PAPER_L1_RANGE = D.PAPER_L1_RANGE                # the paper's lambda range is 0.005-0.15
DEFAULT_EPOCHS = 0
DEFAULT_BATCH_SIZE = D.SAE_BATCH_SIZE
DEFAULT_BUILTIN_MINUTES = 10.0
VAL_FRACTION = 0.1                                # build_corpus's default validation share
PREVIEW_SOURCES = 4
PREVIEW_SECONDS = 20.0
CALIBRATION_AUDIO_SECONDS = 2.0
SIDE_JOB_DELAY_MS = 400   # settle time before a preview/estimate starts: clicking through or typing
                          # a lambda list does not launch work that is cancelled a moment later
CALIBRATION_BATCH = 256
CALIBRATION_STEPS = 4
# Probes train up to 30 epochs with early stopping (patience 3): 6-15 in practice.
PROBE_EPOCHS_EXPECTED = 10
# A probe epoch on SAE features adds an SAE forward pass and wider heads: about half the
# cost of an SAE training step per frame, on top of the raw-latent probe's cost.
PROBE_SAE_STEP_FRACTION = 0.5
ERROR_STYLE = "color: #b3261e;"
NOTE_STYLE = "color: #5f6368;"
OK_STYLE = "color: #1e7d32;"

PAGE_AUDIO, PAGE_BACKEND, PAGE_ATTRIBUTES, PAGE_GRID, PAGE_RUN, PAGE_RESULTS = range(6)


# =============================================================================================
# Plain data and the jobs (no Qt below this line until the widgets: they run in worker threads)


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def format_download(download_bytes: int | None) -> str:
    """Download size of a backend, or "built in" when it has nothing to download."""
    if download_bytes is None:
        return "built in"
    if download_bytes >= 1e9:
        return f"{download_bytes / 1e9:.2f} GB"
    return f"{download_bytes / 1e6:,.0f} MB"


def format_audio_format(info: AudioInfo) -> str:
    channels = {1: "mono", 2: "stereo"}.get(info.channels, f"{info.channels} ch")
    return f"{info.sample_rate / 1000:g} kHz {channels}"


@dataclass
class AudioChoice:
    """What step 1 chose: a built-in corpus prefix, or the user's usable files."""

    builtin: str | None = None
    minutes: float = 0.0
    files: list[str] = field(default_factory=list)
    problems: list[AudioInputError] = field(default_factory=list)
    seconds: float = 0.0
    n_sources: int = 0

    @property
    def empty(self) -> bool:
        return self.n_sources == 0

    def key(self) -> tuple:
        return (self.builtin, round(self.minutes, 4), tuple(self.files))

    def sources(self) -> tuple[list[Source], list[AudioInputError]]:
        """The ``Source`` list for ``build_corpus`` (as ``audiosae build`` makes it) + problems."""
        if self.builtin:
            return builtin_sources(self.builtin, minutes=self.minutes), []
        if not self.files:
            return [], list(self.problems)
        sources, problems = user_sources(self.files)
        return sources, [*self.problems, *problems]


@dataclass
class RunPlan:
    """Everything the run step needs; ``build_and_train`` executes it."""

    workspace: Path
    backend: str
    backend_options: dict[str, Any]
    device: str
    crepe_model: str | None
    audio: AudioChoice
    train: TrainSettings


def build_and_train(plan: RunPlan, *, progress: ProgressSink = null_progress,
                    cancel: CancelToken | None = None) -> dict[str, Any]:
    """``audiosae build`` then ``audiosae train``: the same library calls, one job.

    Resumable: sources already encoded and SAEs/probes already saved are kept.  Returns the
    workspace report (``audiosae.report.workspace_report``).
    """
    cancel = cancel or CancelToken()
    backend_spec(plan.backend)  # an unknown name fails before any work
    sources, problems = plan.audio.sources()
    if plan.audio.files and not sources:
        detail = "; ".join(str(p) for p in problems[:3])
        raise AudioSAEError("none of the chosen audio files is usable" + (f" ({detail})" if detail else ""))
    ws = Workspace.create(plan.workspace, plan.backend, plan.backend_options)
    if sources:
        build_corpus(ws, sources, device=plan.device, problems=problems, crepe_model=plan.crepe_model,
                     progress=progress, cancel=cancel)
    elif not ws.manifest().complete:
        raise WorkspaceError(f"{ws.root}: the corpus is not complete; add its audio again to resume building it")
    cancel.raise_if_cancelled()
    return train_workspace(ws, plan.train, device=str(pick_device(plan.device)), progress=progress, cancel=cancel)


@dataclass
class ScanOutcome:
    files: list[AudioInfo]
    problems: list[AudioInputError]


def scan_paths(paths: Sequence[str], *, progress: ProgressSink = null_progress,
               cancel: CancelToken | None = None) -> ScanOutcome:
    """Expand files/folders and read every audio header (no decoding), with progress."""
    cancel = cancel or CancelToken()
    progress(Progress("scan", 0, None, "listing folders"))
    listing = scan_audio(paths, check=False)
    files: list[AudioInfo] = []
    problems = list(listing.problems)
    total = len(listing.files)
    for i, path in enumerate(listing.files):
        cancel.raise_if_cancelled()
        progress(Progress("scan", i, total, path.name))
        try:
            files.append(probe_audio(path))
        except AudioInputError as exc:
            problems.append(exc)
    progress(Progress("scan", total, total, "done"))
    return ScanOutcome(files, problems)


def _excerpt(source: Source, sample_rate: int, channels: int, seconds: float) -> np.ndarray:
    """The first ``seconds`` of ``source`` (user files are read partially, not decoded whole)."""
    if source.path is not None and source.renderer is None:
        return load_audio(source.path, sample_rate, channels, duration=seconds)
    return source.load(sample_rate, channels)[:, :max(1, int(round(seconds * sample_rate)))]


def _spread(items: Sequence[Any], k: int) -> list[Any]:
    if len(items) <= k:
        return list(items)
    picks = sorted({int(round(i)) for i in np.linspace(0, len(items) - 1, k)})
    return [items[i] for i in picks]


@dataclass
class AttributePreview:
    """How a sample of the corpus falls into the attribute classes."""

    spec: AttributeSpec
    counts: dict[str, np.ndarray]
    n_frames: int
    seconds: float
    n_sources: int
    timbre_note: str
    from_workspace: bool = False


def preview_attributes(audio: AudioChoice, sample_rate: int, hop_length: int, crepe_model: str, device: str,
                       workspace: str | None = None, *, progress: ProgressSink = null_progress,
                       cancel: CancelToken | None = None) -> AttributePreview:
    """Measure pitch/loudness/centroid on the first ~20 s of a few sources and bin them.

    The timbre range is fit on this sample (``with_timbre_range_from``) to show the bins;
    the build fits it again on the training split.  With no audio but a built workspace, the
    stored measurements of its first shard are binned with the workspace's own spec.
    """
    cancel = cancel or CancelToken()
    if audio.empty and workspace:
        ws = Workspace.open(workspace)
        spec = ws.attribute_spec
        rows = ws.frame_store().load_shard(0, None, columns=RAW_COLUMNS)
        fa = FrameAttributes(**{c: rows[c].double().numpy() for c in RAW_COLUMNS})
        counts = {a: np.bincount(v, minlength=spec.n_classes(a)) for a, v in spec.classify(fa).items()}
        return AttributePreview(spec, counts, len(fa), 0.0, 0, f"timbre range {spec.timbre_range_source}",
                                from_workspace=True)
    sources, _ = audio.sources()
    if not sources:
        raise AudioSAEError("no audio to preview")
    picked = _spread(sources, PREVIEW_SOURCES)
    spec = AttributeSpec(crepe_model=crepe_model)
    dev = str(pick_device(device))
    parts: list[FrameAttributes] = []
    seconds = 0.0
    for i, source in enumerate(picked):
        cancel.raise_if_cancelled()
        progress(Progress("preview", i, len(picked), f"measuring {source.label}"))
        try:
            wave = _excerpt(source, sample_rate, 1, PREVIEW_SECONDS)
        except AudioInputError:
            continue
        n_frames = max(1, math.ceil(wave.shape[1] / hop_length))
        times = (np.arange(n_frames) + 0.5) * hop_length / sample_rate
        parts.append(spec.measure(wave, sample_rate, times, hop_length=hop_length, device=dev, cancel=cancel))
        seconds += wave.shape[1] / sample_rate
    if not parts:
        raise AudioSAEError("none of the sampled sources could be read")
    fa = FrameAttributes.concatenate(parts)
    try:
        spec = spec.with_timbre_range_from(fa.centroid_hz)
        note = (f"timbre range fit on this sample ({spec.timbre_min_hz:.0f}..{spec.timbre_max_hz:.0f} Hz, "
                f"1st..99th percentile); the build fits it again on the training split")
    except AudioSAEError as exc:
        note = f"timbre range not fit on this sample ({exc}); the build fits it on the training split"
    counts = {a: np.bincount(v, minlength=spec.n_classes(a)) for a, v in spec.classify(fa).items()}
    progress(Progress("preview", len(picked), len(picked), "done"))
    return AttributePreview(spec, counts, len(fa), seconds, len(parts), note)


@dataclass
class Calibration:
    """Measured speeds on this machine, the base of the time estimate."""

    extraction_per_second: float | None = None   # seconds of work per second of audio
    encode_timed: bool = False
    note: str = ""
    d_in: int = 0
    sae_per_frame: dict[int, float] = field(default_factory=dict)  # s per frame per config, by width
    probe_per_frame: float | None = None   # s per frame of one raw-latent probe epoch


def time_extraction(audio: AudioChoice, backend: str, options: dict[str, Any], device: str, crepe_model: str,
                    may_load_backend: bool, *, cancel: CancelToken | None = None) -> Calibration:
    """Time encoding + labelling of ~2 s of the chosen audio.

    The backend is built only when ``may_load_backend`` (nothing to download): an estimate
    must never start a download.  Otherwise only the labelling is timed and the note says so.
    """
    cancel = cancel or CancelToken()
    spec_b = backend_spec(backend)
    sources, _ = audio.sources()
    if not sources:
        return Calibration(note="no audio to time", d_in=spec_b.latent_dim)
    spec = AttributeSpec(crepe_model=crepe_model)
    dev = str(pick_device(device))
    model = None
    rate, channels, hop = spec_b.sample_rate, spec_b.channels, spec_b.hop_length
    if may_load_backend:
        from audiosae.codecs import get_backend

        model = get_backend(backend, device=device, **options)
        rate, channels, hop = model.sample_rate, model.channels, model.hop_length
    wave = None
    for source in sources[:3]:
        try:
            wave = _excerpt(source, rate, channels, CALIBRATION_AUDIO_SECONDS)
            break
        except AudioInputError:
            continue
    if wave is None:
        raise AudioSAEError("none of the first files could be read to time the backend")

    def work(w: np.ndarray) -> int:
        if model is not None:
            n = model.encode(w).latents.shape[0]
            times = model.frame_centers(n)
        else:
            n = max(1, math.ceil(w.shape[1] / hop))
            times = (np.arange(n) + 0.5) * hop / rate
        spec.measure(w, rate, times, hop_length=hop, device=dev, cancel=cancel)
        return n

    work(wave[:, : max(hop * 4, rate // 4)])  # warm-up: lazy initialisation, CREPE weights
    cancel.raise_if_cancelled()
    t0 = time.perf_counter()
    work(wave)
    elapsed = time.perf_counter() - t0
    seconds = wave.shape[1] / rate
    note = "" if model is not None else (f"encoding not timed: {backend} downloads its weights "
                                         f"({format_download(spec_b.download_bytes)}) on the first run")
    d_in = model.latent_dim if model is not None else spec_b.latent_dim
    return Calibration(extraction_per_second=elapsed / seconds, encode_timed=model is not None, note=note,
                       d_in=d_in)


def time_sae_steps(d_in: int, widths: Sequence[int], device: str, *, batch: int = CALIBRATION_BATCH,
                   steps: int = CALIBRATION_STEPS, cancel: CancelToken | None = None) -> dict[int, float]:
    """Seconds per frame of one SAE training step at each width, on random latents.

    Uses ``train_sae_grid`` itself on an in-memory store; the first step (allocation,
    warm-up) is excluded by timing between the first and the last progress report.
    """
    from audiosae.sae import SAEConfig, train_sae_grid

    cancel = cancel or CancelToken()
    gen = np.random.default_rng(0)
    out: dict[int, float] = {}
    for width in widths:
        cancel.raise_if_cancelled()
        rows = batch * (steps + 1)
        latents = gen.standard_normal((rows, d_in)).astype(np.float32)
        store = ArrayFrames({"train": {"latents": latents}, "val": {"latents": latents[:batch]}})
        cfg = SAEConfig(d_in=d_in, d_sae=d_in * int(width), l1_coefficient=0.02, name=f"calibration-x{width}")
        stamps: list[tuple[float, int]] = []

        def sink(event: Progress) -> None:
            if event.stage == "train SAEs":
                stamps.append((time.perf_counter(), int(event.metrics.get("step", event.done))))

        t0 = time.perf_counter()
        train_sae_grid(store, [cfg], epochs=1, batch_size=batch, device=device, progress=sink, cancel=cancel)
        if len(stamps) >= 2 and stamps[-1][1] > stamps[0][1]:
            per_step = (stamps[-1][0] - stamps[0][0]) / (stamps[-1][1] - stamps[0][1])
        else:
            per_step = (time.perf_counter() - t0) / (steps + 1)
        out[int(width)] = max(per_step, 1e-9) / batch
    return out


def time_probe_epoch(d_in: int, device: str, *, batch: int = CALIBRATION_BATCH,
                     cancel: CancelToken | None = None) -> float:
    """Seconds per frame of one probe epoch on raw latents (``train_probes`` on random data).

    Timed between the ends of the first and the last epoch, so one-time costs (imports,
    allocations) are left out.
    """
    from audiosae.probes import train_probes

    gen = np.random.default_rng(1)
    n_train, n_val = batch * 4, batch
    classes = {"pitch": 66, "loudness": 20, "timbre": 20}
    splits = {}
    for split, n in (("train", n_train), ("val", n_val)):
        cols: dict[str, np.ndarray] = {"latents": gen.standard_normal((n, d_in)).astype(np.float32)}
        for attr, k in classes.items():
            cols[attr] = gen.integers(0, k, n)
        splits[split] = cols
    stamps: list[float] = []

    def sink(event: Progress) -> None:
        if event.stage == "train probes" and event.metrics:  # the end-of-epoch report
            stamps.append(time.perf_counter())

    epochs = 3
    train_probes(ArrayFrames(splits), sae=None, n_classes=classes, max_epochs=epochs, patience=epochs + 1,
                 batch_size=batch, device=device, progress=sink, cancel=cancel)
    if len(stamps) < 2:
        raise AudioSAEError("probe calibration reported no epochs")
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1) / (n_train + n_val)


def calibrate(audio: AudioChoice, backend: str, options: dict[str, Any], device: str, crepe_model: str,
              widths: Sequence[int], *, extraction: Calibration | None, may_load_backend: bool,
              progress: ProgressSink = null_progress, cancel: CancelToken | None = None) -> Calibration:
    """The estimate's job: time extraction (unless given) and an SAE step of each width."""
    cancel = cancel or CancelToken()
    if extraction is None:
        progress(Progress("calibrate", 0, None, "timing encoding and labelling of 2 s of audio"))
        try:
            extraction = time_extraction(audio, backend, options, device, crepe_model, may_load_backend,
                                         cancel=cancel)
        except JobCancelled:
            raise
        except AudioSAEError as exc:
            extraction = Calibration(note=f"extraction not timed ({exc})", d_in=backend_spec(backend).latent_dim)
    cal = Calibration(extraction.extraction_per_second, extraction.encode_timed, extraction.note,
                      extraction.d_in, dict(extraction.sae_per_frame), extraction.probe_per_frame)
    missing = [w for w in widths if w not in cal.sae_per_frame]
    for i, width in enumerate(missing):
        progress(Progress("calibrate", i, len(missing), f"timing an SAE step at {width}\u00d7"))
        cal.sae_per_frame.update(time_sae_steps(cal.d_in, [width], str(pick_device(device)), cancel=cancel))
    if cal.probe_per_frame is None:
        progress(Progress("calibrate", len(missing), len(missing), "timing a probe epoch"))
        cal.probe_per_frame = time_probe_epoch(cal.d_in, str(pick_device(device)), cancel=cancel)
    return cal


@dataclass
class Estimate:
    extraction_s: float
    sae_s: float
    probes_s: float
    notes: list[str]

    @property
    def total_s(self) -> float:
        return self.extraction_s + self.sae_s + self.probes_s


def estimate_run(cal: Calibration, corpus_seconds: float, frame_rate: float, widths: Sequence[int],
                 n_l1: int, epochs: int, *, extraction_needed: bool = True,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> Estimate:
    """Extrapolate the calibration to the corpus: extraction scales with its duration, SAE
    training with its frame budget x configs (``epochs`` x training frames, or with epochs 0
    the default budget, ``defaults.default_sae_frames``: an upper bound, since training stops
    on a plateau), probes with frames x configs."""
    frames = corpus_seconds * frame_rate
    train_frames = frames * (1.0 - VAL_FRACTION)
    notes = [cal.note] if cal.note and extraction_needed else []
    extraction = 0.0
    if extraction_needed:
        if cal.extraction_per_second is None:
            notes.append("extraction time unknown")
        else:
            extraction = cal.extraction_per_second * corpus_seconds
    per_frame = sum(cal.sae_per_frame.get(w, 0.0) * n_l1 for w in widths)
    sae_frames = epochs * train_frames if epochs > 0 else D.default_sae_frames(int(train_frames), batch_size)
    sae = sae_frames * per_frame
    n_configs = len(widths) * n_l1
    probe_frame = (n_configs + 1) * (cal.probe_per_frame or 0.0) + PROBE_SAE_STEP_FRACTION * per_frame
    probes = PROBE_EPOCHS_EXPECTED * frames * probe_frame
    return Estimate(extraction, sae, probes, notes)


def describe_estimate(est: Estimate) -> str:
    """``"about 12 min"`` (or ``"under a minute (about 20 s)"``)."""
    total = est.total_s
    if total < 45:
        return f"under a minute (about {max(1, round(total))} s)"
    return f"about {max(1, round(total / 60))} min"


# =============================================================================================
# Qt helpers


class _JobSlot:
    """At most one job of a kind per page: starting another cancels and forgets the previous.

    Callbacks fire only for the current job (a cancelled job's late signals are ignored),
    and the job waits until the callbacks are connected, so even an instant job's result
    is never lost.
    """

    def __init__(self, runner: JobRunner, name: str):
        self.runner = runner
        self.name = name
        self.handle: JobHandle | None = None

    @property
    def running(self) -> bool:
        return self.handle is not None

    def start(self, fn: Callable[..., Any], *args: Any, on_progress: Callable[[Progress], None] | None = None,
              on_finished: Callable[[Any], None] | None = None, on_failed: Callable[[str], None] | None = None,
              on_cancelled: Callable[[], None] | None = None, **kwargs: Any) -> JobHandle:
        self.cancel()
        gate = threading.Event()

        def gated(*a: Any, progress: ProgressSink, cancel: CancelToken, **kw: Any) -> Any:
            gate.wait()
            cancel.raise_if_cancelled()
            return fn(*a, progress=progress, cancel=cancel, **kw)

        handle = self.runner.submit(self.name, gated, *args, **kwargs)
        self.handle = handle

        def current() -> bool:
            return self.handle is handle

        def ended(callback: Callable[..., None] | None, *args: Any) -> None:
            # The job is over once it reports its outcome: forget it first, so the callback
            # may start the next one (Resume) before the thread's final ``done`` arrives.
            if current():
                self.handle = None
                if callback is not None:
                    callback(*args)

        if on_progress is not None:
            handle.progress.connect(lambda ev: current() and on_progress(ev))
        handle.finished.connect(lambda result: ended(on_finished, result))
        handle.failed.connect(lambda msg, tb: ended(on_failed, msg))
        handle.cancelled.connect(lambda: ended(on_cancelled))
        handle.done.connect(lambda: self._forget(handle))
        gate.set()
        return handle

    def _forget(self, handle: JobHandle) -> None:
        if self.handle is handle:
            self.handle = None

    def cancel(self) -> None:
        """Cancel the current job (if any) and ignore whatever it still reports."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


def _label(text: str = "", style: str = "", wrap: bool = True) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(wrap)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if style:
        label.setStyleSheet(style)
    return label


def _small_plot(title: str, xlabel: str) -> pg.PlotWidget:
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


def _setting(settings: Any, name: str, default: Any) -> Any:
    try:
        value = getattr(settings, name, default)
    except Exception:  # a settings object that fails to read must not break the wizard
        return default
    return default if value is None else value


@dataclass
class WorkspaceStatus:
    kind: str            # "new", "existing", "invalid", "empty"
    message: str
    backend: str | None = None
    backend_options: dict[str, Any] = field(default_factory=dict)
    crepe_model: str | None = None
    sources_built: int = 0
    corpus_complete: bool = False
    corpus_seconds: float = 0.0
    frame_rate: float | None = None


def inspect_workspace_folder(text: str) -> WorkspaceStatus:
    """What the chosen folder is: new, an existing workspace to resume, or unusable."""
    text = text.strip()
    if not text:
        return WorkspaceStatus("empty", "Choose a folder for the workspace.")
    root = Path(text).expanduser()
    if (root / WORKSPACE_FILE).exists():
        try:
            ws = Workspace.open(root)
            manifest = ws.manifest()
        except AudioSAEError as exc:
            return WorkspaceStatus("invalid", str(exc))
        n = len(manifest.sources)
        saes = ws.sae_names()
        corpus = ws.meta.get("corpus", {})
        seconds = corpus.get("seconds_of_audio") or sum(r.seconds for r in manifest.sources.values())
        state = "corpus complete" if manifest.complete else "corpus incomplete"
        msg = (f"Existing workspace (backend {ws.backend_name}, {n} source(s) encoded, {state}, "
               f"{len(saes)} SAE(s) trained): the run resumes it and keeps what is done.")
        return WorkspaceStatus("existing", msg, ws.backend_name, ws.backend_options,
                               ws.attribute_spec.crepe_model, n, manifest.complete,
                               float(seconds),
                               corpus.get("frame_rate"))
    if root.exists() and not root.is_dir():
        return WorkspaceStatus("invalid", f"{root} is a file, not a folder.")
    if root.is_dir() and any(root.iterdir()):
        return WorkspaceStatus("invalid", f"{root} is not empty and is not a workspace; choose an empty or new folder.")
    parent = root.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return WorkspaceStatus("invalid", f"{root}: its parent folder cannot be created.")
    return WorkspaceStatus("new", "A new workspace will be created in this folder.")


def _default_workspace_folder() -> str:
    base = Path.home() / "audiosae-workspaces"
    for i in range(1, 1000):
        candidate = base / f"workspace-{i}"
        if not candidate.exists():
            return str(candidate)
    return str(base / "workspace")


# =============================================================================================
# Step 1: audio


class AudioPage(QWizardPage):
    """Files, folders, drag-and-drop or a built-in corpus; plus the workspace folder."""

    scan_done = Signal()

    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.setTitle("1 \u00b7 Audio")
        self.setSubTitle("Choose the audio to learn from: your files and folders (or drop them here), "
                         "or a built-in corpus with exact ground truth.")
        self.setAcceptDrops(True)
        self._scan = _JobSlot(runner, "wizard: scan audio")
        self._queue: list[str] = []
        self._files: dict[str, AudioInfo] = {}
        self._problems: dict[str, AudioInputError] = {}
        self._scan_error = ""
        self._scanning = False
        self.workspace_status = WorkspaceStatus("empty", "")

        self.files_radio = QRadioButton("My audio files")
        self.builtin_radio = QRadioButton("Built-in corpus")
        self.files_radio.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.files_radio)
        group.addButton(self.builtin_radio)
        mode_row = QHBoxLayout()
        mode_row.addWidget(self.files_radio)
        mode_row.addWidget(self.builtin_radio)
        mode_row.addStretch(1)

        # -- user files
        files_panel = QWidget()
        fl = QVBoxLayout(files_panel)
        fl.setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        self.add_files_button = QPushButton("Add files\u2026")
        self.add_folder_button = QPushButton("Add folder\u2026")
        self.remove_button = QPushButton("Remove")
        self.clear_button = QPushButton("Clear")
        for b in (self.add_files_button, self.add_folder_button, self.remove_button, self.clear_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(_label("or drop files and folders onto this page", NOTE_STYLE, wrap=False))
        fl.addLayout(buttons)
        self.file_tree = QTreeWidget()
        self.file_tree.setHeaderLabels(["File", "Duration", "Format", "Folder"])
        self.file_tree.setRootIsDecorated(False)
        self.file_tree.setAlternatingRowColors(True)
        self.file_tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.file_tree.setUniformRowHeights(True)
        header = self.file_tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        self.file_tree.setColumnWidth(3, 220)
        fl.addWidget(self.file_tree, 3)
        scan_row = QHBoxLayout()
        self.files_summary = _label("No audio yet.")
        self.scan_bar = QProgressBar()
        self.scan_bar.setMaximumWidth(200)
        self.scan_bar.setVisible(False)
        scan_row.addWidget(self.files_summary, 1)
        scan_row.addWidget(self.scan_bar)
        fl.addLayout(scan_row)
        self.skipped_label = _label("", NOTE_STYLE)
        fl.addWidget(self.skipped_label)
        self.skipped_list = QListWidget()
        self.skipped_list.setMaximumHeight(90)
        self.skipped_list.setVisible(False)
        fl.addWidget(self.skipped_list, 1)

        # -- built-in corpus
        builtin_panel = QWidget()
        bl = QVBoxLayout(builtin_panel)
        bl.setContentsMargins(0, 4, 0, 0)
        self.corpus_combo = QComboBox()
        self.midi_reason = midi_unavailable_reason()
        for name in BUILTIN_CORPORA:
            self.corpus_combo.addItem(name, name)
        if self.midi_reason:
            index = self.corpus_combo.findData("midi")
            item = self.corpus_combo.model().item(index)
            item.setEnabled(False)
            item.setText("midi (unavailable)")
            item.setToolTip(self.midi_reason)
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.1, 600.0)
        self.minutes_spin.setDecimals(1)
        self.minutes_spin.setSingleStep(0.5)
        self.minutes_spin.setSuffix(" min")
        self.minutes_spin.setValue(DEFAULT_BUILTIN_MINUTES)
        self.minutes_spin.setToolTip("Keep the shortest prefix of the corpus that lasts this long; "
                                     "a short prefix already spreads over the whole pitch range.")
        self.corpus_description = _label("", NOTE_STYLE)
        self.midi_note = _label("", NOTE_STYLE)
        self.builtin_summary = _label("")
        self.corpus_combo.setMinimumContentsLength(16)
        choice_row = QHBoxLayout()
        choice_row.addWidget(QLabel("Corpus:"))
        choice_row.addWidget(self.corpus_combo)
        choice_row.addSpacing(16)
        choice_row.addWidget(QLabel("Length:"))
        choice_row.addWidget(self.minutes_spin)
        choice_row.addStretch(1)
        bl.addLayout(choice_row)
        bl.addWidget(self.corpus_description)
        bl.addWidget(self.builtin_summary)
        bl.addWidget(self.midi_note)
        bl.addStretch(1)

        self.stack = QStackedWidget()
        self.stack.addWidget(files_panel)
        self.stack.addWidget(builtin_panel)

        audio_box = QGroupBox("Audio")
        al = QVBoxLayout(audio_box)
        al.addLayout(mode_row)
        al.addWidget(self.stack, 1)

        # -- workspace folder
        ws_box = QGroupBox("Workspace folder")
        wl = QVBoxLayout(ws_box)
        row = QHBoxLayout()
        self.workspace_edit = QLineEdit()
        self.workspace_edit.setPlaceholderText("a new or empty folder, or an existing workspace to resume")
        self.workspace_browse = QPushButton("Browse\u2026")
        row.addWidget(self.workspace_edit, 1)
        row.addWidget(self.workspace_browse)
        wl.addLayout(row)
        self.workspace_label = _label("", NOTE_STYLE)
        wl.addWidget(self.workspace_label)

        self.message = _label("", ERROR_STYLE)
        layout = QVBoxLayout(self)
        layout.addWidget(audio_box, 1)
        layout.addWidget(ws_box)
        layout.addWidget(self.message)

        self.registerField("workspace", self.workspace_edit)
        self.registerField("builtin_minutes", self.minutes_spin, "value", self.minutes_spin.valueChanged)
        self.registerField("builtin_corpus", self.corpus_combo, "currentIndex", self.corpus_combo.currentIndexChanged)

        self.files_radio.toggled.connect(self._on_mode_changed)
        self.corpus_combo.currentIndexChanged.connect(self._refresh_builtin)
        self.minutes_spin.valueChanged.connect(self._refresh_builtin)
        self.add_files_button.clicked.connect(self._browse_files)
        self.add_folder_button.clicked.connect(self._browse_folder)
        self.remove_button.clicked.connect(self._remove_selected)
        self.clear_button.clicked.connect(self.clear_files)
        self.workspace_browse.clicked.connect(self._browse_workspace)
        self.workspace_edit.textChanged.connect(self._on_workspace_changed)
        self.workspace_edit.setText(_default_workspace_folder())
        self._refresh_builtin()
        self._on_workspace_changed()

    # ---- public API (also used by tests) -------------------------------------------------
    @property
    def builtin(self) -> str | None:
        return self.corpus_combo.currentData() if self.builtin_radio.isChecked() else None

    @property
    def scanning(self) -> bool:
        """True while headers are being read (``scan_done`` fires when it ends)."""
        return self._scanning or bool(self._queue)

    def use_builtin(self, name: str, minutes: float | None = None) -> None:
        """Select built-in corpus ``name`` (``minutes`` long)."""
        index = self.corpus_combo.findData(name)
        if index < 0:
            raise ValueError(f"unknown built-in corpus {name!r}")
        self.builtin_radio.setChecked(True)
        self.corpus_combo.setCurrentIndex(index)
        if minutes is not None:
            self.minutes_spin.setValue(minutes)
        self._refresh_builtin()

    def add_paths(self, paths: Sequence[str | Path]) -> None:
        """Add files and folders (scanned in a job; ``scan_done`` fires when all are read)."""
        self.files_radio.setChecked(True)
        self._queue.extend(str(p) for p in paths)
        if not self._scanning:
            self._start_scan()
        self._update_summary()

    def clear_files(self) -> None:
        self._scan.cancel()
        self._scanning = False
        self._queue.clear()
        self._files.clear()
        self._problems.clear()
        self._scan_error = ""
        self._refill_tree()

    def usable_files(self) -> list[str]:
        return [info.path for info in self._files.values()]

    def skipped_problems(self) -> list[str]:
        """One line per skipped file or folder: the path and its problem."""
        return [str(p) for p in self._problems.values()]

    def audio_choice(self) -> AudioChoice:
        if self.builtin:
            sources = self._builtin_sources()
            return AudioChoice(builtin=self.builtin, minutes=self.minutes_spin.value(),
                               seconds=sum(s.seconds for s in sources), n_sources=len(sources))
        files = list(self._files.values())
        return AudioChoice(files=[f.path for f in files], problems=list(self._problems.values()),
                           seconds=sum(f.seconds for f in files), n_sources=len(files))

    def cancel_jobs(self) -> None:
        if self._scanning:
            self._scan.cancel()
            self._scanning = False
            self._queue.clear()
            self.scan_bar.setVisible(False)
            self._update_summary()

    # ---- drag and drop -----------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.add_paths(paths)
        else:
            event.ignore()

    # ---- wizard hooks ------------------------------------------------------------------------
    def isComplete(self) -> bool:  # noqa: N802
        return not self._problem_text()

    def validatePage(self) -> bool:  # noqa: N802
        self._update_message()
        return self.isComplete()

    # ---- internals -----------------------------------------------------------------------------
    def _problem_text(self) -> str:
        ws = self.workspace_status
        if ws.kind in ("empty", "invalid"):
            return ws.message
        if self.builtin:
            if self.builtin == "midi" and self.midi_reason:
                return self.midi_reason
            n = len(self._builtin_sources())
            if n < 2:
                return "Choose a longer corpus: at least two sources are needed (one goes to validation)."
            return ""
        if self.scanning:
            return "Reading audio headers\u2026"
        n = len(self._files)
        if n == 0 and ws.kind == "existing" and ws.corpus_complete:
            return ""  # train on the workspace's own corpus
        if n == 0:
            return self._scan_error or "Add audio files or folders, or choose a built-in corpus."
        if n < 2 and not (ws.kind == "existing" and ws.sources_built >= 1):
            return "Add at least two audio files: whole files are split between training and validation."
        return ""

    def _update_message(self) -> None:
        text = self._problem_text()
        self.message.setText("" if text == "Reading audio headers\u2026" else text)
        self.completeChanged.emit()

    def _on_mode_changed(self) -> None:
        self.stack.setCurrentIndex(0 if self.files_radio.isChecked() else 1)
        self._update_message()

    def _builtin_sources(self) -> list[Source]:
        name = self.corpus_combo.currentData()
        try:
            return builtin_sources(name, minutes=self.minutes_spin.value())
        except AudioSAEError:
            return []

    def _refresh_builtin(self) -> None:
        name = self.corpus_combo.currentData()
        self.corpus_description.setText(BUILTIN_CORPORA.get(name, ""))
        self.midi_note.setText(f"midi is unavailable: {self.midi_reason}" if self.midi_reason else "")
        self.midi_note.setVisible(bool(self.midi_reason))
        if name == "midi" and self.midi_reason:
            self.builtin_summary.setText("")
        else:
            sources = self._builtin_sources()
            total = sum(s.seconds for s in sources)
            self.builtin_summary.setText(f"{len(sources)} source(s), {format_duration(total)} of audio")
        self._update_message()

    def _start_scan(self) -> None:
        paths, self._queue = self._queue, []
        self._scanning = True
        self.scan_bar.setVisible(True)
        self.scan_bar.setRange(0, 0)
        self._scan.start(scan_paths, paths, on_progress=self._on_scan_progress, on_finished=self._on_scan_finished,
                         on_failed=self._on_scan_failed, on_cancelled=self._after_scan)

    def _on_scan_progress(self, event: Progress) -> None:
        if event.total:
            self.scan_bar.setRange(0, int(event.total))
            self.scan_bar.setValue(int(event.done))
        self.files_summary.setText(f"Reading headers\u2026 {event.message}")

    def _on_scan_finished(self, outcome: ScanOutcome) -> None:
        for info in outcome.files:
            key = str(Path(info.path).resolve())
            self._files.setdefault(key, info)
            self._problems.pop(str(info.path), None)
        for problem in outcome.problems:
            self._problems[str(getattr(problem, "path", problem))] = problem
        self._scan_error = "" if outcome.files else "No usable audio found in what was added."
        self._after_scan()

    def _on_scan_failed(self, message: str) -> None:
        self._scan_error = message
        self._after_scan()

    def _after_scan(self) -> None:
        self._scanning = False
        if self._queue:
            self._start_scan()
            return
        self.scan_bar.setVisible(False)
        self._refill_tree()
        self.scan_done.emit()

    def _refill_tree(self) -> None:
        self.file_tree.setUpdatesEnabled(False)
        self.file_tree.clear()
        items = []
        for key, info in self._files.items():
            path = Path(info.path)
            # printable: Qt silently drops the bytes of a name that is not valid UTF-8
            item = QTreeWidgetItem([printable(path.name), format_duration(info.seconds), format_audio_format(info),
                                    printable(str(path.parent))])
            item.setData(0, Qt.ItemDataRole.UserRole, key)
            item.setToolTip(0, printable(str(path)))
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            items.append(item)
        self.file_tree.addTopLevelItems(items)
        self.file_tree.setUpdatesEnabled(True)
        self.skipped_list.clear()
        for message in self.skipped_problems():
            item = QListWidgetItem(message)
            item.setForeground(QBrush(QColor("#b3261e")))
            item.setToolTip(message)
            self.skipped_list.addItem(item)
        self.skipped_list.setVisible(bool(self._problems))
        self.skipped_label.setText(f"Skipped {len(self._problems)} file(s):" if self._problems else "")
        self.skipped_label.setVisible(bool(self._problems))
        self._update_summary()

    def _update_summary(self) -> None:
        if not self.scanning:
            n = len(self._files)
            total = sum(f.seconds for f in self._files.values())
            self.files_summary.setText(f"{n} file(s), {format_duration(total)} in total" if n else "No audio yet.")
        self._update_message()

    def _remove_selected(self) -> None:
        for item in self.file_tree.selectedItems():
            self._files.pop(item.data(0, Qt.ItemDataRole.UserRole), None)
        self._refill_tree()

    def _start_dir(self) -> str:
        return str(_setting(self.settings, "last_directory", str(Path.home())))

    def _remember_dir(self, folder: str | Path) -> None:
        try:
            self.settings.last_directory = str(folder)
        except Exception:  # a plain settings object without the property
            pass

    def _browse_files(self) -> None:
        exts = " ".join(f"*{e}" for e in (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".opus", ".oga"))
        paths, _ = QFileDialog.getOpenFileNames(self, "Add audio files", self._start_dir(),
                                                f"Audio ({exts});;All files (*)")
        if paths:
            self._remember_dir(Path(paths[0]).parent)
            self.add_paths(paths)

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of audio", self._start_dir())
        if folder:
            self._remember_dir(folder)
            self.add_paths([folder])

    def _browse_workspace(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Workspace folder", self._start_dir())
        if folder:
            self.workspace_edit.setText(folder)

    def _on_workspace_changed(self) -> None:
        self.workspace_status = inspect_workspace_folder(self.workspace_edit.text())
        style = {"invalid": ERROR_STYLE, "existing": OK_STYLE}.get(self.workspace_status.kind, NOTE_STYLE)
        self.workspace_label.setStyleSheet(style)
        self.workspace_label.setText(self.workspace_status.message)
        self._update_message()


# =============================================================================================
# Step 2: backend


class BackendPage(QWizardPage):
    COLUMNS = ("Backend", "Rate", "Frames/s", "Dim", "Kind", "Download")

    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.setTitle("2 \u00b7 Latent backend")
        self.setSubTitle("The autoencoder whose latent space the SAEs will read, and where to compute.")
        self.specs: list[BackendSpec] = available_backends()

        self.table = QTableWidget(len(self.specs), len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        for r, s in enumerate(self.specs):
            values = (s.name, f"{s.sample_rate / 1000:g} kHz", f"{s.frame_rate:.1f}", str(s.latent_dim), s.kind,
                      format_download(s.download_bytes))
            for c, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setToolTip(s.description)
                if c > 0:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(self.COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.resizeRowsToContents()
        self.description = _label("", NOTE_STYLE)

        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("optional: a local copy of the weights (used instead of downloading)")
        self.weights_browse = QPushButton("Browse\u2026")
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_edit, 1)
        weights_row.addWidget(self.weights_browse)
        self.device_combo = QComboBox()
        self.device_combo.addItem("auto")
        for d in available_devices():
            self.device_combo.addItem(d)
        preferred = str(_setting(settings, "compute_device", "auto"))
        index = self.device_combo.findText(preferred)
        self.device_combo.setCurrentIndex(max(0, index))
        self.device_note = _label("", NOTE_STYLE, wrap=False)
        device_row = QHBoxLayout()
        device_row.addWidget(self.device_combo)
        device_row.addWidget(self.device_note, 1)

        form = QFormLayout()
        form.addRow("Local weights file:", weights_row)
        form.addRow("Compute device:", device_row)
        self.lock_note = _label("", NOTE_STYLE)
        self.message = _label("", ERROR_STYLE)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.description)
        layout.addWidget(self.lock_note)
        layout.addLayout(form)
        layout.addWidget(self.message)

        self.registerField("weights", self.weights_edit)
        self.registerField("device", self.device_combo, "currentText", self.device_combo.currentTextChanged)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.weights_edit.textChanged.connect(self._validate)
        self.weights_browse.clicked.connect(self._browse_weights)
        self.device_combo.currentTextChanged.connect(self._on_device)
        self.select_backend("mel")
        self._on_device()

    # ---- public API ----------------------------------------------------------------------------
    def backend_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.specs[rows[0].row()].name if rows else None

    def spec(self) -> BackendSpec | None:
        name = self.backend_name()
        return backend_spec(name) if name else None

    def select_backend(self, name: str) -> None:
        for r, s in enumerate(self.specs):
            if s.name == name:
                self.table.selectRow(r)
                return
        raise ValueError(f"unknown backend {name!r}")

    def backend_options(self) -> dict[str, Any]:
        weights = self.weights_edit.text().strip()
        return {"weights": str(Path(weights).expanduser().resolve())} if weights else {}

    def device(self) -> str:
        return self.device_combo.currentText()

    # ---- wizard hooks ------------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        status: WorkspaceStatus = self.wizard().audio_page.workspace_status
        locked = status.kind == "existing" and status.backend is not None
        if locked:
            try:
                self.select_backend(status.backend)  # type: ignore[arg-type]
            except ValueError:
                pass
            self.weights_edit.setText(str(status.backend_options.get("weights", "")))
            self.lock_note.setText(f"This workspace was built with {status.backend}; its backend cannot change.")
        else:
            self.lock_note.setText("")
        self.lock_note.setVisible(locked)
        self.table.setEnabled(not locked)
        self.weights_edit.setReadOnly(locked)
        self.weights_browse.setEnabled(not locked and self._downloadable())
        self._validate()

    def cleanupPage(self) -> None:  # noqa: N802
        """Keep the choices when the user goes back (QWizard's default resets the fields)."""

    def isComplete(self) -> bool:  # noqa: N802
        return not self._problem_text()

    # ---- internals -------------------------------------------------------------------------------
    def _downloadable(self) -> bool:
        spec = self.spec()
        return spec is not None and spec.download_bytes is not None

    def _problem_text(self) -> str:
        spec = self.spec()
        if spec is None:
            return "Choose a backend."
        weights = self.weights_edit.text().strip()
        if weights:
            if spec.download_bytes is None:
                return f"{spec.name} is built in and takes no weights file; clear the field."
            if not Path(weights).expanduser().is_file():
                return f"{weights}: weights file not found"
        return ""

    def _validate(self) -> None:
        self.message.setText(self._problem_text())
        self.completeChanged.emit()

    def _on_selection(self) -> None:
        spec = self.spec()
        if spec is not None:
            size = format_download(spec.download_bytes)
            extra = "" if spec.download_bytes is None else \
                f"  \u2014  Downloads {size} on first use unless a local weights file is given."
            self.description.setText(f"{spec.description.rstrip('.')}{extra}")
        downloadable = self._downloadable()
        self.weights_edit.setEnabled(downloadable)
        self.weights_browse.setEnabled(downloadable and not self.weights_edit.isReadOnly())
        self._validate()

    def _on_device(self) -> None:
        choice = self.device_combo.currentText()
        if choice == "auto":
            try:
                resolved = str(pick_device("auto"))
            except AudioSAEError:
                resolved = "cpu"
            self.device_note.setText(f"\u2192 {resolved} on this machine")
        else:
            self.device_note.setText("")

    def _browse_weights(self) -> None:
        start = str(_setting(self.settings, "last_directory", str(Path.home())))
        path, _ = QFileDialog.getOpenFileName(self, "Local weights file", start,
                                              "Weights (*.th *.pt *.pth *.ckpt *.safetensors *.bin);;All files (*)")
        if path:
            self.weights_edit.setText(path)


# =============================================================================================
# Step 3: attributes


class AttributesPage(QWizardPage):
    preview_ready = Signal()

    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.setTitle("3 \u00b7 Attributes")
        self.setSubTitle("Every latent frame gets a pitch, a loudness and a timbre class; the probes learn to "
                         "read them.  Here is how a sample of your audio falls into the bins.")
        self._job = _JobSlot(runner, "wizard: attribute preview")
        self._delay = QTimer(self)
        self._delay.setSingleShot(True)
        self._delay.setInterval(SIDE_JOB_DELAY_MS)
        self._delay.timeout.connect(self._start_preview_now)
        self._key: tuple | None = None
        self.preview: AttributePreview | None = None

        self.crepe_combo = QComboBox()
        for model in CREPE_MODELS:
            self.crepe_combo.addItem(model)
        self.crepe_combo.setItemData(CREPE_MODELS.index("tiny"),
                                     "CREPE tiny: fast, accurate enough for class labels (default)",
                                     Qt.ItemDataRole.ToolTipRole)
        if "full" in CREPE_MODELS:
            self.crepe_combo.setItemData(CREPE_MODELS.index("full"),
                                         "CREPE full: the reference model, about 10\u00d7 slower",
                                         Qt.ItemDataRole.ToolTipRole)
        preferred = _setting(settings, "crepe_model", DEFAULT_CREPE_MODEL)
        self.crepe_combo.setCurrentText(preferred if preferred in CREPE_MODELS else DEFAULT_CREPE_MODEL)
        self.crepe_note = _label("Pitch tracker: tiny is fast; full is the reference model (slower).", NOTE_STYLE)
        crepe_row = QHBoxLayout()
        crepe_row.addWidget(QLabel("Pitch model (CREPE):"))
        crepe_row.addWidget(self.crepe_combo)
        crepe_row.addWidget(self.crepe_note, 1)

        self.status = _label("")
        self.busy = QProgressBar()
        self.busy.setMaximumWidth(200)
        self.busy.setVisible(False)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status, 1)
        status_row.addWidget(self.busy)

        self.plots: dict[str, pg.PlotWidget] = {
            "pitch": _small_plot("Pitch: 66 classes (unvoiced + G1..B6)", "class"),
            "loudness": _small_plot("Loudness: 20 bins", "dBFS"),
            "timbre": _small_plot("Timbre: 20 bins of spectral centroid", "Hz"),
        }
        self.edges_labels = {a: _label("", NOTE_STYLE) for a in ATTRIBUTES}
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.addWidget(self.plots["pitch"], 0, 0, 1, 2)
        grid.addWidget(self.edges_labels["pitch"], 1, 0, 1, 2)
        grid.addWidget(self.plots["loudness"], 2, 0)
        grid.addWidget(self.plots["timbre"], 2, 1)
        grid.addWidget(self.edges_labels["loudness"], 3, 0)
        grid.addWidget(self.edges_labels["timbre"], 3, 1)
        self.timbre_note = _label("", NOTE_STYLE)
        self.message = _label("", ERROR_STYLE)

        layout = QVBoxLayout(self)
        layout.addLayout(crepe_row)
        layout.addLayout(status_row)
        layout.addLayout(grid, 1)
        layout.addWidget(self.timbre_note)
        layout.addWidget(self.message)
        self.registerField("crepe_model", self.crepe_combo, "currentText", self.crepe_combo.currentTextChanged)
        self.crepe_combo.currentTextChanged.connect(lambda _text: self.start_preview())
        self._show_default_bins()

    def crepe_model(self) -> str | None:
        """The CREPE model for the build; None keeps an existing workspace's own."""
        return None if not self.crepe_combo.isEnabled() else self.crepe_combo.currentText()

    def initializePage(self) -> None:  # noqa: N802
        status: WorkspaceStatus = self.wizard().audio_page.workspace_status
        locked = status.kind == "existing" and status.sources_built > 0 and status.crepe_model in CREPE_MODELS
        if locked:
            self.crepe_combo.blockSignals(True)
            self.crepe_combo.setCurrentText(status.crepe_model)  # type: ignore[arg-type]
            self.crepe_combo.blockSignals(False)
            self.crepe_note.setText("This workspace's frames were labelled with this model; it cannot change.")
        self.crepe_combo.setEnabled(not locked)
        self.start_preview()

    def cleanupPage(self) -> None:  # noqa: N802
        self.cancel_jobs()

    def cancel_jobs(self) -> None:
        self._delay.stop()
        self._job.cancel()
        self.busy.setVisible(False)

    def start_preview(self) -> None:
        """Preview the bins on the current audio (after a short settle delay); ``preview_ready`` follows."""
        self._delay.start()

    def _start_preview_now(self) -> None:
        wizard = self.wizard()
        if wizard is None or wizard.currentPage() is not self:
            return
        audio = wizard.audio_page.audio_choice()
        spec = wizard.backend_page.spec() or backend_spec("mel")
        status = wizard.audio_page.workspace_status
        workspace = str(Path(wizard.field("workspace")).expanduser()) \
            if status.kind == "existing" and status.sources_built else None
        device = wizard.backend_page.device()
        crepe = self.crepe_combo.currentText()
        key = (audio.key(), spec.sample_rate, spec.hop_length, crepe, device, workspace)
        if key == self._key and (self.preview is not None or self._job.running):
            return
        self._key = key
        if audio.empty and not workspace:
            self.status.setText("No audio to preview.")
            return
        self.message.setText("")
        self.status.setText("Measuring pitch, loudness and centroid on a sample of the audio\u2026")
        self.busy.setVisible(True)
        self.busy.setRange(0, 0)
        self._job.start(preview_attributes, audio, spec.sample_rate, spec.hop_length, crepe, device, workspace,
                        on_progress=self._on_progress, on_finished=self._on_finished, on_failed=self._on_failed,
                        on_cancelled=lambda: self.busy.setVisible(False))

    def _on_progress(self, event: Progress) -> None:
        if event.total:
            self.busy.setRange(0, int(event.total))
            self.busy.setValue(int(event.done))

    def _on_failed(self, message: str) -> None:
        self.busy.setVisible(False)
        self.status.setText("")
        self.message.setText(f"Preview failed: {message}")
        self._key = None

    def _on_finished(self, preview: AttributePreview) -> None:
        self.busy.setVisible(False)
        self.preview = preview
        if preview.from_workspace:
            self.status.setText(f"Bins of this workspace, on the {preview.n_frames:,} stored frames "
                                f"of its first shard.")
        else:
            self.status.setText(f"Sample: {preview.n_frames:,} frames from {preview.n_sources} source(s), "
                                f"{format_duration(preview.seconds)} of audio (the first "
                                f"{PREVIEW_SECONDS:.0f} s of each).")
        self.timbre_note.setText(preview.timbre_note[0].upper() + preview.timbre_note[1:] + ".")
        self._draw(preview.spec, preview.counts)
        self.preview_ready.emit()

    def _show_default_bins(self) -> None:
        spec = AttributeSpec()
        self._draw(spec, {a: np.zeros(spec.n_classes(a), dtype=np.int64) for a in ATTRIBUTES})

    def _draw(self, spec: AttributeSpec, counts: dict[str, np.ndarray]) -> None:
        colors = {"pitch": "#0072B2", "loudness": "#009E73", "timbre": "#D55E00"}
        names = spec.class_names("pitch")
        for attr in ATTRIBUTES:
            item = self.plots[attr].getPlotItem()
            item.clear()
            c = np.asarray(counts[attr], dtype=float)
            if attr == "pitch":
                x = np.arange(len(c), dtype=float)
                width = 0.8
                ticks = [(0, "unv.")] + [(k, names[k]) for k in range(1, len(names)) if names[k].startswith("C")
                                             and "#" not in names[k]]
                item.getAxis("bottom").setTicks([ticks, []])
                item.setXRange(-1.5, len(c) + 0.5, padding=0)
            else:
                edges = spec.edges(attr)
                x = 0.5 * (edges[:-1] + edges[1:])
                width = float(edges[1] - edges[0]) * 0.9
                item.getAxis("bottom").setTicks(None)  # nice round numbers; the edges are listed below
                item.setXRange(float(edges[0]), float(edges[-1]), padding=0.04)
            bars = pg.BarGraphItem(x=x, height=c, width=width, brush=colors[attr], pen=pg.mkPen(None))
            item.addItem(bars)
            item.setYRange(0, max(1.0, float(c.max()) * 1.08 if c.size else 1.0), padding=0)
        unvoiced = int(counts["pitch"][0]) if len(counts["pitch"]) else 0
        total = int(np.sum(counts["pitch"]))
        voiced_note = f"; {unvoiced:,} of {total:,} frames unvoiced" if total else ""
        self.edges_labels["pitch"].setText(
            f"One class per semitone, MIDI 31 (G1) to 95 (B6), plus 'unvoiced' (silent or aperiodic frames)"
            f"{voiced_note}.")
        le = spec.loudness_edges
        self.edges_labels["loudness"].setText(
            f"{spec.n_loudness_bins} equal bins of {le[1] - le[0]:.0f} dB over {le[0]:.0f}..{le[-1]:.0f} dBFS; "
            f"edges {', '.join(f'{e:.0f}' for e in le)}.")
        te = spec.timbre_edges
        self.edges_labels["timbre"].setText(
            f"{spec.n_timbre_bins} equal bins of {te[1] - te[0]:.0f} Hz over {te[0]:.0f}..{te[-1]:.0f} Hz; "
            f"edges {', '.join(f'{e:.0f}' for e in te)}.")


# =============================================================================================
# Step 4: SAE grid


PROBE_KEY = 0  # the probe calibration's slot in the per-width cache


class GridPage(QWizardPage):
    estimate_ready = Signal()

    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.setTitle("4 \u00b7 SAE grid")
        self.setSubTitle("One SAE per (width, \u03bb) pair, all trained together in one pass per epoch.")
        self._job = _JobSlot(runner, "wizard: time estimate")
        self._delay = QTimer(self)
        self._delay.setSingleShot(True)
        self._delay.setInterval(SIDE_JOB_DELAY_MS)
        self._delay.timeout.connect(self._update_estimate)
        self._extraction_cache: dict[tuple, Calibration] = {}
        self._sae_cache: dict[tuple, dict[int, float]] = {}
        self._dirty = False
        self.estimate: Estimate | None = None

        self.width_boxes: dict[int, QCheckBox] = {}
        widths_row = QHBoxLayout()
        for w in WIDTH_CHOICES:
            box = QCheckBox(f"{w}\u00d7")
            box.setChecked(w in DEFAULT_WIDTHS)
            box.toggled.connect(self._on_changed)
            self.width_boxes[w] = box
            widths_row.addWidget(box)
        widths_row.addStretch(1)
        self.width_note = _label("", NOTE_STYLE, wrap=False)
        self.l1_edit = QLineEdit(", ".join(f"{v:g}" for v in DEFAULT_L1S))
        self.l1_edit.setToolTip("L1 coefficients \u03bb, separated by commas or spaces.  The paper's range is "
                                "0.005-0.15: larger \u03bb gives sparser features and a worse reconstruction.")
        self.l1_note = _label(f"Paper range {PAPER_L1_RANGE[0]:g}\u2013{PAPER_L1_RANGE[1]:g}; larger \u03bb = "
                              "sparser features.", NOTE_STYLE, wrap=False)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(0, 10000)
        self.epochs_spin.setSpecialValueText("auto (until converged)")
        self.epochs_spin.setValue(DEFAULT_EPOCHS)
        self.epochs_spin.setToolTip("auto: train until the held-out loss stops improving, within a budget of "
                                    f"max({D.SAE_EPOCHS_EQUIVALENT:g} epochs, {D.SAE_MIN_STEPS} steps); "
                                    "a number: exactly that many passes over the training frames.")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(16, 1 << 17)
        self.batch_spin.setSingleStep(256)
        self.batch_spin.setValue(DEFAULT_BATCH_SIZE)
        self.batch_spin.setToolTip("Frames per SAE training step.")
        self.summary = _label("")

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        self.l1_edit.setMinimumWidth(320)
        self.epochs_spin.setMinimumWidth(180)
        self.batch_spin.setMinimumWidth(100)
        form.addRow("Widths (expansion):", widths_row)
        form.addRow("", self.width_note)
        form.addRow("\u03bb (L1 coefficients):", self.l1_edit)
        form.addRow("", self.l1_note)
        form.addRow("Epochs:", self.epochs_spin)
        form.addRow("Batch size:", self.batch_spin)
        grid_box = QGroupBox("Grid")
        grid_box.setLayout(form)

        est_box = QGroupBox("Time estimate")
        el = QVBoxLayout(est_box)
        est_row = QHBoxLayout()
        self.estimate_label = QLabel("\u2026")
        font = QFont(self.estimate_label.font())
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        self.estimate_label.setFont(font)
        self.busy = QProgressBar()
        self.busy.setMaximumWidth(200)
        self.busy.setVisible(False)
        est_row.addWidget(self.estimate_label, 1)
        est_row.addWidget(self.busy)
        el.addLayout(est_row)
        self.estimate_detail = _label("", NOTE_STYLE)
        el.addWidget(self.estimate_detail)

        self.message = _label("", ERROR_STYLE)
        layout = QVBoxLayout(self)
        layout.addWidget(grid_box)
        layout.addWidget(self.summary)
        layout.addWidget(est_box)
        layout.addStretch(1)
        layout.addWidget(self.message)

        self.registerField("l1s", self.l1_edit)
        self.registerField("epochs", self.epochs_spin, "value", self.epochs_spin.valueChanged)
        self.registerField("batch_size", self.batch_spin, "value", self.batch_spin.valueChanged)
        self.l1_edit.textChanged.connect(self._on_changed)
        self.epochs_spin.valueChanged.connect(self._on_changed)
        self.batch_spin.valueChanged.connect(self._on_changed)
        self.setButtonText(QWizard.WizardButton.NextButton, "Build && train")

    # ---- public API ------------------------------------------------------------------------------
    def widths(self) -> list[int]:
        return [w for w, box in self.width_boxes.items() if box.isChecked()]

    def set_widths(self, widths: Sequence[int]) -> None:
        for w, box in self.width_boxes.items():
            box.setChecked(w in widths)

    def l1s(self) -> list[float]:
        """The parsed λ list (raises ``ValueError`` with a message when it cannot be read)."""
        text = self.l1_edit.text().replace(";", ",").replace(" ", ",")
        parts = [p for p in text.split(",") if p.strip()]
        if not parts:
            raise ValueError("Enter at least one \u03bb value.")
        values: list[float] = []
        for p in parts:
            try:
                v = float(p)
            except ValueError:
                raise ValueError(f"'{p.strip()}' is not a number; enter \u03bb values like 0.005, 0.02") from None
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"\u03bb must be a number >= 0, got {p.strip()}")
            if v not in values:
                values.append(v)
        return values

    def train_settings(self) -> TrainSettings:
        return TrainSettings(expansions=self.widths(), l1s=self.l1s(), epochs=self.epochs_spin.value() or None,
                             batch_size=self.batch_spin.value())

    @property
    def estimate_seconds(self) -> float | None:
        return None if self.estimate is None else self.estimate.total_s

    # ---- wizard hooks ----------------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        self._on_changed()

    def cleanupPage(self) -> None:  # noqa: N802
        self.cancel_jobs()

    def isComplete(self) -> bool:  # noqa: N802
        return not self._problem_text()

    def cancel_jobs(self) -> None:
        self._delay.stop()
        self._job.cancel()
        self._dirty = False
        self.busy.setVisible(False)

    # ---- internals -------------------------------------------------------------------------------
    def _problem_text(self) -> str:
        if not self.widths():
            return "Tick at least one width."
        try:
            self.l1s()
        except ValueError as exc:
            return str(exc)
        return ""

    def _on_changed(self, *_: Any) -> None:
        problem = self._problem_text()
        self.message.setText(problem)
        wizard = self.wizard()
        spec = wizard.backend_page.spec() if wizard is not None else None
        d_in = spec.latent_dim if spec is not None else None
        if d_in:
            self.width_note.setText(f"{d_in}-d latents \u2192 " + ", ".join(
                f"{w}\u00d7 = {w * d_in:,}" for w in self.widths()) + " features" if self.widths() else "")
            for w, box in self.width_boxes.items():
                box.setToolTip(f"{w * d_in:,} features (d_sae = {w} \u00d7 {d_in})")
        if not problem:
            n_w, n_l = len(self.widths()), len(self.l1s())
            self.summary.setText(f"{n_w * n_l} SAE(s): {n_w} width(s) \u00d7 {n_l} \u03bb value(s), "
                                 + (f"{self.epochs_spin.value()} epoch(s)" if self.epochs_spin.value()
                                    else "trained until converged") + f", batches of {self.batch_spin.value()} frames.")
            extra = [v for v in self.l1s() if not PAPER_L1_RANGE[0] <= v <= PAPER_L1_RANGE[1]]
            self.l1_note.setText(
                f"Paper range {PAPER_L1_RANGE[0]:g}\u2013{PAPER_L1_RANGE[1]:g}"
                + (f"; outside it: {', '.join(f'{v:g}' for v in extra)}" if extra else "")
                + "; larger \u03bb = sparser features.")
        else:
            self.summary.setText("")
        self.completeChanged.emit()
        if wizard is not None and wizard.currentPage() is self and not problem:
            self._delay.start()

    def _keys(self) -> tuple[tuple, tuple] | None:
        wizard = self.wizard()
        spec = wizard.backend_page.spec()
        if spec is None:
            return None
        audio = wizard.audio_page.audio_choice()
        device = wizard.backend_page.device()
        crepe = wizard.attributes_page.crepe_combo.currentText()
        options = wizard.backend_page.backend_options()
        first = audio.files[:1] if audio.files else (audio.builtin,)
        ext_key = (spec.name, tuple(sorted(options.items())), device, crepe, tuple(first))
        sae_key = (spec.latent_dim, device)
        return ext_key, sae_key

    def _update_estimate(self) -> None:
        wizard = self.wizard()
        if wizard is None or wizard.currentPage() is not self or self._problem_text():
            return
        keys = self._keys()
        if keys is None:
            return
        ext_key, sae_key = keys
        widths = self.widths()
        extraction = self._extraction_cache.get(ext_key)
        cached = self._sae_cache.get(sae_key, {})
        if extraction is not None and all(w in cached for w in (*widths, PROBE_KEY)):
            self._show_estimate(extraction, cached)
            return
        if self._job.running:
            self._dirty = True  # recompute when the running calibration ends
            return
        audio = wizard.audio_page.audio_choice()
        spec = wizard.backend_page.spec()
        options = wizard.backend_page.backend_options()
        status = wizard.audio_page.workspace_status
        may_load = spec.download_bytes is None or bool(options.get("weights")) or \
            (status.kind == "existing" and status.sources_built > 0)
        if extraction is not None:
            extraction = Calibration(extraction.extraction_per_second, extraction.encode_timed, extraction.note,
                                     extraction.d_in, {w: v for w, v in cached.items() if w != PROBE_KEY},
                                     cached.get(PROBE_KEY))
        self.busy.setVisible(True)
        self.busy.setRange(0, 0)
        self.estimate_label.setText("estimating\u2026")
        self.estimate_detail.setText("Timing the encoding of 2 s of your audio, an SAE step of each width "
                                     "and a probe epoch.")
        self._job.start(calibrate, audio, spec.name, options, wizard.backend_page.device(),
                        wizard.attributes_page.crepe_combo.currentText(), widths, extraction=extraction,
                        may_load_backend=may_load,
                        on_finished=lambda cal: self._on_calibrated(ext_key, sae_key, cal),
                        on_failed=self._on_failed, on_cancelled=lambda: self.busy.setVisible(False))

    def _on_calibrated(self, ext_key: tuple, sae_key: tuple, cal: Calibration) -> None:
        self.busy.setVisible(False)
        self._extraction_cache[ext_key] = Calibration(cal.extraction_per_second, cal.encode_timed, cal.note,
                                                      cal.d_in)
        self._sae_cache.setdefault(sae_key, {}).update(cal.sae_per_frame)
        if cal.probe_per_frame is not None:
            self._sae_cache[sae_key][PROBE_KEY] = cal.probe_per_frame
        if self._dirty:
            self._dirty = False
            self._update_estimate()
            return
        self._show_estimate(self._extraction_cache[ext_key], self._sae_cache[sae_key])

    def _on_failed(self, message: str) -> None:
        self.busy.setVisible(False)
        self._dirty = False
        self.estimate = None
        self.estimate_label.setText("no estimate")
        self.estimate_detail.setText(f"The calibration failed: {message}")

    def _show_estimate(self, extraction: Calibration, sae_per_frame: dict[int, float]) -> None:
        wizard = self.wizard()
        spec = wizard.backend_page.spec()
        audio = wizard.audio_page.audio_choice()
        status = wizard.audio_page.workspace_status
        corpus_seconds = audio.seconds
        needs_extraction = not audio.empty
        if audio.empty and status.kind == "existing":
            corpus_seconds = status.corpus_seconds
        frame_rate = (status.frame_rate if status.kind == "existing" and status.frame_rate else spec.frame_rate)
        cal = Calibration(extraction.extraction_per_second, extraction.encode_timed, extraction.note,
                          extraction.d_in, {w: v for w, v in sae_per_frame.items() if w != PROBE_KEY},
                          sae_per_frame.get(PROBE_KEY))
        est = estimate_run(cal, corpus_seconds, float(frame_rate), self.widths(), len(self.l1s()),
                           self.epochs_spin.value(), extraction_needed=needs_extraction,
                           batch_size=self.batch_spin.value())
        self.estimate = est
        self.estimate_label.setText(describe_estimate(est))
        parts = []
        if needs_extraction:
            parts.append(f"extraction \u2248 {format_duration(est.extraction_s)}")
        parts += [f"SAE training \u2248 {format_duration(est.sae_s)}", f"probes \u2248 {format_duration(est.probes_s)}"]
        notes = "".join(f" Note: {n}." for n in est.notes)
        joined = " \u00b7 ".join(parts)
        self.estimate_detail.setText(
            f"{joined} for {format_duration(corpus_seconds)} of audio "
            f"({corpus_seconds * frame_rate:,.0f} frames).  This is an estimate extrapolated from a quick "
            f"calibration on this machine (2 s of audio, a few SAE and probe steps); the real time can differ.{notes}")
        self.estimate_ready.emit()


# =============================================================================================
# Step 5: run

STAGE_TITLES = {
    "build": "Building the corpus: encoding and labelling",
    "SAE input statistics": "Measuring the latent mean and scale",
    "train SAEs": "Training the SAE grid",
    "evaluate SAEs": "Evaluating the SAEs on validation frames",
    "probes": "Training the probes",
    "train probes": "Training the probes",
}
STAGE_STEPS = (("Corpus", ("build",)), ("SAEs", ("SAE input statistics", "train SAEs", "evaluate SAEs")),
               ("Probes", ("probes", "train probes")))


class RunPage(QWizardPage):
    """Builds and trains via ``build_and_train``; Stop cancels, Resume runs the same job again."""

    state_changed = Signal(str)   # "idle", "running", "cancelled", "failed", "done"

    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.setTitle("5 \u00b7 Build and train")
        self.setSubTitle("Encoding the corpus, then training the SAE grid and the probes.  You can stop at "
                         "any time and resume later: everything finished is kept on disk.")
        self._job = _JobSlot(runner, "wizard: build and train")
        self.state = "idle"
        self.plan: RunPlan | None = None
        self.report: dict[str, Any] | None = None
        self.error = ""
        self._started = 0.0
        self._last_log: tuple[str, str] | None = None
        self._probe_message = ""
        self._stage_seen = False

        self.steps_label = QLabel("")
        self.steps_label.setTextFormat(Qt.TextFormat.RichText)
        self.stage_label = QLabel("Waiting to start.")
        font = QFont(self.stage_label.font())
        font.setBold(True)
        self.stage_label.setFont(font)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.detail_label = _label("", NOTE_STYLE)
        self.state_label = _label("")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop at the next safe point; what is finished stays on disk.")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Run the same job again: it continues from what is on disk.")
        buttons = QHBoxLayout()
        buttons.addWidget(self.state_label, 1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.resume_button)

        self.curves = LiveCurves()
        self.curves.plots["mse"].setToolTip(FVU_TOOLTIP)
        curves_box = QGroupBox("Training curves (per SAE; FVU \u2248 batch MSE, hover for why)")
        curves_box.setToolTip(FVU_TOOLTIP)
        cl = QVBoxLayout(curves_box)
        cl.addWidget(self.curves)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setMaximumHeight(110)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.log_view.setFont(mono)

        layout = QVBoxLayout(self)
        layout.addWidget(self.steps_label)
        layout.addWidget(self.stage_label)
        layout.addWidget(self.bar)
        layout.addWidget(self.detail_label)
        layout.addLayout(buttons)
        layout.addWidget(curves_box, 1)
        layout.addWidget(QLabel("Log"))
        layout.addWidget(self.log_view)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        self.setButtonText(QWizard.WizardButton.NextButton, "Results")
        self._set_state("idle")

    # ---- public API ------------------------------------------------------------------------------
    @property
    def job(self) -> JobHandle | None:
        return self._job.handle

    def start(self, plan: RunPlan) -> None:
        """Run ``plan`` (build then train) in a job."""
        if self._job.running:
            return
        if self.plan is None or self.plan.train != plan.train or self.plan.workspace != plan.workspace:
            self.curves.clear()
            self.curves.set_configs(sae_name(e, lam) for e in plan.train.expansions for lam in plan.train.l1s)
        self.plan = plan
        self.report = None
        self.error = ""
        self._stage_seen = False
        self.stage_label.setText("Starting\u2026")
        self.detail_label.setText("")
        self._started = time.monotonic()
        self._last_log = None
        self._log(f"start: workspace {plan.workspace}, backend {plan.backend}, device {plan.device}, "
                  f"{len(plan.train.expansions)} width(s) \u00d7 {len(plan.train.l1s)} \u03bb, "
                  f"{plan.train.epochs} epoch(s)")
        self._set_state("running")
        self._job.start(build_and_train, plan, on_progress=self._on_progress, on_finished=self._on_finished,
                        on_failed=self._on_failed, on_cancelled=self._on_cancelled)

    def stop(self) -> None:
        """Cancel the running job (it stops at its next safe point)."""
        handle = self._job.handle
        if handle is not None:
            handle.cancel()
            self.state_label.setText("Stopping at the next safe point\u2026")
            self.stop_button.setEnabled(False)

    def resume(self) -> None:
        """Run the same plan again; both build and training continue from what is on disk."""
        if self.plan is not None and not self._job.running:
            self._log("resume")
            self.start(self.plan)

    def cancel_jobs(self) -> None:
        """Cancel and forget the job (the wizard is closing)."""
        if self._job.running:
            self._job.cancel()
            self._set_state("cancelled")

    # ---- wizard hooks ----------------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        wizard = self.wizard()
        wizard.cancel_side_jobs()
        plan = wizard.run_plan()
        if self.state == "done" and self.plan == plan:
            return
        self.start(plan)

    def cleanupPage(self) -> None:  # noqa: N802
        if self._job.running:
            self.stop()

    def isComplete(self) -> bool:  # noqa: N802
        return self.state == "done"

    # ---- internals -------------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        self.state = state
        running = state == "running"
        self.stop_button.setEnabled(running)
        self.resume_button.setEnabled(state in ("cancelled", "failed"))
        self.resume_button.setText("Try again" if state == "failed" else "Resume")
        if state == "cancelled":
            self.state_label.setStyleSheet(NOTE_STYLE)
            self.state_label.setText("Stopped.  Everything finished so far is saved in the workspace; "
                                     "Resume continues from there (now or in a later session).")
        elif state == "failed":
            self.state_label.setStyleSheet(ERROR_STYLE)
            self.state_label.setText(self.error)
        elif state == "done":
            self.state_label.setStyleSheet(OK_STYLE)
            self.state_label.setText(f"Done in {format_duration(time.monotonic() - self._started)}.  "
                                     f"Next shows the results.")
        elif state == "running":
            self.state_label.setStyleSheet("")
            self.state_label.setText("Running\u2026")
        else:
            self.state_label.setText("")
        self.completeChanged.emit()
        wizard = self.wizard()
        if wizard is not None and wizard.currentPage() is self:
            # QWizard re-enables Back on completeChanged; going back mid-run would orphan the job.
            wizard.button(QWizard.WizardButton.BackButton).setEnabled(not running)
        self.state_changed.emit(state)

    def _log(self, text: str) -> None:
        log.info("run: %s", text)  # the app's log file keeps what the page showed
        self.log_view.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    def _show_steps(self, stage: str) -> None:
        parts = []
        current = next((i for i, (_, stages) in enumerate(STAGE_STEPS) if stage in stages), -1)
        for i, (title, _) in enumerate(STAGE_STEPS):
            mark = "\u2713" if i < current else ("\u25b6" if i == current else "\u25cb")
            text = f"{mark} {i + 1}. {title}"
            parts.append(f"<b>{text}</b>" if i == current else f"<span style='color:#777'>{text}</span>")
        self.steps_label.setText("&nbsp;&nbsp;&nbsp;".join(parts))

    def _on_progress(self, event: Progress) -> None:
        self._stage_seen = True
        self._show_steps(event.stage)
        self.stage_label.setText(STAGE_TITLES.get(event.stage, event.stage))
        fraction = event.fraction
        if fraction is None:
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(round(1000 * fraction)))
        message = event.message
        if event.stage == "build" and event.total:
            message = (f"{message} \u2014 {format_duration(event.done)} of {format_duration(event.total)} of audio")
        elif event.stage == "probes":
            self._probe_message = message
        elif event.stage == "train probes":
            message = f"{self._probe_message}: {message}" if self._probe_message else message
        elif event.stage == "train SAEs":
            message = f"{message}, step {int(event.done):,} of {int(event.total or 0):,}"
        self.detail_label.setText(message)
        if event.stage == "train SAEs" and event.metrics:
            self.curves.update_from_metrics(event.metrics)
        # The log keeps stage changes and new messages, not every tick.
        log_key = (event.stage, event.message if event.stage != "train SAEs" else event.message.split(",")[0])
        if log_key != self._last_log and event.stage not in ("train probes",):
            self._last_log = log_key
            self._log(f"{event.stage}: {event.message}" if event.message else event.stage)

    def _on_finished(self, report: dict[str, Any]) -> None:
        self.report = report
        self.bar.setRange(0, 1000)
        self.bar.setValue(1000)
        self._show_steps("")
        self.steps_label.setText("\u2713 1. Corpus&nbsp;&nbsp;&nbsp;\u2713 2. SAEs&nbsp;&nbsp;&nbsp;\u2713 3. Probes")
        self.stage_label.setText("Finished")
        self.detail_label.setText(f"{len(report.get('saes', []))} SAE(s) with probes in {report.get('workspace')}")
        self._log("done")
        self._set_state("done")

    def _on_failed(self, message: str) -> None:
        self.error = message
        self._log(f"error: {message}")
        self.bar.setRange(0, 1000)
        self.stage_label.setText(f"Stopped by an error during: {self.stage_label.text()}"
                                 if self._stage_seen else "Could not start")
        self._set_state("failed")

    def _on_cancelled(self) -> None:
        self._log("stopped by the user (resumable)")
        self.bar.setRange(0, 1000)
        self._set_state("cancelled")


# =============================================================================================
# Step 6: results


RESULT_COLUMNS = (
    ("SAE", "sae", None, "Name: width \u00d7 and \u03bb"),
    ("Width", "d_sae", "d", "Number of features (d_sae)"),
    ("\u03bb", "l1", "g", "L1 coefficient"),
    ("Sparsity", "sparsity", ".3f", "Fraction of zero entries of h on validation frames"),
    ("L0", "l0", ".1f", "Active features per frame on validation frames"),
    ("Dead", "dead_features", "d", "Features never active on validation frames"),
    ("FVU", "fvu", ".3f", "Fraction of variance unexplained on validation frames"),
    ("Pitch acc.", "pitch_accuracy", ".3f", "Probe accuracy, 66 pitch classes (validation frames)"),
    ("Loudness acc.", "loudness_accuracy", ".3f", "Probe accuracy, 20 loudness bins (validation frames)"),
    ("Timbre acc.", "timbre_accuracy", ".3f", "Probe accuracy, 20 timbre bins (validation frames)"),
)


def _fmt(value: Any, spec: str | None) -> str:
    if value is None:
        return "\u2013"
    if spec is None:
        return str(value)
    try:
        if isinstance(value, float) and not math.isfinite(value):
            return "\u2013"
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


class ResultsPage(QWizardPage):
    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.setTitle("6 \u00b7 Results")
        self.setSubTitle("The paper-style table on validation frames.  Pick the SAE to explore and finish.")
        self.report: dict[str, Any] | None = None
        self.corpus_label = _label("")
        self.table = QTableWidget(0, len(RESULT_COLUMNS))
        self.table.setHorizontalHeaderLabels([c[0] for c in RESULT_COLUMNS])
        for i, (_, _, _, tip) in enumerate(RESULT_COLUMNS):
            self.table.horizontalHeaderItem(i).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(64)
        for c in range(1, len(RESULT_COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.footnote = _label("Sparsity = fraction of zero h; L0 = active features per frame; dead = never active "
                               "on validation frames; FVU = fraction of variance unexplained.  The raw-latent row "
                               "is the baseline probe on x itself; chance = always guessing the most common "
                               "class.  Bold = best SAE per accuracy column.", NOTE_STYLE)
        self.selection_label = _label("")
        layout = QVBoxLayout(self)
        layout.addWidget(self.corpus_label)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.footnote)
        layout.addWidget(self.selection_label)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.setButtonText(QWizard.WizardButton.FinishButton, "Open in explorer")
        self.setFinalPage(True)

    # ---- public API ------------------------------------------------------------------------------
    def sae_rows(self) -> list[dict[str, Any]]:
        return list((self.report or {}).get("saes", []))

    def selected_sae(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)

    def select_sae(self, name: str) -> None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == name:
                self.table.selectRow(r)
                return
        raise ValueError(f"no SAE named {name!r} in the results")

    def show_report(self, report: dict[str, Any]) -> None:
        self.report = report
        corpus = report.get("corpus", {})
        skipped = corpus.get("skipped") or []
        warned = corpus.get("warnings") or []
        self.corpus_label.setToolTip(html.escape("\n".join([*(f"skipped {s}" for s in skipped),
                                                             *(f"warning: {w}" for w in warned)])))
        self.corpus_label.setText(
            f"Workspace <b>{report.get('workspace')}</b> \u00b7 backend <b>{report.get('backend')}</b> \u00b7 "
            f"{corpus.get('frames', '?'):,} frames ({corpus.get('train_frames', '?'):,} train / "
            f"{corpus.get('val_frames', '?'):,} validation) \u00b7 "
            f"{format_duration(float(corpus.get('seconds_of_audio') or 0))} of audio"
            + (f" \u00b7 {len(skipped)} file(s) skipped" if skipped else "")
            + (f" \u00b7 {len(warned)} file(s) with warnings" if warned else "")
            if isinstance(corpus.get("frames"), int) else
            f"Workspace <b>{report.get('workspace')}</b> \u00b7 backend <b>{report.get('backend')}</b>")
        rows = self.sae_rows()
        base = report.get("baseline", {})
        self.table.setRowCount(len(rows) + 2)
        best = {}
        for key in ("pitch_accuracy", "loudness_accuracy", "timbre_accuracy"):
            values = [r.get(key) for r in rows if r.get(key) is not None]
            best[key] = max(values) if values else None
        for r, row in enumerate(rows):
            for c, (_, key, spec, _) in enumerate(RESULT_COLUMNS):
                item = QTableWidgetItem(_fmt(row.get(key), spec))
                if c == 0:
                    item.setData(Qt.ItemDataRole.UserRole, row.get("sae"))
                else:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if key in best and best[key] is not None and row.get(key) == best[key] and len(rows) > 1:
                    f = item.font()
                    f.setBold(True)
                    item.setFont(f)
                self.table.setItem(r, c, item)
        extra_rows = (("raw latent (x)", {k: base.get(k) for k in best}),
                      ("chance (majority)", {k: base.get(k.replace("accuracy", "chance")) for k in best}))
        for i, (label, values) in enumerate(extra_rows):
            r = len(rows) + i
            for c, (_, key, spec, _) in enumerate(RESULT_COLUMNS):
                text = label if c == 0 else (_fmt(values.get(key), spec) if key in values else "")
                item = QTableWidgetItem(text)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled)  # not selectable: only SAEs can be explored
                item.setForeground(QBrush(QColor("#5f6368")))
                f = item.font()
                f.setItalic(True)
                item.setFont(f)
                if c > 0:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        scored = [r for r in rows if r.get("pitch_accuracy") is not None]
        if scored:
            self.select_sae(max(scored, key=lambda r: r["pitch_accuracy"])["sae"])
        elif rows:
            self.select_sae(rows[0]["sae"])
        self._on_selection()

    # ---- wizard hooks ----------------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802
        report = self.wizard().run_page.report
        if report is not None:
            self.show_report(report)

    def isComplete(self) -> bool:  # noqa: N802
        return self.selected_sae() is not None

    def _on_selection(self) -> None:
        name = self.selected_sae()
        self.selection_label.setText(f"Selected: <b>{name}</b>; Finish opens it in the explorer." if name
                                     else "Select an SAE row to explore.")
        self.completeChanged.emit()


# =============================================================================================
# The wizard


class TrainingWizard(QWizard):
    """New workspace: audio, backend, attributes, SAE grid, run, results.

    ``initial_folder``: an existing workspace opens to resume it; any other folder (or file)
    of audio is added on step 1.  ``workspace_ready(path, sae_name)`` fires on Finish.
    """

    workspace_ready = Signal(str, str)

    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None,
                 initial_folder: str | Path | None = None):
        super().__init__(parent)
        self.runner = runner
        self.settings = settings
        self.setWindowTitle("New workspace \u2014 audiosae studio")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, False)
        self.setMinimumSize(920, 680)
        self.audio_page = AudioPage(runner, settings)
        self.backend_page = BackendPage(runner, settings)
        self.attributes_page = AttributesPage(runner, settings)
        self.grid_page = GridPage(runner, settings)
        self.run_page = RunPage(runner, settings)
        self.results_page = ResultsPage(runner, settings)
        for page_id, page in enumerate((self.audio_page, self.backend_page, self.attributes_page,
                                        self.grid_page, self.run_page, self.results_page)):
            self.setPage(page_id, page)
        self.setStartId(PAGE_AUDIO)
        self.currentIdChanged.connect(self._sync_back_button)
        if initial_folder is not None:
            folder = Path(initial_folder).expanduser()
            if (folder / WORKSPACE_FILE).exists():
                self.setField("workspace", str(folder))
            elif folder.exists():
                self.audio_page.add_paths([folder])

    def run_plan(self) -> RunPlan:
        """The run described by the pages (what step 5 executes)."""
        return RunPlan(
            workspace=Path(str(self.field("workspace"))).expanduser(),
            backend=self.backend_page.backend_name() or "mel",
            backend_options=self.backend_page.backend_options(),
            device=self.backend_page.device(),
            crepe_model=self.attributes_page.crepe_model(),
            audio=self.audio_page.audio_choice(),
            train=self.grid_page.train_settings(),
        )

    def _sync_back_button(self, page_id: int) -> None:
        # QWizard enables Back after initializePage; going back mid-run would orphan the job.
        if page_id == PAGE_RUN and self.run_page.state == "running":
            self.button(QWizard.WizardButton.BackButton).setEnabled(False)

    def cancel_side_jobs(self) -> None:
        """Stop the scan / preview / estimate jobs (the run needs the CPU)."""
        self.audio_page.cancel_jobs()
        self.attributes_page.cancel_jobs()
        self.grid_page.cancel_jobs()

    def cancel_all_jobs(self) -> None:
        self.cancel_side_jobs()
        self.run_page.cancel_jobs()

    def accept(self) -> None:
        name = self.results_page.selected_sae()
        report = self.run_page.report or {}
        if name is None or not report:
            return
        self.cancel_all_jobs()
        path = str(Path(report.get("workspace") or self.field("workspace")).expanduser().resolve())
        self.workspace_ready.emit(path, name)
        super().accept()

    def reject(self) -> None:
        self.cancel_all_jobs()
        super().reject()
