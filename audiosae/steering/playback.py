"""Audio playback: a sounddevice output stream fed from a lock-free ring buffer.

The audio callback runs on PortAudio's thread and must never wait, so it does one thing:
copy the next block out of a preallocated float32 ring (``RingBuffer``) and advance the
read index.  A feeder thread owns the write side: it pulls audio from a *source* callable
(e.g. ``SteeredRenderer.mix``) and keeps ~``lead_seconds`` queued.  One producer, one consumer,
two monotonically growing integer indices: no lock is shared with the callback.

Changing what is queued (seek, loop change, steered audio that just got rendered) never
empties the ring: the feeder *splices* at ``splice_seconds`` past the read index, writing the
new audio over the old with a short cross-fade, so the change is heard after ~splice_seconds
and without a click.  Loop wraps are cross-faded the same way; pause fades out.

Every queued sample carries its clip position and a tag from the source (the renderer's
parameter version), so ``position()`` and ``heard_tag()`` say what the listener hears now,
counting the output latency.

Without PortAudio or without any output device, ``Player`` does not raise: it runs on a
silent virtual clock (the playhead still moves) with ``available=False`` and ``reason``.

No Qt here: the studio's audition and snippets play through it, and
``benchmarks/bench_realtime.py`` measures the core renderer through it without importing the
studio.  The ring and the virtual clock: ``output_ring``.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Literal

import numpy as np

from ..audio import soft_limit
from ..errors import AudioSAEError

SourceResult = Any  # np.ndarray [channels, n], or (that, an int tag or int64 tags [n])
Source = Callable[[int, int], SourceResult]
OutputKind = Literal["auto", "device", "virtual", "manual"]

from .output_ring import _NO_TAG, RingBuffer, VirtualOutputStream, _Flags, _TimeInfo  # noqa: F401


# ---- sounddevice / PortAudio ---------------------------------------------------------------
def sounddevice_or_reason() -> tuple[ModuleType | None, str]:
    """The ``sounddevice`` module, or None and a one-line reason (PortAudio missing, ...)."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when libportaudio cannot be loaded
        return None, (f"audio output unavailable: {exc} (install the PortAudio library, "
                      f"e.g. 'apt-get install libportaudio2' on Debian/Ubuntu)")
    except ImportError as exc:
        return None, f"audio output unavailable: the sounddevice package is missing ({exc}); pip install sounddevice"
    return sounddevice, ""


def rescan_devices() -> None:
    """Make PortAudio list devices again (it enumerates them once, at initialisation).

    Re-initialising PortAudio invalidates every open stream: close all players first."""
    sd, _ = sounddevice_or_reason()
    if sd is not None:
        sd._terminate()
        sd._initialize()


@dataclass(frozen=True)
class OutputDevice:
    """An output device as PortAudio lists it."""

    index: int
    name: str
    host_api: str
    max_channels: int
    default_samplerate: float
    is_default: bool

    @property
    def label(self) -> str:
        """``"name (host API)"``, plus ``" (default)"`` for the system default."""
        return f"{self.name} ({self.host_api})" + (" (default)" if self.is_default else "")


def list_output_devices() -> list[OutputDevice]:
    """Devices with output channels, the system default first; [] without PortAudio."""
    sd, _ = sounddevice_or_reason()
    if sd is None:
        return []
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
        try:
            default_index = int(sd.query_devices(kind="output")["index"])
        except Exception:  # no default output: PortAudioError / ValueError / KeyError
            default_index = -1
    except Exception:  # PortAudioError from a broken host API
        return []
    found = [
        OutputDevice(index=i, name=str(d["name"]), host_api=str(apis[d["hostapi"]]["name"]),
                     max_channels=int(d["max_output_channels"]),
                     default_samplerate=float(d["default_samplerate"]), is_default=i == default_index)
        for i, d in enumerate(devices) if d["max_output_channels"] > 0
    ]
    return sorted(found, key=lambda d: not d.is_default)


