"""The studio as a user drives it: slider-to-audible latency, underruns and GUI stalls under load.

    python benchmarks/bench_studio.py [--output virtual|device] [--device NAME] [--null-sink]
                                      [--window main|panel] [--run 20] [--interval 0.3]
                                      [--threads 1] [--no-training] [--json]

The real ``studio.main_window.MainWindow`` (``--window panel``: the audition panel alone in a
bare QMainWindow with an ExplorerState) opens the demo workspace ``resources/demo`` (a tiny
one is built when it is absent) and its first clip.  The audition loops the whole clip; a
QTimer on the GUI thread moves alpha every ~``interval`` s (0.8-1.2x, as a user would) for
``run`` s, steering the whole clip (every chunk goes stale on every move: the worst case).
Meanwhile a ``train_workspace`` job (a grid of 4 SAEs on a separate tiny workspace) runs in
the window's JobRunner, and a 10 ms QTimer probes the GUI event loop.

Figures:
(a) slider-to-audible latency: from the alpha change on the GUI thread to the first moment
    the sample at the listener's playhead (``Player.heard_tag``, output latency included)
    comes from that parameter version or a newer one; median, p95, max;
(b) underruns: device underflows and ring-buffer dry callbacks during the run;
(c) GUI stalls: gaps between 10 ms probe ticks; max gap and how many exceeded 50 ms.  A
    watchdog thread samples the GUI thread's Python stack once per stall (no tick for 45 ms)
    and reports where the stalls were (innermost frame, innermost frame in studio/).

``--output virtual``: a silent clock stands in for the device (offscreen, CI).  ``--output
device`` plays on a real output (``--device NAME``); ``--null-sink`` starts a private
PulseAudio null sink first (as ``tests/support/audio_device.py`` does) and plays on ALSA's "pulse".
``--threads``: torch intra-op threads for the whole process (render worker, heatmap and
training share them).  ``run(...)`` returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
if "DISPLAY" not in os.environ and "WAYLAND_DISPLAY" not in os.environ:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402
from PySide6.QtCore import QEventLoop, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QMainWindow  # noqa: E402

from audiosae.training import TrainSettings, train_workspace  # noqa: E402
from audiosae.workspace import Workspace, build_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo"
PROBE_MS = 10
STALL_MS = 50.0
POLL_SECONDS = 0.001
WATCHDOG_SECONDS = 0.045
ALPHAS = tuple(np.round(np.arange(2.0, 40.01, 0.5), 1))
TRAIN_GRID = {"expansions": [4, 8], "l1s": [0.01, 0.05], "epochs": 500, "batch_size": 256}


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _wait(app: QApplication, predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench_studio: timed out waiting for {what}")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.002)


def _spin(app: QApplication, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.001)


def _niced(fn: Any, nice: int) -> Any:
    """``fn`` run with its thread's OS niceness raised by ``nice`` (Linux threads have their own)."""
    if not nice:
        return fn

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        return fn(*args, **kwargs)

    return wrapper


