"""Audio reading: formats, conversion, and one clear error per kind of bad input."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import soundfile as sf

from audiosae.audio import load_audio, probe_audio, save_audio, scan_audio
from audiosae.errors import AudioInputError


def _write(path, wave, rate, **kw):
    sf.write(str(path), wave, rate, **kw)
    return path


@pytest.fixture
def stereo_file(tmp_path):
    t = np.arange(44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = 0.25 * np.sin(2 * np.pi * 440 * t)
    return _write(tmp_path / "stereo.flac", np.stack([left, right], 1), 44100)


@pytest.mark.parametrize("ext,fmt", [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG"), (".mp3", "MP3")])
def test_reads_common_formats_and_resamples(tmp_path, ext, fmt):
    t = np.arange(32000) / 32000
    wave = 0.5 * np.sin(2 * np.pi * 1000 * t)
    path = tmp_path / f"tone{ext}"
    sf.write(str(path), wave, 32000, format=fmt)
    out = load_audio(path, 24000, 1)
    assert out.shape[0] == 1 and out.dtype == np.float32
    assert abs(out.shape[1] - 24000) < 2000  # mp3 adds encoder padding
    spectrum = np.abs(np.fft.rfft(out[0, 2000:18000]))
    peak_hz = np.argmax(spectrum) * 24000 / 16000
    assert abs(peak_hz - 1000) < 5


def test_channel_conversion(stereo_file):
    mono = load_audio(stereo_file, 44100, 1)
    st = load_audio(stereo_file, 44100, 2)
    assert mono.shape == (1, 44100) and st.shape == (2, 44100)
    np.testing.assert_allclose(mono[0], st.mean(0), atol=1e-6)
    dup = load_audio(_write(stereo_file.parent / "m.wav", st[0], 44100), 44100, 2)
    np.testing.assert_array_equal(dup[0], dup[1])


def test_partial_read(stereo_file):
    part = load_audio(stereo_file, None, 2, start=0.25, duration=0.5)
    assert part.shape == (2, 22050)


def _bad_inputs(tmp):
    cases = {}
    (tmp / "empty.wav").write_bytes(b"")
    cases["empty.wav"] = "empty"
    (tmp / "text.wav").write_text("this is not audio")
    cases["text.wav"] = "not a readable audio file"
    good = tmp / "good.wav"
    sf.write(str(good), np.zeros(4800), 48000)
    (tmp / "truncated.wav").write_bytes(good.read_bytes()[:30])
    cases["truncated.wav"] = "not a readable audio file"
    sf.write(str(tmp / "nan.wav"), np.array([0.0, np.nan, 0.1, np.inf] * 250, dtype=np.float32), 16000,
             subtype="FLOAT")  # 62 ms: long enough to be audio, so the NaNs are what is wrong
    cases["nan.wav"] = "NaN/inf"
    sf.write(str(tmp / "slow.wav"), np.zeros(10), 1, subtype="PCM_16")
    cases["slow.wav"] = "absurd sample rate"
    return cases


def test_bad_inputs_raise_one_clear_error(tmp_path):
    for name, fragment in _bad_inputs(tmp_path).items():
        with pytest.raises(AudioInputError) as err:
            load_audio(tmp_path / name, 24000, 1)
        msg = str(err.value)
        assert name in msg and fragment in msg, msg
        assert "\n" not in msg


def test_missing_and_folder_and_length(tmp_path):
    with pytest.raises(AudioInputError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioInputError, match="is a folder"):
        load_audio(tmp_path)
    sf.write(str(tmp_path / "long.wav"), np.zeros(8000 * 10), 8000)
    with pytest.raises(AudioInputError, match="limit per file"):
        probe_audio(tmp_path / "long.wav", max_seconds=5)


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    p = tmp_path / "locked.wav"
    sf.write(str(p), np.zeros(100), 8000)
    p.chmod(0)
    with pytest.raises(AudioInputError, match="permission"):
        load_audio(p)


def test_scan_skips_bad_files_and_loops(tmp_path):
    _bad_inputs(tmp_path)
    sub = tmp_path / "sub"
    sub.mkdir()
    sf.write(str(sub / "ok.flac"), np.zeros(800), 8000)
    (sub / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "notes.txt").write_text("ignored: not an audio extension")
    result = scan_audio([tmp_path, tmp_path / "missing-folder"])
    names = sorted(p.name for p in result.files)
    # The scan checks headers only (decoding everything twice would be slow); NaN samples
    # are caught when the file is decoded, and the build then skips it.
    assert names == ["good.wav", "nan.wav", "ok.flac"]
    problems = "\n".join(str(p) for p in result.problems)
    for name in ("empty.wav", "text.wav", "truncated.wav", "slow.wav", "missing-folder"):
        assert name in problems
    assert "symlink loop" in problems
    assert "3 audio file(s) usable" in result.summary()


def test_save_audio_round_trip(tmp_path):
    wave = (0.1 * np.random.default_rng(0).standard_normal((2, 1000))).astype(np.float32)
    save_audio(tmp_path / "x.wav", wave, 22050)
    back = load_audio(tmp_path / "x.wav")
    np.testing.assert_allclose(back, wave, atol=1e-7)
    save_audio(tmp_path / "x.flac", wave, 22050)
    assert load_audio(tmp_path / "x.flac").shape == (2, 1000)


def test_soft_limit_protects_without_touching_normal_levels():
    from audiosae.audio import soft_limit

    x = np.linspace(-30, 30, 10001).astype(np.float32)
    y = soft_limit(x)
    assert np.abs(y).max() <= 1.0 and np.all(np.diff(y) >= 0)  # bounded and monotonic
    quiet = x[np.abs(x) <= 0.9]
    np.testing.assert_array_equal(soft_limit(quiet), quiet)
