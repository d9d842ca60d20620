"""``xmr serve``: the HTTP API and web page over one index (``pip install 'xmr[serve]'``)."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from typing import Any

log = logging.getLogger(__name__)


class ServeError(RuntimeError):
    """The server cannot start as asked (a missing extra, an open address without a token)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def serve(
    index: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    no_auth: bool = False,
    cors: list[str] | None = None,
    allow_hosts: list[str] | None = None,
    **uvicorn_options: Any,
) -> None:
    """Serve the index until stopped. Without a token, only requests naming a loopback host or
    one of ``allow_hosts`` are answered (DNS rebinding).

    Raises:
        MissingExtraError: FastAPI/uvicorn missing.
        ServeError: a non-loopback ``host`` without ``token`` (and without ``no_auth``).
        IndexNotFoundError, StoreError, ...: the index cannot be opened.
    """
    try:
        import uvicorn

        from .app import create_app
        from .protocol import uvicorn_config
    except ImportError as exc:
        from ..extras import MissingExtraError

        raise MissingExtraError(
            f"xmr serve needs {exc.name}, which the core install leaves out: pip install 'xmr[serve]' "
            "(from a clone: pip install '.[serve]')"
        ) from None
    token = token or os.environ.get("XMR_TOKEN") or None
    if not is_loopback(host) and not token:
        if not no_auth:
            raise ServeError(
                f"refusing to serve on {host} without a token: pass --token TOKEN (or set XMR_TOKEN), "
                "or --no-auth to serve every client on the network"
            )
        log.warning(
            "serving %s to the network with no token (--no-auth): anyone who reaches it can search and read", host
        )
    from ..search.engine import Engine

    engine = Engine.open(index)
    try:
        engine.encoder  # noqa: B018 - the index's model now: a missing extra is said at start, not per request
        app = create_app(engine, token=token, cors=cors, allow_hosts=allow_hosts, listen=host)
        log.info(
            "serving %s on http://%s:%d/ (%s)", engine.layout.dir, host, port, "token required" if token else "no token"
        )
        uvicorn.Server(uvicorn_config(app, host, port, **uvicorn_options)).run()
    finally:
        engine.close()
