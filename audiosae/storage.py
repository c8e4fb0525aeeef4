"""Files users keep or share: safetensors + JSON, written atomically, with a schema version.

Every write goes to a temporary file in the same folder, is flushed and fsync'd, then
renamed over the target, so a crash (even ``kill -9``) leaves either the old file or the
new one, never a torn one.  Readers check the schema version and report a newer one, a
truncated file or an edited JSON as a ``WorkspaceError`` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
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


def read_json_object(path: str | Path, *, kind: str, document_kind: str | None = None,
                     versioned: bool = True) -> dict[str, Any]:
    """A JSON file that must hold an object: schema-checked (``versioned``) and, with
    ``document_kind``, carrying that ``"kind"`` field; anything else -> ``WorkspaceError``."""
    data = read_json(path, kind=kind)
    if not isinstance(data, dict):
        raise WorkspaceError(f"{path}: {kind} must hold a JSON object; was it edited?")
    if versioned:
        check_schema(data, path, kind=kind)
    if document_kind is not None and data.get("kind") != document_kind:
        raise WorkspaceError(f"{path}: not an audiosae {kind} (kind {data.get('kind')!r})")
    return data


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
    _read_header(path, kind)  # empty, a pickle or zip in disguise: say so before safetensors does
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


# safetensors dtype names -> (family, bytes per element)
_ST_DTYPES = {"BOOL": ("bool", 1), "U8": ("int", 1), "I8": ("int", 1), "U16": ("int", 2), "I16": ("int", 2),
              "U32": ("int", 4), "I32": ("int", 4), "U64": ("int", 8), "I64": ("int", 8), "F16": ("float", 2),
              "BF16": ("float", 2), "F32": ("float", 4), "F64": ("float", 8), "F8_E4M3": ("float", 1),
              "F8_E5M2": ("float", 1)}


@dataclass(frozen=True)
class TensorLayout:
    """One tensor as a safetensors header describes it: ``family`` is "float", "int" or "bool"."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def family(self) -> str:
        return _ST_DTYPES.get(self.dtype, ("unknown", 0))[0]


def _read_header(path: Path, kind: str) -> tuple[dict[str, Any], int]:
    """The raw JSON header of a safetensors file and its length; every way it can be wrong
    (missing, empty, a pickle or zip in disguise, cut short) -> a WorkspaceError naming ``path``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
            n = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
            if not 0 < n <= 100_000_000 or head[8:9] != b"{":
                raise WorkspaceError(f"{path}: {kind} {_not_safetensors(head)}")
            raw = head[8:] + fh.read(n - 1)
    except FileNotFoundError:
        raise WorkspaceError(f"{path}: {kind} not found") from None
    except IsADirectoryError:
        raise WorkspaceError(f"{path}: {kind} is a folder, not a file") from None
    except OSError as exc:
        raise WorkspaceError(f"{path}: cannot read {kind} ({exc.strerror or exc})") from None
    if len(raw) < n:
        raise WorkspaceError(f"{path}: {kind} is corrupt or truncated (the file ends inside its header)")
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise WorkspaceError(f"{path}: {kind} is corrupt (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise WorkspaceError(f"{path}: {kind} is corrupt (its header is not a JSON object)")
    return header, n


def _not_safetensors(head: bytes) -> str:
    """What a file that is not safetensors looks like, from its first bytes."""
    if not head:
        return "is empty (0 bytes)"
    if head[:2] == b"PK":
        return "is a zip archive (a torch.save file?), not safetensors"
    if head[:1] == b"\x80":
        return "is a Python pickle, not safetensors (pickles are never loaded: they can run code)"
    return "is not a safetensors file (bad header length), or is cut short"


def _header_metadata(header: Mapping[str, Any], path: Path, kind: str) -> dict[str, Any]:
    meta = header.get("__metadata__", {}) or {}
    if not isinstance(meta, dict):
        raise WorkspaceError(f"{path}: {kind} header metadata is not a JSON object")
    out: dict[str, Any] = {}
    if "json" in meta:
        try:
            out = json.loads(meta["json"])
        except (TypeError, ValueError):
            raise WorkspaceError(f"{path}: {kind} metadata is not valid JSON") from None
        if not isinstance(out, dict):
            raise WorkspaceError(f"{path}: {kind} metadata is not a JSON object")
    try:
        out.setdefault("schema_version", int(meta.get("schema_version", "0")))
    except (TypeError, ValueError):
        raise WorkspaceError(f"{path}: {kind} schema_version is not an integer") from None
    return out


def load_tensors_metadata(path: str | Path, *, kind: str = "tensor file") -> dict[str, Any]:
    """The JSON metadata stored by ``save_tensors`` (reads only the header)."""
    path = Path(path)
    header, _ = _read_header(path, kind)
    return _header_metadata(header, path, kind)


def tensor_file_layout(path: str | Path, *, kind: str = "tensor file"
                       ) -> tuple[dict[str, TensorLayout], dict[str, Any]]:
    """Name -> dtype and shape of every tensor, and the metadata, from the header alone; also
    checks that the data the header promises is all in the file (a cheap truncation check that
    reads no tensor data: for reports over corpora of gigabytes)."""
    path = Path(path)
    header, n = _read_header(path, kind)
    meta = _header_metadata(header, path, kind)
    layout: dict[str, TensorLayout] = {}
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (lo, hi) = str(entry["dtype"]), tuple(int(d) for d in entry["shape"]), entry["data_offsets"]
            size = _ST_DTYPES[dtype][1] * int(np.prod(shape, dtype=np.int64))
            if int(hi) - int(lo) != size or int(lo) < 0:
                raise ValueError("offsets do not match the shape")
        except (KeyError, TypeError, ValueError) as exc:
            raise WorkspaceError(f"{path}: {kind} is corrupt (tensor {name!r}: {exc})") from None
        layout[name] = TensorLayout(dtype, shape)
        end = max(end, int(hi))
    actual = path.stat().st_size
    if actual < 8 + n + end:
        raise WorkspaceError(f"{path}: {kind} is corrupt or truncated ({actual} bytes, its header "
                             f"describes {8 + n + end})")
    return layout, meta


def require_int(value: Any, name: str, path: str | Path, kind: str, *, minimum: int | None = None) -> int:
    """``value`` as an int, or a WorkspaceError naming the file and the field (hand edits)."""
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        need = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise WorkspaceError(f"{path}: {kind} field {name!r} must be {need}, got {_short(value)}")
    return value


def require_number(value: Any, name: str, path: str | Path, kind: str) -> float:
    """``value`` as a finite float, or a WorkspaceError naming the file and the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise WorkspaceError(f"{path}: {kind} field {name!r} must be a finite number, got {_short(value)}")
    return float(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = [
    "SCHEMA_VERSION", "atomic_write_bytes", "atomic_write_json", "read_json", "read_json_object", "check_schema",
    "save_tensors", "load_tensors", "load_tensors_metadata", "tensor_file_layout", "TensorLayout",
    "require_int", "require_number", "st_load_numpy_bytes",
]
