"""A checkpoint server on 127.0.0.1 standing in for the publishers' hosts, and a private torch hub cache.

`served.add(url, data)` serves `data` for the published `url`; resbone.weights.hub's download step is pointed
at the local server by rewriting https://HOST/PATH to http://127.0.0.1:PORT/HOST/PATH (only here, in the tests).
`served.requests` counts the requests; `served.cut` holds URLs whose transfer stops half-way.
"""
from __future__ import annotations

import hashlib
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import torch

import resbone.weights.hub as hub
from resbone.weights.schemes import Location


class _Served:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.cut: set[str] = set()
        self.proxied = False  # True: leave URLs as they are (the test sets http_proxy to the server)
        self.base = ""

    def add(self, url: str, data: bytes) -> str:
        parts = urlsplit(url)
        self.files[f"/{parts.netloc}{parts.path}"] = data
        return url


def _handler(served: _Served) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            # through a proxy (http_proxy) the request line holds the whole URL: keep HOST/PATH
            parts = urlsplit(self.path)
            path = f"/{parts.netloc}{parts.path}" if parts.scheme else self.path
            served.requests.append(path)
            data = served.files.get(path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if path in served.cut else data)

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def served(monkeypatch, tmp_path):
    """The local server, torch hub's cache in tmp_path, online mode, and downloads pointed at 127.0.0.1."""
    state = _Served()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = state.base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    real = hub.download_url_to_file

    def local(url: str, dst: str, *, progress: bool) -> None:
        parts = urlsplit(url)
        real(url if state.proxied else f"{base}/{parts.netloc}{parts.path}", dst, progress=progress)

    monkeypatch.setattr(hub, "download_url_to_file", local)
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def any_hash(monkeypatch):
    """Random weights cannot carry the published file's sha256: accept any content under a hashed name
    (the hash check itself is proven by test_hub.py's own hashed URLs)."""
    monkeypatch.setattr(Location, "sha256_prefix", lambda self, name=None: None)


def torch_bytes(state_dict: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


def hashed_name(stem: str, data: bytes, suffix: str = ".pth") -> str:
    """torch.hub's naming: stem-<first 8 hex of sha256>.suffix."""
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}{suffix}"
