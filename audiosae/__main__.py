"""``python -m audiosae``: the ``audiosae`` command (``audiosae.cli``)."""

import sys

from audiosae.cli import main

sys.exit(main())
