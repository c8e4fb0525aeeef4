"""The playback engine's lock-free ring buffer and the silent virtual clock that stands in
for an output device (``audiosae.steering.playback.Player`` uses both)."""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

_NO_TAG = -(2 ** 62)


# ---- ring buffer ---------------------------------------------------------------------------
class RingBuffer:
    """Single-producer / single-consumer float32 ring of ``[capacity, channels]`` frames.

    ``read_pos`` and ``write_pos`` only grow (slot = pos & mask).  Only the consumer moves
    ``read_pos``; only the producer moves ``write_pos``, after writing the data, so the
    consumer never sees a slot before it is filled.  The producer may rewrite slots at or
    beyond ``read_pos`` (a splice) and then publish a smaller or larger ``write_pos``.
    Each slot also holds the clip sample position and a tag.
    """

    def __init__(self, capacity: int, channels: int):
        capacity = 1 << max(4, int(capacity - 1).bit_length())
        self.capacity = capacity
        self.channels = int(channels)
        self._mask = capacity - 1
        self.data = np.zeros((capacity, self.channels), dtype=np.float32)
        self.positions = np.full(capacity, -1, dtype=np.int64)
        self.tags = np.full(capacity, _NO_TAG, dtype=np.int64)
        self.read_pos = 0
        self.write_pos = 0

    def queued(self) -> int:
        return self.write_pos - self.read_pos

    def free(self) -> int:
        return self.capacity - self.queued()

    # producer side
    def write(self, audio: np.ndarray, positions: np.ndarray | None = None, tags: np.ndarray | None = None) -> int:
        """Append ``audio`` ``[n, channels]``; returns n.  Raises if it does not fit."""
        self.write_at(self.write_pos, audio, positions, tags)
        self.publish(self.write_pos + len(audio))
        return len(audio)

    def write_at(self, pos: int, audio: np.ndarray, positions: np.ndarray | None = None,
                 tags: np.ndarray | None = None) -> None:
        """Fill slots ``[pos, pos + n)`` without publishing them (``publish`` does)."""
        n = len(audio)
        if pos < self.read_pos or pos + n - self.read_pos > self.capacity:
            raise ValueError(f"ring write [{pos}, {pos + n}) outside the writable window "
                             f"[{self.read_pos}, {self.read_pos + self.capacity})")
        start = pos & self._mask
        first = min(n, self.capacity - start)
        self.data[start:start + first] = audio[:first]
        self.data[:n - first] = audio[first:]
        for lane, values, empty in ((self.positions, positions, -1), (self.tags, tags, _NO_TAG)):
            if values is None:
                lane[start:start + first] = empty
                lane[:n - first] = empty
            else:
                lane[start:start + first] = values[:first]
                lane[:n - first] = values[first:]

    def publish(self, write_pos: int) -> None:
        if write_pos < self.read_pos:
            raise ValueError("cannot publish behind the read position")
        self.write_pos = write_pos

    def peek(self, pos: int, n: int) -> np.ndarray:
        """A copy of ``n`` frames from slot ``pos`` (the producer's view of queued audio)."""
        idx = (np.arange(pos, pos + n) & self._mask)
        return self.data[idx]

    def position_at(self, pos: int) -> int:
        return int(self.positions[pos & self._mask])

    def tag_at(self, pos: int) -> int:
        return int(self.tags[pos & self._mask])

    # consumer side (the audio callback): no allocation beyond slice views
    def read_into(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` queued frames into ``out``, zero the rest; returns frames read."""
        frames = out.shape[0]
        r = self.read_pos
        available = self.write_pos - r
        n = frames if available >= frames else (available if available > 0 else 0)
        start = r & self._mask
        first = self.capacity - start
        if n <= first:
            out[:n] = self.data[start:start + n]
        else:
            out[:first] = self.data[start:]
            out[first:n] = self.data[:n - first]
        if n < frames:
            out[n:] = 0.0
        self.read_pos = r + n
        return n


# ---- a clock that stands in for a device ---------------------------------------------------
class _Flags:
    """The one field of sounddevice's CallbackFlags that the player reads."""

    __slots__ = ("output_underflow",)

    def __init__(self, underflow: bool):
        self.output_underflow = underflow


class _TimeInfo:
    __slots__ = ("outputBufferDacTime", "currentTime")

    def __init__(self) -> None:
        self.outputBufferDacTime = 0.0
        self.currentTime = 0.0


class VirtualOutputStream:
    """A silent output "device": calls ``callback`` every ``blocksize`` frames of real time
    (``realtime=True``, in its own thread) or each time ``pull()`` is called.

    It models a device buffer of ``latency`` seconds: a callback that comes more than that
    late would have let a real device run dry, and is flagged ``output_underflow``.
    """

    def __init__(self, samplerate: int, channels: int, blocksize: int, callback: Callable[..., None], *,
                 latency: float = 0.02, realtime: bool = True):
        self.samplerate = int(samplerate)
        self.channels = int(channels)
        self.blocksize = int(blocksize)
        self.latency = float(latency)
        self.realtime = realtime
        self._callback = callback
        self._out = np.zeros((self.blocksize, self.channels), dtype=np.float32)
        self._time_info = _TimeInfo()
        self._ok, self._late = _Flags(False), _Flags(True)
        self._pulled = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def time(self) -> float:
        return time.monotonic() if self.realtime else self._pulled / self.samplerate

    @property
    def active(self) -> bool:
        return self._running

    def start(self) -> None:
        self._running = True
        if self.realtime and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audiosae-virtual-output", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def close(self) -> None:
        self.stop()

    def pull(self, frames: int | None = None, *, underflow: bool = False) -> np.ndarray:
        """Manual mode: run one callback of ``frames`` (default ``blocksize``); returns a copy.

        ``underflow`` flags the call as a device underflow, as PortAudio would."""
        out = np.zeros((frames or self.blocksize, self.channels), dtype=np.float32)
        self._time_info.currentTime = self.time
        self._time_info.outputBufferDacTime = self.time + self.latency
        self._callback(out, len(out), self._time_info, self._late if underflow else self._ok)
        self._pulled += len(out)
        return out

    def _run(self) -> None:
        period = self.blocksize / self.samplerate
        deadline = time.monotonic()
        try:
            while self._running:
                now = time.monotonic()
                if now < deadline:
                    time.sleep(min(deadline - now, period))
                    continue
                late = now - deadline > self.latency
                if late:
                    deadline = now  # a real device would have played silence; start over
                self._time_info.currentTime = now
                self._time_info.outputBufferDacTime = deadline + self.latency
                self._callback(self._out, self.blocksize, self._time_info, self._late if late else self._ok)
                deadline += period
        except BaseException as exc:  # kept for the owner; a device would abort the stream too
            self.error = exc
            self._running = False
