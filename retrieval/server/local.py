"""The app served in a thread of this process, on a free loopback port: for the browser tests,
``xmr bench serve`` and the README's screenshot (never for users: ``xmr serve`` runs uvicorn)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

# Debian's Chromium as Playwright drives it here: no sandbox (root), nothing that phones home.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


class LocalServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread, configured as ``xmr serve`` is;
    ``url`` once started."""

    def __init__(self, app: Any, start_timeout: float = 20.0, **options: Any) -> None:
        import uvicorn

        from .protocol import uvicorn_config

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", self.port, **options))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + start_timeout
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            raise RuntimeError("uvicorn did not start")
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
