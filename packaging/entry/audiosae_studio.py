"""Frozen-app entry point of the desktop app (PyInstaller needs a script, not ``-m studio.app``)."""

import multiprocessing
import sys

from studio.app import main

if __name__ == "__main__":
    multiprocessing.freeze_support()   # a no-op unless something spawns worker processes
    sys.exit(main())
