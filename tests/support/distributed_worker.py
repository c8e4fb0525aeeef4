"""One rank of a ``torchrun`` job for the distributed tests and benchmark: build or train a
workspace through the same workflows as ``audiosae build`` / ``train``.

    python -m torch.distributed.run ... tests/support/distributed_worker.py JOB.json

``JOB.json``: ``{"op": "build" | "train" | "grid", "workspace": ..., "out": FILE, ...}`` (grid: the SAE
grid alone through ``train_sae_grid``, nothing saved, for the benchmark) (build: ``minutes``,
``shard_frames``; train: ``expansions``, ``l1s``, ``epochs`` / ``frames``, ``batch_size``,
``parallel``, ``probe_folds``, ``checkpoint_every_s``; ``kill_rank``, ``kill_stage``, ``kill_after_steps``,
``kill_signal``: that rank kills (or stops) itself once that stage reports that much done).
Rank 0 writes the result (report or build summary, plus its peak RSS) to ``out``; every rank
writes ``out.rank<R>.json`` with its peak RSS and wall time.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

WORKER = Path(__file__).resolve()
REPO = WORKER.parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(threads: int | None, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env | (extra or {})


def write_job(folder: Path, name: str, **job) -> Path:
    path = Path(folder) / f"{name}.json"
    job.setdefault("out", str(Path(folder) / f"{name}.out"))
    path.write_text(json.dumps(job))
    return path


def run_single(job: Path, *, threads: int | None = 1, timeout: float = 600) -> subprocess.CompletedProcess:
    """One plain process (no torchrun variables): the single-process path."""
    return subprocess.run([sys.executable, str(WORKER), str(job)], env=_env(threads), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def run_torchrun(job: Path, nproc: int, *, threads: int | None = 1, timeout: float = 600,
                 extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node N`` with the c10d rendezvous on 127.0.0.1 at a free port."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--max-restarts", "0",
           str(WORKER), str(job)]
    return subprocess.run(cmd, env=_env(threads, extra_env), capture_output=True, text=True, timeout=timeout, cwd=REPO)


def run_torchrun_cli(cli_args: list[str], nproc: int, *, threads: int | None = 1,
                     timeout: float = 600) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node N -m audiosae ARGS``: the command a user types."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--max-restarts", "0",
           "-m", "audiosae", *map(str, cli_args)]
    return subprocess.run(cmd, env=_env(threads), capture_output=True, text=True, timeout=timeout, cwd=REPO)


def start_ranks(job: Path, world: int, *, threads: int = 1, extra_env: dict | None = None) -> list[subprocess.Popen]:
    """``world`` processes with torchrun's variables set by hand (no agent to tear them down): for
    watching what the survivors of a killed rank do."""
    port = free_port()
    procs = []
    for r in range(world):
        env = _env(threads, {"RANK": str(r), "WORLD_SIZE": str(world), "LOCAL_RANK": str(r),
                             "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                             **(extra_env or {})})
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(job)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=REPO))
    return procs


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(job_file: str) -> int:
    t0 = time.perf_counter()
    job = json.loads(Path(job_file).read_text())
    rank = int(os.environ.get("RANK", "0"))
    from audiosae.jobs import Progress
    from audiosae.workflows.train import BuildRequest, TrainRequest, run_build, run_train, train_settings

    kill_at = job.get("kill_after_steps")

    def progress(event: Progress) -> None:   # a kill -9 of one rank at a chosen point
        if kill_at is not None and rank == job.get("kill_rank", 1) and event.stage == job.get("kill_stage", "train SAEs") \
                and event.done >= kill_at:
            os.kill(os.getpid(), signal.SIGSTOP if job.get("kill_signal") == "STOP" else signal.SIGKILL)

    stages: dict[str, float] = {}
    inner = progress

    def progress(event: Progress) -> None:   # noqa: F811 - the first time each stage reports
        stages.setdefault(event.stage, time.perf_counter() - t0)
        inner(event)

    if job["op"] == "grid":                  # the SAE grid alone (benchmarks): no probes, nothing saved
        from audiosae.distributed import train_plan
        from audiosae.sae import train_sae_grid
        from audiosae.workspace import Workspace

        ws = Workspace.open(job["workspace"])
        store = ws.frame_store()
        settings = train_settings(expansions=job["expansions"], l1s=job["l1s"], batch_size=job.get("batch_size", 512),
                                  seed=job.get("seed", 0), epochs=job["epochs"])
        plan = train_plan(job.get("parallel", "grid"), "cpu")
        t1 = time.perf_counter()
        results = train_sae_grid(store, settings.sae_configs(store.d_in), epochs=settings.epochs,
                                 batch_size=settings.batch_size, seed=settings.seed, device="cpu",
                                 progress=progress, parallel=None if plan is None else plan[0])
        result = {"train_s": time.perf_counter() - t1,
                  "saes": {sae.cfg.name: {"mse": m.get("mse"), "l0": m.get("l0")} for sae, m in results}}
    elif job["op"] == "build":
        from audiosae.corpus import builtin_sources

        sources = builtin_sources("tones", minutes=float(job.get("minutes", 0.5)), seed=0)
        _, summary = run_build(BuildRequest(workspace=Path(job["workspace"]), backend="mel", sources=sources,
                                            device="cpu", shard_frames=job.get("shard_frames")), progress=progress)
        result = summary.to_dict()
    else:
        budget = {"epochs": job["epochs"]} if job.get("epochs") else {"frames": job.get("frames")}
        settings = train_settings(expansions=job.get("expansions", [2, 4]), l1s=job.get("l1s", [0.02, 0.1]),
                                  batch_size=job.get("batch_size", 128), seed=job.get("seed", 3),
                                  probe_folds=job.get("probe_folds", 0), **budget)
        if job.get("probe_max_epochs"):
            settings.probe_max_epochs = int(job["probe_max_epochs"])
        result = run_train(TrainRequest(workspace=Path(job["workspace"]), settings=settings, device="cpu",
                                        parallel=job.get("parallel", "grid"),
                                        checkpoint_every_s=job.get("checkpoint_every_s")), progress=progress)
    wall = time.perf_counter() - t0
    out = Path(job["out"])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(f"{out}.rank{rank}.json").write_text(json.dumps({"rank": rank, "peak_rss_mb": _peak_rss_mb(),
                                                           "cpu_s": usage.ru_utime + usage.ru_stime,
                                                           "wall_s": wall, "stages": stages,
                                                           "result": result if job["op"] == "grid" else None}))
    if rank == 0:
        out.write_text(json.dumps({"result": result, "peak_rss_mb": _peak_rss_mb(), "wall_s": wall}, default=str))
    from audiosae.distributed import stop

    stop()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1]))
