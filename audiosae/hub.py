"""Model weights from the Hugging Face hub: sizes, verified downloads and safe loading.

Downloads go through ``huggingface_hub.hf_hub_download`` into the normal hub cache, so
files are shared with other tools, fetched once, and resumed by the library (within a call
it retries with HTTP ranges; Xet-backed repos reuse already-fetched chunks across calls).
Byte progress reaches a ``audiosae.jobs`` progress sink and a cancel token stops the
transfer, both through the ``tqdm_class`` hook.  A file is checked (size, and sha256 when
known) before it is handed back.  ``local_path`` skips the hub entirely, for machines
without internet.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from .errors import BackendError, DependencyError, JobCancelled
from .jobs import CancelToken, Progress, ProgressSink, null_progress

__all__ = ["HubFileInfo", "hub_url", "hub_file_info", "hub_file_size", "download_hub_file",
           "download_url_file", "load_checkpoint", "sha256_file"]

_HASH_CHUNK = 8 * 1024 * 1024
# (resolved path, size, mtime_ns) -> sha256 already verified in this process; hashing a
# 1.6 GB checkpoint takes seconds, and a backend may be rebuilt many times per session.
_VERIFIED: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class HubFileInfo:
    """What the hub says about a file before it is downloaded."""

    size: int
    sha256: str | None  # LFS files only


def hub_url(repo_id: str, filename: str | None = None, revision: str | None = None) -> str:
    """Web page of a repo (or of one file in it), for messages telling users where to look."""
    base = f"https://huggingface.co/{repo_id}"
    return base if filename is None else f"{base}/blob/{revision or 'main'}/{filename}"


def _hf() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise DependencyError("huggingface_hub is not installed (needed to download model weights); "
                              "run: pip install huggingface_hub") from None
    return huggingface_hub


def _is_not_found(hf: Any, exc: BaseException) -> bool:
    """True when the hub *answered* that the repo/revision/file is absent (not: offline)."""
    errors = getattr(hf, "errors", None)
    local = getattr(errors, "LocalEntryNotFoundError", None)
    if isinstance(local, type) and isinstance(exc, local):  # offline + not cached: a subclass below
        return False
    names = ("RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError",
             "RemoteEntryNotFoundError", "GatedRepoError")
    kinds = tuple(k for k in (getattr(errors, n, None) for n in names) if isinstance(k, type))
    return bool(kinds) and isinstance(exc, kinds)


def hub_file_info(repo_id: str, filename: str, revision: str | None = None) -> HubFileInfo | None:
    """Size (and sha256 for LFS files) of a hub file, or None when the hub cannot be reached.

    Raises ``BackendError`` when the hub answers that the repo, revision or file does not exist.
    """
    hf = _hf()
    try:
        infos = hf.HfApi().get_paths_info(repo_id, [filename], revision=revision)
    except Exception as exc:
        if _is_not_found(hf, exc):
            raise BackendError(f"{filename} not found in {hub_url(repo_id)}"
                               f"{' at revision ' + revision if revision else ''} ({type(exc).__name__})") from None
        return None  # offline, proxy, timeout, HF_HUB_OFFLINE: the size is just unknown
    for info in infos:
        if getattr(info, "path", None) == filename and getattr(info, "size", None) is not None:
            lfs = getattr(info, "lfs", None)
            return HubFileInfo(size=int(info.size), sha256=getattr(lfs, "sha256", None) if lfs else None)
    raise BackendError(f"{filename} not found in {hub_url(repo_id)}")


def hub_file_size(repo_id: str, filename: str, revision: str | None = None) -> int | None:
    """Size in bytes of a hub file before downloading it; None when offline."""
    info = hub_file_info(repo_id, filename, revision)
    return None if info is None else info.size


def sha256_file(path: str | Path, *, progress: ProgressSink = null_progress,
                cancel: CancelToken | None = None) -> str:
    """Hex sha256 of a file, reporting bytes hashed as stage ``"verify"``."""
    path = Path(path)
    total = path.stat().st_size
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            if cancel is not None:
                cancel.raise_if_cancelled()
            digest.update(chunk)
            done += len(chunk)
            progress(Progress("verify", done, total, f"checking {path.name}"))
    return digest.hexdigest()


def _verify(path: Path, expected_size: int | None, expected_sha256: str | None, what: str,
            remedy: str, progress: ProgressSink, cancel: CancelToken | None) -> None:
    stat = path.stat()
    if expected_size is not None and stat.st_size != expected_size:
        raise BackendError(f"{path}: {what} is {stat.st_size} bytes, expected {expected_size}; {remedy}")
    if expected_sha256:
        memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        actual = _VERIFIED.get(memo) or sha256_file(path, progress=progress, cancel=cancel)
        if actual.lower() != expected_sha256.lower():
            raise BackendError(f"{path}: {what} has sha256 {actual[:12]}…, expected {expected_sha256[:12]}…; {remedy}")
        _VERIFIED[memo] = actual


def _progress_tqdm(base: type, filename: str, progress: ProgressSink, cancel: CancelToken | None) -> type:
    """A tqdm class that forwards byte counts to ``progress`` and stops when cancelled.

    The hub instantiates it for the transfer and calls ``update(n)`` per chunk; raising
    ``JobCancelled`` there aborts the transfer (the library removes its temporary file).
    """

    class _ProgressBar(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any):
            kwargs["disable"] = True  # the sink shows progress; no second bar on stderr
            kwargs.pop("name", None)
            super().__init__(*args, **kwargs)
            self._bytes_done = float(kwargs.get("initial") or 0)
            self._bytes_total = kwargs.get("total")
            if cancel is not None:
                cancel.raise_if_cancelled()
            progress(Progress("download", self._bytes_done, self._bytes_total, f"downloading {filename}"))

        def update(self, n: float | None = 1) -> bool | None:
            if cancel is not None:
                cancel.raise_if_cancelled()
            self._bytes_done += n or 0
            progress(Progress("download", self._bytes_done, self._bytes_total, f"downloading {filename}"))
            return super().update(n)

    return _ProgressBar


def download_hub_file(repo_id: str, filename: str, *, revision: str | None = None,
                      local_path: str | Path | None = None, progress: ProgressSink = null_progress,
                      cancel: CancelToken | None = None, expected_size: int | None = None,
                      expected_sha256: str | None = None) -> Path:
    """Path of a verified local copy of ``repo_id/filename``, downloading it if needed.

    ``local_path``: use this file instead of the hub (offline machines); it must exist and
    is checked against ``expected_size``/``expected_sha256`` when given.  Otherwise the
    file comes from the hub cache (downloaded with byte progress and cancellable), and is
    checked against the expected values, or else the size and sha256 the hub reports.
    Raises ``BackendError`` (with what to do) or ``JobCancelled``.
    """
    page = hub_url(repo_id)
    remedy = f"download {filename} from {page} and pass --weights PATH"
    if local_path is not None:
        path = Path(local_path).expanduser()
        if not path.exists():
            raise BackendError(f"{path}: weights file not found; {remedy}")
        if not path.is_file():
            raise BackendError(f"{path}: weights path is not a file; {remedy}")
        _verify(path, expected_size, expected_sha256, "the weights file", remedy, progress, cancel)
        return path

    if cancel is not None:
        cancel.raise_if_cancelled()
    hf = _hf()
    info = hub_file_info(repo_id, filename, revision)  # None offline: the cache may still have it
    if info is not None:
        expected_size = expected_size if expected_size is not None else info.size
        expected_sha256 = expected_sha256 or info.sha256
    kwargs: dict[str, Any] = {"revision": revision}
    if "tqdm_class" in inspect.signature(hf.hf_hub_download).parameters:  # huggingface_hub >= 0.25
        from tqdm.auto import tqdm

        kwargs["tqdm_class"] = _progress_tqdm(tqdm, filename, progress, cancel)
    try:
        path = Path(hf.hf_hub_download(repo_id, filename, **kwargs))
    except (JobCancelled, KeyboardInterrupt):
        raise
    except Exception as exc:  # offline with an empty cache, network failure, disk full, ...
        if _is_not_found(hf, exc):
            raise BackendError(f"{filename} not found in {page} ({type(exc).__name__})") from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(f"cannot download {filename} from {page} ({reason[:160]}); "
                           f"{remedy}") from None
    if cancel is not None:
        cancel.raise_if_cancelled()  # a transfer path that ignored the hook still stops here
    _verify(path, expected_size, expected_sha256, "the downloaded file",
            f"delete it from the hub cache ({path.parent}) and retry, or {remedy}", progress, cancel)
    progress(Progress("download", path.stat().st_size, path.stat().st_size, f"{filename} ready"))
    return path


def download_url_file(url: str, dest: str | Path, *, sha256_prefix: str | None = None,
                      expected_size: int | None = None, progress: ProgressSink = null_progress,
                      cancel: CancelToken | None = None, timeout: float = 30.0) -> Path:
    """``dest``, downloaded from a plain HTTPS ``url`` if it is not there yet, verified.

    For weights published outside the Hugging Face hub (EnCodec's ``.th`` on Meta's CDN).
    The bytes stream into ``dest.partial`` (resumed with an HTTP range when a previous try
    left one), are checked against the server's Content-Length, ``expected_size`` and the
    sha256 prefix published in the file name (``encodec_24khz-d7cc33bc.th``), and only then
    renamed to ``dest``: a half-downloaded or tampered file is never loaded.  A file already at
    ``dest`` is checked the same way before it is used.
    """
    import urllib.error
    import urllib.request

    dest = Path(dest)
    remedy = f"download {url} yourself and pass --weights PATH"

    def check(path: Path, what: str) -> None:
        if expected_size is not None and path.stat().st_size != expected_size:
            raise BackendError(f"{path}: {what} is {path.stat().st_size} bytes, expected {expected_size}; "
                               f"delete it and retry, or {remedy}")
        if sha256_prefix:
            digest = sha256_file(path, progress=progress, cancel=cancel)
            if not digest.startswith(sha256_prefix.lower()):
                raise BackendError(f"{path}: {what} has sha256 {digest[:12]}…, expected {sha256_prefix}…; "
                                   f"delete it and retry, or {remedy}")

    if dest.is_file():
        check(dest, "the cached weights file")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    have = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "audiosae-studio"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (https URL constants)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already complete (or longer): start over
            partial.unlink(missing_ok=True)
            return download_url_file(url, dest, sha256_prefix=sha256_prefix, expected_size=expected_size,
                                     progress=progress, cancel=cancel, timeout=timeout)
        raise BackendError(f"cannot download {url} (HTTP {exc.code}); {remedy}") from None
    except (OSError, ValueError) as exc:  # offline, DNS, TLS, proxy
        raise BackendError(f"cannot download {url} ({getattr(exc, 'reason', exc)}); {remedy}") from None
    with response:
        resumed = have and response.status == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else expected_size
        done = have
        try:
            with partial.open("ab" if resumed else "wb") as fh:
                while True:
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    fh.write(chunk)
                    done += len(chunk)
                    progress(Progress("download", done, total, f"downloading {dest.name}"))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:  # connection reset mid-transfer, disk full: the partial file resumes next time
            raise BackendError(f"download of {url} stopped at {done} bytes ({exc}); run again to resume, "
                               f"or {remedy}") from None
    if total is not None and done != total:
        raise BackendError(f"download of {url} ended at {done} of {total} bytes; run again to resume, or {remedy}")
    try:
        check(partial, "the downloaded file")
    except BackendError:
        partial.unlink(missing_ok=True)  # wrong bytes: never resume from them
        raise
    os.replace(partial, dest)
    return dest


def load_checkpoint(path: str | Path, *, key: str | None = None) -> Any:
    """``torch.load`` a weights file safely: CPU, ``weights_only=True``, errors as ``BackendError``.

    Zip-format files are memory-mapped, so tensors the caller drops (optimizer state,
    discriminators in a training checkpoint) are never read into memory.  ``key`` returns
    one entry of a dict checkpoint (e.g. ``"state_dict"``).
    """
    path = Path(path)
    if not path.is_file():
        raise BackendError(f"{path}: checkpoint file not found")
    try:
        try:
            obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):  # legacy (non-zip) format cannot be mapped: read it
                raise
            obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise BackendError(f"{path}: refused to load: the file holds pickled Python objects, not only "
                           f"tensors ({detail[:160]}); use the official weights file") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(f"{path}: not a readable PyTorch checkpoint ({detail[:160]}); "
                           f"the file may be truncated: download it again") from None
    if key is None:
        return obj
    if not isinstance(obj, dict) or key not in obj:
        found = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, dict) else type(obj).__name__
        raise BackendError(f"{path}: checkpoint has no {key!r} entry (found: {found})")
    return obj[key]


def _name_some(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def check_state_dict(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], what: str) -> None:
    """Strict key and shape matching, naming what is wrong (the official loaders' silent
    ``strict=False`` is a known cause of garbage output).  Raises ``BackendError``."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_name_some(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_name_some(unexpected)}")
        raise BackendError(f"checkpoint does not match {what}: " + "; ".join(parts))
    wrong = [f"{k} {list(given[k].shape)} (expected {list(v.shape)})"
             for k, v in expected.items() if tuple(given[k].shape) != tuple(v.shape)]
    if wrong:
        raise BackendError(f"checkpoint does not match {what}: wrong shapes: {_name_some(wrong, 3)}")
