"""``SteeredLanes``: the lanes' probe decode of the steered features f' (classes per attribute).

Decoding is the core's (``audiosae.explore.decoding.decode_classes``: one matrix product per
attribute); this view-model only schedules it: a small decode at once, a large one as a job in a
``JobSlot`` (a newer f' cancels the one in flight and its result is dropped).  The lanes view is
given classes per attribute (or ``None``: back to the unsteered decode) and draws them.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from audiosae.explore.decoding import decode_classes, decode_cost
from audiosae.jobs import CancelToken, null_progress

from .job_slot import JobSlot

SYNC_DECODE_LIMIT = 60_000_000  # multiply-adds; above this the decode runs as a job

Classes = dict[str, np.ndarray]


def decode_job(probes: Any, f: np.ndarray, attributes: Sequence[str], *, progress=null_progress,
               cancel: CancelToken | None = None) -> Classes:
    """``decode_classes`` as a ``JobRunner`` job."""
    return decode_classes(probes, f, attributes, cancel=cancel)


class SteeredLanes:
    """Decodes f' with the clip's probes and hands the classes to ``publish`` (GUI thread)."""

    def __init__(self, runner: Any, publish: Callable[[Classes | None], None],
                 on_failed: Callable[[str], None] | None = None):
        self.runner = runner
        self.slot = JobSlot(runner, "decode steered probes")
        self.publish = publish
        self.on_failed = on_failed
        self.probes: Any = None

    @property
    def pending(self) -> bool:
        return self.slot.running

    def cancel(self) -> None:
        self.slot.cancel()

    def set_probes(self, probes: Any) -> None:
        """A new clip's probes (``None``: none); drops a decode in flight."""
        self.cancel()
        self.probes = probes

    def request(self, f: np.ndarray | None, attributes: Sequence[str], n_frames: int) -> None:
        """Decode ``f`` (``[n_frames, d_features]``) for ``attributes``; ``None`` or a mismatch
        publishes ``None`` (the unsteered decode)."""
        self.cancel()
        probes = self.probes
        if (f is None or probes is None or not n_frames or f.shape[0] != n_frames
                or f.shape[1] != probes.d_features):
            self.publish(None)
            return
        attributes = [a for a in attributes if a in probes.weights]
        cost = decode_cost(f, [probes.n_classes(a) for a in attributes])
        if self.runner is None or cost <= SYNC_DECODE_LIMIT:
            self.publish(decode_classes(probes, f, attributes))
            return
        self.slot.start(decode_job, probes, f, attributes, on_finished=self.publish, on_failed=self._failed)

    def _failed(self, message: str) -> None:
        if self.on_failed is not None:
            self.on_failed(message)
