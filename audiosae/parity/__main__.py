"""``python -m audiosae.parity FIXTURE.pt``: the command line is ``audiosae.cli.parity``."""

import sys

from audiosae.cli.parity import main

sys.exit(main())
