"""What a training run will read, found out before it runs: the audio (``AudioChoice``, header
scans), how a sample of it falls into the attribute bins (``preview_attributes``) and what a
chosen workspace folder already holds (``inspect_workspace_folder``).

The wizard's steps 1 and 3 run these as side jobs; none of them writes anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..attributes import AttributeSpec, FrameAttributes
from ..audio import AudioInfo, load_audio, probe_audio, scan_audio
from ..corpus import Source, builtin_sources, user_sources
from ..devices import pick_device
from ..errors import AudioInputError, AudioSAEError
from ..jobs import CancelToken, Progress, ProgressSink, null_progress
from ..workspace import RAW_COLUMNS, WORKSPACE_FILE, Workspace

VAL_FRACTION = 0.1                                # build_corpus's default validation share
PREVIEW_SOURCES = 4
PREVIEW_SECONDS = 20.0


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


def read_excerpt(source: Source, sample_rate: int, channels: int, seconds: float) -> np.ndarray:
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
            wave = read_excerpt(source, sample_rate, 1, PREVIEW_SECONDS)
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


def default_workspace_folder() -> str:
    """The first ``~/audiosae-workspaces/workspace-N`` that does not exist yet."""
    base = Path.home() / "audiosae-workspaces"
    for i in range(1, 1000):
        candidate = base / f"workspace-{i}"
        if not candidate.exists():
            return str(candidate)
    return str(base / "workspace")
