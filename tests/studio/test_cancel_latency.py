"""Every long job stops within 1 s of a cancel request, and leaves what it wrote consistent.

Each test starts a job in a thread, waits until it is mid-work (N progress events of the
stage under test, sometimes plus a short delay so the request lands inside a chunk), asks it
to cancel from the test thread, and measures ``time.monotonic()`` from the request to the
``JobCancelled`` raised in the job thread.  The work between two cancel checks is designed
to be ~0.1-0.3 s on one CPU core (figures in each job's module), so 1 s holds on a loaded
2-core machine; the bound includes what a job does on its way out (a training checkpoint).

Set ``AUDIOSAE_CANCEL_RUNS=N`` to cancel every job N times, and ``AUDIOSAE_CANCEL_REPORT=FILE``
to write the measured latencies (per job: all runs) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile as sf
import torch

from audiosae.errors import JobCancelled
from audiosae.frames import ArrayFrames
from audiosae.jobs import CancelToken, Progress
from audiosae.sae import SAEConfig, SparseAutoencoder
from audiosae.storage import SCHEMA_VERSION, save_tensors
from audiosae.workspace import Manifest, SourceRecord, Workspace

from tests.support.common import harmonic_tone
from tests.support.crash_helpers import assert_every_file_loads, assert_no_leftovers

LIMIT_S = 1.0
RUNS = max(1, int(os.environ.get("AUDIOSAE_CANCEL_RUNS", "1")))
LATENCIES: dict[str, list[float]] = {}


@pytest.fixture(scope="module", autouse=True)
def latency_report():
    yield
    out = os.environ.get("AUDIOSAE_CANCEL_REPORT")
    if out:
        summary = {name: {"runs": len(v), "median_s": statistics.median(v), "max_s": max(v), "all_s": v}
                   for name, v in LATENCIES.items()}
        Path(out).write_text(json.dumps(summary, indent=2))


def cancel_mid_job(name: str, job: Callable[..., Any], *, after: int = 2, stage: str | None = None,
                   delay: float = 0.0, timeout: float = 300.0) -> float:
    """Run ``job(progress=, cancel=)`` in a thread, cancel it after ``after`` progress events (of
    ``stage`` when given) plus ``delay`` seconds, and return the latency from the request to the
    ``JobCancelled`` (asserting it came, within ``LIMIT_S``)."""
    token = CancelToken()
    seen: list[Progress] = []
    ready, ended = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def sink(event: Progress) -> None:
        if stage is None or event.stage == stage:
            seen.append(event)
            if len(seen) >= after:
                ready.set()

    def work() -> None:
        try:
            outcome["result"] = job(progress=sink, cancel=token)
        except JobCancelled:
            outcome["cancelled_at"] = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc
        finally:
            ended.set()

    thread = threading.Thread(target=work, name=f"job:{name}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.005):
        if ended.is_set() or time.monotonic() > deadline:
            break
    try:
        assert ready.is_set(), f"{name}: the job ended or stalled before {after} progress event(s): {outcome}"
        if delay:
            time.sleep(delay)
        assert not ended.is_set(), f"{name}: the job finished before the cancel; make it longer"
        requested = time.monotonic()
        token.cancel()
        thread.join(timeout)
    finally:
        token.cancel()
        thread.join(timeout)
    assert "cancelled_at" in outcome, f"{name}: no JobCancelled: {outcome}"
    latency = outcome["cancelled_at"] - requested
    LATENCIES.setdefault(name, []).append(latency)
    assert latency < LIMIT_S, f"{name}: cancelled {latency:.3f} s after the request"
    return latency


# ---- inputs ----------------------------------------------------------------------------------------
def sparse_frames(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(4 * d, d, generator=g)
    codes = (torch.rand(n, 4 * d, generator=g) < 0.02) * torch.rand(n, 4 * d, generator=g)
    return 2.0 + 5.0 * (codes @ atoms + 0.1 * torch.randn(n, d, generator=g))


def labelled_store(n_train: int, n_val: int, d: int = 128) -> ArrayFrames:
    x = sparse_frames(n_train + n_val, d)
    g = torch.Generator().manual_seed(1)
    labels = {"pitch": torch.randint(0, 66, (n_train + n_val,), generator=g),
              "loudness": torch.randint(0, 20, (n_train + n_val,), generator=g),
              "timbre": torch.randint(0, 20, (n_train + n_val,), generator=g)}
    cols = {"latents": x, **labels}
    return ArrayFrames({"train": {k: v[:n_train] for k, v in cols.items()},
                        "val": {k: v[n_train:] for k, v in cols.items()}})


def synthetic_workspace(root: Path, n_frames: int, d: int = 128, shard_frames: int = 8192) -> Workspace:
    """A mel workspace whose corpus is random frames (written as ``build`` writes shards)."""
    ws = Workspace.create(root, "mel")
    manifest = Manifest(complete=True)
    x = sparse_frames(n_frames, d).numpy()
    rng = np.random.default_rng(0)
    per_source = 2048
    for index, start in enumerate(range(0, n_frames, shard_frames)):
        rows = min(shard_frames, n_frames - start)
        ids = [f"synthetic/{(start + a) // per_source:04d}" for a in range(0, rows, per_source)]
        source = np.arange(rows) // per_source
        name = f"shard-{index:05d}.safetensors"
        tensors = {"latents": x[start:start + rows].astype(np.float16), "source": source.astype(np.int32),
                   "frame": (np.arange(rows) % per_source).astype(np.int32),
                   "time": ((np.arange(rows) % per_source + 0.5) / 75).astype(np.float32),
                   "gt_midi": np.full(rows, np.nan, np.float32),
                   "midi": rng.uniform(40, 90, rows).astype(np.float32),
                   "periodicity": rng.uniform(0.6, 1, rows).astype(np.float32),
                   "loudness_db": rng.uniform(-50, -5, rows).astype(np.float32),
                   "centroid_hz": rng.uniform(300, 4000, rows).astype(np.float32)}
        save_tensors(ws.corpus_dir / name, tensors,
                     {"schema_version": SCHEMA_VERSION, "sources": ids, "backend": "mel", "frame_rate": 75.0})
        splits = ["val" if int(sid[-4:]) % 5 == 4 else "train" for sid in ids]
        n_val = int(sum(np.count_nonzero(source == i) for i, s in enumerate(splits) if s == "val"))
        manifest.shards.append({"file": name, "n_frames": rows, "n_train": rows - n_val, "n_val": n_val})
        for i, (sid, split) in enumerate(zip(ids, splits)):
            manifest.sources[sid] = SourceRecord(source_id=sid, label=sid, path=None, split=split, shard=index,
                                                 n_frames=int(np.count_nonzero(source == i)),
                                                 seconds=float(np.count_nonzero(source == i)) / 75)
    ws.write_manifest(manifest)
    return ws


# ---- build -----------------------------------------------------------------------------------------
def test_build_cancels_between_and_within_sources(tmp_path):
    from audiosae.corpus import builtin_sources
    from audiosae.workspace import build_corpus

    for run in range(RUNS):
        ws = Workspace.create(tmp_path / f"ws{run}", "mel")
        sources = builtin_sources("tones", minutes=2.0)
        cancel_mid_job("build (mel, built-in tones)",
                       lambda **kw: build_corpus(ws, sources, device="cpu", shard_frames=600, **kw),
                       after=4, stage="build", delay=0.05)
        assert not ws.manifest().complete
        assert_no_leftovers(ws.root)
        assert_every_file_loads(ws.root)


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory) -> Path:
    """Three minutes of a voiced tone (every frame goes through CREPE)."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(str(path), harmonic_tone(57, 180.0, 24000), 24000, subtype="PCM_16")
    return path


