"""uvicorn as xmr runs it: a connection that does not finish its request's headers in time is
closed (slowloris), and connections past a limit are answered 503 at once."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_SECONDS = 10.0  # to send a request's headers, from the connection's start or the last answer
MAX_CONNECTIONS = 256  # open connections (and requests in progress) before new requests get 503
KEEP_ALIVE_SECONDS = 5


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    header_seconds = HEADER_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline(None)

    def on_response_complete(self) -> None:
        answered = self.cycle  # before super(): a pipelined request may start a new cycle in it
        super().on_response_complete()
        self._arm_header_deadline(answered)

    def connection_lost(self, exc: Exception | None) -> None:
        deadline = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self, waiting_for: Any) -> None:
        """Close the connection unless a request after ``waiting_for`` (the cycle answered last)
        has begun within the deadline: every request makes a new cycle."""
        previous = getattr(self, "_header_deadline", None)
        if previous is not None:
            previous.cancel()
        self._header_deadline = self.loop.call_later(self.header_seconds, self._headers_overdue, waiting_for)

    def _headers_overdue(self, waiting_for: Any) -> None:
        if self.cycle is waiting_for and not self.transport.is_closing():
            self.transport.close()  # no request began in time: a slow or idle client holds nothing


def uvicorn_config(app: Any, host: str, port: int, **options: Any) -> Any:
    """The uvicorn configuration xmr serves with (``options`` override it)."""
    import uvicorn

    settings: dict[str, Any] = {
        "http": BoundedH11Protocol,
        "limit_concurrency": MAX_CONNECTIONS,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "log_level": "warning",
    }
    return uvicorn.Config(app, host=host, port=port, **(settings | options))
