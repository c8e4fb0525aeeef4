"""``kill -9`` during ``build``, ``train`` and ``trace --prompts``: the next run resumes, and what
it ends with equals an uninterrupted run with the same seed, bit for bit, with no temporary or
corrupt file left.

Each command runs in a subprocess (one thread) and is SIGKILLed three times at seeded random
fractions of the work a reference run needed (``crash_helpers.kill_repeatedly``); after every
kill each finished file on disk must still load, and a final run completes the job.
"""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from audiosae.probes import ProbeSet
from audiosae.sae import SparseAutoencoder
from audiosae.workspace import Workspace, read_shard

from tests.support.crash_helpers import (CLI, assert_every_file_loads, assert_no_leftovers, assert_same_tree, describe_kills,
                            json_stdout, kill_repeatedly, run_to_end)

pytestmark = pytest.mark.slow  # ~20 s per command: a dozen interpreter starts on one core
KILLS = 3


def _checked_after_kill(root):
    def check(run) -> None:
        if root.exists():
            assert_every_file_loads(root, skip_temp=True)  # torn files would fail here
    return check


def _resume(cmd, reference_work_s: float, seed: int, root) -> list:
    runs = kill_repeatedly(cmd, work_s=reference_work_s, rng=random.Random(seed), kills=KILLS,
                           after_each=_checked_after_kill(root))
    print(f"\naudiosae {cmd[3]}: reference work {reference_work_s:.2f} s; {describe_kills(runs)}")
    assert sum(r.killed for r in runs) >= 2, describe_kills(runs)  # most kills must land mid-work
    return runs


# ---- build -------------------------------------------------------------------------------------------
def _build_cmd(root, *extra):
    return [*CLI, "build", str(root), "--backend", "mel", "--builtin", "tones", "--minutes", "0.5",
            "--device", "cpu", "--shard-frames", "300", *extra]


def test_build_killed_with_sigkill_resumes_to_the_same_corpus(tmp_path):
    reference = tmp_path / "reference"
    ref_run = run_to_end(_build_cmd(reference))
    victim = tmp_path / "victim"
    _resume(_build_cmd(victim), ref_run.work_s, seed=11, root=victim)
    committed = len(Workspace.open(victim).manifest().sources) if (victim / "workspace.json").exists() else 0
    final = json_stdout(run_to_end(_build_cmd(victim, "--json")))
    assert final["resumed_sources"] == committed  # what the killed runs committed is kept, not redone
    assert_no_leftovers(victim)
    assert assert_same_tree(reference, victim) >= 4  # workspace.json, manifest, shards: equal bit for bit
    ws = Workspace.open(victim)
    assert ws.manifest().complete
    for shard in ws.manifest().shards:
        read_shard(ws.corpus_dir / shard["file"])


# ---- train -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "ws"
    run_to_end(_build_cmd(root))
    return root


def _train_cmd(root):
    # A checkpoint every 0.2 s so kills land between checkpoints as well as on them.
    return [*CLI, "train", str(root), "--expansion", "2,4", "--l1", "0.02,0.1", "--epochs", "6",
            "--batch-size", "128", "--device", "cpu", "--seed", "3", "--checkpoint-seconds", "0.2", "--json"]


def test_train_killed_with_sigkill_resumes_to_the_same_saes_and_probes(tmp_path, built_corpus):
    reference, victim = tmp_path / "reference", tmp_path / "victim"
    shutil.copytree(built_corpus, reference)
    shutil.copytree(built_corpus, victim)
    ref_run = run_to_end(_train_cmd(reference))
    _resume(_train_cmd(victim), ref_run.work_s, seed=12, root=victim)
    final = run_to_end(_train_cmd(victim))
    assert_no_leftovers(victim)
    # SAE weights, probe weights, metrics (accuracies, FVU ...) and the grid checkpoint: equal
    assert assert_same_tree(reference, victim) > 20
    ref_report, got_report = json_stdout(ref_run), json_stdout(final)
    assert got_report["saes"] == ref_report["saes"] and got_report["baseline"] == ref_report["baseline"]
    ws = Workspace.open(victim)
    assert len(ws.sae_names()) == 4
    for name in ws.sae_names():
        sae = SparseAutoencoder.load(ws.sae_dir(name))
        ProbeSet.load(ws.probe_dir(name)).check_sae(sae)
    ProbeSet.load(ws.probe_dir("raw-latent"))


