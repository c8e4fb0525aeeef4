"""Atomic, versioned files: round trips and clear errors for corrupt or newer files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from audiosae.errors import WorkspaceError
from audiosae.storage import (SCHEMA_VERSION, atomic_write_json, check_schema, load_tensors,
                              load_tensors_metadata, read_json, save_tensors)


def test_tensor_round_trip_with_metadata(tmp_path):
    path = tmp_path / "a.safetensors"
    save_tensors(path, {"w": torch.arange(6.0).reshape(2, 3), "n": np.arange(4, dtype=np.int32)}, {"name": "x", "k": [1, 2]})
    t = load_tensors(path, expect={"w": (2, None), "n": (4,)})
    assert torch.equal(t["w"], torch.arange(6.0).reshape(2, 3)) and t["n"].dtype == torch.int32
    meta = load_tensors_metadata(path)
    assert meta["name"] == "x" and meta["k"] == [1, 2] and meta["schema_version"] == SCHEMA_VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]  # no temp files left
    if os.name != "nt":  # readable like any file the user writes, not 0600 like a temp file
        mask = os.umask(0)
        os.umask(mask)
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_truncated_and_wrong_shape(tmp_path):
    path = tmp_path / "a.safetensors"
    save_tensors(path, {"w": torch.zeros(64, 64)})
    with pytest.raises(WorkspaceError, match="shape"):
        load_tensors(path, expect={"w": (32, 64)})
    with pytest.raises(WorkspaceError, match="lacks tensor"):
        load_tensors(path, expect={"b": (64,)})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(WorkspaceError, match="corrupt or truncated"):
        load_tensors(path)


def test_json_errors_and_schema(tmp_path):
    path = tmp_path / "cfg.json"
    atomic_write_json(path, {"schema_version": SCHEMA_VERSION, "x": 1})
    assert read_json(path)["x"] == 1
    path.write_text('{"schema_version": 1, "x": ')
    with pytest.raises(WorkspaceError, match="not valid JSON"):
        read_json(path)
    with pytest.raises(WorkspaceError, match="newer than this audiosae"):
        check_schema({"schema_version": SCHEMA_VERSION + 1}, path, kind="thing")
    with pytest.raises(WorkspaceError, match="schema_version"):
        check_schema({}, path, kind="thing")
    atomic_write_json(path, {"schema_version": SCHEMA_VERSION, "x": 2})
    with pytest.raises(ValueError):
        atomic_write_json(path, {"nan": float("nan")})  # NaN is not JSON; refuse rather than write it
    assert json.loads(path.read_text())["x"] == 2  # the failed write left the previous content intact
