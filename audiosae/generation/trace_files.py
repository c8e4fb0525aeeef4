"""A traced generation in memory (``Trace``) and on disk (``save_trace`` / ``load_trace``).

Folder layout: ``trace.json`` (facts and curves), ``trace.safetensors`` (arrays),
``final.wav``; written into a temporary sibling folder and renamed into place, the JSON and
tensor files carrying the same ``trace_id``.  See ``audiosae.generation.trace``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import AudioSAEError, WorkspaceError
from ..storage import (SCHEMA_VERSION, atomic_write_json, check_schema, fsync_dir, load_tensors,
                       load_tensors_metadata, read_json_object, require_int, save_tensors)
from .conditioning import LATENT_SAMPLE_RATE
from .trace_metric import (AUDIO_FILE, FORMS, SOURCES, TENSORS_FILE, TRACE_FILE, TRACE_KIND, _converged, _metrics,
                           convergence_step)


# ---- the trace -----------------------------------------------------------------------------------------


@dataclass
class FeatureSummary:
    """SAE features per state.  ``l0`` ``[S, T]`` int16 active features per frame; ``mean``
    ``[S, F]`` float32 mean ``f`` per feature; ``top_index`` ``[k]`` the features whose per-state
    mean peaks highest (descending); ``top`` ``[S, T, k]`` float16 their ``f``; ``full``
    ``[S, T, F]`` float16 or None."""

    l0: np.ndarray
    mean: np.ndarray
    top_index: np.ndarray
    top: np.ndarray
    full: np.ndarray | None = None


@dataclass
class TraceStep:
    """What a live view gets after each state: probe distributions per source and attribute
    (``[T, K]`` float32) and the mean active-feature count per source."""

    index: int
    steps: int
    t: float
    distributions: dict[str, dict[str, np.ndarray]]
    mean_l0: dict[str, float]


@dataclass
class Trace:
    """A traced generation.  ``meta`` holds the JSON facts (prompt, seed, models, timings ...);
    ``progress[source][form][attr]`` the ``s_t`` curves, ``convergence[source][form][attr]``
    their convergence steps, ``excluded_frames[source][attr]`` the frames the endpoint form
    left out."""

    meta: dict[str, Any]
    t_grid: np.ndarray                                    # [S] float32
    distributions: dict[str, dict[str, np.ndarray]]        # source -> attr -> [S, T, K] float16
    features: dict[str, FeatureSummary]                    # source -> summary
    progress: dict[str, dict[str, dict[str, list[float]]]]
    convergence: dict[str, dict[str, dict[str, int]]]
    excluded_frames: dict[str, dict[str, int]]
    final_latent: np.ndarray                               # [T, 64] float32
    lyrics_tokens: np.ndarray                              # [T] int32
    style: np.ndarray                                      # [1, 512] float32
    negative_style: np.ndarray                             # [1, 512] float32
    latents: np.ndarray | None = None                      # [S, T, 64] float16
    x1_predictions: np.ndarray | None = None               # [S, T, 64] float16
    audio: np.ndarray | None = None                        # [2, N] float32 at sample_rate
    sample_rate: int = LATENT_SAMPLE_RATE
    folder: Path | None = field(default=None, compare=False)

    @property
    def steps(self) -> int:
        return int(self.t_grid.shape[0])

    @property
    def frames(self) -> int:
        return int(self.final_latent.shape[0])

    @property
    def attributes(self) -> list[str]:
        return list(self.meta["attributes"])

    def s_t(self, attribute: str, source: str = "x_t", form: str = "endpoint") -> np.ndarray:
        """The ``s_t`` curve ``[S]`` of one attribute."""
        try:
            return np.asarray(self.progress[source][form][attribute], dtype=np.float64)
        except KeyError:
            raise AudioSAEError(f"no {form} curve for {attribute!r} from {source!r} in this trace") from None

    def convergence_step(self, attribute: str, source: str = "x_t", form: str = "endpoint",
                         threshold: float | None = None) -> int:
        """Stored convergence step, or recomputed for another ``threshold``."""
        if threshold is None:
            return int(self.convergence[source][form][attribute])
        return convergence_step(self.s_t(attribute, source, form), threshold)

    def recompute_metrics(self, threshold: float | None = None, eps: float | None = None) -> None:
        """Recompute curves and convergence steps from the stored distributions."""
        threshold = float(self.meta["threshold"] if threshold is None else threshold)
        eps = float(self.meta["eps"] if eps is None else eps)
        self.progress, self.convergence, self.excluded_frames = _metrics(
            {s: {a: d.astype(np.float32) for a, d in per.items()} for s, per in self.distributions.items()},
            threshold, eps)
        self.meta["threshold"], self.meta["eps"] = threshold, eps


# ---- files ---------------------------------------------------------------------------------------------


def is_trace_folder(folder: str | Path) -> bool:
    return (Path(folder) / TRACE_FILE).is_file()


def _trace_json(trace: Trace) -> dict[str, Any]:
    data = dict(trace.meta)
    data.update(progress=trace.progress, convergence=trace.convergence, excluded_frames=trace.excluded_frames,
                converged={s: {f: {a: _converged(v, trace.steps) for a, v in per.items()}
                               for f, per in forms.items()} for s, forms in trace.convergence.items()},
                t_grid=[float(v) for v in trace.t_grid],
                files={"tensors": TENSORS_FILE, "audio": AUDIO_FILE if trace.audio is not None else None},
                has_latents=trace.latents is not None)
    return data


def _tensors(trace: Trace) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"t_grid": trace.t_grid.astype(np.float32),
                                  "final_latent": trace.final_latent.astype(np.float32),
                                  "lyrics_tokens": trace.lyrics_tokens.astype(np.int32),
                                  "style": trace.style.astype(np.float32),
                                  "negative_style": trace.negative_style.astype(np.float32)}
    if trace.latents is not None:
        out["latents"] = trace.latents.astype(np.float16, copy=False)
    if trace.x1_predictions is not None:
        out["x1_predictions"] = trace.x1_predictions.astype(np.float16, copy=False)
    for source, per in trace.distributions.items():
        for attr, d in per.items():
            out[f"dist.{source}.{attr}"] = d.astype(np.float16, copy=False)
    for source, summary in trace.features.items():
        out[f"features.{source}.l0"] = summary.l0.astype(np.int16)
        out[f"features.{source}.mean"] = summary.mean.astype(np.float32)
        out[f"features.{source}.top_index"] = summary.top_index.astype(np.int64)
        out[f"features.{source}.top"] = summary.top.astype(np.float16)
        if summary.full is not None:
            out[f"features.{source}.full"] = summary.full.astype(np.float16)
    return out


def save_trace(trace: Trace, folder: str | Path) -> Path:
    """Write ``trace`` to ``folder`` (created or replaced as a whole; never half-written).

    Refuses to replace a folder that exists, is not empty and is not a trace.
    """
    from ..audio import save_audio

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not is_trace_folder(folder))):
        raise WorkspaceError(f"{folder}: exists and is not a trace folder; choose another --out")
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(folder)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_tensors(tmp / TENSORS_FILE, _tensors(trace),
                     {"schema_version": SCHEMA_VERSION, "kind": TRACE_KIND, "trace_id": trace.meta["trace_id"]})
        if trace.audio is not None:
            save_audio(tmp / AUDIO_FILE, trace.audio, trace.sample_rate)
        atomic_write_json(tmp / TRACE_FILE, _trace_json(trace))  # last: it names what the folder holds
        fsync_dir(tmp)
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        fsync_dir(folder.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    trace.folder = folder
    return folder


def _remove_stale_siblings(folder: Path) -> None:
    """Delete what a ``save_trace`` killed mid-way (``kill -9``, power loss) left beside ``folder``:
    its half-written ``.NAME.tmp-*`` folder and a ``.NAME.old-*`` copy that was being replaced."""
    for pattern in (f".{folder.name}.tmp-*", f".{folder.name}.old-*"):
        for stale in folder.parent.glob(pattern):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def _need(data: Mapping[str, Any], key: str, path: Path) -> Any:
    if key not in data:
        raise WorkspaceError(f"{path}: trace file lacks {key!r}; was it edited by hand?")
    return data[key]


def load_trace(folder: str | Path, *, load_audio: bool = True) -> Trace:
    """Read a folder written by ``save_trace``; anything missing, corrupt, mismatched or newer -> ``WorkspaceError``."""
    folder = Path(folder)
    path = folder / TRACE_FILE
    if not folder.is_dir():
        raise WorkspaceError(f"{folder}: trace folder not found")
    data = read_json_object(path, kind="trace file", document_kind=TRACE_KIND)
    steps = require_int(_need(data, "steps", path), "steps", path, "trace file", minimum=1)
    frames = require_int(_need(data, "frames", path), "frames", path, "trace file", minimum=1)
    attributes = _need(data, "attributes", path)
    if not isinstance(attributes, list) or not all(isinstance(a, str) and a for a in attributes):
        raise WorkspaceError(f"{path}: trace file 'attributes' must be a list of names, got {attributes!r:.60}")
    tensor_path = folder / TENSORS_FILE
    header = load_tensors_metadata(tensor_path, kind="trace tensors")
    check_schema(header, tensor_path, kind="trace tensors")
    if header.get("trace_id") != data.get("trace_id"):
        raise WorkspaceError(f"{folder}: {TENSORS_FILE} belongs to another trace than {TRACE_FILE} "
                             "(a file was replaced); re-run the trace")
    d_sae = require_int(_need(data, "d_sae", path), "d_sae", path, "trace file", minimum=1)
    expect: dict[str, tuple[int | None, ...]] = {
        "t_grid": (steps,), "final_latent": (frames, 64), "lyrics_tokens": (frames,), "style": (1, 512),
        "negative_style": (1, 512)}
    for source in SOURCES:
        for attr in attributes:
            expect[f"dist.{source}.{attr}"] = (steps, frames, None)
        expect[f"features.{source}.l0"] = (steps, frames)
        expect[f"features.{source}.mean"] = (steps, d_sae)
        expect[f"features.{source}.top_index"] = (None,)
        expect[f"features.{source}.top"] = (steps, frames, None)
    if data.get("has_latents"):
        expect["latents"] = expect["x1_predictions"] = (steps, frames, 64)
    tensors = {k: v.numpy() for k, v in load_tensors(tensor_path, kind="trace tensors", expect=expect).items()}
    distributions = {s: {a: tensors[f"dist.{s}.{a}"] for a in attributes} for s in SOURCES}
    features = {s: FeatureSummary(tensors[f"features.{s}.l0"], tensors[f"features.{s}.mean"],
                                  tensors[f"features.{s}.top_index"], tensors[f"features.{s}.top"],
                                  tensors.get(f"features.{s}.full")) for s in SOURCES}
    try:
        progress = {s: {f: {a: [float(v) for v in data["progress"][s][f][a]] for a in attributes} for f in FORMS}
                    for s in SOURCES}
        convergence = {s: {f: {a: int(data["convergence"][s][f][a]) for a in attributes} for f in FORMS}
                       for s in SOURCES}
        excluded = {s: {a: int(data["excluded_frames"][s][a]) for a in attributes} for s in SOURCES}
    except (KeyError, TypeError, ValueError) as exc:
        raise WorkspaceError(f"{path}: trace curves are incomplete ({type(exc).__name__}: {exc})") from None
    for s in SOURCES:
        for a in attributes:
            if len(progress[s]["endpoint"][a]) != steps or len(progress[s]["paper"][a]) != steps:
                raise WorkspaceError(f"{path}: the {a} curve of {s} does not have {steps} values")
    audio, rate = None, LATENT_SAMPLE_RATE
    audio_name = (data.get("files") or {}).get("audio")
    if audio_name and load_audio:
        import soundfile as sf

        try:
            wave, rate = sf.read(str(folder / audio_name), dtype="float32", always_2d=True)
        except Exception as exc:
            raise WorkspaceError(f"{folder / audio_name}: cannot read the final audio ({exc})") from None
        audio = np.ascontiguousarray(wave.T)
    meta = {k: v for k, v in data.items() if k not in ("progress", "convergence", "excluded_frames", "converged",
                                                       "t_grid", "files", "has_latents")}
    return Trace(meta=meta, t_grid=tensors["t_grid"], distributions=distributions, features=features,
                 progress=progress, convergence=convergence, excluded_frames=excluded,
                 final_latent=tensors["final_latent"], lyrics_tokens=tensors["lyrics_tokens"],
                 style=tensors["style"], negative_style=tensors["negative_style"], latents=tensors.get("latents"),
                 x1_predictions=tensors.get("x1_predictions"), audio=audio, sample_rate=int(rate), folder=folder)


def decode_state(trace: Trace, backend: Any, index: int, which: str = "x_t") -> np.ndarray:
    """Decode one state's ``X_t`` (``which="x_t"``) or ``x̂1`` (``"x1"``) with a latent backend -> ``[C, N]``."""
    if which not in SOURCES:
        raise AudioSAEError(f"which must be one of {', '.join(SOURCES)}, got {which!r}")
    if not -trace.steps <= index < trace.steps:
        raise AudioSAEError(f"state {index} out of range (0..{trace.steps - 1})")
    stack = trace.latents if which == "x_t" else trace.x1_predictions
    if stack is None:
        if index in (-1, trace.steps - 1):
            return backend.decode(trace.final_latent)
        raise WorkspaceError("this trace was saved without per-state latents; re-run without --no-latents")
    return backend.decode(stack[index].astype(np.float32))