def test_train_resumes_when_killed_between_saving_two_saes(tmp_path, built_corpus):
    """The moment a random kill rarely hits, made by hand: the grid finished, one SAE saved, the
    next not (its metrics.json, the marker of a saved SAE, missing), plus a torn temp file.  The
    rerun must take the finished checkpoint (not refuse it as "other settings" because fewer
    SAEs are left to save) and end with the same files."""
    from audiosae.training import TrainSettings, train_workspace

    root = tmp_path / "ws"
    shutil.copytree(built_corpus, root)
    settings = TrainSettings(expansions=[2], l1s=[0.02, 0.1], epochs=1, batch_size=256, seed=1)
    train_workspace(Workspace.open(root), settings)
    reference = tmp_path / "reference"
    shutil.copytree(root, reference)
    (root / "saes" / "x2-l1_0.1" / "metrics.json").unlink()
    shutil.rmtree(root / "probes" / "x2-l1_0.1")
    (root / "saes" / "x2-l1_0.1" / ".cfg.json.k9x2.tmp").write_bytes(b'{"schema_ver')
    train_workspace(Workspace.open(root), settings)
    assert_no_leftovers(root)
    assert_same_tree(reference, root)


# ---- trace --prompts ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trace_setup(tmp_path_factory):
    """The tiny DiffRhythm workspace, a saved tiny DiT, four prompts with their style rows."""
    from audiosae.generation.diffrhythm import build_cfm, tiny_config

    from .test_trace import _unit, build_tiny_diffrhythm_workspace

    root = tmp_path_factory.mktemp("trace")
    workspace = build_tiny_diffrhythm_workspace(root)
    torch.manual_seed(0)
    generator = build_cfm(tiny_config(num_heads=32, conv_layers=1))
    checkpoint = root / "cfm_model.pt"
    torch.save({"model_state_dict": {k: v.half() for k, v in generator.state_dict().items()}}, checkpoint)
    np.save(root / "styles.npy", _unit(9, rows=4).numpy())
    (root / "prompts.txt").write_text("first\nsecond\nthird\nfourth\n")
    return workspace, checkpoint, root


def _trace_cmd(setup, out):
    workspace, checkpoint, root = setup
    return [*CLI, "trace", str(workspace), "--prompts", str(root / "prompts.txt"), "--seconds", "2", "--seed", "5",
            "--style-embedding", str(root / "styles.npy"), "--weights", str(checkpoint), "--device", "cpu",
            "--out", str(out)]


def test_trace_batch_killed_with_sigkill_resumes_to_the_same_traces(tmp_path, trace_setup):
    from audiosae.generation.trace import load_trace

    reference, victim = tmp_path / "reference", tmp_path / "victim"
    ref_run = run_to_end(_trace_cmd(trace_setup, reference))
    _resume(_trace_cmd(trace_setup, victim), ref_run.work_s, seed=13, root=victim)
    run_to_end(_trace_cmd(trace_setup, victim))
    assert_no_leftovers(victim)
    # every state's stored arrays (latents, x1 predictions, distributions, feature summaries),
    # the curves and convergence in trace.json, final.wav and summary.json
    assert assert_same_tree(reference, victim) == 4 * 3 + 1
    for i in range(4):
        trace = load_trace(victim / f"trace-{i:03d}")
        assert trace.meta["seed"] == 5 + i and trace.latents.shape[0] == 32


def test_trace_batch_clears_what_a_killed_save_left_and_keeps_finished_traces(tmp_path, trace_setup):
    """The leftovers of a kill inside ``save_trace`` and ``summary.json``'s write, made by hand
    next to one finished trace: the rerun removes them and keeps the finished trace."""
    from audiosae.cli import main
    from audiosae.generation.trace import load_trace

    reference = tmp_path / "reference"
    assert main(_trace_cmd(trace_setup, reference)[3:] + ["--quiet"]) == 0
    victim = tmp_path / "victim"
    victim.mkdir()
    shutil.copytree(reference / "trace-000", victim / "trace-000")
    torn = victim / ".trace-001.tmp-0badc0de"
    torn.mkdir()
    (torn / "trace.safetensors").write_bytes(b"\x10\x00\x00")
    shutil.copytree(reference / "trace-002", victim / ".trace-002.old-5ca1ab1e")
    (victim / ".summary.json.x1y2.tmp").write_text('{"n": ')
    assert main(_trace_cmd(trace_setup, victim)[3:] + ["--quiet"]) == 0
    assert_no_leftovers(victim)
    assert sorted(p.name for p in victim.iterdir()) == ["summary.json"] + [f"trace-{i:03d}" for i in range(4)]
    kept = load_trace(victim / "trace-000", load_audio=False)
    assert kept.meta["trace_id"] == load_trace(reference / "trace-000", load_audio=False).meta["trace_id"]
    assert_every_file_loads(victim)
