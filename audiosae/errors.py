"""Error types shown to users.  Every message is one line that names what failed."""

from __future__ import annotations

from pathlib import Path


class AudioSAEError(Exception):
    """Base class: an expected failure with a message fit for a user (no traceback)."""


class AudioInputError(AudioSAEError):
    """A file or folder of audio that cannot be used; names the path and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
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
