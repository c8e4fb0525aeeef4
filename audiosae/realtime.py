"""``audiosae.realtime`` is ``audiosae.steering.realtime`` (moved there, issue 13: the realtime session
beside the offline steering and the playback engine): this module is that one under its old name, so
imports and monkeypatches of ``audiosae.realtime`` act on it."""

import sys

from audiosae.steering import realtime as _module

sys.modules[__name__] = _module
