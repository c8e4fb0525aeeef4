"""Redraw and re-sort times of the explorer's timeline on a long clip.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_timeline.py [--minutes 10] [--features 2048]
                                                                  [--top 64] [--width 1600] [--json]

A synthetic ``ClipAnalysis`` (``minutes`` of 24 kHz audio, 75 frames/s, ``features`` sparse
non-negative SAE features, random probes) is shown in a ``studio.widgets.timeline.TimelineView``
of ``width`` x 900 px, offscreen.  Figures (milliseconds, medians over repeats):

- ``pyramid_build_ms``: the waveform peak pyramid, once per clip;
- ``waveform_update_ms[span]``: envelope + curve update after a range change, per zoom;
- ``paint_ms[span]``: a full repaint of the view (``grab``) at that zoom (all panes);
- ``resort_cached_ms``: re-sort by mass when the top N rows are already cached;
  ``resort_cold_ms``: the same with every row gathered again (``gather_64_rows_ms`` of it);
  ``pan_and_resort_ms``: move a 60 s view and re-sort (the debounced path: only ids new to
  the top N are gathered); ``order_probe_cold_ms`` / ``order_density_cold_ms`` likewise;
- ``steered_update_ms``: a new ``f'`` arrives (the live steering path): rows re-gathered
  from ``f'`` and recoloured, heatmap only; ``lanes_decode_ms``: the probes on ``f'``.
All in the GUI thread (no runner), i.e. the worst case: with a ``JobRunner`` the view
moves large gathers and the clip preparation into jobs; ``gui_stall_ms`` is then the
longest gap of a 5 ms GUI timer during each action (load, steer, re-order, zoom, pan).
``run(...)`` returns every figure as a dict.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import numpy as np  # noqa: E402
import torch  # noqa: E402


def synthetic_clip(minutes: float, n_features: int, sample_rate: int = 24000, fps: float = 75.0, seed: int = 0):
    """A ClipAnalysis-shaped object and matching random models (probes + spec)."""
    from audiosae.analysis import ClipAnalysis
    from audiosae.attributes import AttributeSpec, FrameAttributes
    from audiosae.probes import ProbeSet

    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * sample_rate)
    t = np.arange(n, dtype=np.float32) / sample_rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.1 * t))
            + 0.02 * rng.standard_normal(n).astype(np.float32))[None, :].astype(np.float32)
    frames = int(n / sample_rate * fps)
    times = (np.arange(frames) + 0.5) / fps
    f = np.maximum(rng.standard_normal((frames, n_features), dtype=np.float32) - 1.8, 0.0)
    spec = AttributeSpec()
    measured = FrameAttributes(midi=np.full(frames, 57.0) + rng.standard_normal(frames) * 0.1,
                               periodicity=np.full(frames, 0.9), loudness_db=np.full(frames, -20.0),
                               centroid_hz=np.full(frames, 1500.0))
    n_classes = {a: spec.n_classes(a) for a in ("pitch", "loudness", "timbre")}
    probes = ProbeSet(weights={a: torch.randn(k, n_features) * 0.1 for a, k in n_classes.items()},
                      bias={a: torch.zeros(k) for a, k in n_classes.items()},
                      class_names={a: spec.class_names(a) for a in n_classes}, feature_kind="sae")
    with torch.no_grad():
        probs = {a: probes.predict_proba(torch.from_numpy(f[:4096]), a).numpy() for a in n_classes}
    probs = {a: np.resize(p, (frames, p.shape[1])) for a, p in probs.items()}
    analysis = ClipAnalysis(wave=wave, sample_rate=sample_rate, times=times, latents=f[:, :1], h=f, f=f,
                            measured=measured, measured_classes=spec.classify(measured), probabilities=probs,
                            source="synthetic")
    models = types.SimpleNamespace(probes=probes, spec=spec, workspace=None,
                                   sae=types.SimpleNamespace(cfg=types.SimpleNamespace(name="synthetic")))
    return analysis, models


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 2)


def run(minutes: float = 10.0, features: int = 2048, top: int = 64, width: int = 1600, repeats: int = 7) -> dict:
    from PySide6.QtWidgets import QApplication

    from studio.state import ExplorerState
    from studio.widgets.timeline import TimelineView
    from studio.layers.peaks import PeakPyramid

    app = QApplication.instance() or QApplication([])
    analysis, models = synthetic_clip(minutes, features)
    out: dict = {"minutes": minutes, "frames": analysis.n_frames, "features": features, "top": top,
                 "width_px": width, "threads": torch.get_num_threads()}
    out["pyramid_build_ms"] = _median_ms(lambda: PeakPyramid.from_wave(analysis.wave, analysis.sample_rate), 3)
    from studio.layers.clip import prepare_clip_display
    out["prepare_clip_ms"] = _median_ms(lambda: prepare_clip_display(analysis), 3)

    state = ExplorerState()
    state.set_models(models)
    view = TimelineView(state, None, None)
    view.header.top_n.setValue(top)
    view.resize(width, 900)
    view.show()
    app.processEvents()
    start = time.perf_counter()
    state.set_analysis(analysis, "synthetic")
    app.processEvents()
    out["set_analysis_ms"] = round((time.perf_counter() - start) * 1e3, 1)
    seconds = analysis.seconds

    out["waveform_update_ms"], out["waveform_points"], out["paint_ms"] = {}, {}, {}
    for span in (seconds, 60.0, 5.0, 0.05):
        label = f"{span:g}s"
        k = [0]

        def move() -> None:
            k[0] += 1
            a = (seconds - span) * ((k[0] * 0.37) % 1.0)
            view.waveform.view_box.setXRange(a, a + span, padding=0)

        samples = []
        for _ in range(repeats):
            move()
            samples.append(view.waveform.last_update_ms)
        out["waveform_update_ms"][label] = round(statistics.median(samples), 2)
        out["waveform_points"][label] = int(len(view.waveform.curve.xData))
        app.processEvents()
        out["paint_ms"][label] = _median_ms(lambda: view.graphics.grab(), repeats)

    view.fit()
    app.processEvents()
    state.set_feature_order("mass")
    out["resort_cached_ms"] = _median_ms(view.refresh_rows, repeats)

    def cold() -> None:
        view.heatmap.cache.rows.clear()
        view.refresh_rows()

    out["resort_cold_ms"] = _median_ms(cold, repeats)
    out["gather_64_rows_ms"] = round(view.heatmap.last_gather_ms, 2)
    out["heatmap_image_ms"] = round(view.heatmap.last_draw_ms, 2)
    k2 = [0]

    def pan_and_resort() -> None:   # the view moved: only the ids new to the top N are gathered
        k2[0] += 1
        a = (seconds - 60.0) * ((k2[0] * 0.37) % 1.0)
        view.waveform.view_box.setXRange(a, a + 60.0, padding=0)
        view.refresh_rows()

    out["pan_and_resort_ms"] = _median_ms(pan_and_resort, repeats)
    view.fit()
    state.set_feature_order("probe")
    out["order_probe_cold_ms"] = _median_ms(cold, repeats)
    state.set_feature_order("density")
    view.refresh_rows()  # the clip density is computed once per clip
    out["order_density_cold_ms"] = _median_ms(cold, repeats)
    state.set_feature_order("mass")

    steered = [np.ascontiguousarray(analysis.f * np.float32(1.0 + 0.01 * k)) for k in range(2)]
    k = [0]

    def steer_heatmap() -> None:
        k[0] += 1
        view.heatmap.set_features(steered[k[0] % 2])
        view.refresh_rows()

    out["steered_update_ms"] = _median_ms(steer_heatmap, repeats)
    from audiosae.explore.decoding import decode_classes
    out["lanes_decode_ms"] = _median_ms(lambda: decode_classes(models.probes, steered[0],
                                                               ["pitch", "loudness", "timbre"]), 3)
    view.close()
    view.deleteLater()
    app.processEvents()
    out["gui_stall_ms"] = gui_stalls(analysis, models, width)
    return out


def gui_stalls(analysis, models, width: int) -> dict[str, float]:
    """Longest GUI event-loop gap (a 5 ms timer's) per action, with a JobRunner doing the big work."""
    from PySide6.QtCore import QTimer
    from PySide6.QtTest import QTest

    from studio.state import ExplorerState
    from studio.widgets.timeline import TimelineView
    from studio.workers import JobRunner

    state, runner = ExplorerState(), JobRunner()
    state.set_models(models)
    view = TimelineView(state, runner, None)
    view.resize(width, 900)
    view.show()
    QTest.qWait(100)
    gaps, last = [], [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(5)
    steered = np.ascontiguousarray(analysis.f * np.float32(1.1))
    out = {}
    for label, action in (("set_analysis", lambda: state.set_analysis(analysis, "synthetic")),
                          ("steered_f", lambda: state.set_steered_features(steered)),
                          ("order_probe", lambda: state.set_feature_order("probe")),
                          ("zoom_4x", lambda: view.zoom(4.0)),
                          ("pan", lambda: view.waveform.view_box.setXRange(200.0, 350.0, padding=0))):
        gaps.clear()
        last[0] = time.perf_counter()
        action()
        while not view.ready:
            QTest.qWait(20)
        QTest.qWait(300)   # the debounced re-sort and the repaint
        out[label] = round(max(gaps) * 1e3, 1)
    timer.stop()
    view.close()
    runner.shutdown()
    view.deleteLater()
    QTest.qWait(10)   # deferred deletes now, not at interpreter exit (after QApplication is gone)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--features", type=int, default=2048)
    ap.add_argument("--top", type=int, default=64)
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    figures = run(args.minutes, args.features, args.top, args.width)
    print(json.dumps(figures, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
