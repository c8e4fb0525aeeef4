"""``python -m audiosae.parity FIXTURE.pt``: the command line is ``audiosae.cli.parity``."""

import sys

from audiosae.cli.parity import main

if __name__ == "__main__":   # importing it (the smoke test's module sweep) runs nothing
    sys.exit(main())
