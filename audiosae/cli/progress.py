"""Progress on a terminal: one tqdm bar per stage (stderr), or plain lines when not a terminal."""

from __future__ import annotations

import sys
import time

from ..jobs import Progress


class TqdmProgress:
    """Progress sink for a terminal: one tqdm bar per stage, on stderr, silent when asked."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._bar = None
        self._stage: str | None = None
        self._last_line = 0.0

    def __call__(self, event: Progress) -> None:
        if self.quiet:
            return
        if not self.tty:
            return self._plain(event)
        from tqdm import tqdm

        if event.stage != self._stage or self._bar is None:
            self.close()
            self._stage = event.stage
            self._bar = tqdm(total=event.total, desc=event.stage, unit="", leave=False,
                             dynamic_ncols=True, file=sys.stderr)
        if event.total is not None and self._bar.total != event.total:
            self._bar.total = event.total
        self._bar.n = event.done
        postfix = event.message[:60]
        self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.refresh()

    def _plain(self, event: Progress) -> None:
        # Not a terminal (CI, a pipe): an occasional plain line so long work shows life.
        now = time.monotonic()
        if event.stage != self._stage or now - self._last_line > 10:
            self._stage, self._last_line = event.stage, now
            frac = event.fraction
            pct = f" {100 * frac:5.1f}%" if frac is not None else ""
            print(f"[{event.stage}]{pct} {event.message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
