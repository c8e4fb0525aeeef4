"""The one place that imports ``torchcrepe``.

(``encodec`` is no longer imported at all: the EnCodec backends run our own model.)
torchcrepe imports torchaudio at import time, and torchaudio's last release (2.11) fails to import
with a newer torch.  Keeping the imports here means the trap, and the message that explains
it, live in one small module that can be replaced when those packages drop torchaudio.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import DependencyError

_TORCH_PIN = "torch>=2.5,<2.12 torchaudio>=2.5,<2.12"


def _import(name: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or name
        if missing.split(".")[0] == "torchaudio":
            raise DependencyError(
                f"{name} needs torchaudio for {purpose}, which is not installed; "
                f"run: pip install '{_TORCH_PIN.split()[1]}' (matching your torch)") from None
        raise DependencyError(f"{name} is not installed ({purpose}); run: pip install {name}") from None
    except (ImportError, OSError, RuntimeError) as exc:
        import torch

        raise DependencyError(
            f"importing {name} ({purpose}) failed: {exc}. torchaudio must match torch "
            f"(torch {torch.__version__} here); run: pip install '{_TORCH_PIN.split()[0]}' "
            f"'{_TORCH_PIN.split()[1]}'") from None


def import_torchcrepe() -> ModuleType:
    """The ``torchcrepe`` package (pitch labels)."""
    return _import("torchcrepe", "pitch labelling with CREPE")
