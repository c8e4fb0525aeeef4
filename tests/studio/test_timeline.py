"""The explorer's timeline: waveform peaks, feature heatmap, attribute lanes on one time axis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402

from audiosae.analysis import ClipAnalysis, LoadedModels  # noqa: E402
from audiosae.attributes import AttributeSpec, FrameAttributes  # noqa: E402
from audiosae.corpus import builtin_sources  # noqa: E402
from audiosae.feature_index import build_feature_index  # noqa: E402
from audiosae.probes import ProbeSet  # noqa: E402
from audiosae.realtime import SteeringParams  # noqa: E402
from audiosae.sae import rms_norm  # noqa: E402
from audiosae.training import TrainSettings, train_workspace  # noqa: E402
from audiosae.workspace import Workspace, build_corpus  # noqa: E402
from studio.layers.feature_rows import BlockMass, FeatureRows, gather_rows, top_features  # noqa: E402
from studio.layers.lanes import visible_minmax  # noqa: E402
from studio.layers.peaks import PeakPyramid  # noqa: E402
from studio.models import steered_lanes as steered_lanes_module  # noqa: E402
from studio.settings import StudioSettings  # noqa: E402
from studio.state import ExplorerState  # noqa: E402
from studio.widgets import heatmap as heatmap_module  # noqa: E402
from studio.widgets import timeline as timeline_module  # noqa: E402
from studio.widgets.timeline import TimelineView  # noqa: E402
from studio.workers import JobRunner  # noqa: E402
from tests.support.qt_fixtures import isolated_settings, qt_leak_check, qt_leak_guard  # noqa: E402,F401
from tests.support.timeline_view import shown_timeline  # noqa: E402

PANES = ("waveform", "heatmap", "pitch lane", "loudness lane", "centroid lane")


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny mel workspace (tones, 2 epochs) with a feature index, its models and one clip."""
    root = tmp_path_factory.mktemp("timeline") / "ws"
    ws = Workspace.create(root, "mel")
    sources = builtin_sources("tones", minutes=0.3)
    build_corpus(ws, sources, device="cpu")
    train_workspace(ws, TrainSettings(expansions=[4], l1s=[0.02], epochs=2, batch_size=256))
    models = LoadedModels.load(ws, device="cpu")
    index = build_feature_index(ws, models.sae.cfg.name)
    analysis = models.analyze(sources[0].load(models.backend.sample_rate, 1))
    return ws, models, analysis, index


@pytest.fixture
def env(qtbot, built):
    """A shown TimelineView on a state holding the workspace's models (no clip yet)."""
    ws, models, analysis, index = built
    with shown_timeline(qtbot, ws, models) as (view, state):
        yield view, state, models, analysis, index


def _viewport_point(view: TimelineView, vb, x: float, y: float) -> QPoint:
    return view.graphics.mapFromScene(vb.mapViewToScene(QPointF(x, y)))


def _click(qtbot, view: TimelineView, vb, x: float, y: float) -> None:
    qtbot.mouseClick(view.graphics.viewport(), Qt.MouseButton.LeftButton, pos=_viewport_point(view, vb, x, y))


def _x_ranges(view: TimelineView) -> dict[str, tuple[float, float]]:
    return {name: tuple(plot.getViewBox().viewRange()[0]) for name, plot in view.panes.items()}


def _steered(models: LoadedModels, f: np.ndarray, attr: str, k: int, alpha: float) -> np.ndarray:
    w = models.probes.weights[attr][k].float()
    return rms_norm(torch.from_numpy(f) + alpha * w).numpy().astype(np.float32)


