"""Frozen-app entry point of the ``audiosae`` command line (shares the desktop app's bundle)."""

import multiprocessing
import sys

from audiosae.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()   # a no-op unless something spawns worker processes
    sys.exit(main())
