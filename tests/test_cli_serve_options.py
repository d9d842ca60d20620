"""``xmr serve --allow-host NAME`` reaches the server: a real ``xmr serve`` process answers a
Host name it was given and refuses one it was not (without a token only loopback names)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import make_media
from tests.test_ingest_indexer import run

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[dev]')")
httpx = pytest.importorskip("httpx", reason="httpx is not installed (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_allow_host_is_answered_and_others_refused(tmp_path: Path, tiny) -> None:
    root = make_media(tmp_path / "media", images=2, audio=0, texts=1)
    run(root, tiny)
    port = _free_port()
    args = ["serve", "--index", str(root), "--port", str(port), "--allow-host", "search.home.arpa"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "cli", *args], env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/api/v1/info"
        for _ in range(300):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.1)
        assert httpx.get(url, headers={"Host": "search.home.arpa"}).status_code == 200
        assert httpx.get(url, headers={"Host": f"localhost:{port}"}).status_code == 200
        refused = httpx.get(url, headers={"Host": "rebound.example"})
        assert refused.status_code == 400 and "--allow-host" in refused.text
    finally:
        server.terminate()
        server.wait(timeout=10)
