"""benchmarks/bench_paper_table.py: the quick path end to end on a tiny synthetic corpus (no
download), and the table picking up metrics the report may add later."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf

from tests.support.common import REPO_ROOT, harmonic_tone

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import bench_paper_table  # noqa: E402


def _tiny_corpus(folder):
    """Eight 2-s clips: melodies of harmonic tones at different levels and brightness."""
    train = folder / "train"
    train.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        notes = [harmonic_tone(float(m), 0.25, 16_000, level_db=float(rng.uniform(-35, -8)), tilt=0.5 + i % 3)
                 for m in rng.integers(45, 80, size=8)]
        sf.write(str(train / f"clip{i}.wav"), np.concatenate(notes), 16_000)
    (folder / "heldout").mkdir()
    sf.write(str(folder / "heldout" / "never.wav"), harmonic_tone(60.0, 1.0, 16_000), 16_000)


@pytest.mark.slow
def test_quick_path_prints_the_paper_table(tmp_path, capsys):
    _tiny_corpus(tmp_path / "corpus")
    ws = tmp_path / "ws"
    rc = bench_paper_table.main(["--quick", "--corpus-dir", str(tmp_path / "corpus"), "--workspace", str(ws),
                                 "--epochs", "2", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "STANDS IN" in out                       # says plainly that mel is not the paper's encoder
    assert "x4-l1_0.02" in out and "x4-l1_0.15" in out   # the quick grid: 2 SAEs
    assert "raw latent (x)" in out and "majority class" in out
    assert "FVU by width" in out and "skipped from the paper's grid: widths 8,16,32,64,128,256x" in out
    # Only the train/ folder was built: the held-out file never reached the workspace.
    manifest = (ws / "corpus" / "manifest.json").read_text()
    assert "clip0.wav" in manifest and "never.wav" not in manifest


def test_table_shows_metrics_the_report_adds_later():
    report = {"backend": "encodec-24k", "corpus": {}, "baseline": {
        "pitch_accuracy": 0.5, "pitch_chance": 0.1, "loudness_within1": 0.9, "loudness_chance": 0.2},
        "saes": [{"sae": "x4-l1_0.05", "d_sae": 512, "expansion": 4, "l1": 0.05, "sparsity": 0.9, "fvu": 0.2,
                  "pitch_accuracy": 0.7, "pitch_accuracy_std": 0.01, "loudness_within1": 0.95,
                  "timbre_mae_hz": 123.0, "converged": True, "brand_new_metric": 0.25}]}
    text = bench_paper_table.format_table(report, stand_in=False, skipped="")
    assert "STANDS IN" not in text
    for expected in ("0.700", "0.010", "0.950", "123", "yes", "brand_new_metric", "0.25", "0.500", "0.100"):
        assert expected in text, expected


def test_cost_model_counts_every_probe_fit():
    from audiosae import defaults as D

    k = D.PROBE_FOLDS
    assert bench_paper_table.probe_fits(12) == 1 + k               # cross-validated: holdout fit + one per fold
    assert bench_paper_table.probe_fits(3) == 1 + 3                # no more folds than sources
    assert bench_paper_table.probe_fits(D.PROBE_CV_MAX_SOURCES) == 1   # many sources: the val split only
    assert bench_paper_table.probe_fits(12, probe_folds=0) == 1
    assert bench_paper_table.probe_fits(None) == 1 + k             # unknown: the dearer case
    train, total, grid = 30_000, 33_000, ([4, 8, 16], [0.005, 0.05])
    cv = bench_paper_table.estimate_parts(train, 128, *grid, 10, 20.0, n_sources=12, all_frames=total)
    val = bench_paper_table.estimate_parts(train, 128, *grid, 10, 20.0, n_sources=12, all_frames=total,
                                           probe_folds=0)
    assert cv["sae_s"] == val["sae_s"] and val["probe_fits"] == 1 and cv["probe_fits"] == 1 + k
    # k folds train on (k-1)/k of all frames each, plus the fit on the train split
    assert cv["probes_s"] / val["probes_s"] == pytest.approx((train + (k - 1) * total) / train)
    assert cv["seconds"] == pytest.approx(cv["sae_s"] + cv["probes_s"])
    # the model follows train's probe schedule (the grid on every n-th frame, then the refit) ...
    assert bench_paper_table.PROBE_FIT_EPOCHS == D.PROBE_MAX_EPOCHS
    assert bench_paper_table.PROBE_SELECT_EPOCHS == pytest.approx(D.PROBE_MAX_EPOCHS / D.PROBE_SELECTION_STRIDE)
    # ... and puts one probe fit per SAE in the same order as its SAE epochs (measured on 10 min of
    # real music, idle: 9 SAEs 105 s for 15 passes, their 10 probe sets ~100 s)
    assert 0.3 < val["probes_s"] / val["sae_s"] < 3


@pytest.mark.parametrize("n_sources", [12, 127])
def test_budget_picks_the_widest_grid_that_fits(n_sources):
    b = bench_paper_table
    frames, total, gflops, epochs = 36_000, 40_000, 20.0, 10
    kw = dict(n_sources=n_sources, all_frames=total)
    for minutes in (5, 30, 120, 600):
        widths, l1s = b.choose_grid(frames, 128, epochs, 60 * minutes, gflops, **kw)
        spent = b.estimate_seconds(frames, 128, widths, l1s, epochs, gflops, **kw)
        smallest = widths == [4] and l1s == list(b.LAMBDAS_FALLBACK)
        assert spent <= 60 * minutes or smallest
        wider = b.PAPER_WIDTHS[:len(widths) + 1]
        if len(wider) > len(widths):
            assert b.estimate_seconds(frames, 128, wider, l1s, epochs, gflops, **kw) > 60 * minutes
    # cross-validated probes (few sources) leave room for a smaller grid than probes on the val split
    cv = b.choose_grid(frames, 128, epochs, 3600, gflops, n_sources=12, all_frames=total)
    val = b.choose_grid(frames, 128, epochs, 3600, gflops, n_sources=12, all_frames=total, probe_folds=0)
    assert len(cv[0]) * len(cv[1]) < len(val[0]) * len(val[1])