def _rss_mib() -> float:
    """Resident memory of this process now (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _describe(stack: traceback.StackSummary) -> str:
    """``innermost frame [<- innermost frame in studio/]`` of a GUI-thread stack sample."""
    def name(f: traceback.FrameSummary) -> str:
        path = Path(f.filename)
        return f"{path.parent.name}/{path.name}:{f.lineno} {f.name}"

    inner = stack[-1]
    own = next((f for f in reversed(stack) if f"{os.sep}studio{os.sep}" in f.filename), None)
    return name(inner) + ("" if own is None or own is inner else f" <- {name(own)}")


def _tiny_workspace(root: Path, minutes: float = 0.3) -> Workspace:
    from audiosae.corpus import builtin_sources

    ws = Workspace.create(root, "mel")
    build_corpus(ws, builtin_sources("tones", minutes=minutes), device="cpu")
    return ws


@contextlib.contextmanager
def null_sink() -> Iterator[Any]:
    """The PulseAudio null sink of ``tests/support/audio_device.py`` outside pytest (its fixture's body)."""
    from tests.support.audio_device import pulse_null_sink

    body = getattr(pulse_null_sink, "__wrapped__", pulse_null_sink)
    generator = body()
    try:
        sink = next(generator)
    except BaseException as exc:  # pytest.skip raises an OutcomeException (a BaseException)
        raise RuntimeError(f"bench_studio: no null sink: {exc}") from None
    try:
        yield sink
    finally:
        generator.close()


class _Window:
    """The MainWindow, or the panel alone in a bare QMainWindow; both expose state/runner/audition."""

    def __init__(self, kind: str, workspace: Path, settings_path: Path):
        from studio.settings import StudioSettings

        self.settings = StudioSettings(settings_path)
        self.kind = kind
        if kind == "main":
            from studio.main_window import MainWindow

            self.window = MainWindow(self.settings, device="cpu")
            self.window.resize(1400, 900)
            self.window.show()
            self.state, self.runner, self.audition = self.window.state, self.window.runner, self.window.audition
            if not self.window.open_workspace(workspace):
                raise RuntimeError(f"bench_studio: MainWindow could not open {workspace}")
        else:
            from studio.widgets.audition import AuditionPanel
            from studio.state import ExplorerState
            from studio.workers import JobRunner

            self.window = QMainWindow()
            self.state, self.runner = ExplorerState(self.window), JobRunner(self.window)
            self.audition = AuditionPanel(self.state, self.runner, self.settings, self.window)
            self.window.setCentralWidget(self.audition)
            self.window.resize(500, 360)
            self.window.show()
            self._load(workspace)

    def _load(self, workspace: Path) -> None:
        from audiosae.analysis import LoadedModels
        from audiosae.audio import AUDIO_EXTENSIONS, load_audio
        from audiosae.corpus import builtin_sources

        ws = Workspace.open(workspace)
        models = LoadedModels.load(ws, device="cpu")
        clips = sorted(p for p in (ws.root / "clips").glob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        if clips:
            wave, name = load_audio(clips[0], models.backend.sample_rate, models.backend.channels), str(clips[0])
        else:
            source = builtin_sources("tones", minutes=0.3)[-1]
            wave, name = source.load(models.backend.sample_rate, models.backend.channels), source.source_id
        self.state.set_workspace(ws)
        self.state.set_models(models)
        self.state.set_analysis(models.analyze(wave, source=name), name)

    def close(self) -> None:
        if self.kind == "main":
            self.window.close()   # saves settings, shuts the panes and the runner down
        else:
            self.audition.shutdown()
            self.runner.shutdown()
            self.window.close()
        self.window.deleteLater()


def measure(window_kind: str = "main", *, output: str = "virtual", device: str | None = None,
            run_seconds: float = 20.0, interval: float = 0.3, training: bool = True, training_nice: int = 0,
            seed: int = 0, keep_training: bool = False, snapshot_seconds: float | None = None) -> dict:
    """One run: open, loop, move alpha, train alongside, probe; returns the figures.

    ``keep_training``: submit a fresh training job whenever one finishes, so training runs for
    the whole run (a soak); ``snapshot_seconds``: also record, every so many seconds, the
    underruns, GUI gaps, latencies and process memory of that interval (``"intervals"``).
    """
    from studio.widgets.audition import AuditionPanel

    app = QApplication.instance() or QApplication(sys.argv[:1])
    try:  # PySide6 6.12.0 on Python 3.11 drops references to None/True; the app applies this at start
        from studio.app import guard_singleton_refcounts

        guard_singleton_refcounts()
    except ImportError:
        pass
    from audiosae.memory import keep_large_allocations_off_the_heap

    keep_large_allocations_off_the_heap()  # as studio.app.main does
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="bench-studio-") as folder:
        folder_path = Path(folder)
        workspace = DEMO if (DEMO / "workspace.json").is_file() else None
        if workspace is None:  # no demo: a tiny workspace with one SAE
            ws = _tiny_workspace(folder_path / "explore")
            train_workspace(ws, TrainSettings(expansions=[4], l1s=[0.02], epochs=5, batch_size=256))
            workspace = ws.root
        train_ws = _tiny_workspace(folder_path / "train") if training else None
        train_template = folder_path / "train-template"
        if train_ws is not None and keep_training:   # untrained copy for the next rounds
            shutil.copytree(train_ws.root, train_template)

        AuditionPanel.player_output = output
        began = time.perf_counter()
        win = _Window(window_kind, workspace, folder_path / "settings.ini")
        if device is not None:
            win.settings.audio_device = device
        panel = win.audition
        if not isinstance(panel, AuditionPanel):
            raise RuntimeError(f"bench_studio: the window's audition pane is {type(panel).__name__}, "
                               f"not an AuditionPanel (it failed to build: see the log)")
        try:
            _wait(app, lambda: panel.session is not None, 120, "the clip's audition session")
            open_seconds = time.perf_counter() - began
            if device is not None and panel.player.device_name != device:
                panel.set_output_device(device)
            renderer, player = panel.renderer, panel.player
            panel.set_alpha(float(rng.choice(ALPHAS)))
            _wait(app, lambda: renderer.invalid_chunks() == [], 60, "the first full render")
            panel.toggle_loop()
            panel.toggle_play()
            # Steady playback first: a PulseAudio stream can stall for a second after it opens.
            _wait(app, lambda: player.position() > 0.2 * renderer.sample_rate, 15, "playback to start")
            _spin(app, 0.5)

            # (c) the GUI probe, (a) the listener monitor, the training job, then the user.
            ticks: list[float] = []
            probe = QTimer()
            probe.setTimerType(Qt.TimerType.PreciseTimer)
            probe.setInterval(PROBE_MS)
            probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
            gui_thread = threading.get_ident()
            stall_sites: Counter[str] = Counter()
            pending: list[tuple[int, float]] = []
            latencies: list[float] = []
            lock = threading.Lock()
            stop = threading.Event()

            def monitor() -> None:
                while not stop.is_set():
                    tag = player.heard_tag()
                    now = time.perf_counter()
                    if tag is not None:
                        with lock:
                            while pending and pending[0][0] <= tag:
                                latencies.append(1000.0 * (now - pending.pop(0)[1]))
                    time.sleep(POLL_SECONDS)

            def watchdog() -> None:  # where is the GUI thread when it misses its ticks?
                sampled = None
                while not stop.is_set():
                    last = ticks[-1] if ticks else None
                    if last is not None and last != sampled and time.perf_counter() - last > WATCHDOG_SECONDS:
                        sampled = last
                        frame = sys._current_frames().get(gui_thread)
                        if frame is not None:
                            stall_sites[_describe(traceback.extract_stack(frame))] += 1
                    time.sleep(0.005)

            changes = []

            def move() -> None:
                current = panel.alpha
                alpha = float(rng.choice([a for a in ALPHAS if a != current]))
                t0 = time.perf_counter()
                panel.alpha_slider.setValue(int(round(alpha * 10)))   # what dragging the slider does
                changes.append(1000.0 * (time.perf_counter() - t0))
                with lock:
                    pending.append((renderer.version, t0))
                mover.start(int(1000 * interval * rng.uniform(0.8, 1.2)))

            mover = QTimer()
            mover.setSingleShot(True)
            mover.timeout.connect(move)

            job = None
            train_progress: list[Any] = []   # only the latest event: a soak would hoard thousands
            trainings_finished = [0]

            training_ended = [False]
            training_ends: list[float] = []

            def submit_training(workspace_to_train: Workspace) -> Any:
                training_ended[0] = False
                handle = win.runner.submit("bench: train SAE grid", _niced(train_workspace, training_nice),
                                           workspace_to_train, TrainSettings(**TRAIN_GRID), device="cpu")
                handle.progress.connect(lambda event: train_progress.__setitem__(slice(None), [event]))
                handle.done.connect(lambda *_: training_ended.__setitem__(0, True))
                handle.done.connect(lambda *_: training_ends.append(time.perf_counter()))
                return handle

            def retrain() -> None:  # keep_training: the same grid on a fresh copy as soon as one ends
                nonlocal job
                if job is not None and training_ended[0] and not stop.is_set():
                    trainings_finished[0] += 1
                    copy = folder_path / f"train-{trainings_finished[0]}"
                    shutil.copytree(train_template, copy)
                    job = submit_training(Workspace.open(copy))

            if train_ws is not None:
                job = submit_training(train_ws)
            retrainer = QTimer()
            retrainer.setInterval(500)
            retrainer.timeout.connect(retrain)
            if keep_training and job is not None:
                retrainer.start()

            intervals: list[dict[str, Any]] = []
            mark = {"tick": 0, "latency": 0, "under": dict(player.underruns), "t": 0.0}

            def snapshot() -> None:
                now_ticks, now_lat = len(ticks), len(latencies)
                span = np.diff(np.asarray(ticks[max(0, mark["tick"] - 1):now_ticks])) * 1000.0
                under = player.underruns
                with lock:
                    lat = latencies[mark["latency"]:now_lat]
                intervals.append({
                    "until_s": round(time.perf_counter() - start, 1),
                    "underruns": sum(under[k] - mark["under"][k] for k in under),
                    "gui_gap_ms_max": round(float(span.max()), 1) if span.size else float("nan"),
                    "gui_gaps_over_50ms": int((span > STALL_MS).sum()),
                    "latency_ms_median": round(statistics.median(lat), 1) if lat else float("nan"),
                    "latency_ms_max": round(max(lat), 1) if lat else float("nan"),
                    "rss_mib": round(_rss_mib(), 1),
                    "trainings_finished": trainings_finished[0],
                })
                mark.update(tick=now_ticks, latency=now_lat, under=dict(under))

            snapper = QTimer()
            snapper.setInterval(int(1000 * (snapshot_seconds or 60)))
            snapper.timeout.connect(snapshot)
            watcher = threading.Thread(target=monitor, name="bench-listener", daemon=True)
            watcher.start()
            dog = threading.Thread(target=watchdog, name="bench-watchdog", daemon=True)
            dog.start()
            under_before = dict(player.underruns)
            rss_start = _rss_mib()
            probe.start()
            mover.start(0)
            start = time.perf_counter()
            if snapshot_seconds:
                snapper.start()
            _spin(app, run_seconds)
            mover.stop()
            _spin(app, 0.6)   # let the last change be heard
            probe.stop()
            snapper.stop()
            retrainer.stop()
            if snapshot_seconds and (not intervals or intervals[-1]["until_s"] < run_seconds):
                snapshot()
            training_running = job is not None and job.running
            underruns = {k: v - under_before[k] for k, v in player.underruns.items()}
            stop.set()
            watcher.join(2)
            dog.join(2)
            if job is not None:
                job.cancel()
                job.wait(30_000)
                _spin(app, 0.1)
            with lock:
                not_heard = len(pending)
            stats = renderer.stats()
            gaps = 1000.0 * np.diff(np.asarray(ticks)) if len(ticks) > 1 else np.zeros(0)
            last = train_progress[-1] if train_progress else None
            result = {
                "window": "MainWindow" if window_kind == "main" else "AuditionPanel in a bare QMainWindow",
                "workspace": str(workspace),
                "clip": win.state.clip_path,
                "clip_seconds": round(renderer.duration, 2),
                "output": player.output_kind,
                "device": player.device_name,
                "output_note": player.message or ("" if player.available else player.reason),
                "output_latency_ms": round(1000 * player.output_latency, 1),
                "open_to_ready_seconds": round(open_seconds, 2),
                "chunks": renderer.n_chunks,
                "mean_chunk_render_ms": round(1000 * stats.mean_render_seconds, 2),
                "alpha_changes": len(changes),
                "set_alpha_gui_ms_max": round(max(changes), 2) if changes else float("nan"),
                "latency_ms_median": round(statistics.median(latencies), 1) if latencies else float("nan"),
                "latency_ms_p95": round(_percentile(latencies, 95), 1),
                "latency_ms_max": round(max(latencies), 1) if latencies else float("nan"),
                "changes_not_heard": not_heard,
                "underruns": underruns,
                "splice_retries": player.splice_retries,
                "splices_missed": player.splices_missed,
                "stale_renders": stats.stale_renders,
                "gui_probe_ticks": int(len(ticks)),
                "gui_gap_ms_max": round(float(gaps.max()), 1) if gaps.size else float("nan"),
                "gui_gap_ms_p99": round(_percentile(list(gaps), 99), 1),
                "gui_gaps_over_50ms": int((gaps > STALL_MS).sum()),
                # when (s into the run) each stall ended and each training job finished: do they line up?
                "gui_stalls_at_s": [round(ticks[i + 1] - start, 1) for i in np.flatnonzero(gaps > STALL_MS)],
                "training_finished_at_s": [round(t - start, 1) for t in training_ends],
                "gui_stall_sites": dict(stall_sites.most_common(8)),
                "rss_mib_start": round(rss_start, 1),
                "rss_mib_end": round(_rss_mib(), 1),
                "intervals": intervals,
                "training": None if job is None else {
                    "grid": TRAIN_GRID, "still_running_at_end": training_running, "nice": training_nice,
                    "jobs_finished": trainings_finished[0],
                    "last_progress": None if last is None else f"{last.stage} {last.done}/{last.total} {last.message}"},
                "elapsed_seconds": round(time.perf_counter() - start, 1),
            }
        finally:
            win.close()
            app.processEvents()
    return result


def run(window: str | None = None, output: str = "virtual", device: str | None = None, run_seconds: float = 20.0,
        interval: float = 0.3, training: bool = True, threads: int | None = None, null_sink_output: bool = False,
        training_nice: int = 0, switch_interval: float | None = None, keep_training: bool = False,
        snapshot_seconds: float | None = None) -> dict:
    """Figures as a JSON-ready dict.  ``window``: "main" (default when ``studio.main_window``
    imports) or "panel"; ``threads``: torch intra-op threads (None: leave torch's default);
    ``training_nice``: OS niceness of the training job's thread (Linux; 0 = unchanged);
    ``switch_interval``: Python's GIL switch interval in seconds (None: unchanged, 0.005)."""
    if threads is not None:
        torch.set_num_threads(threads)
    if switch_interval is not None:
        sys.setswitchinterval(switch_interval)
    if window is None:
        try:
            import studio.main_window  # noqa: F401
            window = "main"
        except ImportError:
            window = "panel"
    context = null_sink() if null_sink_output else contextlib.nullcontext()
    with context:
        if null_sink_output:
            output, device = "device", device or "pulse"
        figures = measure(window, output=output, device=device, run_seconds=run_seconds, interval=interval,
                          training=training, training_nice=training_nice, keep_training=keep_training,
                          snapshot_seconds=snapshot_seconds)
    return {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "switch_interval_ms": 1000 * sys.getswitchinterval(), "load_average": os.getloadavg()[0],
            "interval_seconds": interval, "run_seconds": run_seconds, **figures}


def _print_report(r: dict) -> None:
    print(f"{r['window']}, torch {r['torch']} with {r['torch_threads']} intra-op thread(s) on {r['cpu_count']} CPUs "
          f"(load average {r['load_average']:.1f}), GIL switch interval {r['switch_interval_ms']:g} ms")
    print(f"  clip {r['clip']} ({r['clip_seconds']} s, {r['chunks']} chunks), ready {r['open_to_ready_seconds']} s "
          f"after opening; chunk render {r['mean_chunk_render_ms']} ms (mean)")
    print(f"  output: {r['output']}" + (f" '{r['device']}'" if r["device"] else "")
          + f", {r['output_latency_ms']} ms output latency" + (f" ({r['output_note']})" if r["output_note"] else ""))
    training = r["training"]
    print("  training alongside: " + ("none" if training is None else
                                      f"{training['last_progress']} (nice {training['nice']}; running to the end: "
                                      f"{training['still_running_at_end']})"))
    print(f"  (a) slider-to-audible over {r['alpha_changes']} changes (alpha moved every ~{1000 * r['interval_seconds']:.0f}"
          f" ms for {r['run_seconds']:g} s): median {r['latency_ms_median']} ms, p95 {r['latency_ms_p95']} ms, "
          f"max {r['latency_ms_max']} ms; not heard at the end: {r['changes_not_heard']}; "
          f"set_params on the GUI thread <= {r['set_alpha_gui_ms_max']} ms")
    print(f"  (b) underruns: device {r['underruns']['device_underflows']}, ring dry {r['underruns']['ring_dry']}; "
          f"splices redone {r['splice_retries']}, missed {r['splices_missed']}; stale renders {r['stale_renders']}")
    print(f"  (c) GUI probe ({PROBE_MS} ms timer, {r['gui_probe_ticks']} ticks): max gap {r['gui_gap_ms_max']} ms, "
          f"p99 {r['gui_gap_ms_p99']} ms, gaps > {STALL_MS:g} ms: {r['gui_gaps_over_50ms']}")
    for site, count in r["gui_stall_sites"].items():
        print(f"      stalled {count}x in {site}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", choices=["main", "panel"], default=None,
                        help="the real MainWindow (default when it exists) or the audition panel alone")
    parser.add_argument("--output", choices=["virtual", "device"], default="virtual")
    parser.add_argument("--device", default=None, help="output device name (with --output device)")
    parser.add_argument("--null-sink", action="store_true", help="play on a private PulseAudio null sink")
    parser.add_argument("--run", type=float, default=20.0, help="seconds of simulated slider movement")
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between alpha changes")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--no-training", action="store_true", help="no training job alongside")
    parser.add_argument("--nice-training", type=int, default=0,
                        help="run the training job's thread at this OS niceness (Linux), e.g. 10")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="Python's GIL switch interval in seconds (default: Python's 0.005)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = run(args.window, args.output, args.device, args.run, args.interval, not args.no_training,
                 args.threads, args.null_sink, args.nice_training, args.switch_interval)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
