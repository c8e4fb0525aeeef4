"""``studio.playback`` is ``audiosae.steering.playback`` (the playback engine moved to the core,
issue 13): this module is that one under its old name, so imports and monkeypatches of
``studio.playback`` (``sounddevice_or_reason`` in tests) act on the engine itself."""

import sys

from audiosae.steering import playback as _engine

sys.modules[__name__] = _engine
