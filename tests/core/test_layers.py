"""studio/layers: the numpy data behind the studio's views (no Qt needed to import or test them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from studio.layers.feature_rows import (BlockMass, FeatureRows, display_levels, gather_rows, label_runs,
                                        order_scores, row_order, top_features)

REPO = Path(__file__).resolve().parents[2]
LAYER_MODULES = sorted(f"studio.layers.{p.stem}" for p in (REPO / "studio" / "layers").glob("*.py")
                       if p.stem != "__init__")


def heavy_modules_after_importing(modules: list[str]) -> list[str]:
    """Qt, pyqtgraph and torch modules loaded by a fresh interpreter that imports ``modules``."""
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pyqtgraph', 'torch') or m.startswith('PySide6'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_layers_import_without_qt_or_pyqtgraph():
    """Every layer imports in a fresh interpreter without loading PySide6 or pyqtgraph; the peaks and
    the feature rows without torch either (the lanes read ``audiosae.attribute_spec``, whose storage
    module loads torch)."""
    assert {"studio.layers.feature_rows", "studio.layers.peaks", "studio.layers.lanes"} <= set(LAYER_MODULES)
    assert [m for m in heavy_modules_after_importing(LAYER_MODULES) if not m.startswith("torch")] == []
    assert heavy_modules_after_importing(["studio.layers.peaks", "studio.layers.feature_rows"]) == []


def test_import_check_can_fail():
    """The same check reports a module that loads pyqtgraph (so the test above can fail)."""
    assert "pyqtgraph" in heavy_modules_after_importing(["studio.layers.feature_rows", "pyqtgraph"])


# ---- feature rows: which features, in what order -------------------------------------------------
def test_row_order_by_score_ties_to_lower_id():
    scores = np.array([0.5, 2.0, 1.0, 2.0, 0.0])
    assert row_order(scores, 3).tolist() == [1, 3, 2]
    assert row_order(scores, 3).tolist() == top_features(scores, 3).tolist()
    assert row_order(scores, 10).tolist() == [1, 3, 2, 0, 4]
    assert row_order(scores, 0).tolist() == []


def test_row_order_groups_by_label_without_changing_which_rows():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 9.0])
    labels = ["C4", "onset", "C4", "", "onset", "C4", None]
    rows = row_order(scores, 6, labels)
    # the 6 best by score: 6, 0, 1, 2, 3, 4 -- grouped: C4 (best row 0) then onset, unlabelled last
    assert sorted(rows.tolist()) == sorted(top_features(scores, 6).tolist())
    assert rows.tolist() == [0, 2, 1, 4, 6, 3]
    assert label_runs(rows, labels) == [("C4", 0, 2), ("onset", 2, 4), (None, 4, 6)]


def test_row_order_takes_a_mapping_and_numpy_labels():
    scores = np.array([3.0, 2.0, 1.0, 0.0])
    assert row_order(scores, 4, {1: "a", 3: "a"}).tolist() == [1, 3, 0, 2]
    codes = np.array([2, 1, 2, 1])
    assert row_order(scores, 4, codes).tolist() == [0, 2, 1, 3]
    with pytest.raises(ValueError):
        row_order(scores, 2, ["a", "b"])


def test_order_scores_falls_back_to_mass_without_a_probe_row():
    mass = np.array([1.0, 2.0])
    assert order_scores("probe", mass=lambda: mass, probe=lambda: None, density=lambda: None) is mass
    assert order_scores("probe", mass=lambda: mass, probe=lambda: np.array([3.0, 0.0]),
                        density=lambda: None).tolist() == [3.0, 0.0]
    assert order_scores("density", mass=lambda: mass, probe=lambda: None, density=lambda: np.ones(2)).tolist() == [1, 1]


def test_block_mass_matches_a_plain_sum():
    rng = np.random.default_rng(0)
    f = rng.random((1000, 7)).astype(np.float32)
    mass = BlockMass(f, block=64)
    for i0, i1 in [(0, 1000), (3, 997), (10, 50), (64, 128), (500, 500)]:
        np.testing.assert_allclose(mass.in_range(i0, i1), f[i0:i1].sum(axis=0, dtype=np.float64), rtol=1e-9)


def test_display_levels_are_the_percentile_of_active_values():
    f = np.zeros((100, 10), dtype=np.float32)
    f[:, 0] = np.arange(100)
    lo, hi = display_levels(f, percentile=50.0)
    assert lo == 0.0 and hi == pytest.approx(np.percentile(np.arange(1, 100), 50.0))
    assert display_levels(np.zeros((5, 3), dtype=np.float32)) == (0.0, 1.0)


def test_feature_rows_image_keeps_a_one_frame_spike_at_any_zoom():
    f = np.zeros((1000, 4), dtype=np.float32)
    f[637, 2] = 5.0
    rows = FeatureRows(f)
    rows.add(gather_rows(f, [2, 0]))
    for columns in (1000, 100, 7, 1):
        image, first, pool = rows.image([2, 0], 0, 1000, columns)
        assert image.shape[0] == 2 and image.shape[1] <= columns
        assert image[0].max() == 5.0 and image[1].max() == 0.0
        col = (637 - first) // pool
        assert image[0, col] == 5.0


# ---- peaks: the waveform's min/max per pixel column ----------------------------------------------
def test_peaks_of_a_known_signal_at_every_zoom():
    """A 1 kHz-sampled sine of amplitude 0.5 with one +0.9 click at t = 3.2 s: every column holds
    the signal's true min/max, the click shows whatever the zoom, and the whole view is ~2 points a column."""
    from studio.layers.peaks import PeakPyramid

    rate = 1000
    t = np.arange(10 * rate) / rate
    wave = 0.5 * np.sin(2 * np.pi * 5.0 * t).astype(np.float32)
    wave[3200] = 0.9
    pyramid = PeakPyramid.from_wave(np.stack([wave, wave]), rate)   # stereo -> its mono mix
    assert pyramid.peak() == pytest.approx(0.9)
    for columns in (50, 333, 1000):
        x, y, envelope = pyramid.envelope(0.0, 10.0, columns)
        assert envelope and len(x) == len(y) and len(y) <= 2 * columns
        assert y[1::2].max() == pytest.approx(0.9) and y[0::2].min() == pytest.approx(-0.5, abs=1e-3)
        assert np.all(y[0::2] <= y[1::2])
        click = int(np.argmax(y))
        assert abs(x[click] - 3.2) <= 10.0 / columns + 1e-9   # the click is drawn in its own column
    x, y, envelope = pyramid.envelope(3.19, 3.21, 100)       # zoomed in: the samples themselves
    assert not envelope and y.max() == pytest.approx(0.9) and len(y) <= 23


