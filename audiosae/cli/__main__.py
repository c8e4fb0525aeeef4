"""``python -m audiosae.cli``: the ``audiosae`` command."""

import sys

from audiosae.cli import main

sys.exit(main())
