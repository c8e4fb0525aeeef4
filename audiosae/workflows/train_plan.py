"""The time estimate before training, shared by ``audiosae train`` and the wizard.

Two halves: a calibration on this machine (``calibrate``: encoding and labelling of 2 s of the
chosen audio, a few SAE steps of each width and architecture, a probe epoch; all on random or
sampled data, nothing written) and its extrapolation to the corpus (``estimate_run``), whose SAE
part is ``training.estimate_train_seconds``: the very budget ``audiosae train`` prints before it
starts (``describe_train_estimate``).  Plus the wording both show (``format_duration``, ...).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..attributes import ATTRIBUTES, AttributeSpec
from .. import defaults as D
from ..audio import AudioInfo
from ..codecs import backend_spec
from ..devices import pick_device
from ..errors import AudioInputError, AudioSAEError, JobCancelled
from ..frames import ArrayFrames
from ..jobs import CancelToken, Progress, ProgressSink, null_progress
from .audio_plan import VAL_FRACTION, AudioChoice, read_excerpt
from .train import uses_k

CALIBRATION_AUDIO_SECONDS = 2.0
CALIBRATION_BATCH = 256
CALIBRATION_STEPS = 4
# Probes train up to 30 epochs with early stopping (patience 3): 6-15 in practice.
PROBE_EPOCHS_EXPECTED = 10
# A probe epoch on SAE features adds an SAE forward pass and wider heads: about half the
# cost of an SAE training step per frame, on top of the raw-latent probe's cost.
PROBE_SAE_STEP_FRACTION = 0.5


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
    from .train import default_build_attributes

    # the attributes a build labels by default (train.default_build_attributes), as the build will
    spec = AttributeSpec(crepe_model=crepe_model).with_attributes(default_build_attributes())
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
            wave = read_excerpt(source, rate, channels, CALIBRATION_AUDIO_SECONDS)
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


def time_sae_steps(d_in: int, widths: Sequence[int], device: str, *, architecture: str = D.DEFAULT_ARCHITECTURE,
                   rmsnorm: bool | None = None, k: int | None = None, batch: int = CALIBRATION_BATCH,
                   steps: int = CALIBRATION_STEPS, cancel: CancelToken | None = None) -> dict[int, float]:
    """Seconds per frame of one SAE training step at each width, on random latents, for one
    SAE of ``architecture`` (``k``: the TopK family's, default the first of the default grid).

    Uses ``train_sae_grid`` itself on an in-memory store; the first step (allocation,
    warm-up) is excluded by timing between the first and the last progress report.
    """
    from ..sae import SAEConfig, train_sae_grid
    from ..sae.config import parse_architecture

    arch, norm = parse_architecture(architecture)
    norm = norm if rmsnorm is None else bool(rmsnorm)

    cancel = cancel or CancelToken()
    gen = np.random.default_rng(0)
    out: dict[int, float] = {}
    for width in widths:
        cancel.raise_if_cancelled()
        rows = batch * (steps + 1)
        latents = gen.standard_normal((rows, d_in)).astype(np.float32)
        store = ArrayFrames({"train": {"latents": latents}, "val": {"latents": latents[:batch]}})
        topk = arch in ("topk", "batchtopk")
        cfg = SAEConfig.with_expansion(d_in, int(width), 0.0 if topk else 0.02, name=f"calibration-x{width}",
                                       architecture=arch, rmsnorm=norm,
                                       k=min(int(k or D.DEFAULT_KS[0]), d_in * int(width)) if topk else None)
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
    from ..probes import train_probes

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
              architecture: str = D.DEFAULT_ARCHITECTURE, rmsnorm: bool | None = None, k: int | None = None,
              progress: ProgressSink = null_progress, cancel: CancelToken | None = None) -> Calibration:
    """The estimate's job: time extraction (unless given), an SAE step of each width not in
    ``extraction.sae_per_frame`` (one SAE of ``architecture``) and a probe epoch (unless given)."""
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
        cal.sae_per_frame.update(time_sae_steps(cal.d_in, [width], str(pick_device(device)),
                                                architecture=architecture, rmsnorm=rmsnorm, k=k, cancel=cancel))
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


def estimate_run(cal: Calibration, corpus_seconds: float, frame_rate: float, settings: Any, *,
                 extraction_needed: bool = True) -> Estimate:
    """Extrapolate the calibration to the corpus for the grid of ``settings`` (``TrainSettings``).

    Extraction scales with the corpus' duration; SAE training is
    ``training.estimate_train_seconds`` (the budget ``audiosae train`` prints: ``epochs`` x training
    frames, a ``frames`` budget, or the default budget with the plateau stop, an upper bound)
    at the calibrated seconds per frame of the whole grid; probes scale with frames x configs.
    """
    from ..training import estimate_train_seconds

    frames = corpus_seconds * frame_rate
    train_frames = frames * (1.0 - VAL_FRACTION)
    notes = [cal.note] if cal.note and extraction_needed else []
    extraction = 0.0
    if extraction_needed:
        if cal.extraction_per_second is None:
            notes.append("extraction time unknown")
        else:
            extraction = cal.extraction_per_second * corpus_seconds
    per_config = len(settings.ks) if uses_k(settings.architecture) else len(settings.l1s)
    per_frame = sum(cal.sae_per_frame.get(int(w), 0.0) * per_config for w in settings.expansions)
    n_configs = len(settings.expansions) * per_config
    sae = 0.0
    if n_configs and cal.d_in and train_frames >= 1:
        sae = estimate_train_seconds(settings, cal.d_in, int(train_frames), seconds_per_frame=per_frame)["seconds"]
    probe_frame = (n_configs + 1) * (cal.probe_per_frame or 0.0) * probe_class_scale(settings) \
        + PROBE_SAE_STEP_FRACTION * per_frame
    probes = PROBE_EPOCHS_EXPECTED * frames * probe_frame
    return Estimate(extraction, sae, probes, notes)


def probe_class_scale(settings: Any) -> float:
    """How much longer the probes of ``settings`` take than the paper's three, which the
    calibration times: a probe epoch's cost grows with the classes it scores."""
    names = tuple(getattr(settings, "probe_attributes", None) or ())
    extra = [n for n in dict.fromkeys(names) if n not in ATTRIBUTES]
    if not extra:
        return 1.0
    spec = AttributeSpec().with_attributes(extra)
    paper = sum(spec.n_classes(a) for a in ATTRIBUTES)
    return (paper + sum(spec.n_classes(a) for a in extra)) / paper


def describe_estimate(est: Estimate) -> str:
    """``"about 12 min"`` (or ``"under a minute (about 20 s)"``)."""
    total = est.total_s
    if total < 45:
        return f"under a minute (about {max(1, round(total))} s)"
    return f"about {max(1, round(total / 60))} min"


def describe_train_estimate(ws: Any, settings: Any, device: str) -> str:
    """The line ``audiosae train`` prints before it starts: the SAE budget and its time bound."""
    from ..training import estimate_train_seconds

    store = ws.frame_store()
    n_train = int(store.n_frames("train"))
    est = estimate_train_seconds(settings, store.d_in, n_train, device=device)
    how = "stops earlier when the held-out loss stops improving" if est["stops_on_plateau"] else "fixed length"
    return (f"SAE grid: {len(settings.sae_configs(store.d_in))} SAEs, up to {est['steps']} steps of "
            f"{settings.batch_size} frames ({est['epochs_equivalent']:.1f} passes over {n_train} training frames), "
            f"about {est['seconds'] / 60:.1f} min at most on this machine ({how}); then the probes"
            + describe_probe_settings(settings, ws))


def describe_probe_settings(settings: Any, ws: Any) -> str:
    """`` (cross-validated by source, 5 folds; balanced class weights)`` for the estimate line."""
    try:
        n_sources = len(ws.frame_store().source_table())
    except (AttributeError, AudioSAEError):
        n_sources = 0
    if settings.probe_folds >= 2 and 2 <= n_sources < settings.probe_cv_max_sources:
        how = f"cross-validated by source, {min(settings.probe_folds, n_sources)} folds"
    elif settings.probe_folds >= 2:
        how = f"on the val split ({n_sources} sources: no cross-validation from {settings.probe_cv_max_sources})"
    else:
        how = "on the val split (cross-validation off)"
    weights = {"balanced": "balanced class weights",
               "auto": "balanced class weights beyond the paper's three"}.get(settings.probe_class_weight,
                                                                          "no class weights")
    return f" ({how}; {weights})"