@pytest.mark.parametrize("crepe_model", ["tiny", "full"])
def test_build_cancels_during_crepe_labelling_of_a_long_file(tmp_path, long_recording, crepe_model):
    """One 256-frame CREPE batch of the full model takes ~7 s on a core: the build must not wait
    for it (CREPE runs in small passes on a CPU, see attributes.CPU_CREPE_CALL_FRAMES)."""
    from audiosae.corpus import user_sources
    from audiosae.workspace import build_corpus

    sources, problems = user_sources([long_recording])
    assert not problems
    for run in range(RUNS):
        ws = Workspace.create(tmp_path / f"ws{run}", "mel")

        def labelling(**kw):
            progress = kw.pop("progress")
            return build_corpus(ws, sources, device="cpu", crepe_model=crepe_model,
                                progress=lambda e: progress(e) if "labelling" in e.message else None, **kw)

        cancel_mid_job(f"build: CREPE {crepe_model} on a 3-min file", labelling, after=1, delay=0.3)
        assert not ws.manifest().shards
        assert_no_leftovers(ws.root)


# ---- training ---------------------------------------------------------------------------------------
def test_train_sae_grid_cancels_mid_epoch_and_checkpoints(tmp_path):
    """The default grid's widths on 128-d frames, batch 4096: ~1 s a step on one core, several
    seconds an epoch; a cancel lands mid-step (between row chunks) and saves a checkpoint."""
    from audiosae.sae import CHECKPOINT_FILE, grid_configs, train_sae_grid
    from audiosae.storage import load_tensors, load_tensors_metadata

    store = labelled_store(24576, 2048)
    configs = grid_configs(128, [4, 8, 16], [0.005, 0.02, 0.05])
    for run in range(RUNS):
        ckpt = tmp_path / f"ckpt{run}"
        cancel_mid_job("train_sae_grid (9 SAEs, batch 4096)",
                       lambda **kw: train_sae_grid(store, configs, epochs=2, batch_size=4096, checkpoint_dir=ckpt,
                                                   checkpoint_every_s=1e9, **kw),
                       after=2, stage="train SAEs", delay=0.2)
        meta = load_tensors_metadata(ckpt / CHECKPOINT_FILE)
        assert meta["state"]["step"] >= 1 and meta["state"]["epoch"] == 0
        load_tensors(ckpt / CHECKPOINT_FILE)
        assert_no_leftovers(ckpt)