# ---- the player ----------------------------------------------------------------------------
class Player:
    """Plays ``source(start_sample, n)`` (audio ``[channels, n]``, or ``(audio, tag)`` with an int
    tag or one per sample, e.g. ``SteeredRenderer.mix_tagged``) for a clip
    of ``total_samples`` at ``sample_rate``, with play/pause/stop/seek and a loop region.

    ``output``: ``"auto"`` (the device, else a silent virtual clock), ``"device"`` (the same;
    kept for explicitness), ``"virtual"`` (always the silent clock, e.g. benchmarks) or
    ``"manual"`` (a virtual stream advanced by ``stream.pull()``, for tests).
    ``device``: an output device *name* (as ``list_output_devices`` gives it); a missing one
    falls back to the default with a notice in ``message``.
    ``blocksize``: frames per callback; a splice lands ``max(splice_seconds, 2 blocks)`` after
    the reader, so small blocks make changes audible sooner (128 frames = 5.3 ms at 24 kHz).
    ``latency``: the device buffer PortAudio is asked for (seconds, or "low"/"high").  50 ms,
    not "low": through ALSA's PulseAudio plugin "low" (~21 ms) underran thousands of times per
    second and PulseAudio dropped the audio, while 50 ms played cleanly.
    Commands return at once and are carried out by the feeder thread; ``sync()`` waits for them.
    """

    def __init__(self, source: Source, sample_rate: int, total_samples: int, *, channels: int = 1,
                 device: str | None = None, output: OutputKind = "auto", lead_seconds: float = 0.15,
                 blocksize: int = 128, latency: float | str = 0.05, splice_seconds: float = 0.011,
                 fade_seconds: float = 0.005, virtual_latency: float = 0.02):
        if total_samples <= 0 or sample_rate <= 0 or channels <= 0:
            raise AudioSAEError("player: sample_rate, total_samples and channels must be positive")
        self.source = source
        self.sample_rate = int(sample_rate)
        self.total_samples = int(total_samples)
        self.channels = int(channels)
        self.blocksize = int(blocksize)
        self.lead = max(int(lead_seconds * sample_rate), 2 * self.blocksize)
        self.min_margin = max(int(splice_seconds * sample_rate), 2 * self.blocksize)
        self.fade = max(2, int(fade_seconds * sample_rate))
        self._ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(self.fade) + 0.5) / self.fade)).astype(np.float32)
        history = int(1.0 * sample_rate)  # positions of played audio kept for the latency mapping
        self._ring = RingBuffer(self.lead + int(0.25 * sample_rate) + self.fade + history, channels)
        self._poll = min(0.01, 0.5 * self.blocksize / sample_rate)
        self._latency_request = latency
        self._virtual_latency = float(virtual_latency)

        # Read by the callback (plain attributes: single stores are atomic under the GIL).
        self._active = False        # the callback consumes the ring
        self._expect_dry = True     # running out is the end of a pause/clip, not an underrun
        self._timing = np.zeros(2, dtype=np.float64)  # [ring index of the last block, its DAC time]
        self._device_underflows = 0
        self._ring_dry = 0

        # Feeder-owned state.
        self._overtake = 0          # decaying max distance the reader overtook a splice by
        self.splice_retries = 0     # splices redone because the reader got to the point first
        self.splices_missed = 0     # splices abandoned because the reader kept overtaking them
        self.feeder_looks = 0       # feeder loop iterations (diagnostics, tests)
        self._state: Literal["stopped", "playing", "paused", "ended"] = "stopped"
        self._cursor = 0            # clip position of the slot at write_pos
        self._resume = 0            # where play() starts
        self._loop: tuple[int, int] | None = None
        self._fade_in_pending = False
        self._commands: list[tuple] = []
        self._posted = 0
        self._processed = 0
        self._closing = False
        self._cond = threading.Condition()
        self.error: BaseException | None = None
        self.error_traceback = ""

        self.available = False
        self.reason = ""
        self.message = ""
        self.device_name: str | None = None
        self.output_kind: str = "virtual"
        self._stream: Any = None
        if output in ("auto", "device"):
            opened = self._open_device(device)
            if opened is None:
                self._stream = self._virtual(realtime=True)
            else:
                self._stream, self.device_name = opened
                self.available, self.output_kind = True, "device"
        elif output == "virtual":
            self.reason = "virtual output (no audio device requested)"
            self._stream = self._virtual(realtime=True)
        elif output == "manual":
            self.reason = "manual virtual output (tests)"
            self._stream = self._virtual(realtime=False)
            self.output_kind = "manual"
        else:
            raise AudioSAEError(f"player: unknown output {output!r}")
        self._stream.start()
        self._feeder = threading.Thread(target=self._feed, name="audiosae-playback-feeder", daemon=True)
        self._feeder.start()

    # ---- devices -----------------------------------------------------------------------------
    def _virtual(self, realtime: bool) -> VirtualOutputStream:
        return VirtualOutputStream(self.sample_rate, self.channels, self.blocksize, self._callback,
                                   latency=self._virtual_latency, realtime=realtime)

    def _open_device(self, name: str | None) -> tuple[Any, str] | None:
        """Open ``name`` (or the default) as a started-later sounddevice stream; None + reason if not."""
        sd, reason = sounddevice_or_reason()
        if sd is None:
            self.reason = reason
            return None
        devices = list_output_devices()
        if not devices:
            fix = ("start the sound server: pulseaudio --start" if sys.platform.startswith("linux")
                   else "connect or enable an output device in the system's sound settings")
            self.reason = (f"audio output unavailable: PortAudio lists no output device; {fix}, then "
                           f"choose it under Output in the Audition panel")
            return None
        default = next((d for d in devices if d.is_default), devices[0])
        candidates = [default]
        if name:
            named = next((d for d in devices if d.name == name), None)
            if named is None:
                self.message = (f"output device {name!r} is not available; "
                                f"playing on the default output {default.name!r}")
            else:
                candidates = [named] + ([default] if default is not named else [])
        errors = []
        for chosen in candidates:
            for channels in sorted({self.channels, max(self.channels, min(2, chosen.max_channels))}):
                try:
                    stream = sd.OutputStream(samplerate=self.sample_rate, blocksize=self.blocksize,
                                             device=chosen.index, channels=channels, dtype="float32",
                                             latency=self._latency_request, callback=self._callback)
                except Exception as exc:  # PortAudioError, ValueError (unsupported settings)
                    errors.append(f"{chosen.name}: {exc}")
                    continue
                if chosen is not candidates[0]:
                    self.message = (f"output device {candidates[0].name!r} could not be opened ({errors[0]}); "
                                    f"playing on the default output {chosen.name!r}")
                return stream, chosen.name
        self.reason = "audio output unavailable: " + "; ".join(errors)
        return None

    def set_device(self, name: str | None) -> bool:
        """Switch to output device ``name`` (None = default).  On failure the current output
        stays and ``message`` says why; returns whether the switch happened."""
        previous_reason = self.reason
        opened = self._open_device(name)
        if opened is None:
            self.message = f"could not switch output to {name or 'the default device'}: {self.reason}"
            self.reason = previous_reason
            return False
        stream, device_name = opened
        old = self._stream
        old.stop()
        old.close()
        self._stream, self.device_name = stream, device_name
        self.available, self.reason, self.output_kind = True, "", "device"
        stream.start()
        return True

    @property
    def stream(self) -> Any:
        """The output stream (a ``sounddevice.OutputStream`` or a ``VirtualOutputStream``)."""
        return self._stream

    @property
    def output_latency(self) -> float:
        """Seconds between the callback handing a block over and the listener hearing it."""
        latency = getattr(self._stream, "latency", 0.0)
        return float(latency[1] if isinstance(latency, (tuple, list)) else latency)

    # ---- the audio callback: copy, count, nothing else ---------------------------------------
    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status.output_underflow:
            self._device_underflows += 1
        if not self._active:
            outdata.fill(0.0)
            return
        ring = self._ring
        got = ring.read_into(outdata)
        self._timing[0] = ring.read_pos - got
        self._timing[1] = time_info.outputBufferDacTime
        if got < frames and not self._expect_dry:
            self._ring_dry += 1

    # ---- commands (any thread) ---------------------------------------------------------------
    def _post(self, *command: Any) -> None:
        with self._cond:
            if self._closing:
                return
            self._commands.append(command)
            self._posted += 1
            self._cond.notify_all()

    def play(self) -> None:
        self._post("play")

    def pause(self) -> None:
        self._post("pause")

    def stop(self) -> None:
        """Pause and go back to the loop start (or the clip start)."""
        self._post("stop")

    def seek(self, sample: int) -> None:
        self._post("seek", min(max(int(sample), 0), self.total_samples))

    def set_loop(self, start: int | None, end: int | None = None) -> None:
        """Loop ``[start, end)`` samples; ``set_loop(None)`` plays to the clip end and stops."""
        if start is None:
            self._post("loop", None)
            return
        start, end = int(start), int(self.total_samples if end is None else end)
        if not 0 <= start < end <= self.total_samples:
            raise AudioSAEError(f"player: loop [{start}, {end}) must lie within [0, {self.total_samples}]")
        if end - start < 4 * self.fade:
            raise AudioSAEError(f"player: a loop must be at least {4 * self.fade} samples long")
        self._post("loop", (start, end))

    def requeue(self, start: int | None = None, end: int | None = None) -> None:
        """The source's audio for clip samples ``[start, end)`` changed (None: all of it):
        replace what is queued for that span, from the splice point on."""
        span = None if start is None else (int(start), int(self.total_samples if end is None else end))
        self._post("requeue", span)

    def sync(self, timeout: float = 2.0) -> bool:
        """Wait until the feeder has carried out every command posted so far."""
        with self._cond:
            target = self._posted
            return self._cond.wait_for(lambda: self._processed >= target or self._closing, timeout)

    def close(self) -> None:
        """Stop the feeder thread and close the stream (idempotent)."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._feeder.join(5.0)
        self._active = False
        try:
            self._stream.stop()
            self._stream.close()
        except Exception:  # a device that vanished; nothing left to release
            pass

    def __enter__(self) -> Player:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- state -------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``"stopped"``, ``"playing"``, ``"paused"`` or ``"ended"`` (reached the clip end)."""
        return self._state

    @property
    def playing(self) -> bool:
        return self._state == "playing"

    @property
    def loop(self) -> tuple[int, int] | None:
        return self._loop

    @property
    def device_underflows(self) -> int:
        """Callbacks flagged ``output_underflow`` by the device (or the virtual clock)."""
        return self._device_underflows

    @property
    def ring_dry(self) -> int:
        """Callbacks that found fewer queued frames than they needed while playing."""
        return self._ring_dry

    @property
    def underruns(self) -> dict[str, int]:
        return {"device_underflows": self._device_underflows, "ring_dry": self._ring_dry}

    def _heard_index(self) -> int:
        """Ring index of the sample reaching the listener now (output latency included)."""
        ring = self._ring
        r, w = ring.read_pos, ring.write_pos
        block_start, dac_time = float(self._timing[0]), float(self._timing[1])
        try:
            now = float(self._stream.time)
        except Exception:  # stream time unavailable (stopped / vanished device)
            now = 0.0
        if dac_time > 0 and now > 0:
            index = math.floor(block_start + (now - dac_time) * self.sample_rate + 1e-6)
        else:
            index = r - int(self.output_latency * self.sample_rate)
        return min(max(index, w - ring.capacity, 0), max(r - 1, 0))

    def position(self) -> int:
        """The clip sample the listener hears now (the resume point when not playing)."""
        ring = self._ring
        if not self._active or ring.read_pos == 0:
            return self._resume
        if self._state != "playing" and ring.read_pos >= ring.write_pos:
            return self.total_samples if self._state == "ended" else self._resume
        position = ring.position_at(self._heard_index())
        return position if position >= 0 else self._resume

    def heard_tag(self) -> int | None:
        """The source's tag of the sample heard now (None before anything was played)."""
        ring = self._ring
        if not self._active or ring.read_pos == 0:
            return None
        tag = ring.tag_at(self._heard_index())
        return None if tag == _NO_TAG else tag

    @property
    def margin(self) -> int:
        """Frames between the reader and a splice point: ``splice_seconds`` (at least two
        blocks), widened for a while after the reader overtook a splice.  Devices read in
        bursts (PortAudio's ALSA-PulseAudio path runs the callback 2-3 times back to back
        every ~16-21 ms); a splice the reader overtakes is simply redone further on."""
        return max(self.min_margin, self._overtake)

    def splice_position(self) -> int:
        """Clip position from which a ``requeue`` issued now would replace the audio: where
        a renderer should have fresh audio ready first."""
        ring = self._ring
        r, w = ring.read_pos, ring.write_pos
        point = min(r + self.margin, w)
        if self._state == "playing" and point < w:
            position = ring.position_at(point)
            if position >= 0:
                return position
        return self._cursor if self._state == "playing" else self._resume

    # ---- the feeder thread -------------------------------------------------------------------
    def _feed(self) -> None:
        while True:
            with self._cond:
                if not self._commands and not self._closing:
                    self._cond.wait(self._poll)
                if self._closing:
                    return
                commands, self._commands = self._commands, []
            self._overtake = int(self._overtake * 0.99)
            self.feeder_looks += 1
            try:
                for command in commands:
                    self._apply(*command)
                if self._state == "playing":
                    self._fill()
            except Exception as exc:  # a failing source stops playback; the owner reads error
                self.error = exc
                self.error_traceback = traceback.format_exc()
                self._state = "stopped"
                self._expect_dry = True
            finally:
                if commands:
                    with self._cond:
                        self._processed += len(commands)
                        self._cond.notify_all()

    def _apply(self, name: str, *args: Any) -> None:
        playing = self._state == "playing"
        if name == "play":
            if playing:
                return
            if self._state == "ended" or self._resume >= self._region_end():
                self._resume = self._loop[0] if self._loop else 0
            self._cursor = self._resume
            self._state = "playing"
            self._fade_in_pending = True
            self._fill()
            self._expect_dry = False
            self._active = True
        elif name in ("pause", "stop"):
            if playing:
                self._resume = self._fade_out()
                self._expect_dry = True
                self._state = "paused"
            if name == "stop":
                self._state = "stopped"
                self._resume = self._loop[0] if self._loop else 0
        elif name == "seek":
            if playing:
                self._splice(args[0])
            else:
                self._resume = args[0]
                if self._state == "ended":
                    self._state = "paused"
        elif name == "loop":
            self._loop = args[0]
            if playing:
                self._splice(None)
        elif name == "requeue":
            if playing and self._queued_overlaps(args[0]):
                self._splice(None)

    def _region_end(self) -> int:
        return self._loop[1] if self._loop else self.total_samples

    def _queued_overlaps(self, span: tuple[int, int] | None) -> bool:
        ring = self._ring
        point, w = min(ring.read_pos + self.margin, ring.write_pos), ring.write_pos
        if span is None:
            return True
        if point >= w:
            return False
        idx = np.arange(point, w) & (ring.capacity - 1)
        positions = ring.positions[idx]
        return bool(np.any((positions >= span[0]) & (positions < span[1])))

    def _pull(self, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Source audio ``[n, channels]`` and tags ``[n]`` for clip samples ``[start, start + n)``
        (zeros and no tag outside the clip)."""
        out = np.zeros((n, self.channels), dtype=np.float32)
        tags = np.full(n, _NO_TAG, dtype=np.int64)
        a, b = max(start, 0), min(start + n, self.total_samples)
        if b > a:
            result = self.source(a, b - a)
            audio, tag = (result if isinstance(result, tuple) else (result, _NO_TAG))
            audio = np.asarray(audio, dtype=np.float32)
            if audio.ndim == 1:
                audio = audio[None, :]
            if audio.shape != (self.channels, b - a):
                raise AudioSAEError(f"player: the source returned {list(audio.shape)} for "
                                    f"[{self.channels}, {b - a}]")
            out[a - start:b - start] = soft_limit(audio.T)  # feeder thread, not the callback
            tags[a - start:b - start] = tag  # an int, or one per sample
        return out, tags

    def _produce(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Up to ``n`` frames continuing from ``_cursor``, wrapping (cross-faded) at the loop end;
        fewer at the clip end without a loop.  Returns audio, positions, tags."""
        blocks, positions, tags = [], [], []
        made = 0
        while made < n:
            region_end = self._region_end()
            if self._cursor >= region_end:
                if self._loop is None:
                    break
                self._cursor = self._loop[0]
                continue
            take = min(n - made, region_end - self._cursor)
            audio, tag = self._pull(self._cursor, take)
            if self._loop is not None:
                self._crossfade_loop(audio, self._cursor)
            blocks.append(audio)
            positions.append(np.arange(self._cursor, self._cursor + take, dtype=np.int64))
            tags.append(tag)
            self._cursor += take
            made += take
        if not blocks:
            empty = np.zeros((0, self.channels), dtype=np.float32)
            return empty, np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(blocks), np.concatenate(positions), np.concatenate(tags)

    def _crossfade_loop(self, audio: np.ndarray, start: int) -> None:
        """Blend the last ``fade`` samples before the loop end into what precedes the loop
        start, so the wrap continues seamlessly into the loop start."""
        loop_start, loop_end = self._loop  # type: ignore[misc]
        fade_start = loop_end - self.fade
        a, b = max(start, fade_start), start + len(audio)
        if b <= a:
            return
        before, _ = self._pull(loop_start - (loop_end - a), b - a)
        gain = self._ramp[a - fade_start:b - fade_start, None]
        audio[a - start:b - start] = audio[a - start:b - start] * (1.0 - gain) + before * gain

    def _fill(self) -> None:
        ring = self._ring
        queued = ring.queued()
        if queued >= self.lead:
            return
        want = self.lead - queued
        want = -(-want // self.blocksize) * self.blocksize
        audio, positions, tags = self._produce(want)
        if self._fade_in_pending and len(audio):
            k = min(self.fade, len(audio))
            audio[:k] *= self._ramp[:k, None]
            self._fade_in_pending = False
        ring.write(audio, positions, tags)
        if len(audio) < want:  # the clip ended (no loop): drain, then stop
            self._state = "ended"
            self._resume = self.total_samples
            self._expect_dry = True

    def _write_spliced(self, point: int, snapshot_end: int, audio: np.ndarray, positions: np.ndarray,
                       tags: np.ndarray) -> bool:
        """Write ``audio`` from slot ``point`` and publish it, unless the reader got too close
        to ``point`` meanwhile (it may be copying the slots just before it); True if written."""
        ring = self._ring
        if point < snapshot_end and ring.read_pos + self.blocksize > point:
            return False
        try:
            ring.write_at(point, audio, positions, tags)
        except ValueError:  # the reader passed the point between the check and the write
            return False
        ring.publish(point + len(audio))
        return True

    def _splice(self, new_cursor: int | None, attempts: int = 3) -> None:
        """Replace queued audio from ``read_pos + margin`` on with fresh source audio starting
        at ``new_cursor`` (None: the same clip position, i.e. re-pull), cross-faded."""
        ring = self._ring
        for _ in range(attempts):
            r, w = ring.read_pos, ring.write_pos
            point = min(r + self.margin, w)
            cursor = new_cursor
            if cursor is None:
                cursor = ring.position_at(point) if point < w else self._cursor
                if cursor < 0:
                    return
            old_n = min(self.fade, w - point)
            old = ring.peek(point, old_n)
            previous_cursor = self._cursor
            self._cursor = int(cursor)
            want = max(self.lead - (point - r), self.fade, self.blocksize)
            audio, positions, tags = self._produce(want)
            k = min(old_n, len(audio))
            if k:
                gain = self._ramp_of(k)[:, None]
                audio[:k] = old[:k] * (1.0 - gain) + audio[:k] * gain
            if len(audio) < old_n:  # clip end: fade out the old audio instead of cutting it
                tail = old[len(audio):] * (1.0 - self._ramp_of(old_n - len(audio)))[:, None]
                audio = np.concatenate([audio, tail])
                positions = np.concatenate([positions, np.full(len(tail), self.total_samples - 1, np.int64)])
                tags = np.concatenate([tags, np.full(len(tail), _NO_TAG, np.int64)])
            if self._write_spliced(point, w, audio, positions, tags):
                self._state = "playing"
                self._expect_dry = False
                if len(audio) < want and self._cursor >= self._region_end() and self._loop is None:
                    self._state = "ended"
                    self._resume = self.total_samples
                    self._expect_dry = True
                return
            self._cursor = previous_cursor
            self.splice_retries += 1
            self._overtake = max(self._overtake, ring.read_pos - r + self.blocksize)
        self.splices_missed += 1  # the old audio plays on; later fills carry the new

    def _fade_out(self) -> int:
        """Fade the queued audio out over ``fade`` samples after the splice point; returns the
        clip position that would have come next (the resume point)."""
        ring = self._ring
        for _ in range(3):
            r, w = ring.read_pos, ring.write_pos
            point = min(r + self.margin, w)
            n = min(self.fade, w - point)
            if n <= 0:
                last = ring.position_at(point - 1) if point > 0 else self._cursor - 1
                break
            slots = np.arange(point, point + n) & (ring.capacity - 1)
            faded = ring.data[slots] * (1.0 - self._ramp_of(n))[:, None]
            if self._write_spliced(point, w, faded, ring.positions[slots], ring.tags[slots]):
                last = ring.position_at(point + n - 1)
                break
        else:  # the reader kept overtaking: let the queue run out instead of fading
            last = ring.position_at(ring.write_pos - 1)
        return min(max(last + 1, 0), self.total_samples) if last >= 0 else self._cursor

    def _ramp_of(self, n: int) -> np.ndarray:
        """The fade-in ramp stretched or cut to ``n`` samples."""
        if n == self.fade:
            return self._ramp
        return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
