"""``LaneChoice``: which attribute lanes the timeline shows, remembered between sessions.

The workspace decides what *can* be shown (the paper's three and every attribute its spec
labels: ``studio.layers.lanes.lane_attributes``); the user picks what *is* shown (the timeline's
"Lanes" menu).  The pick is kept in the settings as attribute names, including names the open
workspace does not label, so a pick survives opening another workspace and coming back.
Default: the paper's pitch, loudness and centroid.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from PySide6.QtCore import QObject, Signal

from ..layers.lanes import DEFAULT_LANES, shown_attributes

log = logging.getLogger("studio.lanes")

LANES_KEY = "timeline/lanes"


def _parse(value: Any) -> list[str] | None:
    """Attribute names from a stored value (a comma-separated string; QSettings may hand back a list)."""
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


class LaneChoice(QObject):
    """The available and the chosen lane attributes; ``changed`` when the shown list changes."""

    changed = Signal(list)   # the shown attributes, in lane order

    def __init__(self, settings: Any = None, parent: QObject | None = None):
        super().__init__(parent)
        self.settings = settings
        stored = None
        getter = getattr(settings, "value", None)
        if getter is not None:
            try:
                stored = _parse(getter(LANES_KEY, None))
            except Exception as exc:  # a settings backend problem must not break the view
                log.warning("could not read %s: %s", LANES_KEY, exc)
        self.chosen: list[str] = stored if stored is not None else list(DEFAULT_LANES)
        self.available: list[str] = list(DEFAULT_LANES)

    @property
    def shown(self) -> list[str]:
        return shown_attributes(self.chosen, self.available)

    def set_available(self, attributes: Sequence[str]) -> None:
        """What the open workspace labels (the paper's three without one)."""
        before = self.shown
        self.available = list(attributes)
        if self.shown != before:
            self.changed.emit(self.shown)

    def set_shown(self, attribute: str, on: bool) -> None:
        """Show or hide the lane of ``attribute``; the pick is stored at once."""
        before = self.shown
        if on and attribute not in self.chosen:
            self.chosen.append(attribute)
        elif not on and attribute in self.chosen:
            self.chosen.remove(attribute)
        self._store()
        if self.shown != before:
            self.changed.emit(self.shown)

    def reset(self) -> None:
        """Back to the paper's three."""
        before = self.shown
        self.chosen = list(DEFAULT_LANES)
        self._store()
        if self.shown != before:
            self.changed.emit(self.shown)

    def _store(self) -> None:
        setter = getattr(self.settings, "set_value", None)
        if setter is None:
            return
        try:
            setter(LANES_KEY, ",".join(self.chosen))
        except Exception as exc:
            log.warning("could not store %s: %s", LANES_KEY, exc)
