"""PyInstaller runtime hook (Linux): let sounddevice fall back to the bundled PortAudio.

sounddevice finds PortAudio with ``ctypes.util.find_library("portaudio")``, which on Linux
asks only the system (ldconfig).  The system library comes first, as it matches the local
ALSA/PulseAudio/JACK set-up; on a machine without it (no ``libportaudio2`` package) the
copy PyInstaller collected from the build machine is used instead of having no sound.
"""

import ctypes.util
import os
import sys

_system_find_library = ctypes.util.find_library


def _find_library(name):
    found = _system_find_library(name)
    if found is None and name == "portaudio":
        bundled = os.path.join(getattr(sys, "_MEIPASS", ""), "libportaudio.so.2")
        if os.path.isfile(bundled):
            return bundled
    return found


ctypes.util.find_library = _find_library