def test_train_workspace_cancels_in_every_stage(tmp_path):
    """``audiosae train``'s job on a 40k-frame corpus: cancelled while training the grid, while
    evaluating the SAEs and while training probes; each stop leaves a loadable workspace."""
    from audiosae.training import TrainSettings, train_workspace

    settings = TrainSettings(expansions=[8, 16], l1s=[0.02], epochs=1, batch_size=4096)
    for run in range(RUNS):
        ws = synthetic_workspace(tmp_path / f"ws{run}", 24576)
        for stage, after in (("train SAEs", 2), ("evaluate SAEs", 1), ("train probes", 2)):
            cancel_mid_job(f"train_workspace: {stage}",
                           lambda **kw: train_workspace(ws, settings, checkpoint_every_s=1e9, **kw),
                           after=after, stage=stage, delay=0.05)
            assert_no_leftovers(ws.root)
            assert_every_file_loads(ws.root)
        for name in ws.sae_names():  # evaluation saved none or whole SAEs, never half of one
            SparseAutoencoder.load(ws.sae_dir(name))


def test_probe_training_and_evaluation_cancel(tmp_path):
    from audiosae.probes import train_probes
    from audiosae.sae import evaluate_saes

    store = labelled_store(40960, 16384)
    sae = SparseAutoencoder(SAEConfig(128, 2048, 0.02))
    n_classes = {"pitch": 66, "loudness": 20, "timbre": 20}
    for run in range(RUNS):
        cancel_mid_job("train_probes (2048 features)",
                       lambda **kw: train_probes(store, sae=sae, n_classes=n_classes, **kw),
                       after=2, stage="train probes", delay=0.05)
        cancel_mid_job("train_probes (raw latents)",
                       lambda **kw: train_probes(store, sae=None, n_classes=n_classes, **kw),
                       after=2, stage="train probes", delay=0.05)
        big = [SparseAutoencoder(SAEConfig(128, 128 * e, 0.02)) for e in (16, 32, 64)]

        def evaluation(progress, cancel):
            progress(Progress("evaluate", 0, 1))
            return evaluate_saes(big, store, "val", cancel=cancel)

        cancel_mid_job("evaluate_saes (report metrics, 3 wide SAEs)", evaluation, after=1, delay=0.3)


# ---- feature index, analysis, rendering ---------------------------------------------------------------
@pytest.fixture(scope="module")
def indexed_workspace(tmp_path_factory) -> Workspace:
    ws = synthetic_workspace(tmp_path_factory.mktemp("index") / "ws", 32768)
    SparseAutoencoder(SAEConfig(128, 8192, 0.02)).save(ws.sae_dir("wide"))
    return ws


def test_feature_index_build_cancels_and_writes_nothing(indexed_workspace):
    from audiosae.feature_index import build_feature_index, feature_index_path

    ws = indexed_workspace
    for run in range(RUNS):
        cancel_mid_job("build_feature_index (8192 features, 32k frames)",
                       lambda **kw: build_feature_index(ws, "wide", **kw), after=3, stage="feature index",
                       delay=0.05)
        assert not feature_index_path(ws, "wide").exists()
        assert_no_leftovers(ws.root)


