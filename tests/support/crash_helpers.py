"""Shared by the ``kill -9`` tests: run an ``audiosae`` command in a subprocess, SIGKILL it at
seeded random moments while it works, and check what the resumed runs leave behind.

Kill points are fractions of the work a reference run needed, measured from its first
progress line (the CLI prints one per stage on stderr when it is not a terminal) to its exit,
so they land mid-work on fast and slow machines alike.  The fractions come from a seeded
``random.Random``; the moments themselves also depend on the machine's speed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import soundfile as sf

from audiosae.storage import load_tensors, load_tensors_metadata, read_json

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "audiosae.cli"]
# JSON keys whose values are clocks or run identities, not results.
VOLATILE_KEYS = frozenset({"created", "trace_id", "timings", "seconds", "build_seconds", "resumed_sources"})
# What an interrupted write can leave: storage's ".NAME.XXXX.tmp" files, save_trace's
# ".NAME.tmp-XXXX" / ".NAME.old-XXXX" folders, a download's ".partial"/".incomplete" file.
TEMP_MARKERS = (".tmp", ".partial", ".incomplete")


def cli_env() -> dict[str, str]:
    """One thread, so runs are comparable bit for bit whatever the machine."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Run:
    """One subprocess run: exit code (``-SIGKILL`` when killed), times relative to its start."""

    cmd: list[str]
    returncode: int = 0
    first_progress_s: float | None = None
    ended_s: float = 0.0
    killed_at_s: float | None = None
    stdout: str = ""
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    @property
    def work_s(self) -> float:
        """Seconds from the first progress line to the end (the whole run without one)."""
        return self.ended_s - (self.first_progress_s or 0.0)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)


def _run(cmd: list[str], *, kill_after_progress_s: float | None, timeout: float) -> Run:
    """Run ``cmd``; with ``kill_after_progress_s``, SIGKILL it that long after its first progress
    line (if it is still running then)."""
    run = Run(cmd=list(cmd))
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            cwd=REPO)
    first_line = threading.Event()
    out_parts: list[str] = []

    def read_stderr() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            if not first_line.is_set():
                run.first_progress_s = time.monotonic() - started
                first_line.set()
            run.stderr_lines.append(line)

    readers = [threading.Thread(target=read_stderr, daemon=True),
               threading.Thread(target=lambda: out_parts.append(proc.stdout.read()), daemon=True)]  # type: ignore[union-attr]
    for t in readers:
        t.start()
    try:
        if kill_after_progress_s is not None:
            deadline = started + timeout
            while not first_line.wait(0.01):
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
            if first_line.is_set():
                time.sleep(max(0.0, kill_after_progress_s))
                if proc.poll() is None:
                    run.killed_at_s = time.monotonic() - started
                    proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in readers:
            t.join(timeout=10)
    run.returncode = proc.returncode
    run.ended_s = time.monotonic() - started
    run.stdout = "".join(out_parts)
    return run


def run_to_end(cmd: list[str], timeout: float = 600) -> Run:
    """Run ``cmd`` to its end; fails the test on a non-zero exit."""
    run = _run(cmd, kill_after_progress_s=None, timeout=timeout)
    assert run.returncode == 0, f"{' '.join(cmd[2:])} exited {run.returncode}:\n{run.stderr[-3000:]}"
    return run


def kill_repeatedly(cmd: list[str], *, work_s: float, rng: random.Random, kills: int = 3,
                    low: float = 0.15, high: float = 0.75, after_each=None, timeout: float = 600) -> list[Run]:
    """Start ``cmd`` ``kills`` times, each time SIGKILLing it ``u * remaining`` seconds after its
    first progress line, ``u ~ U(low, high)`` from ``rng``; ``remaining`` starts at ``work_s``
    (a reference run's work) and shrinks by the fraction each kill let run.  That is a lower
    bound on the work left (a kill loses what was not yet committed), so kills land mid-work.
    ``after_each(run)`` checks the state a kill left.  Returns the runs.
    """
    runs = []
    remaining = work_s
    for _ in range(kills):
        fraction = rng.uniform(low, high)
        run = _run(cmd, kill_after_progress_s=fraction * remaining, timeout=timeout)
        assert run.killed or run.returncode == 0, \
            f"{' '.join(cmd[2:])} exited {run.returncode}:\n{run.stderr[-3000:]}"
        if run.killed:
            remaining *= 1.0 - fraction
        if after_each is not None:
            after_each(run)
        runs.append(run)
    return runs


