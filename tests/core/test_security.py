"""Trust boundaries: weights are loaded without running pickled code, downloads are verified
before use, and nothing a user shares is a pickle."""

from __future__ import annotations

import ast
import hashlib
import http.server
import io
import threading
import time
from pathlib import Path

import pytest
import torch

from audiosae.errors import BackendError, JobCancelled
from audiosae.hub import download_url_file, load_checkpoint
from audiosae.jobs import CancelToken

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("audiosae", "studio", "packaging", "benchmarks")


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def test_every_unpickling_call_in_the_code_is_safe():
    """An AST audit, so a new call site cannot slip in: ``torch.load`` always with a literal
    ``weights_only=True``; no ``pickle.load(s)``, no ``torch.hub.load_state_dict_from_url``
    (it unpickles with ``weights_only=False``), no EnCodec ``pretrained=True`` (same path),
    ``np.load`` only with ``allow_pickle=False``."""
    problems, torch_loads = [], 0
    for folder in SOURCE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for call, name in _calls(tree):
                where = f"{path.relative_to(REPO)}:{call.lineno}"
                if name.endswith("torch.load"):
                    torch_loads += 1
                    flag = _keyword(call, "weights_only")
                    if not (isinstance(flag, ast.Constant) and flag.value is True):
                        problems.append(f"{where}: torch.load without weights_only=True")
                elif name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "joblib.load"):
                    problems.append(f"{where}: {name}")
                elif name.endswith("load_state_dict_from_url") or name.endswith("hub.load"):
                    problems.append(f"{where}: {name} unpickles without weights_only")
                elif name.endswith(("np.load", "numpy.load")):
                    flag = _keyword(call, "allow_pickle")
                    if not (isinstance(flag, ast.Constant) and flag.value is False):
                        problems.append(f"{where}: np.load without allow_pickle=False")
                elif name.endswith("encodec_model_24khz") or name.endswith("encodec_model_48khz"):
                    flag = _keyword(call, "pretrained")
                    if not (isinstance(flag, ast.Constant) and flag.value is False):
                        problems.append(f"{where}: {name} may download and unpickle unsafely")
    assert torch_loads >= 5, "the audit no longer sees the known torch.load call sites"
    assert not problems, "\n".join(problems)


