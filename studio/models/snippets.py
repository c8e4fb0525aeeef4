"""One-shot playback of short snippets (corpus frames, boosted windows), for any pane.

``SnippetPlayer`` plays a ``[channels, N]`` array once through ``audiosae.steering.playback.Player`` (so it
gets the same device handling: chosen by name, default fallback, no-device detection) and
says when it starts and stops, with a tag the caller chose (e.g. the row being played), so a
list can highlight the row that sounds.  A new snippet replaces the one playing without a
click (the player splices it in with a cross-fade).  The output stream is kept open for a few
seconds after a snippet ends, so clicking through a list does not reopen the device each time.

Without an audio device ``play`` returns False and ``message`` says "playback unavailable: ...";
nothing raises.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from audiosae.errors import AudioSAEError
from audiosae.steering.playback import Player

log = logging.getLogger("studio.snippets")

KEEP_OPEN_SECONDS = 30.0   # one open stream serves every snippet up to this long
POLL_MS = 25               # how often the end of a snippet is checked
IDLE_CLOSE_MS = 8000       # close the stream after this long without a snippet


class SnippetPlayer(QObject):
    """Plays short arrays once.  GUI thread only.

    ``device``: output device name (None: the default); ``output``: passed to ``Player``
    ("auto"; "virtual" plays on a silent clock, for tests and machines without audio).
    """

    started = Signal(object)    # tag of the snippet now sounding
    finished = Signal(object)   # tag of a snippet that ended, was stopped or was replaced
    message = Signal(str)       # a one-line notice (playback unavailable, device fallback, error)

    def __init__(self, device: str | None = None, *, output: str = "auto", parent: QObject | None = None):
        super().__init__(parent)
        self._device = device
        self._output = output
        self._player: Player | None = None
        self._key: tuple[int, int, int] | None = None      # (rate, channels, capacity) of _player
        self._audio = np.zeros((1, 0), dtype=np.float32)    # read by the player's feeder thread
        self._length = 0
        self._tag: Any = None
        self._playing = False
        self.reason = ""
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._check)
        self._idle = QTimer(self)
        self._idle.setSingleShot(True)
        self._idle.setInterval(IDLE_CLOSE_MS)
        self._idle.timeout.connect(self._release)

    # ---- public ----------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def tag(self) -> Any:
        """Tag of the snippet sounding now (None when silent)."""
        return self._tag if self._playing else None

    def set_device(self, name: str | None) -> None:
        """Use output device ``name`` from the next snippet on."""
        if name != self._device:
            self.stop()
            self._device = name
            self._release()

    def play(self, wave: np.ndarray, sample_rate: int, tag: Any = None) -> bool:
        """Play ``wave`` (``[channels, N]`` or ``[N]``) once; False (and ``message``) when it cannot."""
        audio = np.atleast_2d(np.asarray(wave, dtype=np.float32))
        if audio.ndim != 2 or audio.shape[1] == 0 or sample_rate <= 0:
            self.message.emit("nothing to play (empty snippet)")
            return False
        audio = np.ascontiguousarray(np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0))
        player = self._ensure_player(int(sample_rate), audio.shape[0], audio.shape[1])
        if player is None:
            return False
        if self._playing:
            self.finished.emit(self._tag)
        self._audio, self._length, self._tag = audio, audio.shape[1], tag
        player.seek(0)
        player.play()
        self._playing = True
        self._idle.stop()
        self._poll.start()
        self.started.emit(tag)
        if player.message:
            self.message.emit(player.message)
            player.message = ""
        return True

    def stop(self) -> None:
        """Stop the snippet sounding now, if any (emits ``finished``)."""
        if self._playing:
            self._finish()

    def close(self) -> None:
        """Stop and release the output stream and timers (idempotent)."""
        self.stop()
        self._poll.stop()
        self._idle.stop()
        self._release()

    # ---- internals -------------------------------------------------------------------------
    def _source(self, start: int, n: int) -> np.ndarray:
        """The player's source (its feeder thread): the current snippet, silence after it."""
        audio = self._audio
        out = np.zeros((self._key[1] if self._key else audio.shape[0], n), dtype=np.float32)
        a = min(start, audio.shape[1])
        b = min(start + n, audio.shape[1])
        if b > a and audio.shape[0] == out.shape[0]:
            out[:, :b - a] = audio[:, a:b]
        return out

    def _ensure_player(self, rate: int, channels: int, length: int) -> Player | None:
        if self._player is not None and self._key is not None:
            same = self._key[0] == rate and self._key[1] == channels and self._key[2] >= length
            if not same:
                self.stop()
                self._release()
        if self._player is None:
            capacity = max(length, int(KEEP_OPEN_SECONDS * rate))
            try:
                player = Player(self._source, rate, capacity, channels=channels, device=self._device,
                                output=self._output)  # type: ignore[arg-type]
            except (AudioSAEError, OSError, ValueError, RuntimeError) as exc:
                self.reason = str(exc)
                self.message.emit(f"playback unavailable: {exc}")
                return None
            if self._output in ("auto", "device") and not player.available:
                self.reason = player.reason
                player.close()
                detail = self.reason.removeprefix("audio output unavailable: ")
                self.message.emit(f"playback unavailable: {detail}")
                return None
            self._player, self._key = player, (rate, channels, capacity)
        return self._player

    def _check(self) -> None:
        player = self._player
        if not self._playing or player is None:
            self._poll.stop()
            return
        if player.error is not None:
            log.warning("snippet playback failed: %s", player.error)
            self.message.emit(f"playback failed: {player.error}")
            self._finish()
            return
        if player.position() >= self._length or player.state in ("ended", "stopped"):
            self._finish()

    def _finish(self) -> None:
        tag = self._tag
        self._playing = False
        self._tag = None
        self._poll.stop()
        if self._player is not None:
            self._player.pause()
            self._idle.start()
        self.finished.emit(tag)

    def _release(self) -> None:
        self._idle.stop()
        player, self._player, self._key = self._player, None, None
        if player is not None:
            player.close()
