"""``audiosae.feature_index`` is ``audiosae.explore.feature_index`` (moved there, issue 13): this module is that one
under its old name, so imports and monkeypatches of ``audiosae.feature_index`` act on it."""

import sys

from audiosae.explore import feature_index as _module

sys.modules[__name__] = _module
