"""audiosae.steering.playback (the studio's player): the ring buffer, the Player's feeder logic (no device), and real playback
through a PulseAudio null sink (``-m audio_device``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import audiosae.steering.playback as playback
from tests.support.audio_device import pulse_null_sink  # noqa: F401  (pytest fixture)
from audiosae.errors import AudioSAEError
from audiosae.steering.playback import Player, RingBuffer

SR = 8000


def ramp_source(total: int, scale: float = 1.0):
    """Audio whose value encodes its clip position, so every copied sample can be checked."""
    def source(start: int, n: int) -> np.ndarray:
        return (scale * np.arange(start, start + n, dtype=np.float64) / total).astype(np.float32)[None]
    return source


def manual_player(total: int = 4 * SR, source=None, **kwargs) -> Player:
    kwargs.setdefault("lead_seconds", 0.1)
    kwargs.setdefault("blocksize", 64)
    kwargs.setdefault("splice_seconds", 0.02)
    kwargs.setdefault("fade_seconds", 0.005)
    kwargs.setdefault("virtual_latency", 0.0)
    return Player(source or ramp_source(total), SR, total, output="manual", **kwargs)


def pull(player: Player, blocks: int) -> np.ndarray:
    """Pull ``blocks`` callbacks like a device would: the feeder looks in after each one."""
    out = []
    for _ in range(blocks):
        player.sync()
        out.append(player.stream.pull()[:, 0])
        looks = player.feeder_looks
        deadline = time.monotonic() + 2
        while player.feeder_looks < looks + 2 and time.monotonic() < deadline:
            time.sleep(0.0005)
    return np.concatenate(out)


# ---- ring buffer -------------------------------------------------------------------------------
def test_ring_buffer_wraps_around_and_keeps_order():
    ring = RingBuffer(16, 2)
    assert ring.capacity == 16
    frames = np.arange(40, dtype=np.float32).reshape(20, 2)
    assert ring.write(frames[:10], positions=np.arange(10), tags=np.full(10, 7)) == 10
    out = np.empty((8, 2), np.float32)
    assert ring.read_into(out) == 8
    np.testing.assert_array_equal(out, frames[:8])
    ring.write(frames[10:20], positions=np.arange(10, 20))  # slots 10..15 then 0..3: wraps
    assert ring.queued() == 12 and ring.write_pos == 20
    out = np.empty((12, 2), np.float32)
    assert ring.read_into(out) == 12
    np.testing.assert_array_equal(out, frames[8:20])
    assert ring.position_at(19) == 19 and ring.tag_at(5) == 7
    with pytest.raises(ValueError):
        ring.write(np.zeros((17, 2), np.float32))  # more than the capacity


def test_ring_buffer_read_past_the_end_zero_fills_and_reports_it():
    ring = RingBuffer(8, 1)
    ring.write(np.ones((3, 1), np.float32))
    out = np.full((5, 1), 9.0, np.float32)
    assert ring.read_into(out) == 3
    np.testing.assert_array_equal(out[:, 0], [1, 1, 1, 0, 0])
    assert ring.read_into(out) == 0 and not out.any()
    assert ring.read_pos == 3


def test_ring_buffer_splice_rewrites_queued_frames_only():
    ring = RingBuffer(16, 1)
    ring.write(np.arange(10, dtype=np.float32)[:, None])
    out = np.empty((4, 1), np.float32)
    ring.read_into(out)
    with pytest.raises(ValueError):
        ring.write_at(2, np.zeros((2, 1), np.float32))  # behind the reader
    ring.write_at(6, np.full((6, 1), -1.0, np.float32))
    ring.publish(12)
    out = np.empty((8, 1), np.float32)
    ring.read_into(out)
    np.testing.assert_array_equal(out[:, 0], [4, 5, -1, -1, -1, -1, -1, -1])


# ---- the player on a manual virtual stream -------------------------------------------------------
def test_player_copies_the_source_in_order_without_underruns():
    total = 4 * SR
    threads_before = set(threading.enumerate())
    with manual_player(total) as player:
        assert not player.available and player.output_kind == "manual"
        player.play()
        heard = pull(player, 100)
        expected = np.arange(len(heard)) / total
        fade = player.fade
        np.testing.assert_allclose(heard[fade:], expected[fade:], atol=1e-6)
        assert np.all(np.abs(heard[:fade]) <= expected[:fade] + 1e-6)  # faded in from silence
        assert player.underruns == {"device_underflows": 0, "ring_dry": 0}
        assert player.position() == len(heard) - 1
    assert set(threading.enumerate()) == threads_before  # close() ended the feeder thread


def test_player_counts_device_underflows_and_a_dry_ring_separately():
    total = 2 * SR
    gate = threading.Event()
    gate.set()
    base = ramp_source(total)

    def slow_source(start: int, n: int) -> np.ndarray:
        gate.wait(5)
        return base(start, n)

    with manual_player(total, slow_source) as player:
        player.play()
        pull(player, 5)
        player.stream.pull(underflow=True)
        assert player.underruns == {"device_underflows": 1, "ring_dry": 0}
        gate.clear()  # the feeder stalls inside the source
        time.sleep(0.05)
        for _ in range(player.lead // player.blocksize + 4):
            player.stream.pull()
        assert player.ring_dry >= 3 and player.device_underflows == 1
        gate.set()


def test_pause_fades_out_without_counting_underruns_and_resumes_where_it_stopped():
    with manual_player() as player:
        player.play()
        pull(player, 20)
        player.pause()
        player.sync()
        tail = np.concatenate([player.stream.pull()[:, 0] for _ in range(player.lead // 64 + 5)])
        assert not tail[-64:].any() and player.ring_dry == 0
        resume = player.position()
        assert player.state == "paused" and resume > 20 * 64
        player.play()
        heard = pull(player, 10)
        np.testing.assert_allclose(heard[player.fade:player.fade + 10],
                                   (resume + player.fade + np.arange(10)) / player.total_samples, atol=1e-6)


def test_seek_splices_after_the_margin_with_a_crossfade():
    total = 4 * SR
    with manual_player(total) as player:
        player.play()
        pull(player, 10)
        player.seek(3 * SR)
        heard = pull(player, 20)
        target = 3 * SR / total
        settle = player.margin + player.fade
        assert np.all(heard[:player.margin - 64] < 0.1)  # queued audio played out first
        jump = np.flatnonzero(heard > target - 0.001)[0]
        assert jump <= settle
        np.testing.assert_allclose(heard[settle:settle + 50], heard[settle] + np.arange(50) / total, atol=1e-6)
        assert np.abs(np.diff(heard[:settle])).max() < 0.5 * target  # faded, not a jump


def test_loop_wraps_with_a_crossfade_and_stays_in_the_region():
    total = 2 * SR
    start, end = SR // 2, SR // 2 + 1600
    with manual_player(total) as player:
        player.set_loop(start, end)
        player.seek(start)
        player.play()
        pull(player, 200)  # 12800 samples: several laps
        positions = [player._ring.position_at(i) for i in range(player._ring.read_pos)]
        assert min(positions) >= start - player.fade and max(positions) < end
        assert player.underruns["ring_dry"] == 0
        with pytest.raises(AudioSAEError):
            player.set_loop(100, 110)


def test_end_of_clip_stops_without_underruns():
    total = SR // 4
    with manual_player(total) as player:
        player.play()
        pull(player, total // 64 + 20)
        assert player.state == "ended" and player.ring_dry == 0
        assert player.position() == total


def test_requeue_replaces_queued_audio_after_a_change():
    total = 2 * SR
    scale = {"value": 1.0}

    def source(start: int, n: int):
        return ramp_source(total, scale["value"])(start, n), int(scale["value"])

    with manual_player(total, source) as player:
        player.play()
        pull(player, 10)
        assert player.heard_tag() == 1
        scale["value"] = 2.0
        player.requeue(0, total)
        heard = pull(player, 20)
        settle = player.margin + player.fade
        position = 10 * 64 + np.arange(len(heard))
        np.testing.assert_allclose(heard[settle:], 2.0 * position[settle:] / total, atol=1e-6)
        np.testing.assert_allclose(heard[:player.margin - 64], position[:player.margin - 64] / total, atol=1e-6)
        assert player.heard_tag() == 2
        # A change outside what is queued does not splice.
        scale["value"] = 3.0
        player.requeue(total - 100, total)
        np.testing.assert_allclose(pull(player, 2), 2.0 * (30 * 64 + np.arange(128)) / total, atol=1e-6)


def test_player_hears_a_steering_change_after_the_renderer_catches_up():
    """The renderer's listener requeues the player: once the chunk under the playhead is
    rendered, the player splices the new version in and its tag says so."""
    from audiosae.realtime import RenderWorker, SteeredRenderer, SteeringParams
    from tests.core.test_realtime import GainBackend, tiny_probes, tiny_sae, toy_clip

    backend = GainBackend()
    renderer = SteeredRenderer(backend, tiny_sae(backend.latent_dim), tiny_probes(), toy_clip(3.0),
                               SteeringParams("pitch", 9, 0.0, keep_residual=True), chunk_seconds=0.25,
                               limit=False)  # the toy's steering is a level change, which the level rule undoes
    renderer.render_all()
    source = lambda s, n: renderer.mix_tagged(s, n, per_sample=True)  # noqa: E731
    with manual_player(renderer.n_samples, source) as player:
        renderer.add_audio_listener(player.requeue)
        player.set_loop(0, renderer.n_samples)
        player.play()
        pull(player, 20)
        assert player.heard_tag() == 0
        version = renderer.set_alpha(5.0)
        worker = RenderWorker(renderer, player.splice_position, loop=lambda: player.loop)
        worker.start()
        try:
            for _ in range(200):
                pull(player, 1)
                if player.heard_tag() == version:
                    break
            assert player.heard_tag() == version
            last = pull(player, 5)[-64:]  # past the splice's cross-fade
            position = player.position()   # the block's last sample (no output latency here)
            np.testing.assert_allclose(last, renderer.mix(position - 63, 64)[0], atol=1e-6)
            assert np.abs(last - renderer.wave[0, position - 63:position + 1]).max() > 0.05
        finally:
            worker.stop()
        assert worker.error is None and player.ring_dry == 0


def test_position_accounts_for_output_latency():
    with manual_player(virtual_latency=0.01) as player:
        player.play()
        pull(player, 30)
        assert player.output_latency == 0.01
        assert player.position() == 30 * 64 - 80  # 10 ms of the 1920 samples read are not heard yet


def test_no_portaudio_means_unavailable_not_an_exception(monkeypatch):
    monkeypatch.setattr(playback, "sounddevice_or_reason",
                        lambda: (None, "audio output unavailable: PortAudio library not found"))
    assert playback.list_output_devices() == []
    with Player(ramp_source(SR), SR, SR, output="auto", device="Some Headphones") as player:
        assert not player.available and "PortAudio library not found" in player.reason
        assert player.output_kind == "virtual"
        player.play()  # the silent clock still moves the playhead
        time.sleep(0.2)
        assert player.position() > 0


# ---- a real device (PulseAudio null sink) ------------------------------------------------------
@pytest.mark.audio_device
def test_plays_a_chirp_through_a_pulseaudio_null_sink(pulse_null_sink, tmp_path: Path):  # noqa: F811
    rate = 24_000
    seconds = 1.5
    t = np.arange(int(seconds * rate)) / rate
    chirp = (0.5 * np.sin(2 * np.pi * (200 * t + (1800 / (2 * seconds)) * t ** 2))).astype(np.float32)
    chirp[:240] *= np.linspace(0, 1, 240, dtype=np.float32)
    chirp[-240:] *= np.linspace(1, 0, 240, dtype=np.float32)

    devices = playback.list_output_devices()
    names = [d.name for d in devices]
    assert "pulse" in names, names
    assert devices[0].is_default and "(default)" in devices[0].label

    # A remembered device that is gone falls back to the default with a clear message.
    with Player(lambda s, n: chirp[None, s:s + n], rate, len(chirp), device="USB Headset (gone)") as missing:
        assert missing.available and missing.device_name == devices[0].name
        assert "'USB Headset (gone)' is not available" in missing.message

    record_path = tmp_path / "monitor.f32"
    recorder = pulse_null_sink.record(record_path, rate=rate)
    try:
        with Player(lambda s, n: chirp[None, s:s + n], rate, len(chirp), device="pulse") as player:
            assert player.available, player.reason
            assert player.device_name == "pulse" and player.message == ""
            # The player's stream plays silence until play(): wait until the sink runs and
            # its monitor delivers, then leave some silence before the chirp.
            assert pulse_null_sink.wait_for_data(record_path), "the sink monitor delivered nothing"
            time.sleep(0.3)
            player.play()
            deadline = time.monotonic() + 10
            while player.state != "ended" and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.5 + player.output_latency)
            assert player.state == "ended" and player.position() == len(chirp)
            assert player.ring_dry == 0, player.underruns
        time.sleep(0.3)
    finally:
        recorded = pulse_null_sink.stop_recording(recorder, record_path)[0]

    assert len(recorded) > len(chirp), "parec recorded less than the played signal"
    assert np.sqrt(np.mean(recorded ** 2)) > 0.05, "the sink monitor recorded silence"
    envelope = np.abs(recorded) > 0.05
    first, last = np.flatnonzero(envelope)[[0, -1]]
    assert abs((last - first) - len(chirp)) < 0.05 * rate, (first, last, len(chirp))
    # Normalised cross-correlation peak (via FFT) between the recording and what was played.
    n = len(recorded) + len(chirp)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(recorded, size) * np.conj(np.fft.rfft(chirp, size)), size)
    lag = int(np.argmax(corr[:len(recorded)]))
    assert corr[lag] >= corr[len(recorded):].max(), "the recording starts after the chirp did"
    window = recorded[lag:lag + len(chirp)]
    peak = corr[lag] / (np.linalg.norm(chirp[:len(window)]) * np.linalg.norm(window))
    assert peak > 0.9, peak
    assert abs(lag - first) < 0.01 * rate  # the correlation peak is where the sound starts