def test_clip_analysis_of_a_long_clip_cancels(indexed_workspace, long_recording):
    """The explorer's analysis of a 3-minute clip: encode, SAE features (8192 wide) and probes in
    frame chunks, then CREPE."""
    from audiosae.analysis import analyze_wave
    from audiosae.audio import load_audio

    ws = indexed_workspace
    backend = ws.backend("cpu")
    sae = SparseAutoencoder.load(ws.sae_dir("wide"))
    probes = probes_for(8192)
    wave = load_audio(long_recording, backend.sample_rate, backend.channels)
    for run in range(RUNS):
        cancel_mid_job("analyze_wave: SAE + probes on 3 min", lambda **kw: analyze_wave(
            backend, sae, probes, ws.attribute_spec, wave, **kw), after=2, stage="analyse", delay=0.1)


def test_steered_rendering_export_cancels(indexed_workspace, long_recording):
    pytest.importorskip("PySide6")
    from audiosae.audio import load_audio
    from audiosae.realtime import SteeredRenderer, SteeringParams
    from studio.models.audition import render_export

    ws = indexed_workspace
    backend = ws.backend("cpu")
    sae, probes = SparseAutoencoder(SAEConfig(128, 512, 0.02)), probes_for(512)
    wave = load_audio(long_recording, backend.sample_rate, backend.channels, duration=60.0)
    params = SteeringParams(attribute="pitch", target=10, alpha=20.0)
    live = SteeredRenderer(backend, sae, probes, wave, params)
    latents = backend.encode_long(wave).latents
    for run in range(RUNS):
        cancel_mid_job("steered render (export of 60 s)",
                       lambda **kw: render_export(live, latents, params, **kw), after=4, stage="export", delay=0.02)
        wide, wide_probes = SparseAutoencoder(SAEConfig(128, 16384, 0.02)), probes_for(16384)

        def set_up(progress, cancel):  # the audition's session job: features of the whole clip
            progress(Progress("audition", 0, 2))
            return SteeredRenderer(backend, wide, wide_probes, wave, params, cancel=cancel)

        cancel_mid_job("steered renderer set-up (60 s, 16384 features)", set_up, after=1, delay=0.1)


def probes_for(d_features: int):
    from audiosae.probes import ProbeSet

    sizes = (("pitch", 66), ("loudness", 20), ("timbre", 20))
    return ProbeSet(weights={a: torch.randn(k, d_features) for a, k in sizes},
                    bias={a: torch.zeros(k) for a, k in sizes}, class_names={}, feature_kind="sae", sae=None)


# ---- tracing -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tracing(tmp_path_factory):
    from audiosae.analysis import LoadedModels
    from audiosae.generation.diffrhythm import build_cfm, tiny_config

    from tests.core.test_trace import build_tiny_diffrhythm_workspace

    root = build_tiny_diffrhythm_workspace(tmp_path_factory.mktemp("trace"))
    torch.manual_seed(0)
    return LoadedModels.load(root, device="cpu"), build_cfm(tiny_config(num_heads=32, conv_layers=1))


