"""Bounds every request meets before any route parses it: the Host it names, the length of its
query string, the size of its body (per route, counted while it arrives) and the time its body
may take; the token; the security headers. Pure ASGI middleware, so nothing is read or spooled
before it has passed.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "xmr_token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        b"media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    # Another site's <img> or <video> of an item learns nothing (not even whether it exists).
    (b"cross-origin-resource-policy", b"same-origin"),
]


class BodyTooLarge(Exception):
    """A request body grew past its route's limit while it arrived."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than the {_bytes(limit)} this route takes")
        self.limit = limit


class BodyTooSlow(Exception):
    """A request body did not arrive whole within its time."""


def _bytes(n: int) -> str:
    return f"{n >> 20} MB" if n >= 1 << 20 else f"{n >> 10} kB" if n >= 1 << 10 else f"{n} bytes"


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    """The API's error body (``{"error": {"code", "message", "field"}}``) as a response."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}}, status_code=status, headers=headers
    )


def host_name(header: str) -> str:
    """The name in a Host header, without its port or IPv6 brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class Limits:
    """The bounds of :class:`Guard` (bytes and seconds)."""

    def __init__(
        self,
        body: dict[str, int] | None = None,
        default_body: int = 16 << 10,
        query_string: int = 16 << 10,
        body_seconds: float = 60.0,
    ) -> None:
        self.body = body or {}
        self.default_body = default_body
        self.query_string = query_string
        self.body_seconds = body_seconds

    def body_limit(self, path: str) -> int:
        return self.body.get(path, self.default_body)


class Guard:
    """The outermost layer: Host, query-string length, body size and time, security headers.

    ``hosts`` is the set of names a request's Host header may carry; None takes any (a server
    with a token, which DNS rebinding cannot read without it). IP literals cannot be rebound
    by DNS, so a no-token server bound to a network address answers its IP literals too
    (``ip_literals``).
    """

    def __init__(self, app: ASGIApp, limits: Limits, hosts: Iterable[str] | None, ip_literals: bool = False) -> None:
        self.app, self.limits = app, limits
        self.hosts = None if hosts is None else frozenset(host_name(h) for h in hosts)
        self.ip_literals = ip_literals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, secured)
            return
        limit = self.limits.body_limit(scope["path"])
        deadline = time.monotonic() + self.limits.body_seconds
        received = 0
        started = body_done = False

        async def bounded() -> dict[str, Any]:
            nonlocal received, body_done
            if body_done:  # later receives wait for the client to go (a long download): no deadline
                return await receive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BodyTooSlow()
            with anyio.move_on_after(remaining) as scope_:
                message = await receive()
            if scope_.cancelled_caught:
                raise BodyTooSlow()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                body_done = not message.get("more_body", False)
            return message

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await secured(message)

        try:
            await self.app(scope, bounded, tracked)
        except BodyTooLarge as exc:
            if started:
                raise
            await error_response(413, "too_large", str(exc))(scope, receive, secured)
        except BodyTooSlow:
            if started:
                raise
            message = f"the request body did not arrive within {self.limits.body_seconds:.0f} s"
            await error_response(408, "too_slow", message)(scope, receive, secured)

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        headers = Headers(scope=scope)
        if self.hosts is not None:
            name = host_name(headers.get("host", ""))
            if name not in self.hosts and not (self.ip_literals and is_ip_literal(name)):
                return error_response(
                    400,
                    "bad_host",
                    f"this server answers only the host names {', '.join(sorted(self.hosts))}, not {name!r}: "
                    f"use one of them, or start it with --allow-host {name or 'NAME'}",
                    "host",
                )
        if len(scope.get("query_string", b"")) > self.limits.query_string:
            return error_response(
                414, "query_too_long", f"the query string is longer than {_bytes(self.limits.query_string)}"
            )
        length = headers.get("content-length")
        if length is not None and "chunked" in headers.get("transfer-encoding", "").lower():
            return error_response(400, "bad_length", "give Content-Length or Transfer-Encoding: chunked, not both")
        if length is not None:
            limit = self.limits.body_limit(scope["path"])
            if not length.isdigit():
                return error_response(400, "bad_length", f"Content-Length {length[:40]!r} is not a number")
            if int(length) > limit:
                return error_response(
                    413, "too_large", f"the request body is larger than the {_bytes(limit)} this route takes"
                )
        return None


class TokenGuard:
    """Every ``/api/`` request carries the token (bearer header or the login cookie); other
    paths (the page, its files, ``/healthz``, ``/login``) stay open. Sits inside the CORS layer,
    so a browser's preflight is answered there."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/") and not self.authorised(scope):
            response = error_response(
                401, "unauthorised", "this server needs its token: send 'Authorization: Bearer TOKEN' or log in"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def authorised(self, scope: Scope) -> bool:
        headers = Headers(scope=scope)
        header = headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:]
        else:
            given = cookie_parser(headers.get("cookie", "")).get(COOKIE, "")  # unquoted as it was set
        return hmac.compare_digest(given.encode(), self.token)


class LoginThrottle:
    """At most ``attempts`` failed logins a ``window`` seconds from one client address."""

    def __init__(self, attempts: int = 10, window: float = 60.0, clients: int = 10_000) -> None:
        self.attempts, self.window, self.clients = attempts, window, clients
        self._failures: dict[str, deque[float]] = {}

    def wait(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        failures = self._failures.get(client)
        if not failures:
            return 0.0
        now = time.monotonic()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < self.attempts:
            return 0.0
        return failures[0] + self.window - now

    def failed(self, client: str) -> None:
        if client not in self._failures and len(self._failures) >= self.clients:
            self._failures.pop(next(iter(self._failures)))  # the oldest client: the table stays bounded
        self._failures.setdefault(client, deque(maxlen=self.attempts)).append(time.monotonic())
