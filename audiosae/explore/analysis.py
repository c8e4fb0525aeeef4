"""Everything the explorer shows about one clip, computed headlessly.

``ClipAnalysis`` holds, for a clip at the backend's rate: the latents, the SAE's ``h`` and
``f`` per frame, the measured attributes (CREPE / RMS / centroid) and the probes' class
probabilities per attribute.  The studio computes it in a worker thread; the DiffRhythm
tracer reuses ``probe_distributions`` on every sampling step.

Degrade, don't go blank: when the workspace's codec cannot be built (its weights are not on
this machine), ``LoadedModels.load`` still loads the SAE and probes, with ``backend=None`` and
the codec in ``missing``.  A clip that is a source of the workspace's corpus is then analysed
from the latents its frame shards already hold (``stored_frames`` + ``analyze_latents``: the
heatmap and probe lanes as usual); any other audio gets the waveform and the measured lanes
only (``analyze_measured``: ``f`` is ``[T, 0]``, no probabilities).  Clip and frame geometry
come from the backend's ``BackendSpec``, which needs no weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..attributes import ATTRIBUTES, AttributeSpec, FrameAttributes
from ..codecs import BackendSpec, backend_spec
from ..codecs.base import LatentBackend
from ..corpus import Source
from ..devices import pick_device
from ..errors import BackendError, DependencyError, WorkspaceError
from ..jobs import CancelToken, Progress, ProgressSink, null_progress
from ..probes import ProbeSet
from ..sae import SparseAutoencoder
from ..workspace import Workspace, read_shard
from .decoding import probe_distributions  # noqa: F401  (written once there; the old name stays)

ANALYSIS_CHUNK_FRAMES = 4096     # frames per SAE + probe pass (a cancel is checked between passes)
ANALYSIS_CHUNK_ELEMENTS = 1 << 23  # ...and at most this many features in one (~0.1 s on a CPU core)
CODEC_PART = "steering and heatmap of new audio"   # what a workspace without its codec cannot show


@dataclass(frozen=True)
class MissingPart:
    """A part of the analysis that could not run (CREPE, a codec, the audio device).

    ``what``: what the user does not see (e.g. "measured pitch"); ``why``: the one-line
    error, which names the command that fixes it.
    """

    what: str
    why: str

    def line(self) -> str:
        return f"{self.what} unavailable: {self.why}"


@dataclass
class ClipAnalysis:
    wave: np.ndarray                     # [C, N] at sample_rate
    sample_rate: int
    times: np.ndarray                    # [T] frame centres (s)
    latents: np.ndarray                  # [T, D] float32
    h: np.ndarray                        # [T, F] pre-norm SAE code
    f: np.ndarray                        # [T, F] SAE features (RMSNorm(h))
    measured: FrameAttributes            # CREPE / RMS / centroid at the frame centres
    measured_classes: dict[str, np.ndarray]   # attr -> [T] classes of the measured values
    probabilities: dict[str, np.ndarray]      # attr -> [T, K] probe class distributions
    source: str = ""
    warnings: list[str] = field(default_factory=list)   # about the input (clipped, truncated), one line each
    missing: list[MissingPart] = field(default_factory=list)  # parts that could not run, and why
    # registered attributes not measured yet (``extra=False``: the studio measures them in a second
    # job, ``measure_clip_extra``, so the clip shows before librosa's first import)
    pending: tuple[str, ...] = ()

    @property
    def n_frames(self) -> int:
        return int(self.latents.shape[0])

    @property
    def seconds(self) -> float:
        return self.wave.shape[1] / self.sample_rate

    @property
    def has_features(self) -> bool:
        """False for audio analysed without the codec's encoder: no SAE features, no probes."""
        return int(self.f.shape[1]) > 0

    def predicted(self, attribute: str) -> np.ndarray:
        return self.probabilities[attribute].argmax(axis=1)

    def frame_at(self, seconds: float) -> int:
        """Index of the frame whose centre is nearest to ``seconds``."""
        if not self.n_frames:
            return 0
        return int(np.argmin(np.abs(self.times - seconds)))


