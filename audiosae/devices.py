"""Compute device selection: CUDA, then Apple MPS, then CPU, overridable everywhere."""

from __future__ import annotations

import os

import torch

from .errors import BackendError

# Ops that MPS lacks fall back to the CPU instead of raising; must be set before first use.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.insert(0, "cuda")
    if mps_available():
        devices.insert(0 if "cuda" not in devices else 1, "mps")
    return devices


def pick_device(preferred: str | None = None) -> torch.device:
    """Resolve ``preferred`` ("auto"/None, "cpu", "cuda", "cuda:1", "mps") to a torch device."""
    choice = (preferred or "auto").strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BackendError(f"device {preferred!r} requested but CUDA is not available here "
                               f"(available: {', '.join(available_devices())})")
        return torch.device(choice)
    if choice == "mps":
        if not mps_available():
            raise BackendError(f"device 'mps' requested but Apple MPS is not available here "
                               f"(available: {', '.join(available_devices())})")
        return torch.device("mps")
    if choice == "cpu":
        return torch.device("cpu")
    raise BackendError(f"unknown device {preferred!r}; choose one of {', '.join(DEVICE_CHOICES)}")
