"""Files users keep or share: safetensors + JSON, written atomically, with a schema version.

Every write goes to a temporary file in the same folder, is flushed and fsync'd, then
renamed over the target, so a crash (even ``kill -9``) leaves either the old file or the
new one, never a torn one.  Readers check the schema version and report a newer one, a
truncated file or an edited JSON as a ``WorkspaceError`` naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as st_load_numpy_bytes
from safetensors.torch import load_file as st_load_file
from safetensors.torch import save as st_save_bytes

from .errors import WorkspaceError

SCHEMA_VERSION = 1


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported (Windows); the rename is still atomic there
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode() -> int:
    # mkstemp creates 0600 files; give them the mode a plain open() would (0666 & ~umask),
    # so workspaces and traces stay shareable.  os.umask can only be read by setting it.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if os.name != "nt":
            os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def read_json(path: str | Path, *, kind: str = "file") -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkspaceError(f"{path}: {kind} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkspaceError(f"{path}: cannot read {kind} ({exc.__class__.__name__}: {exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkspaceError(f"{path}: {kind} is not valid JSON (line {exc.lineno}: {exc.msg})") from None


def check_schema(meta: Mapping[str, Any], path: str | Path, *, kind: str) -> None:
    """Refuse files written by a newer audiosae (their layout may differ) with a clear message."""
    version = meta.get("schema_version")
    if not isinstance(version, int):
        raise WorkspaceError(f"{path}: {kind} has no integer 'schema_version'; was it edited by hand?")
    if version > SCHEMA_VERSION:
        raise WorkspaceError(
            f"{path}: {kind} has schema version {version}, newer than this audiosae "
            f"(supports up to {SCHEMA_VERSION}); upgrade audiosae-studio to open it")


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor | np.ndarray],
                 metadata: Mapping[str, Any] | None = None) -> None:
    """Write tensors as safetensors atomically; ``metadata`` (JSON-able) goes in the header."""
    as_torch = {k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else
                    v.detach().cpu().contiguous()) for k, v in tensors.items()}
    header = {"schema_version": str(SCHEMA_VERSION)}
    if metadata:
        header["json"] = json.dumps(metadata, default=_json_default, allow_nan=False)
    atomic_write_bytes(path, st_save_bytes(as_torch, metadata=header))


def load_tensors(path: str | Path, *, kind: str = "tensor file",
                 expect: Mapping[str, tuple[int | None, ...]] | None = None,
                 device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file, turning truncation or wrong shapes into a WorkspaceError.

    ``expect`` maps tensor names to shapes (None = any size on that axis).
    """
    path = Path(path)
    if not path.is_file():
        raise WorkspaceError(f"{path}: {kind} not found")
    try:
        tensors = st_load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WorkspaceError(f"{path}: {kind} is corrupt or truncated ({exc})") from None
    for name, shape in (expect or {}).items():
        if name not in tensors:
            raise WorkspaceError(f"{path}: {kind} lacks tensor {name!r}")
        actual = tuple(tensors[name].shape)
        if len(actual) != len(shape) or any(s is not None and s != a for s, a in zip(shape, actual)):
            raise WorkspaceError(f"{path}: {kind} tensor {name!r} has shape {list(actual)}, "
                                 f"expected {[('*' if s is None else s) for s in shape]}")
    return tensors


def load_tensors_metadata(path: str | Path, *, kind: str = "tensor file") -> dict[str, Any]:
    """The JSON metadata stored by ``save_tensors`` (reads only the header)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or n > 100_000_000:
                raise ValueError("bad header length")
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as exc:
        raise WorkspaceError(f"{path}: {kind} header unreadable ({exc})") from None
    meta = header.get("__metadata__", {}) or {}
    out: dict[str, Any] = {}
    if "json" in meta:
        try:
            out = json.loads(meta["json"])
        except json.JSONDecodeError:
            raise WorkspaceError(f"{path}: {kind} metadata is not valid JSON") from None
    try:
        out.setdefault("schema_version", int(meta.get("schema_version", "0")))
    except ValueError:
        raise WorkspaceError(f"{path}: {kind} schema_version is not an integer") from None
    return out


__all__ = [
    "SCHEMA_VERSION", "atomic_write_bytes", "atomic_write_json", "read_json", "check_schema",
    "save_tensors", "load_tensors", "load_tensors_metadata", "st_load_numpy_bytes",
]