def sae_and_probes(sae: SparseAutoencoder, probes: ProbeSet, latents: torch.Tensor, *,
                   cancel: CancelToken | None = None
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``(h, f, probabilities)`` of ``latents`` ``[T, D]``, in chunks of frames.

    A long clip (45k frames x 2048 features: 370 MB per array) can be cancelled between
    chunks, written into arrays allocated once (no concatenation pass); rows are
    independent, so the result is that of one pass.
    """
    cancel = cancel or CancelToken()
    n, width = latents.shape[0], sae.cfg.d_sae
    rows = max(1, min(ANALYSIS_CHUNK_FRAMES, ANALYSIS_CHUNK_ELEMENTS // max(1, width)))
    h = np.empty((n, width), np.float32)
    f = np.empty((n, width), np.float32)
    probs = {a: np.empty((n, probes.n_classes(a)), np.float32) for a in probes.attributes}
    with torch.no_grad():
        for a in range(0, n, rows):
            cancel.raise_if_cancelled()
            h_c, f_c = sae.encode(latents[a:a + rows].to(sae.device))
            h[a:a + rows] = h_c.cpu().numpy()
            f[a:a + rows] = f_c.cpu().numpy()
            for attr, p in probe_distributions(probes, f_c).items():
                probs[attr][a:a + rows] = p
    cancel.raise_if_cancelled()
    return h, f, probs


def measure_clip(spec: AttributeSpec, wave: np.ndarray, sample_rate: int, times: np.ndarray, *,
                 hop_length: int, device: str, cancel: CancelToken | None = None,
                 corpus_source: Source | None = None, extra: bool = True
                 ) -> tuple[FrameAttributes, list[MissingPart]]:
    """CREPE / RMS / centroid and the spec's registered attributes at ``times``; without CREPE's
    weights, the rest and the missing part.  ``corpus_source``: the clip as a ``Source``, so that
    attributes labelled from ground truth (MIDI programs, the user's side-car labels) have it."""
    missing: list[MissingPart] = []
    measure = dict(hop_length=hop_length, device=device, cancel=cancel or CancelToken(), source=corpus_source,
                   extra=extra)
    try:
        measured = spec.measure(wave, sample_rate, times, **measure)
    except DependencyError as exc:  # CREPE's weights missing: show everything else
        missing.append(MissingPart("measured pitch (CREPE)", str(exc)))
        measured = spec.measure(wave, sample_rate, times, pitch=False, **measure)
    return measured, missing


def analyze_wave(backend: LatentBackend, sae: SparseAutoencoder, probes: ProbeSet, spec: AttributeSpec,
                 wave: np.ndarray, *, source: str = "", progress: ProgressSink = null_progress,
                 cancel: CancelToken | None = None, corpus_source: Source | None = None,
                 extra: bool = True) -> ClipAnalysis:
    """Encode ``wave`` (at the backend's rate/channels), run SAE + probes, measure attributes."""
    cancel = cancel or CancelToken()
    progress(Progress("analyse", 0, 3, "encoding"))
    encoded = backend.encode_long(wave, cancel=cancel)
    cancel.raise_if_cancelled()
    latents = torch.from_numpy(encoded.latents)
    times = backend.frame_centers(latents.shape[0])
    progress(Progress("analyse", 1, 3, "SAE features and probes"))
    h, f, probs = sae_and_probes(sae, probes, latents, cancel=cancel)
    progress(Progress("analyse", 2, 3, "measuring pitch, loudness and centroid"))
    measured, missing = measure_clip(spec, wave, backend.sample_rate, times, hop_length=backend.hop_length,
                                     device=str(backend.device), cancel=cancel, corpus_source=corpus_source, extra=extra)
    progress(Progress("analyse", 3, 3, "done"))
    return ClipAnalysis(wave=wave, sample_rate=backend.sample_rate, times=times, latents=encoded.latents,
                        h=h, f=f, measured=measured,
                        measured_classes=spec.classify(measured), probabilities=probs, source=source,
                        missing=missing, pending=() if extra else tuple(spec.extra))


def measure_clip_extra(spec: AttributeSpec, analysis: ClipAnalysis, *, hop_length: int,
                       corpus_source: Source | None = None, cancel: CancelToken | None = None
                       ) -> tuple[FrameAttributes, dict[str, np.ndarray]]:
    """The measurements of ``analysis`` (one analysed with ``extra=False``) completed with the
    spec's registered attributes, and all the classes: ``(measured, measured_classes)``.  The
    analysis is not changed (the caller swaps both in, in its own thread)."""
    cols = spec.measure_extra(analysis.wave, analysis.sample_rate, analysis.times, hop_length=hop_length,
                              source=corpus_source, cancel=cancel)
    measured = dataclasses.replace(analysis.measured, extra={**analysis.measured.extra, **cols})
    return measured, spec.classify(measured)


@dataclass
class StoredFrames:
    """One corpus source's latents as the workspace's frame shards hold them (no codec needed)."""

    source_id: str
    latents: np.ndarray       # [T, D] float32, in frame order
    times: np.ndarray         # [T] frame centres (s), as measured when the corpus was built


def stored_frames(workspace: Workspace, clip: str | Path | Source) -> StoredFrames | None:
    """The stored latents of ``clip`` when it is a source of ``workspace``'s corpus, else None.

    ``clip``: a ``Source`` (matched by id) or a file path (matched with the sources' paths).
    Reads the one shard that holds the source.
    """
    manifest = workspace.manifest()
    record = None
    if isinstance(clip, Source):
        record = manifest.sources.get(clip.source_id)
    else:
        try:
            wanted = Path(clip).expanduser().resolve()
        except (OSError, RuntimeError):
            return None
        for candidate in manifest.sources.values():
            if candidate.path and Path(candidate.path).expanduser().resolve() == wanted:
                record = candidate
                break
    if record is None or record.n_frames <= 0 or not 0 <= record.shard < len(manifest.shards):
        return None
    tensors, meta = read_shard(workspace.corpus_dir / manifest.shards[record.shard]["file"], workspace.latent_dim)
    try:
        index = list(meta["sources"]).index(record.source_id)
    except ValueError:
        return None
    rows = torch.nonzero(tensors["source"] == index).flatten()
    if rows.numel() != record.n_frames:
        raise WorkspaceError(f"{workspace.corpus_dir}: source {record.source_id!r} has {rows.numel()} frames in "
                             f"its shard, the corpus manifest says {record.n_frames} (was it edited?)")
    rows = rows[torch.argsort(tensors["frame"][rows])]
    return StoredFrames(record.source_id, tensors["latents"][rows].float().numpy(),
                        tensors["time"][rows].double().numpy())


def analyze_latents(sae: SparseAutoencoder, probes: ProbeSet, spec: AttributeSpec, wave: np.ndarray,
                    latents: np.ndarray, times: np.ndarray, *, sample_rate: int, hop_length: int,
                    source: str = "", progress: ProgressSink = null_progress,
                    cancel: CancelToken | None = None, corpus_source: Source | None = None,
                    extra: bool = True) -> ClipAnalysis:
    """``analyze_wave`` from latents already computed (a corpus source's stored frames): SAE +
    probes on ``latents``, attributes measured on ``wave`` at ``times``.  No codec needed."""
    cancel = cancel or CancelToken()
    progress(Progress("analyse", 1, 3, "SAE features and probes (stored latents)"))
    latents = np.ascontiguousarray(latents, dtype=np.float32)
    h, f, probs = sae_and_probes(sae, probes, torch.from_numpy(latents), cancel=cancel)
    progress(Progress("analyse", 2, 3, "measuring pitch, loudness and centroid"))
    measured, missing = measure_clip(spec, wave, sample_rate, times, hop_length=hop_length,
                                     device=str(sae.device), cancel=cancel, corpus_source=corpus_source, extra=extra)
    progress(Progress("analyse", 3, 3, "done"))
    return ClipAnalysis(wave=wave, sample_rate=sample_rate, times=np.asarray(times, dtype=np.float64),
                        latents=latents, h=h, f=f, measured=measured, measured_classes=spec.classify(measured),
                        probabilities=probs, source=source, missing=missing, pending=() if extra else tuple(spec.extra))


def analyze_measured(spec: AttributeSpec, geometry: BackendSpec, wave: np.ndarray, *, device: str = "cpu",
                     source: str = "", progress: ProgressSink = null_progress,
                     cancel: CancelToken | None = None, corpus_source: Source | None = None,
                    extra: bool = True) -> ClipAnalysis:
    """What can be shown of ``wave`` without the codec: the measured attributes at the codec's
    frame centres; no latents, no SAE features (``f`` ``[T, 0]``) and no probe distributions."""
    cancel = cancel or CancelToken()
    n = geometry.n_frames(int(wave.shape[1]))
    times = geometry.frame_centers(n)
    progress(Progress("analyse", 2, 3, "measuring pitch, loudness and centroid"))
    measured, missing = measure_clip(spec, wave, geometry.sample_rate, times, hop_length=geometry.hop_length,
                                     device=device, cancel=cancel, corpus_source=corpus_source, extra=extra)
    progress(Progress("analyse", 3, 3, "done"))
    empty = np.zeros((n, 0), np.float32)
    return ClipAnalysis(wave=wave, sample_rate=geometry.sample_rate, times=times, latents=empty, h=empty,
                        f=empty.copy(), measured=measured, measured_classes=spec.classify(measured),
                        probabilities={}, source=source, missing=missing, pending=() if extra else tuple(spec.extra))


@dataclass
class LoadedModels:
    """A workspace's backend, one SAE and its probes, ready for inference.

    ``backend`` is None when the codec could not be built (its weights missing...): the SAE
    and probes still work on stored latents, and ``missing`` says what is lost, why, and how
    to fix it.  ``geometry`` (rate, channels, hop) is known either way.
    """

    workspace: Workspace
    backend: LatentBackend | None
    sae: SparseAutoencoder
    probes: ProbeSet
    spec: AttributeSpec
    missing: list[MissingPart] = field(default_factory=list)

    @classmethod
    def load(cls, workspace: Workspace | str | Path, sae_name: str | None = None,
             device: str | None = "auto") -> "LoadedModels":
        from ..report import best_sae

        ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        name = sae_name or best_sae(ws, "pitch")
        missing: list[MissingPart] = []
        backend: LatentBackend | None
        try:
            backend = ws.backend(device)
            where = str(backend.device)
        except (BackendError, DependencyError) as exc:  # the codec's weights or package missing
            backend, where = None, str(pick_device(device))
            missing.append(MissingPart(CODEC_PART, str(exc)))
        sae = SparseAutoencoder.load(ws.sae_dir(name), device=where)
        probes = ProbeSet.load(ws.probe_dir(name), device=where)
        return cls(ws, backend, sae, probes, ws.attribute_spec, missing)

    # ---- geometry (from the backend, or its spec when it could not load) ------------------
    @property
    def geometry(self) -> BackendSpec:
        return backend_spec(self.workspace.backend_name)

    @property
    def sample_rate(self) -> int:
        return int(self.backend.sample_rate if self.backend is not None else self.geometry.sample_rate)

    @property
    def channels(self) -> int:
        return int(self.backend.channels if self.backend is not None else self.geometry.channels)

    @property
    def hop_length(self) -> int:
        return int(self.backend.hop_length if self.backend is not None else self.geometry.hop_length)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def device(self) -> torch.device:
        return self.backend.device if self.backend is not None else self.sae.device

    # ---- the codec ----------------------------------------------------------------------------
    def codec_unavailable(self, what: str = "this") -> str:
        """"" with the codec loaded; else one line: ``what`` needs the codec, why it is missing."""
        if self.backend is not None:
            return ""
        why = next((p.why for p in self.missing if p.what == CODEC_PART), "it could not be loaded")
        return f"{what} needs the {self.workspace.backend_name} codec's decoder, which is unavailable: {why}"

    def require_backend(self, what: str = "this") -> LatentBackend:
        """The backend, or ``BackendError`` saying what needs it and how to get it."""
        if self.backend is None:
            raise BackendError(self.codec_unavailable(what))
        return self.backend

    # ---- analysis -----------------------------------------------------------------------------
    def stored_frames(self, clip: str | Path | Source) -> StoredFrames | None:
        return stored_frames(self.workspace, clip)

    def analyze(self, wave: np.ndarray, *, stored: StoredFrames | None = None, **kw: Any) -> ClipAnalysis:
        """Analyse ``wave`` (at ``sample_rate``/``channels``): with the codec, encoded; without it,
        from ``stored`` latents (a corpus source) or measured only; ``missing`` lists the codec."""
        if self.backend is not None:
            return analyze_wave(self.backend, self.sae, self.probes, self.spec, wave, **kw)
        if stored is not None:
            analysis = analyze_latents(self.sae, self.probes, self.spec, wave, stored.latents, stored.times,
                                       sample_rate=self.sample_rate, hop_length=self.hop_length, **kw)
        else:
            analysis = analyze_measured(self.spec, self.geometry, wave, device=str(self.sae.device), **kw)
        analysis.missing = [*self.missing, *analysis.missing]
        return analysis


__all__ = ["CODEC_PART", "ClipAnalysis", "LoadedModels", "MissingPart", "StoredFrames", "analyze_latents",
           "analyze_measured", "analyze_wave", "measure_clip", "measure_clip_extra", "probe_distributions",
           "sae_and_probes",
           "stored_frames", "ATTRIBUTES"]
