"""``audiosae.analysis`` is ``audiosae.explore.analysis`` (moved there, issue 13): this module is that one
under its old name, so imports and monkeypatches of ``audiosae.analysis`` act on it."""

import sys

from audiosae.explore import analysis as _module

sys.modules[__name__] = _module
