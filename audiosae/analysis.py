"""Everything the explorer shows about one clip, computed headlessly.

``ClipAnalysis`` holds, for a clip at the backend's rate: the latents, the SAE's ``h`` and
``f`` per frame, the measured attributes (CREPE / RMS / centroid) and the probes' class
probabilities per attribute.  The studio computes it in a worker thread; the DiffRhythm
tracer reuses ``probe_distributions`` on every sampling step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .attributes import ATTRIBUTES, AttributeSpec, FrameAttributes
from .codecs.base import LatentBackend
from .errors import DependencyError
from .jobs import CancelToken, Progress, ProgressSink, null_progress
from .probes import ProbeSet
from .sae import SparseAutoencoder
from .workspace import Workspace

ANALYSIS_CHUNK_FRAMES = 4096     # frames per SAE + probe pass (a cancel is checked between passes)
ANALYSIS_CHUNK_ELEMENTS = 1 << 23  # ...and at most this many features in one (~0.1 s on a CPU core)


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

    @property
    def n_frames(self) -> int:
        return int(self.latents.shape[0])

    @property
    def seconds(self) -> float:
        return self.wave.shape[1] / self.sample_rate

    def predicted(self, attribute: str) -> np.ndarray:
        return self.probabilities[attribute].argmax(axis=1)

    def frame_at(self, seconds: float) -> int:
        """Index of the frame whose centre is nearest to ``seconds``."""
        if not self.n_frames:
            return 0
        return int(np.argmin(np.abs(self.times - seconds)))


def probe_distributions(probes: ProbeSet, f: torch.Tensor) -> dict[str, np.ndarray]:
    """Class distributions ``[T, K]`` per attribute for features ``f`` ``[T, F]``."""
    with torch.no_grad():
        return {a: probes.predict_proba(f, a).cpu().numpy() for a in probes.attributes}


def analyze_wave(backend: LatentBackend, sae: SparseAutoencoder, probes: ProbeSet, spec: AttributeSpec,
                 wave: np.ndarray, *, source: str = "", progress: ProgressSink = null_progress,
                 cancel: CancelToken | None = None) -> ClipAnalysis:
    """Encode ``wave`` (at the backend's rate/channels), run SAE + probes, measure attributes."""
    cancel = cancel or CancelToken()
    progress(Progress("analyse", 0, 3, "encoding"))
    encoded = backend.encode_long(wave, cancel=cancel)
    cancel.raise_if_cancelled()
    latents = torch.from_numpy(encoded.latents)
    times = backend.frame_centers(latents.shape[0])
    progress(Progress("analyse", 1, 3, "SAE features and probes"))
    # In chunks of frames, so a long clip (45k frames x 2048 features: 370 MB per array) can
    # be cancelled between them, written into arrays allocated once (no concatenation pass);
    # rows are independent, so the result is that of one pass.
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
    progress(Progress("analyse", 2, 3, "measuring pitch, loudness and centroid"))
    missing: list[MissingPart] = []
    measure = dict(hop_length=backend.hop_length, device=str(backend.device), cancel=cancel)
    try:
        measured = spec.measure(wave, backend.sample_rate, times, **measure)
    except DependencyError as exc:  # CREPE's weights missing: show everything else
        missing.append(MissingPart("measured pitch (CREPE)", str(exc)))
        measured = spec.measure(wave, backend.sample_rate, times, pitch=False, **measure)
    progress(Progress("analyse", 3, 3, "done"))
    return ClipAnalysis(wave=wave, sample_rate=backend.sample_rate, times=times, latents=encoded.latents,
                        h=h, f=f, measured=measured,
                        measured_classes=spec.classify(measured), probabilities=probs, source=source,
                        missing=missing)


@dataclass
class LoadedModels:
    """A workspace's backend, one SAE and its probes, ready for inference."""

    workspace: Workspace
    backend: LatentBackend
    sae: SparseAutoencoder
    probes: ProbeSet
    spec: AttributeSpec

    @classmethod
    def load(cls, workspace: Workspace | str | Path, sae_name: str | None = None,
             device: str | None = "auto") -> "LoadedModels":
        from .report import best_sae

        ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        name = sae_name or best_sae(ws, "pitch")
        backend = ws.backend(device)
        sae = SparseAutoencoder.load(ws.sae_dir(name), device=str(backend.device))
        probes = ProbeSet.load(ws.probe_dir(name), device=str(backend.device))
        return cls(ws, backend, sae, probes, ws.attribute_spec)

    def analyze(self, wave: np.ndarray, **kw: Any) -> ClipAnalysis:
        return analyze_wave(self.backend, self.sae, self.probes, self.spec, wave, **kw)


__all__ = ["ClipAnalysis", "LoadedModels", "MissingPart", "analyze_wave", "probe_distributions", "ATTRIBUTES"]
