"""The process group of a ``torchrun`` launch: detection, start-up with a timeout, collectives
that never hang and name the rank that failed.

Without ``torchrun``'s variables (``RANK`` and ``WORLD_SIZE``) ``detect()`` returns None and
nothing here runs: the single-process path is untouched.  Under ``torchrun`` (or any launcher
that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``)
``start()`` joins the group: gloo on CPUs, NCCL when the device is CUDA (plus a gloo group for
the small control messages either way).

A dead or stuck rank: every collective runs under the group's timeout
(``AUDIOSAE_DIST_TIMEOUT_S``, default 600 s; a killed peer's closed socket is usually seen at
once).  Before each named collective a rank records how far it got in the rendezvous store,
and a daemon thread on its own store connection ticks a heartbeat counter every
``HEARTBEAT_S``; when a collective fails, the survivors read both and raise
``DistributedError`` naming the ranks that stopped ticking or never arrived.

Threads: nothing here (or anywhere in the distributed path) sets ``OMP_NUM_THREADS`` or
``torch.set_num_threads``; the launcher's settings stand (``torchrun`` gives each worker
``OMP_NUM_THREADS=1`` when it starts several per node and the variable is unset).
"""

from __future__ import annotations

import datetime
import os
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..errors import AudioSAEError

HEARTBEAT_S = 0.5
DEFAULT_TIMEOUT_S = 600.0
TIMEOUT_ENV = "AUDIOSAE_DIST_TIMEOUT_S"
_PREFIX = "audiosae"


class DistributedError(AudioSAEError):
    """A rank died, hung or failed; the message names it."""


