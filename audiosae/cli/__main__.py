"""``python -m audiosae.cli``: the ``audiosae`` command."""

import sys

from audiosae.cli import main

if __name__ == "__main__":   # importing it (the smoke test's module sweep) runs nothing
    sys.exit(main())
