"""Issue 14, closing the loop for rhythm: audiosae.boost_schedule (which frames a feature boost is
added to: every frame, regular pulses, the clip's beats; onset / beat timing against the pulses)
and feature_loop with a schedule (only the scheduled frames' latents change; the schedule is
recorded and cached in its own file, the default schedule's cache untouched)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiosae.boost_schedule import (BoostSchedule, beat_starts, beat_timing, near_starts, onset_timing,
                                     pulse_starts, schedule_mask, starts_mask)
from audiosae.errors import AudioSAEError


def test_pulse_grid_at_a_known_rate():
    # mel backend: 75 frames/s; 120 BPM = a pulse every 37.5 frames, rounded half up
    assert pulse_starts(300, 75.0, 120.0).tolist() == [0, 38, 75, 113, 150, 188, 225, 263]
    # 60 BPM at 100 frames/s: every 100 frames; the last start is inside the clip
    assert pulse_starts(301, 100.0, 60.0).tolist() == [0, 100, 200, 300]
    assert pulse_starts(300, 100.0, 60.0).tolist() == [0, 100, 200]
    assert pulse_starts(10, 75.0, 120.0, offset=3).tolist() == [3]
    assert pulse_starts(3, 75.0, 120.0, offset=3).tolist() == []
    with pytest.raises(AudioSAEError):
        pulse_starts(100, 75.0, 0.0)


def test_masks_widths_and_clip_edges():
    m = starts_mask(10, np.array([0, 4, 9]), 2)
    assert np.flatnonzero(m).tolist() == [0, 1, 4, 5, 9]
    assert np.flatnonzero(near_starts(12, np.array([5]), 2)).tolist() == [3, 4, 5, 6, 7]
    assert np.flatnonzero(near_starts(12, np.array([0]), 2)).tolist() == [0, 1, 2]
    every = schedule_mask(BoostSchedule(), 50, 75.0)
    assert every.all() and len(every) == 50
    pulses = schedule_mask(BoostSchedule("pulses", bpm=120.0, width=2), 300, 75.0)
    assert np.flatnonzero(pulses).tolist() == [0, 1, 38, 39, 75, 76, 113, 114, 150, 151, 188, 189, 225, 226,
                                               263, 264]
    assert pulses.mean() == pytest.approx(2 / 37.5, abs=0.002)


def test_beats_from_the_beat_phase_column():
    # beats at frames 10, 30, 50: phase rises 0 -> 1 between them, -1 outside
    phase = np.full(70, -1.0)
    phase[10:30] = np.arange(20) / 20
    phase[30:50] = np.arange(20) / 20
    phase[5] = np.nan                       # not measured: not a beat
    assert beat_starts(phase).tolist() == [10, 30]
    m = schedule_mask(BoostSchedule("beats", width=1), 70, 75.0, beat_phase=phase)
    assert np.flatnonzero(m).tolist() == [10, 30]
    with pytest.raises(AudioSAEError, match="beat_phase"):
        schedule_mask(BoostSchedule("beats"), 70, 75.0)
    # tracked beats at the pulses / off them
    starts = np.array([10, 30])
    t = beat_timing(np.full(70, -1.0), phase, starts)
    assert t["beats_before"] == 0 and np.isnan(t["beats_at_pulses_before"])
    assert t["beats_after"] == 2 and t["beats_at_pulses_after"] == 1.0
    assert beat_timing(phase, phase, np.array([20, 60]))["beats_at_pulses_after"] == 0.0


def test_onset_timing_counts_onsets_at_the_pulses_against_chance():
    n = 300
    starts = pulse_starts(n, 75.0, 120.0)          # 8 pulses
    before = np.zeros(n, bool)
    before[[20, 57, 200]] = True                  # none within 2 frames of a pulse
    after = before.copy()
    after[starts[:6] + 1] = True                  # 6 new onsets, each one frame after a pulse
    t = onset_timing(before, after, starts)
    assert t["onset_rate_before"] == pytest.approx(3 / n) and t["onset_rate_after"] == pytest.approx(9 / n)
    assert t["at_pulses_before"] == 0.0 and t["at_pulses_after"] == pytest.approx(6 / 9)
    assert t["pulses_hit_before"] == 0.0 and t["pulses_hit_after"] == pytest.approx(6 / 8)
    # chance: the share of frames within +-2 of a start (5 each, the first clipped to 3)
    assert t["chance"] == pytest.approx((3 + 7 * 5) / n)
    off = onset_timing(before, before, starts)
    assert np.isnan(onset_timing(np.zeros(n, bool), np.zeros(n, bool), starts)["at_pulses_after"])
    assert off["at_pulses_after"] == off["at_pulses_before"] == 0.0


def test_schedule_settings_round_trip_and_reject_nonsense():
    p = BoostSchedule("pulses", bpm=90.0, width=1)
    assert BoostSchedule.from_json(json.loads(json.dumps(p.to_json()))) == p
    assert p.slug == "pulses-90bpm-w1" and BoostSchedule().slug == "every"
    assert BoostSchedule.from_json(None) == BoostSchedule() and BoostSchedule().to_json() == {"name": "every"}
    assert BoostSchedule.from_json({"name": "beats", "width": 3}) == BoostSchedule("beats", width=3)
    for bad in ({"name": "sometimes"}, {"name": "pulses", "bpm": 0.0}, {"name": "pulses", "bpm": float("nan")},
                {"name": "pulses", "width": 0}):
        with pytest.raises(AudioSAEError):
            BoostSchedule(**bad)


def test_describe_cli_takes_the_schedule():
    from audiosae.cli.main import build_parser

    args = build_parser().parse_args(["describe", "ws", "--sae", "s", "--boost-check"])
    assert args.boost_schedule == "every" and args.boost_bpm == 120.0 and args.boost_controls == 0
    args = build_parser().parse_args(["describe", "ws", "--sae", "s", "--boost-check", "--boost-schedule", "pulses",
                                      "--boost-bpm", "90", "--boost-controls", "3"])
    assert (args.boost_schedule, args.boost_bpm, args.boost_controls) == ("pulses", 90.0, 3)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["describe", "ws", "--sae", "s", "--boost-schedule", "sometimes"])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """mel backend, 0.2 min of tones labelled with onset + beat_phase, one x2 SAE (1 epoch)."""
    from audiosae.corpus import builtin_sources
    from audiosae.describe import describe_features
    from audiosae.training import TrainSettings, train_workspace
    from audiosae.workspace import Workspace, build_corpus

    ws = Workspace.create(tmp_path_factory.mktemp("pulses") / "ws", "mel")
    build_corpus(ws, builtin_sources("tones", minutes=0.2), device="cpu", shard_frames=600,
                 attributes=["onset", "beat_phase"])
    train_workspace(ws, TrainSettings(expansions=[2], l1s=[0.02], epochs=1, batch_size=256))
    name = ws.sae_names()[0]
    return ws, name, describe_features(ws, name)


def test_pulsed_boost_changes_only_the_pulse_frames_and_is_cached_apart(small, monkeypatch):
    from audiosae.feature_loop import feature_loop, load_feature_loop, loop_path
    from audiosae.workspace import Workspace

    ws, name, desc = small
    decoded: list[np.ndarray] = []
    real_backend = Workspace.backend

    def spying_backend(self, *a, **k):
        backend = real_backend(self, *a, **k)
        real_decode = backend.decode

        def decode(latents, *da, **dk):
            decoded.append(np.array(latents, copy=True))
            return real_decode(latents, *da, **dk)

        backend.decode = decode
        return backend

    monkeypatch.setattr(Workspace, "backend", spying_backend)
    sched = BoostSchedule("pulses", bpm=120.0, width=2)
    doc = feature_loop(ws, name, desc=desc, attributes=["loudness"], per_attribute=1, clips=1, clip_seconds=2.0,
                       amount=8.0, schedule=sched, controls=1)
    labelled = [e for e in doc["features"] if not e.get("control")]
    controls = [e for e in doc["features"] if e.get("control")]
    assert len(labelled) == 1 and labelled[0]["boost"] > 0
    # the reference, the labelled feature and one control boosted with a vector as long as its
    assert len(decoded) == 3 and len(controls) == 1
    assert controls[0]["control_of"] == labelled[0]["feature"] and controls[0]["feature"] != labelled[0]["feature"]
    assert controls[0]["boost_norm"] == pytest.approx(labelled[0]["boost_norm"], rel=1e-3)
    n = decoded[0].shape[0]
    want = schedule_mask(sched, n, 75.0)
    for boosted in decoded[1:]:
        changed = np.abs(boosted - decoded[0]).max(axis=1) > 0
        assert np.array_equal(changed, want)        # the pulse frames and only those
    assert doc["schedule"] == {"name": "pulses", "width": 2, "bpm": 120.0}
    assert doc["boosted_frames"] == pytest.approx(want.mean(), abs=1e-4)
    e = labelled[0]
    assert 0.0 <= e["before_boosted"] <= 1.0 and 0.0 <= e["after_boosted"] <= 1.0
    t = e["timing"]   # the workspace measures onset and beat_phase: their timing against the pulses
    assert {"onset_rate_before", "onset_rate_after", "at_pulses_after", "chance", "beats_at_pulses_after"} <= set(t)
    # cached in its own file: the default schedule's cache (the studio's card) is not written
    assert loop_path(ws, name, sched).name == "feature-loop-pulses-120bpm-w2.json"
    assert loop_path(ws, name, sched).is_file() and not loop_path(ws, name).exists()
    cached = load_feature_loop(ws, name, sched)
    assert cached is not None and cached["features"] == json.loads(json.dumps(doc["features"]))
    assert load_feature_loop(ws, name) is None
    assert load_feature_loop(ws, name, BoostSchedule("pulses", bpm=90.0)) is None
    # a document that says another schedule than its file's is not taken for it
    path = loop_path(ws, name, sched)
    data = json.loads(path.read_text())
    data["schedule"] = {"name": "every"}
    path.write_text(json.dumps(data))
    assert load_feature_loop(ws, name, sched) is None