@dataclass(frozen=True)
class DistEnv:
    """What the launcher said: this process' place in the job."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int
    restart: int = 0


def detect(environ: dict[str, str] | None = None) -> DistEnv | None:
    """The launch this process is part of, or None (no ``RANK``/``WORLD_SIZE``: a plain run).

    A world of one (``torchrun --nproc-per-node 1``) is still a launch: it runs the distributed
    path with one rank, which is how the tests compare one rank with two.
    """
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK", rank))
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
        port = int(env.get("MASTER_PORT", "29500"))
        restart = int(env.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError as exc:
        raise DistributedError(f"torchrun's environment is malformed ({exc})") from None
    if not 0 <= rank < world:
        raise DistributedError(f"RANK {rank} is outside WORLD_SIZE {world}")
    return DistEnv(rank, world, local_rank, local_world, env.get("MASTER_ADDR", "127.0.0.1"), port, restart)


def timeout_seconds() -> float:
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        return float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        raise DistributedError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None


class Context:
    """One rank's handle on the job.  ``start()`` makes it; ``close()`` leaves the group."""

    def __init__(self, env: DistEnv, backend: str, timeout_s: float):
        self.env = env
        self.rank, self.world_size, self.local_rank = env.rank, env.world_size, env.local_rank
        self.backend = backend
        self.timeout_s = float(timeout_s)
        self._seq = 0
        self._stop = threading.Event()
        self._store = None
        self._beat_thread: threading.Thread | None = None
        self._control = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _key(self, *parts: Any) -> str:
        return "/".join([_PREFIX, str(self.env.restart), *map(str, parts)])

    # ---- start / stop ---------------------------------------------------------------------
    def _connect(self):
        return torch.distributed.TCPStore(self.env.master_addr, self.env.master_port, is_master=False,
                                          timeout=datetime.timedelta(seconds=min(self.timeout_s, 60.0)))

    def _heartbeat(self) -> None:
        try:
            store = self._connect()
            while not self._stop.is_set():
                store.add(self._key("beat", self.rank), 1)
                self._stop.wait(HEARTBEAT_S)
        except Exception:  # the store went away: the diagnosis will say so
            return

    def _begin(self) -> None:
        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=self.timeout_s)
        dist.init_process_group(self.backend, init_method="env://", rank=self.rank, world_size=self.world_size,
                                timeout=timeout)
        self._control = dist.new_group(backend="gloo", timeout=timeout) if self.backend != "gloo" else None
        self._store = self._connect()
        self._beat_thread = threading.Thread(target=self._heartbeat, name="audiosae-heartbeat", daemon=True)
        self._beat_thread.start()

    def close(self) -> None:
        import torch.distributed as dist

        self._stop.set()
        if dist.is_initialized():
            dist.destroy_process_group()

    # ---- diagnosis ----------------------------------------------------------------------
    def _beats(self, store) -> list[int | None]:
        out = []
        for r in range(self.world_size):
            try:
                out.append(int(store.add(self._key("beat", r), 0)))
            except Exception:
                out.append(None)
        return out

    def diagnose(self, what: str) -> str:
        """Which ranks are gone or behind, from the store (waits ~3 heartbeats)."""
        try:
            store = self._connect()
            first = self._beats(store)
            time.sleep(4 * HEARTBEAT_S)
            second = self._beats(store)
            at = []
            for r in range(self.world_size):
                try:
                    at.append(int(store.add(self._key("at", r), 0)))
                except Exception:
                    at.append(None)
        except Exception:
            return (f"the rendezvous store at {self.env.master_addr}:{self.env.master_port} is gone "
                    f"(rank 0 or the launcher that hosts it died)")
        dead = [r for r in range(self.world_size) if r != self.rank and (second[r] is None or second[r] == first[r])]
        behind = [r for r in range(self.world_size)
                  if r != self.rank and r not in dead and at[r] is not None and at[r] < self._seq]
        parts = []
        if dead:
            parts.append(f"rank {', '.join(map(str, dead))} stopped responding (no heartbeat for "
                         f"{4 * HEARTBEAT_S:g} s: killed or crashed)")
        if behind:
            parts.append(f"rank {', '.join(map(str, behind))} never reached {what!r} (still busy or stuck)")
        return "; ".join(parts) or "every other rank is alive and reached it (the failure is local)"

    def _run(self, what: str, fn: Callable[[], Any]) -> Any:
        self._seq += 1
        if self._store is not None:
            try:
                self._store.add(self._key("at", self.rank), 1)
            except Exception:
                pass
        try:
            return fn()
        except Exception as exc:
            raise DistributedError(f"rank {self.rank}: {what!r} failed ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}): {self.diagnose(what)}") from exc

    # ---- collectives --------------------------------------------------------------------
    def barrier(self, what: str) -> None:
        import torch.distributed as dist

        # a barrier through an all-reduce on the control group: gloo's barrier has no timeout of its own
        flag = torch.zeros(1)
        self._run(what, lambda: dist.all_reduce(flag, group=self._control))

    def all_gather_object(self, obj: Any, what: str) -> list[Any]:
        """Every rank's ``obj`` (JSON: None, numbers, strings, lists, str-keyed dicts; tuples come back
        as lists), in rank order, on every rank.  JSON, not pickle: nothing a peer sends is executed."""
        import torch.distributed as dist

        def gather():
            data = torch.frombuffer(bytearray(json.dumps(obj).encode("utf-8")), dtype=torch.uint8)
            size = torch.tensor([data.numel()], dtype=torch.int64)
            sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world_size)]
            dist.all_gather(sizes, size, group=self._control)
            longest = int(max(s.item() for s in sizes))
            padded = torch.zeros(longest, dtype=torch.uint8)
            padded[:data.numel()] = data
            parts = [torch.zeros(longest, dtype=torch.uint8) for _ in range(self.world_size)]
            dist.all_gather(parts, padded, group=self._control)
            return [json.loads(p[:int(s.item())].numpy().tobytes().decode("utf-8")) for p, s in zip(parts, sizes)]

        return self._run(what, gather)

    def broadcast_object(self, obj: Any, what: str, src: int = 0) -> Any:
        return self.all_gather_object(obj if self.rank == src else None, what)[src]

    def all_reduce(self, tensors: Sequence[torch.Tensor], what: str, op: str = "sum") -> None:
        """In place over every rank, on the main backend (NCCL tensors on the GPU)."""
        import torch.distributed as dist

        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}

        def reduce():
            for t in tensors:
                dist.all_reduce(t, op=ops[op])
        self._run(what, reduce)

    def any(self, flag: bool, what: str) -> bool:
        """True on every rank when ``flag`` is true on any (a cancel, an error, a checkpoint due)."""
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0])
        self._run(what, lambda: dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self._control))
        return bool(value.item() > 0)

    def device(self, preferred: str | None) -> str:
        """The device of this rank: ``cuda:LOCAL_RANK`` where CUDA is asked for (or "auto" finds it)."""
        from ..devices import pick_device

        dev = pick_device(preferred)
        if dev.type == "cuda":
            return f"cuda:{self.local_rank % max(1, torch.cuda.device_count())}"
        return str(dev)


_CURRENT: Context | None = None


def start(device: str | None = "auto", *, env: DistEnv | None = None) -> Context | None:
    """Join the launch's process group (once per process); None without a launch."""
    global _CURRENT
    if _CURRENT is not None:
        return _CURRENT
    env = env or detect()
    if env is None:
        return None
    from ..devices import pick_device

    backend = "nccl" if pick_device(device).type == "cuda" else "gloo"
    ctx = Context(env, backend, timeout_seconds())
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank % max(1, torch.cuda.device_count()))
    try:
        ctx._begin()
    except Exception as exc:
        raise DistributedError(f"rank {env.rank} of {env.world_size} could not join the group at "
                               f"{env.master_addr}:{env.master_port} within {ctx.timeout_s:g} s "
                               f"({type(exc).__name__}: {exc})") from exc
    _CURRENT = ctx
    return ctx


def current() -> Context | None:
    return _CURRENT


def stop() -> None:
    global _CURRENT
    if _CURRENT is not None:
        _CURRENT.close()
        _CURRENT = None