def _unit(seed: int) -> torch.Tensor:
    v = torch.randn(1, 512, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def test_trace_generation_and_batch_cancel(tracing, tmp_path):
    from audiosae.generation import trace as tr

    models, cfm = tracing
    for run in range(RUNS):
        cancel_mid_job("trace_generation (32 states)", lambda **kw: tr.trace_generation(
            models, cfm, style=_unit(1), negative_style=_unit(2), seconds=8.0, **kw), after=4, stage="trace")
        out = tmp_path / f"batch{run}"
        prompts = ["one", "two", "three"]

        def batch(progress, cancel):
            return tr.trace_batch(models, cfm, prompts, out, style_for=lambda i, p: _unit(10 + i),
                                  negative_style=_unit(2), seconds=4.0, progress=progress, cancel=cancel)

        cancel_mid_job("trace_batch (3 prompts)", batch, after=1, stage="prompts", delay=0.1)
        kept = [p for p in out.iterdir()]
        assert [p.name for p in kept] == ["trace-000"]  # the finished trace, nothing half-written
        tr.load_trace(kept[0])
        assert_no_leftovers(out)


# ---- downloads and hashing -----------------------------------------------------------------------------
def test_sha256_of_a_big_file_cancels(tmp_path):
    from audiosae.hub import sha256_file

    big = tmp_path / "weights.bin"
    with open(big, "wb") as fh:
        fh.truncate(2 << 30)  # sparse: 2 GiB to hash, nothing on disk
    for run in range(RUNS):
        cancel_mid_job("sha256_file (2 GiB)", lambda **kw: sha256_file(big, **kw), after=5, stage="verify")


class _SlowHub(types.ModuleType):
    """A stand-in ``huggingface_hub``: offline for metadata, and a download that trickles 64 KiB
    every 20 ms through the ``tqdm_class`` hook into an ``.incomplete`` file, which it removes
    when the transfer fails (as the real library does)."""

    def __init__(self, folder: Path):
        super().__init__("huggingface_hub")
        self.folder = folder

        class HfApi:
            def get_paths_info(self, *a, **k):
                raise OSError("offline")

        self.HfApi = HfApi
        self.errors = types.SimpleNamespace()

    def hf_hub_download(self, repo_id, filename, *, revision=None, tqdm_class=None):
        target = self.folder / filename
        partial = target.with_name(target.name + ".incomplete")
        total = 64 * 1024 * 500
        bar = tqdm_class(total=total, initial=0, unit="B")
        try:
            with open(partial, "wb") as fh:
                for _ in range(500):
                    time.sleep(0.02)
                    fh.write(b"\0" * 65536)
                    bar.update(65536)
            partial.rename(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            bar.close()
        return str(target)


def test_hub_download_cancels_mid_transfer(tmp_path, monkeypatch):
    from audiosae.hub import download_hub_file

    monkeypatch.setitem(sys.modules, "huggingface_hub", _SlowHub(tmp_path))
    for run in range(RUNS):
        cancel_mid_job("hub download (simulated slow transfer)",
                       lambda **kw: download_hub_file("someone/model", "model.pt", **kw), after=10,
                       stage="download", delay=0.01)
        assert list(tmp_path.iterdir()) == []  # neither the file nor its partial download


# ---- the demo ----------------------------------------------------------------------------------------
def test_demo_cancels_while_building_and_training(tmp_path):
    from audiosae.cli.training import run_demo as cmd_demo

    for run in range(RUNS):
        for stage, after in (("build", 3), ("train SAEs", 2)):
            args = argparse.Namespace(workspace=tmp_path / f"demo{run}", fresh=False, minutes=1.0, device="cpu")
            cancel_mid_job(f"demo: {stage}", lambda **kw: cmd_demo(args, **kw), after=after, stage=stage,
                           delay=0.05)
            assert_no_leftovers(args.workspace)
            assert_every_file_loads(args.workspace)


# ---- the GUI -----------------------------------------------------------------------------------------
def test_gui_stop_button_cancels_training_within_a_second(qtbot, tmp_path):
    """The wizard's run page (the studio's build-and-train job, run by JobRunner in a QThread):
    Stop mid-training shows the cancelled state within 1 s."""
    pytest.importorskip("pytestqt")
    from audiosae.training import TrainSettings
    from studio.settings import StudioSettings
    from audiosae.workflows.audio_plan import AudioChoice
    from audiosae.workflows.train import RunPlan
    from studio.widgets.wizard.run_page import RunPage
    from studio.workers import JobRunner

    ws = synthetic_workspace(tmp_path / "ws", 40960)
    runner = JobRunner()
    page = RunPage(runner, StudioSettings(tmp_path / "settings.ini"))
    qtbot.addWidget(page)
    try:
        for run in range(RUNS):
            plan = RunPlan(workspace=ws.root, backend="mel", backend_options={}, device="cpu", crepe_model=None,
                           audio=AudioChoice(), train=TrainSettings(expansions=[8, 16], l1s=[0.02, 0.05],
                                                                    epochs=3, batch_size=4096, seed=run))
            training: list[Progress] = []
            states: list[tuple[str, float]] = []

            def note(state: str, states=states) -> None:
                states.append((state, time.monotonic()))

            page.state_changed.connect(note)
            page.start(plan)
            page.job.progress.connect(lambda e: e.stage == "train SAEs" and training.append(e))
            qtbot.waitUntil(lambda: len(training) >= 2 or page.state != "running", timeout=120_000)
            assert page.state == "running", page.error
            requested = time.monotonic()
            page.stop_button.click()
            qtbot.waitUntil(lambda: page.state != "running", timeout=30_000)
            state, at = next((s, t) for s, t in states if s != "running" and t >= requested)
            assert state == "cancelled", page.error
            latency = at - requested
            LATENCIES.setdefault("GUI: wizard Stop during training", []).append(latency)
            assert latency < LIMIT_S, f"the page showed 'cancelled' {latency:.3f} s after Stop"
            assert page.resume_button.isEnabled() and "Resume" in page.state_label.text()
            page.state_changed.disconnect(note)
    finally:
        assert runner.shutdown()
    assert_no_leftovers(ws.root)
