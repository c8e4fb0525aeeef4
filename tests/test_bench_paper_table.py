"""benchmarks/bench_paper_table.py: the quick path end to end on a tiny synthetic corpus (no
download), and the table picking up metrics the report may add later."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO_ROOT, harmonic_tone

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