def describe_kills(runs: Iterable[Run]) -> str:
    """'killed at 3.10 s (0.80 s into the work), ...' for the report and assertion messages."""
    parts = []
    for r in runs:
        if r.killed:
            parts.append(f"killed at {r.killed_at_s:.2f} s ({r.killed_at_s - (r.first_progress_s or 0):.2f} s "
                         f"after its first progress line)")
        else:
            parts.append(f"finished before the kill ({r.ended_s:.2f} s)")
    return "; ".join(parts)


# ---- files ---------------------------------------------------------------------------------------
def is_temp(path: Path) -> bool:
    name = path.name
    return any(name.endswith(m) or f"{m}-" in name for m in TEMP_MARKERS) or ".old-" in name


def temp_leftovers(root: Path) -> list[Path]:
    """Temporary and half-written files or folders anywhere under ``root``."""
    return sorted(p for p in Path(root).rglob("*") if is_temp(p))


def assert_no_leftovers(root: Path) -> None:
    left = temp_leftovers(root)
    assert not left, f"temporary files left behind: {[str(p.relative_to(root)) for p in left]}"


def load_any(path: Path) -> Any:
    """Read one workspace or trace file by its kind; raises on a torn or corrupt file."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return read_json(path)
    if suffix == ".safetensors":
        meta = load_tensors_metadata(path)
        return {k: v.numpy() for k, v in load_tensors(path).items()}, meta
    if suffix in (".wav", ".flac"):
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return data, rate
    raise AssertionError(f"{path}: unexpected file in the output")


def assert_every_file_loads(root: Path, *, skip_temp: bool = False) -> int:
    """Every file under ``root`` reads back (temporary ones skipped when ``skip_temp``); returns the count."""
    count = 0
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file() or (skip_temp and any(is_temp(p) for p in (path, *path.parents))):
            continue
        load_any(path)
        count += 1
    return count


def _without(value: Any, keys: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.floating)))


def assert_same_tree(reference: Path, got: Path, *, volatile: frozenset[str] = VOLATILE_KEYS) -> int:
    """The two folders hold the same files with equal contents: tensors and audio bit for bit,
    JSON equal but for ``volatile`` keys (clocks, run ids).  Returns the number of files."""
    ref_files = sorted(p.relative_to(reference) for p in reference.rglob("*") if p.is_file())
    got_files = sorted(p.relative_to(got) for p in got.rglob("*") if p.is_file())
    assert ref_files == got_files, f"different files: only in reference {set(ref_files) - set(got_files)}, " \
                                   f"only in resumed {set(got_files) - set(ref_files)}"
    for rel in ref_files:
        a, b = load_any(reference / rel), load_any(got / rel)
        if rel.suffix == ".json":
            assert _without(a, volatile) == _without(b, volatile), f"{rel}: JSON differs"
        elif rel.suffix == ".safetensors":
            (ta, ma), (tb, mb) = a, b
            assert ta.keys() == tb.keys(), f"{rel}: tensor names differ"
            for name in ta:
                assert _same_array(ta[name], tb[name]), f"{rel}: tensor {name!r} differs"
            assert _without(ma, volatile) == _without(mb, volatile), f"{rel}: header metadata differs"
        else:
            assert a[1] == b[1] and _same_array(a[0], b[0]), f"{rel}: audio differs"
    return len(ref_files)


def json_stdout(run: Run) -> dict[str, Any]:
    return json.loads(run.stdout)
