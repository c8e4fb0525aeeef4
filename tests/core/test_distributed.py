"""Issue 15: ``audiosae build`` / ``train`` under torchrun, two CPU ranks on localhost (gloo, c10d
rendezvous on 127.0.0.1 at a free port), against one plain process of the same code.

Equality, and why:

* build: bit-equal.  Ranks encode their sources, rank 0 re-writes them as the shards one
  process writes (same tensors, same header metadata; safetensors orders header keys as it
  likes, so tensors and metadata are compared, not file bytes).
* grid-parallel training: bit-equal weights, probe weights and report (every process runs one
  thread: the same arithmetic per SAE, chunked for its whole width).
* data-parallel training: each global batch's gradient is the sum of two half-batch sums,
  in another order than one process' row chunks; float32 addition is not associative.  One
  step's gradient equals the global batch's to 1e-6 (relative, checked in-process below);
  over training, Adam divides every update by the running RMS of its gradient, so where a
  gradient is near zero (a feature at the edge of firing) rounding-level differences become
  learning-rate-sized steps and those features' weights drift apart (measured after 96 steps:
  most weights within 3e-4, the weakest SAE's rare features up to 0.01 in W_dec).  What the
  SAEs do agrees: FVU within 1e-4 (measured 2e-5), L0 within 0.5 features (measured 0.02),
  probe accuracies within 0.01.  A killed and resumed data-parallel run replays the same
  operations, so it equals the uninterrupted one bit for bit.
* a rank killed (SIGKILL) or stopped (SIGSTOP) mid-training: the survivor raises an error
  naming it, within the group's timeout; a rerun resumes from the newest checkpoint every rank
  holds and ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from audiosae.storage import load_tensors, load_tensors_metadata
from audiosae.workspace import Workspace, read_shard

from tests.support.distributed_worker import run_single, run_torchrun, run_torchrun_cli, start_ranks, write_job

pytestmark = pytest.mark.slow  # every case starts two or three interpreters that import torch

TRAIN = dict(op="train", expansions=[2, 4], l1s=[0.02, 0.1], epochs=6, batch_size=128, seed=3, probe_folds=0)
TRAIN_CLI = ["--expansion", "2,4", "--l1", "0.02,0.1", "--epochs", "6", "--batch-size", "128", "--seed", "3",
             "--probe-folds", "0", "--device", "cpu", "--json"]


def _ok(run) -> None:
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"


# ---- no launcher: nothing changes ----------------------------------------------------------------
def test_without_torchrun_nothing_is_detected_and_train_takes_the_single_process_path(tmp_path, monkeypatch):
    from audiosae import distributed, training
    from audiosae.workflows import train as wf

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.detect() is None and not distributed.launched()
    assert distributed.detect({"RANK": "1", "WORLD_SIZE": "2"}).rank == 1
    calls = []
    monkeypatch.setattr(training, "train_workspace", lambda ws, settings, **kw: calls.append(kw) or {})
    monkeypatch.setattr("audiosae.workspace.Workspace.open", staticmethod(lambda root: root))
    wf.run_train(wf.TrainRequest(workspace=tmp_path, device="cpu", parallel="data"))
    assert len(calls) == 1 and "parallel" not in calls[0]      # the call of before, word for word
    assert distributed.current() is None                       # no process group was started


def test_the_parallel_option_reaches_the_train_request():
    from audiosae.cli.main import build_parser
    from audiosae.cli.training import train_request_from_args

    parser = build_parser()
    assert train_request_from_args(parser.parse_args(["train", "WS"]), "cpu").parallel == "grid"
    assert train_request_from_args(parser.parse_args(["train", "WS", "--parallel", "data"]), "cpu").parallel == "data"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "WS", "--parallel", "nodes"])


def test_splits_are_deterministic_and_balanced():
    from audiosae.distributed.plan import balance, source_ranks

    ids = [f"tones/{i:04d}" for i in range(7)][::-1]
    ranks = source_ranks(ids, 2)
    assert [ranks[f"tones/{i:04d}"] for i in range(7)] == [0, 1, 0, 1, 0, 1, 0]   # sorted, round-robin
    owner = balance([1024, 1024, 512, 512], 2)          # widths x16, x16, x8, x8 of d_in 64
    assert owner == balance([1024, 1024, 512, 512], 2)
    assert sorted(sum(c for c, r in zip([1024, 1024, 512, 512], owner) if r == k) for k in (0, 1)) == [1536, 1536]


def test_data_parallel_gradient_is_the_global_batch_gradient():
    """Two ranks' sliced, scaled gradients (the all-reduce done by hand) = the global batch's."""
    from audiosae.distributed.training import DataParallel
    from audiosae.sae.config import SAEConfig
    from audiosae.sae.trainer import build_groups

    class Rank:                     # a Context whose all-reduce leaves the tensors as they are
        def __init__(self, rank):
            self.rank, self.world_size = rank, 2

        def all_reduce(self, tensors, what, op="sum"):
            pass

    configs = [SAEConfig(d_in=16, d_sae=64, l1_coefficient=lam) for lam in (0.01, 0.1)] + \
              [SAEConfig(d_in=16, d_sae=32, l1_coefficient=0.0, architecture="topk", k=4)]
    x = torch.randn(101, 16, generator=torch.Generator().manual_seed(1))   # odd: unequal halves
    whole = build_groups(configs, 16, 0, torch.device("cpu"))
    ranks = [DataParallel(Rank(r)).build_groups(configs, 16, 0, torch.device("cpu")) for r in (0, 1)]
    for g, (g0, g1) in zip(whole, zip(*ranks)):
        sums = g.compute_gradients(x, 1.0, True)
        s0, s1 = g0.compute_gradients(x, 1.0, True), g1.compute_gradients(x, 1.0, True)
        for k in g.grads:
            total = g0.grads[k] + g1.grads[k]
            assert torch.allclose(total, g.grads[k], rtol=1e-5, atol=1e-7 * float(g.grads[k].abs().max())), k
        for k in ("sq_err", "l1", "active"):
            assert torch.allclose(s0[k] + s1[k], sums[k], rtol=1e-9), k
        assert torch.equal(g0._fired | g1._fired, g._fired)


# ---- fixtures: one corpus, one single-process reference ------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    job = write_job(root, "build1", op="build", workspace=str(root / "ws"), minutes=0.5, shard_frames=300)
    _ok(run_single(job))
    return root / "ws"


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ref")
    shutil.copytree(corpus, root / "ws")
    job = write_job(root, "ref", workspace=str(root / "ws"), **TRAIN)
    _ok(run_single(job))
    return root / "ws", json.loads((root / "ref.out").read_text())["result"]


def _shards(root: Path) -> tuple[dict, list]:
    ws = Workspace.open(root)
    manifest = ws.manifest().to_dict()
    out = []
    for shard in ws.manifest().shards:
        tensors, _ = read_shard(ws.corpus_dir / shard["file"])
        out.append((load_tensors_metadata(ws.corpus_dir / shard["file"], kind="corpus shard"), tensors))
    return manifest, out


def _same_saes(a: Path, b: Path, *, atol: float = 0.0) -> float:
    wa, wb = Workspace.open(a), Workspace.open(b)
    assert wa.sae_names() == wb.sae_names() and len(wa.sae_names()) == 4
    worst = 0.0
    for name in wa.sae_names():
        ta, tb = load_tensors(wa.sae_dir(name) / "sae.safetensors"), load_tensors(wb.sae_dir(name) / "sae.safetensors")
        assert ta.keys() == tb.keys()
        for k in ta:
            worst = max(worst, float((ta[k] - tb[k]).abs().max()))
    assert worst <= atol, f"SAE weights differ by {worst}"
    return worst


def _same_probes(a: Path, b: Path) -> None:
    wa, wb = Workspace.open(a), Workspace.open(b)
    for name in wa.sae_names() + ["raw-latent"]:
        ta = load_tensors(wa.probe_dir(name) / "probes.safetensors")
        tb = load_tensors(wb.probe_dir(name) / "probes.safetensors")
        assert all(torch.equal(ta[k], tb[k]) for k in ta), name


# ---- build -----------------------------------------------------------------------------------------
def test_build_on_two_ranks_killed_and_resumed_equals_one_process(corpus, tmp_path):
    ws = tmp_path / "ws"
    # rank 1 is killed while encoding its second source (its first is in its part's shard)
    killed = write_job(tmp_path, "killed", op="build", workspace=str(ws), minutes=0.5, shard_frames=300,
                       kill_rank=1, kill_stage="build", kill_after_steps=10.0)
    run = run_torchrun(killed, 2)
    assert run.returncode != 0
    assert list((ws / "build-parts" / "rank1-of-2" / "corpus").glob("shard-*"))   # kept for the resume
    _ok(run_torchrun(write_job(tmp_path, "again", op="build", workspace=str(ws), minutes=0.5, shard_frames=300), 2))
    assert not (ws / "build-parts").exists()
    (m1, s1), (m2, s2) = _shards(corpus), _shards(ws)
    assert m1 == m2 and len(s1) == len(s2) == 4
    for (meta1, t1), (meta2, t2) in zip(s1, s2):
        assert meta1 == meta2 and t1.keys() == t2.keys()
        for k in t1:
            assert torch.equal(t1[k], t2[k]) or torch.equal(t1[k].isnan(), t2[k].isnan()) and \
                torch.equal(t1[k].nan_to_num(), t2[k].nan_to_num()), k
    meta1, meta2 = Workspace.open(corpus).meta, Workspace.open(ws).meta
    meta1.pop("created"), meta2.pop("created")
    assert meta1 == meta2               # the attribute spec (timbre bins, k-means) and the corpus summary


def _fresh(reference, folder: Path) -> Path:
    ref_ws, _ = reference
    shutil.copytree(ref_ws, folder, ignore=shutil.ignore_patterns("saes", "probes", "checkpoints"))
    for sub in ("saes", "probes"):
        (folder / sub).mkdir()
    return folder


# ---- grid-parallel -------------------------------------------------------------------------------------
def test_grid_on_two_ranks_killed_and_resumed_is_bit_equal_to_one_process(reference, tmp_path):
    ref_ws, ref_report = reference
    _fresh(reference, tmp_path / "ws")
    killed = write_job(tmp_path, "killed", workspace=str(tmp_path / "ws"), parallel="grid", checkpoint_every_s=0,
                       kill_rank=1, kill_after_steps=30, **TRAIN)
    run = run_torchrun(killed, 2)
    assert run.returncode != 0 and "rank" in run.stderr
    ckpts = sorted(p.name for p in (tmp_path / "ws" / "checkpoints").rglob("*.grid.rank*"))
    assert any("rank0-of-2" in n for n in ckpts) and any("rank1-of-2" in n for n in ckpts), ckpts
    assert not Workspace.open(tmp_path / "ws").sae_names()
    # the resume through the command a user types: rank 0 alone prints the report
    again = run_torchrun_cli(["train", tmp_path / "ws", *TRAIN_CLI, "--parallel", "grid"], 2)
    _ok(again)
    report = json.loads(again.stdout)
    _same_saes(ref_ws, tmp_path / "ws")
    _same_probes(ref_ws, tmp_path / "ws")
    assert report["saes"] == ref_report["saes"] and report["baseline"] == ref_report["baseline"]


# ---- data-parallel -------------------------------------------------------------------------------------
def test_data_parallel_matches_one_process_and_resumes_to_itself(reference, tmp_path):
    ref_ws, ref_report = reference
    whole = _fresh(reference, tmp_path / "whole")
    _ok(run_torchrun(write_job(tmp_path, "whole", workspace=str(whole), parallel="data", **TRAIN), 2))
    worst = _same_saes(ref_ws, whole, atol=math.inf)
    report = json.loads((tmp_path / "whole.out").read_text())["result"]
    assert [s["sae"] for s in report["saes"]] == [s["sae"] for s in ref_report["saes"]]
    for got, want in zip(report["saes"], ref_report["saes"]):
        assert abs(got["fvu"] - want["fvu"]) <= 1e-4 and abs(got["l0"] - want["l0"]) <= 0.5, (got, want)
        for a in ("pitch", "loudness", "timbre"):
            assert abs(got[f"{a}_accuracy"] - want[f"{a}_accuracy"]) <= 0.01, (a, got, want)
    print(f"\ndata-parallel vs one process: max |dW| {worst:.2e}")

    cut = _fresh(reference, tmp_path / "cut")
    run = run_torchrun(write_job(tmp_path, "killed", workspace=str(cut), parallel="data", checkpoint_every_s=0,
                                 kill_rank=1, kill_after_steps=30, **TRAIN), 2)
    assert run.returncode != 0
    assert list((cut / "checkpoints").rglob("*.data.rank0-of-2.step*"))       # rank 0 holds the state
    _ok(run_torchrun(write_job(tmp_path, "again", workspace=str(cut), parallel="data", **TRAIN), 2))
    _same_saes(whole, cut)                    # bit-equal to the uninterrupted data-parallel run


# ---- a dead or stuck rank is named, never a hang ----------------------------------------------------
@pytest.mark.parametrize("how", ["KILL", "STOP"])
def test_a_killed_or_stopped_rank_is_named_by_the_survivor_within_the_timeout(reference, tmp_path, how):
    ws = _fresh(reference, tmp_path / "ws")
    job = write_job(tmp_path, "job", workspace=str(ws), parallel="grid", kill_rank=1, kill_after_steps=20,
                    kill_signal=how, **TRAIN)
    procs = start_ranks(job, 2, extra_env={"AUDIOSAE_DIST_TIMEOUT_S": "10"})
    try:
        t0 = time.monotonic()
        _, err = procs[0].communicate(timeout=150)
        waited = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
    assert procs[0].returncode != 0
    assert "rank 1 stopped responding" in err, err[-2000:]
    assert waited < 120