def test_user_artifacts_are_never_written_with_pickle():
    """SAEs, probes, traces and workspaces are safetensors + JSON: no ``torch.save``/``pickle``
    in the code that writes them (``torch.save`` appears only where tests and benchmarks make
    hub-format checkpoints, the format those projects publish)."""
    allowed = {"audiosae/codecs/wavtokenizer/model.py"}  # writes an official-format checkpoint for tests
    offenders = []
    for folder in ("audiosae", "studio"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = str(path.relative_to(REPO))
            for call, name in _calls(ast.parse(path.read_text(encoding="utf-8"))):
                if name in ("torch.save", "pickle.dump", "pickle.dumps") and rel not in allowed:
                    offenders.append(f"{rel}:{call.lineno}: {name}")
    assert not offenders, offenders


class _Payload:
    """Unpickling this runs code (it would create the marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_with_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "surprise": _Payload(marker)}, evil)
    with pytest.raises(BackendError, match="refused to load"):
        load_checkpoint(evil)
    assert not marker.exists(), "loading the checkpoint ran the pickled code"


# ---- verified downloads from a plain HTTPS host (EnCodec's CDN) ---------------------------

class _Server:
    """A local HTTP server for one file: honours Range, can cut a transfer short or go slow."""

    def __init__(self, body: bytes):
        self.body = body
        self.cut_after: int | None = None   # send only this many bytes (Content-Length stays full)
        self.delay = 0.0
        self.ranges: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                start = 0
                header = self.headers.get("Range")
                if header:
                    server.ranges.append(header)
                    start = int(header.split("=")[1].split("-")[0])
                data = server.body[start:]
                self.send_response(206 if header else 200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if server.cut_after is not None:
                    data = data[:server.cut_after]
                try:
                    for i in range(0, len(data), 64 * 1024):
                        self.wfile.write(data[i:i + 64 * 1024])
                        if server.delay:
                            time.sleep(server.delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/weights.th"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def served():
    body = bytes(range(256)) * 4096  # 1 MiB
    server = _Server(body)
    yield server, body, hashlib.sha256(body).hexdigest()
    server.close()


def test_download_is_verified_and_renamed_into_place(served, tmp_path):
    server, body, digest = served
    events = []
    path = download_url_file(server.url, tmp_path / "w.th", sha256_prefix=digest[:8], progress=events.append)
    assert path.read_bytes() == body
    assert not list(tmp_path.glob("*.partial"))
    downloads = [e for e in events if e.stage == "download"]
    assert downloads[-1].done == downloads[-1].total == len(body)


def test_a_wrong_hash_is_never_handed_back(served, tmp_path):
    server, _, digest = served
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:8]
    with pytest.raises(BackendError, match="sha256"):
        download_url_file(server.url, tmp_path / "w.th", sha256_prefix=wrong)
    assert not (tmp_path / "w.th").exists() and not list(tmp_path.glob("*.partial"))
    # A cached file that does not match is refused too, not loaded.
    (tmp_path / "cached.th").write_bytes(b"tampered")
    with pytest.raises(BackendError, match="cached weights file"):
        download_url_file(server.url, tmp_path / "cached.th", sha256_prefix=digest[:8])


def test_a_cut_transfer_resumes_with_a_range_request(served, tmp_path):
    server, body, digest = served
    server.cut_after = 300_000
    with pytest.raises(BackendError, match="run again to resume"):
        download_url_file(server.url, tmp_path / "w.th", sha256_prefix=digest[:8])
    partial = tmp_path / "w.th.partial"
    assert partial.stat().st_size == 300_000 and not (tmp_path / "w.th").exists()
    server.cut_after = None
    path = download_url_file(server.url, tmp_path / "w.th", sha256_prefix=digest[:8])
    assert server.ranges == ["bytes=300000-"]
    assert path.read_bytes() == body and not partial.exists()


def test_a_download_cancels_promptly(served, tmp_path):
    server, _, digest = served
    server.delay = 0.05  # 64 KiB every 50 ms: about a second for the file
    token = CancelToken()

    def cancel_after_first_chunk(event):
        if event.stage == "download" and event.done > 0:
            token.cancel()

    with pytest.raises(JobCancelled):
        download_url_file(server.url, tmp_path / "w.th", sha256_prefix=digest[:8],
                          progress=cancel_after_first_chunk, cancel=token)
    assert not (tmp_path / "w.th").exists()


def test_encodec_default_weights_come_through_the_verified_download(tmp_path, monkeypatch):
    """The released-weights path of the EnCodec backend, offline: a random full-size state
    dict is served under a name carrying its own sha256 prefix; the backend downloads it into
    the torch hub cache, verifies it and loads it with weights_only.  Then a tampered copy
    in the cache is refused."""
    from audiosae.codecs import encodec_backend as eb

    model = eb.build_encodec_model(None)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    body = buffer.getvalue()
    prefix = hashlib.sha256(body).hexdigest()[:8]
    server = _Server(body)
    try:
        monkeypatch.setattr(eb, "CHECKPOINT_URL", server.url)
        monkeypatch.setattr(eb, "CHECKPOINT_NAME", f"encodec_24khz-{prefix}.th")
        monkeypatch.setattr(eb, "CHECKPOINT_SHA256_PREFIX", prefix)
        monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
        from audiosae.codecs import get_backend

        backend = get_backend("encodec-24k-continuous", device="cpu")
        cached = tmp_path / "hub" / "checkpoints" / f"encodec_24khz-{prefix}.th"
        assert cached.read_bytes() == body
        loaded = backend.model.state_dict()
        for key, value in model.state_dict().items():
            assert torch.equal(loaded[key], value), key
        cached.write_bytes(body[:-10] + b"0123456789")
        with pytest.raises(BackendError, match="sha256"):
            get_backend("encodec-24k-continuous", device="cpu")
    finally:
        server.close()
