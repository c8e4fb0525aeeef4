"""Error types shown to users.  Every message is one line that names what failed."""

from __future__ import annotations

import os
from pathlib import Path


def printable(text: str) -> str:
    """``text`` safe for one line on any terminal, log or dialog.

    Control characters (a newline in a file name) become escapes like ``\\n``; the surrogates
    Python uses for file-name bytes that are not valid UTF-8 become ``\\xff``, so printing
    never raises ``UnicodeEncodeError`` and the message stays one line.
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= code <= 0xDCFF:  # surrogateescape: an undecodable byte of a file name
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def display_path(path: str | os.PathLike[str] | bytes) -> str:
    """A path as a user should read it: one line, printable, undecodable bytes as ``\\xNN``."""
    return printable(os.fsdecode(path))


class AudioSAEError(Exception):
    """Base class: an expected failure with a message fit for a user (no traceback).

    The message is made ``printable``: file names with newlines or undecodable bytes inside it
    can neither break it into several lines nor make printing it fail.
    """

    def __init__(self, *args: object):
        if len(args) == 1 and isinstance(args[0], str):
            args = (printable(args[0]),)
        super().__init__(*args)


class AudioInputError(AudioSAEError):
    """A file or folder of audio that cannot be used; names the path and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = os.fsdecode(path)      # as the file system knows it (may hold surrogates)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class WorkspaceError(AudioSAEError):
    """A workspace, shard, SAE or probe file that is missing, corrupt or from a newer schema."""


class BackendError(AudioSAEError):
    """A latent backend that is unknown, cannot load its weights, or got bad input."""


class DependencyError(AudioSAEError):
    """An optional package or system tool is missing; the message says what to install."""


class JobCancelled(AudioSAEError):
    """Raised inside a job when the user asked it to stop."""