# ---- lanes: decoded classes per frame -> curves ------------------------------------------------------
def test_lane_data_turns_classes_into_step_curves_with_a_ghost_when_steered():
    from studio.layers.lanes import LaneData, as_steps, drop_flat_runs

    lane = LaneData("pitch")
    times = np.arange(100) * 0.01 + 0.005
    table = np.array([np.nan, 60.0, 62.0, 64.0])        # class 0 = unvoiced (a gap)
    classes = np.repeat([1, 2, 0, 3], 25)
    measured = np.full(100, 61.0)
    assert lane.set_clip(times, table, measured, classes)
    lane.set_classes(None)
    np.testing.assert_array_equal(lane.series["decoded"], table[classes])
    assert lane.series["ghost"] is None and not lane.steered
    x, y = lane.curve("decoded", 0.0, 1.0, 1000)         # few frames per pixel: steps, flat runs dropped
    finite = np.isfinite(y)
    assert finite.sum() <= 6 and set(np.unique(y[finite])) == {60.0, 62.0, 64.0}   # corners of 3 runs
    assert np.isnan(y).any()                             # the unvoiced run stays a gap
    steered = np.full(100, 3)
    lane.set_classes(steered)
    assert lane.steered and np.all(lane.series["decoded"] == 64.0)
    np.testing.assert_array_equal(lane.series["ghost"], table[classes])   # the unsteered decode
    assert lane.describe(10) == "probe E4 (was C4) · CREPE C#4 +0 c"
    lo, hi = lane.fitted_y_range()
    assert hi - lo >= 12.0 and lo <= 60.0 and hi >= 64.0
    xs, ys = as_steps(np.array([1.0, 2.0]), np.array([5.0, 6.0]), 1.0)
    assert xs.tolist() == [0.5, 1.5, 1.5, 2.5] and ys.tolist() == [5.0, 5.0, 6.0, 6.0]
    assert drop_flat_runs(np.arange(5.0), np.array([1.0, 1, 1, 2, 2]))[0].tolist() == [0.0, 2.0, 3.0, 4.0]


def test_loudness_lane_draws_silence_on_its_floor():
    from studio.layers.lanes import LaneData

    lane = LaneData("loudness")
    lane.y_range = (-63.0, 3.0)
    lane.set_clip(np.arange(3) * 0.1, np.array([-50.0, -20.0]), np.array([-120.0, -30.0, -10.0]), None)
    lane.set_classes(None)
    assert lane.series["measured"].tolist() == [-63.0, -30.0, -10.0]
    assert lane.series["decoded"] is None                # no features: the measurement alone
    assert lane.describe(0) == "RMS -120.0 dB"