# ---- pure parts ---------------------------------------------------------------------------
def test_pyramid_buckets_are_exact_min_max_of_their_samples():
    rng = np.random.default_rng(3)
    samples = rng.standard_normal(100_003).astype(np.float32)
    pyramid = PeakPyramid(samples, 1000, factor=8)
    assert len(pyramid.levels) >= 4
    for level in range(1, len(pyramid.levels)):
        size = pyramid.bucket_size(level)
        n_buckets = len(pyramid.levels[level][0])
        assert n_buckets == -(-len(samples) // size)
        for index in (0, 1, n_buckets // 2, n_buckets - 1):   # the last bucket is partial
            chunk = samples[index * size:(index + 1) * size]
            assert pyramid.bucket(level, index) == (float(chunk.min()), float(chunk.max()))
    # Whole clip on 300 columns: ~2 points per column, and the extremes survive.
    x, y, is_envelope = pyramid.envelope(0.0, pyramid.seconds, 300)
    assert is_envelope and len(x) <= 600 and len(x) == len(y)
    assert y.min() == samples.min() and y.max() == samples.max()
    # Zoomed far in: the samples themselves.
    x, y, is_envelope = pyramid.envelope(10.0, 10.05, 300)
    assert not is_envelope and np.array_equal(y, samples[10000:10051])


def test_ordering_helpers():
    assert top_features(np.array([1.0, 3.0, 3.0, 0.0, 2.0]), 3).tolist() == [1, 2, 4]   # tie -> lower id
    assert top_features(np.zeros(4), 2).tolist() == [0, 1]
    rng = np.random.default_rng(0)
    f = rng.random((1000, 7)).astype(np.float32)
    mass = BlockMass(f, block=64)
    for i0, i1 in ((0, 1000), (3, 5), (63, 129), (100, 999), (640, 1000)):
        np.testing.assert_allclose(mass.in_range(i0, i1), f[i0:i1].sum(axis=0, dtype=np.float64), rtol=1e-5)


def test_feature_rows_image_is_max_over_each_column():
    rng = np.random.default_rng(1)
    f = np.maximum(rng.standard_normal((1001, 40)).astype(np.float32), 0)
    f[17, 5] = np.nan   # must not reach the image
    rows = FeatureRows(f)
    ids = [5, 0, 33]
    rows.add(gather_rows(f, ids))
    clean = np.nan_to_num(f)
    for i0, i1, columns in ((0, 1001, 2000), (0, 1001, 100), (250, 700, 60), (990, 1001, 3)):
        image, first, pool = rows.image(ids, i0, i1, columns)
        assert image.dtype == np.float32 and image.flags.c_contiguous and np.isfinite(image).all()
        assert image.shape[1] <= columns and first <= i0 and first % pool == 0
        assert first + image.shape[1] * pool >= i1
        for c in range(image.shape[1]):
            span = clean[first + c * pool: first + (c + 1) * pool]
            np.testing.assert_array_equal(image[:, c], span[:, ids].max(axis=0))


def test_visible_minmax_keeps_gaps_and_extremes():
    x = np.arange(10_000) / 100.0
    y = np.sin(x)
    y[5000:5100] = np.nan
    xs, ys, reduced = visible_minmax(x, y, 0.0, 100.0, 200)
    assert reduced and len(xs) <= 400 and np.nanmax(ys) == np.nanmax(y) and np.nanmin(ys) == np.nanmin(y)
    assert np.isnan(ys).any()   # the all-NaN columns stay gaps
    xs, ys, reduced = visible_minmax(x, y, 10.0, 12.0, 200)   # 200 points visible: themselves
    assert not reduced and np.array_equal(ys, y[999:1202])


# ---- the view ------------------------------------------------------------------------------
def test_every_pane_shows_the_clip(env):
    view, state, models, analysis, _ = env
    state.set_analysis(analysis, "tones/0")
    seconds = analysis.seconds
    assert view.ready
    assert state.view_range == pytest.approx((0.0, seconds))
    for name, (a, b) in _x_ranges(view).items():
        assert (a, b) == pytest.approx((0.0, seconds), abs=1e-6), name
    assert len(view.waveform.curve.xData) > 100
    n_rows = min(64, analysis.f.shape[1])
    assert len(view.heatmap.row_features) == n_rows
    image = view.heatmap.image.image
    assert image.shape == (n_rows, analysis.n_frames) and image.dtype == np.float32
    assert view.heatmap.image.levels is not None and view.heatmap.levels[1] > 0
    for key, lane in view.lanes.lanes.items():
        assert len(lane.decoded.xData) > 0 and len(lane.measured.xData) > 0, key
        assert np.array_equal(lane.classes, analysis.predicted(lane.attribute))
    # Decoded values are the spec's class values (note numbers, bin centres).
    loud = view.lanes.lanes["loudness"]
    k = int(loud.classes[100])
    assert loud.decoded_values()[100] == models.spec.class_value("loudness", k)
    # Hover texts.
    text = view.heatmap.describe(float(analysis.times[100]), 0.5)
    feature = int(view.heatmap.row_features[0])
    assert text == f"feature {feature}, t = {analysis.times[100]:.3f} s, f = {analysis.f[100, feature]:.3g}"
    assert "probe " in view.lanes.lanes["pitch"].describe(100)
    # Every pane has the same left-axis width, so the time axes line up.
    widths = {plot.getAxis("left").width() for plot in view.panes.values()}
    lefts = {round(plot.getViewBox().sceneBoundingRect().left(), 3) for plot in view.panes.values()}
    assert len(widths) == 1 and len(lefts) == 1


@pytest.mark.parametrize("order", ["mass", "probe", "density", "density-clip"])
def test_clicking_a_heatmap_cell_selects_that_feature_and_frame(env, qtbot, monkeypatch, order):
    view, state, models, analysis, index = env
    f = analysis.f
    if order == "density-clip":   # no corpus index: the clip's own density
        import audiosae.feature_index as feature_index
        monkeypatch.setattr(feature_index, "load_feature_index", lambda *a, **k: None)
    state.probe_target = ("pitch", 10)
    state.set_analysis(analysis, "tones/0")
    state.set_feature_order(order.split("-")[0])
    if order == "mass":
        scores = f.astype(np.float64).sum(axis=0)          # the whole clip is in view
    elif order == "probe":
        scores = models.probes.weights["pitch"][10].numpy().astype(np.float64)
    elif order == "density":
        scores = np.asarray(index.density, dtype=np.float64)
    else:
        scores = (f > 0).mean(axis=0)
    expected = np.argsort(-scores, kind="stable")[:64]
    assert view.heatmap.row_features.tolist() == expected.tolist()

    vb = view.heatmap.view_box
    for row, frame in ((0, 10), (7, 300), (63, analysis.n_frames - 5)):
        with qtbot.waitSignal(state.feature_selected, timeout=2000) as blocker:
            _click(qtbot, view, vb, float(analysis.times[frame]), row + 0.5)
        assert blocker.args == [int(expected[row]), frame]
        assert state.selected_feature == (int(expected[row]), frame)
    assert state.playhead == 0.0   # a cell click does not seek


def test_order_and_top_n_from_the_header(env):
    view, state, _, analysis, _ = env
    state.set_analysis(analysis, "tones/0")
    view.header.order.setCurrentIndex(view.header.order.findData("probe"))
    assert state.feature_order == "probe"
    view.header.top_n.setValue(20)
    assert len(view.heatmap.row_features) == 20 and view.heatmap.image.image.shape[0] == 20
    assert int(StudioSettings().value(timeline_module.TOP_N_KEY)) == 20


def test_mass_order_follows_the_view_after_a_debounce(env, qtbot):
    view, state, _, analysis, _ = env
    state.set_analysis(analysis, "tones/0")
    start, end = 2.0, 3.0
    state.set_view_range(start, end)
    assert view.view_range() == pytest.approx((start, end))
    assert view._resort_timer.isActive()
    qtbot.waitUntil(lambda: not view._resort_timer.isActive(), timeout=2000)
    half = 0.5 * (analysis.times[1] - analysis.times[0])   # frames whose span meets the view
    inside = (analysis.times + half > start) & (analysis.times - half < end)
    scores = analysis.f[inside].astype(np.float64).sum(axis=0)
    assert view.heatmap.row_features.tolist() == np.argsort(-scores, kind="stable")[:64].tolist()


def test_zoom_and_fit_move_every_pane(env, qtbot):
    view, state, _, analysis, _ = env
    state.set_analysis(analysis, "tones/0")
    seconds = analysis.seconds
    state.set_playhead(4.0)
    view.zoom(4.0)
    ranges = _x_ranges(view)
    a, b = ranges["waveform"]
    assert b - a == pytest.approx(seconds / 4, rel=1e-6) and a <= 4.0 <= b
    for name, r in ranges.items():
        assert r == pytest.approx((a, b)), name
    assert state.view_range == pytest.approx((a, b))
    # A change made in any pane (here a lane) moves all of them and the state.
    view.lanes.lanes["centroid"].view_box.setXRange(1.0, 2.0, padding=0)
    for name, r in _x_ranges(view).items():
        assert r == pytest.approx((1.0, 2.0)), name
    assert state.view_range == pytest.approx((1.0, 2.0))
    # The state drives the view too.
    state.set_view_range(3.0, 5.0)
    assert all(r == pytest.approx((3.0, 5.0)) for r in _x_ranges(view).values())
    view.fit()
    assert all(r == pytest.approx((0.0, seconds), abs=1e-6) for r in _x_ranges(view).values())
    assert state.view_range == pytest.approx((0.0, seconds))
    # The heatmap image follows the zoom (fewer frames visible -> fewer columns).
    view.zoom(8.0)
    assert view.heatmap.image.image.shape[1] < analysis.n_frames // 4


def test_playhead_moves_in_every_pane_and_a_click_seeks(env, qtbot):
    view, state, _, analysis, _ = env
    state.set_analysis(analysis, "tones/0")
    state.set_playhead(1.25)
    assert set(view.playheads) == set(PANES)
    assert all(line.value() == 1.25 for line in view.playheads.values())
    lane = view.lanes.lanes["loudness"]
    with qtbot.waitSignal(state.playhead_changed, timeout=2000):
        _click(qtbot, view, lane.view_box, 3.0, -30.0)
    assert state.playhead == pytest.approx(3.0, abs=0.05)
    assert all(line.value() == state.playhead for line in view.playheads.values())


def test_selection_round_trips_through_the_state(env, qtbot):
    view, state, _, analysis, _ = env
    state.set_analysis(analysis, "tones/0")
    region = view.waveform.region
    state.set_selection((1.0, 2.5))
    assert region.isVisible() and region.getRegion() == pytest.approx((1.0, 2.5))
    # Drag on the waveform: a new selection.
    vb = view.waveform.view_box
    viewport = view.graphics.viewport()
    p0, p1 = _viewport_point(view, vb, 4.0, 0.0), _viewport_point(view, vb, 6.0, 0.0)
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=p0)
    qtbot.mouseMove(viewport, QPoint((p0.x() + p1.x()) // 2, p0.y()))
    qtbot.mouseMove(viewport, p1)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=p1)
    assert state.selection == pytest.approx((4.0, 6.0), abs=0.05)
    assert region.getRegion() == pytest.approx(state.selection)
    # Editing the region (what dragging its edge does) updates the state.
    region.setRegion((4.5, 7.0))
    region.sigRegionChangeFinished.emit(region)
    assert state.selection == pytest.approx((4.5, 7.0))
    # Double click on the waveform clears it; so does Esc.
    qtbot.mouseDClick(viewport, Qt.MouseButton.LeftButton, pos=_viewport_point(view, vb, 1.0, 0.0))
    assert state.selection is None and not region.isVisible()
    state.set_selection((1.0, 2.0))
    view.activateWindow()
    view.graphics.setFocus()
    qtbot.keyClick(view.graphics, Qt.Key.Key_Escape)
    assert state.selection is None and not region.isVisible()


def test_steering_updates_the_heatmap_and_the_lanes(env, qtbot):
    view, state, models, analysis, _ = env
    state.set_analysis(analysis, "tones/0")
    state.set_feature_order("probe")
    target = max(models.probes.trained_classes("pitch"))  # a class the probe has a direction for
    state.set_steering(SteeringParams("pitch", target, alpha=30.0))
    assert view.order_detail.startswith("toward pitch")
    rows_before = view.heatmap.row_features.copy()
    before = view.heatmap.image.image.copy()
    pitch = view.lanes.lanes["pitch"]
    classes_before = pitch.classes.copy()

    steered = _steered(models, analysis.f, "pitch", target, 30.0)
    state.set_steered_features(steered)
    assert view.ready
    after = view.heatmap.image.image
    assert np.array_equal(view.heatmap.row_features, rows_before)   # probe order: same rows
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, steered[:, rows_before].T)  # 1 column per frame at this zoom
    with torch.no_grad():
        expected = models.probes.predict(torch.from_numpy(steered), "pitch").numpy()
    assert np.array_equal(pitch.classes, expected)
    assert not np.array_equal(pitch.classes, classes_before)
    assert np.array_equal(pitch.base_classes, classes_before) and len(pitch.ghost.xData) > 0
    assert "(was " in pitch.describe(100)

    state.set_steered_features(None)
    assert np.array_equal(pitch.classes, classes_before)
    assert pitch.ghost.xData is None or len(pitch.ghost.xData) == 0
    np.testing.assert_array_equal(view.heatmap.image.image, before)


def _synthetic(frames: int = 3000, n_features: int = 96, seed: int = 0):
    """A ClipAnalysis of sparse random features (40 s at 75 fps) and random probes."""
    rng = np.random.default_rng(seed)
    sr = 8000
    seconds = frames / 75.0
    wave = (0.2 * rng.standard_normal((1, int(seconds * sr)))).astype(np.float32)
    times = (np.arange(frames) + 0.5) / 75.0
    f = np.maximum(rng.standard_normal((frames, n_features)).astype(np.float32) - 1.0, 0)
    spec = AttributeSpec()
    measured = FrameAttributes(midi=np.full(frames, 60.0), periodicity=np.ones(frames),
                               loudness_db=np.full(frames, -20.0), centroid_hz=np.full(frames, 1000.0))
    probes = ProbeSet(weights={a: torch.randn(spec.n_classes(a), n_features) for a in ("pitch", "loudness", "timbre")},
                      bias={a: torch.zeros(spec.n_classes(a)) for a in ("pitch", "loudness", "timbre")},
                      class_names={}, feature_kind="sae")
    with torch.no_grad():
        probs = {a: probes.predict_proba(torch.from_numpy(f), a).numpy() for a in probes.attributes}
    analysis = ClipAnalysis(wave=wave, sample_rate=sr, times=times, latents=f, h=f, f=f, measured=measured,
                            measured_classes=spec.classify(measured), probabilities=probs, source="synthetic")
    return analysis, probes, spec


def test_long_clips_go_through_jobs_and_end_up_the_same(qtbot, monkeypatch):
    """Above the size limits the preparation, row gathers and probe decodes run as jobs."""
    monkeypatch.setattr(timeline_module, "PREPARE_SYNC_LIMIT", 0)
    monkeypatch.setattr(heatmap_module, "GATHER_SYNC_LIMIT", 0)
    monkeypatch.setattr(steered_lanes_module, "SYNC_DECODE_LIMIT", 0)
    analysis, probes, spec = _synthetic()
    models = type("Models", (), {"probes": probes, "spec": spec, "workspace": None,
                                 "sae": type("S", (), {"cfg": type("C", (), {"name": "synthetic"})})})()
    state, runner = ExplorerState(), JobRunner()
    state.set_models(models)
    view = TimelineView(state, runner, None)
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    try:
        state.set_analysis(analysis, "synthetic")
        assert not view.ready
        qtbot.waitUntil(lambda: view.ready and len(view.heatmap.row_features) == 64, timeout=10000)
        expected = np.argsort(-analysis.f.astype(np.float64).sum(axis=0), kind="stable")[:64]
        assert view.heatmap.row_features.tolist() == expected.tolist()
        image = view.heatmap.image.image
        assert image.shape[0] == 64 and image.shape[1] <= 2 * view.heatmap.pixel_width()
        np.testing.assert_allclose(image.max(axis=1), analysis.f[:, expected].max(axis=0))

        steered = np.ascontiguousarray(analysis.f[::-1])
        state.set_steered_features(steered)
        qtbot.waitUntil(lambda: view.ready, timeout=10000)
        with torch.no_grad():
            decoded = probes.predict(torch.from_numpy(steered), "loudness").numpy()
        assert np.array_equal(view.lanes.lanes["loudness"].classes, decoded)
        assert view.heatmap.shown.features is steered
    finally:
        view.close()
        runner.shutdown()
    assert view.ready and not runner.active
