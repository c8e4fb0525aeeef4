"""The lock file and the bootstrap that installs it (packaging/bootstrap.py, uv.lock).

A fresh machine must install exactly what CI tested: every package pinned with hashes, for
Linux, macOS and Windows, from the public index only, and matching pyproject.toml.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "uv.lock"


def _load_bootstrap():
    spec = importlib.util.spec_from_file_location("audiosae_bootstrap", ROOT / "packaging" / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lock() -> dict:
    return tomllib.loads(LOCK.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def packages(lock) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for pkg in lock["package"]:
        out.setdefault(pkg["name"], []).append(pkg)
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_lock_matches_pyproject(packages):
    """The lock was made from this pyproject.toml (else `uv sync --frozen` installs stale pins)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (ours,) = packages["audiosae-studio"]
    locked = {(_norm(r["name"]), r.get("specifier", ""), r.get("marker", "")) for r in ours["metadata"]["requires-dist"]}
    wanted = set()
    for extra, reqs in [(None, project["dependencies"]), *project["optional-dependencies"].items()]:
        for req in reqs:
            m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", req)
            name, spec = _norm(m.group(1)), m.group(2).replace(" ", "")
            spec = ",".join(sorted(spec.split(","))) if spec else ""
            wanted.add((name, spec, f"extra == '{extra}'" if extra else ""))
    locked = {(n, ",".join(sorted(s.split(","))) if s else "", m) for n, s, m in locked}
    assert locked == wanted, f"uv.lock is stale; run `uv lock` (differs: {sorted(locked ^ wanted)[:6]})"


def test_every_package_is_pinned_with_hashes_from_the_public_index(packages):
    for name, versions in packages.items():
        for pkg in versions:
            source = pkg["source"]
            if name == "audiosae-studio":
                assert source == {"editable": "."}
                continue
            assert source == {"registry": "https://pypi.org/simple"}, f"{name} comes from {source}"
            files = pkg.get("wheels", []) + ([pkg["sdist"]] if "sdist" in pkg else [])
            assert files, f"{name} {pkg['version']} has no files in the lock"
            for f in files:
                assert f["url"].startswith("https://files.pythonhosted.org/"), f["url"]
                assert re.fullmatch(r"sha256:[0-9a-f]{64}", f["hash"]), (name, f)


@pytest.mark.parametrize("platform_tag", ["manylinux", "macosx", "win_amd64"])
def test_lock_covers_linux_macos_and_windows(packages, platform_tag):
    """torch, PySide6 and numpy (compiled) have a wheel for each OS and each Python the lock resolves for."""
    for name in ("torch", "pyside6-essentials", "numpy", "soundfile"):
        for pkg in packages[name]:
            tags = [w["url"].rsplit("/", 1)[1] for w in pkg["wheels"]]
            if name == "soundfile" and platform_tag == "manylinux":
                assert any("py2.py3-none-any" in t or "manylinux" in t for t in tags)
                continue
            assert any(platform_tag in t for t in tags), f"{name} {pkg['version']}: no {platform_tag} wheel"


def test_torchaudio_is_no_constraint_on_torch(packages):
    """torch moves freely: the lock holds the newest torch the resolver allowed, not one torchaudio pinned."""
    torch_versions = {tuple(int(x) for x in p["version"].split(".")[:2]) for p in packages["torch"]}
    assert max(torch_versions) >= (2, 12), torch_versions  # above the old `torch<2.12` pin


def test_bootstrap_installs_the_locked_uv_with_its_hashes(packages, tmp_path, monkeypatch):
    bootstrap = _load_bootstrap()
    version, hashes = bootstrap.locked_package("uv")
    (uv,) = packages["uv"]
    assert version == uv["version"]
    assert set(hashes) == {w["hash"].split(":")[1] for w in uv["wheels"]} | {uv["sdist"]["hash"].split(":")[1]}
    calls = []
    monkeypatch.setattr(bootstrap, "run", lambda cmd, **kw: calls.append(cmd))
    monkeypatch.setattr(bootstrap.subprocess, "run", lambda *a, **k: type("R", (), {"returncode": 0, "stdout": ""})())
    bootstrap.ensure_uv(tmp_path)
    (cmd,) = calls
    assert "--require-hashes" in cmd and "--no-deps" in cmd
    req = (tmp_path / "uv-requirement.txt").read_text()
    assert req.startswith(f"uv=={version} ") and req.count("--hash=sha256:") == len(hashes)


def test_pyproject_ranges_exclude_known_breakage():
    """`pip install .` without the lock: no range admits a combination known to break."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    pyside = next(d for d in deps if d.startswith("PySide6"))
    assert "<6.12" in pyside  # 6.12.0 leaks references and aborts during playback
    assert not any(d.startswith("torchaudio") for d in deps)  # never imported; no reason to constrain torch
    torch_req = next(d for d in deps if re.match(r"torch\b", d))
    assert "<" not in torch_req, "torch is no longer capped: torchaudio is never imported"
