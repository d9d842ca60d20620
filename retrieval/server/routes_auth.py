"""Logging in and out of a server with a token (``/login`` sets the cookie the page then sends,
``/logout`` clears it), and ``/api/v1/session``, by which the page learns whether it must."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from .context import ServerContext
from .errors import error_json
from .guards import COOKIE
from .params import ApiError

LOGIN_BYTES = 4 << 10


def body_limits() -> dict[str, int]:
    """The bytes a body of these routes may have, by path (the Guard refuses more, unread)."""
    return {"/login": LOGIN_BYTES, "/logout": LOGIN_BYTES}


def router(ctx: ServerContext) -> APIRouter:
    """The routes of the login form and of the page's question whether it is logged in."""
    api = APIRouter()

    @api.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        form = await request.form(max_files=0, max_fields=4)
        given = str(form.get("token", ""))
        # Checked after the body is read: no await lies between the check, the comparison and
        # the count, so requests whose bodies arrive together cannot all pass the check first.
        wait = ctx.throttle.wait(client)
        if wait > 0:
            return error_json(
                ApiError(429, "too_many_logins", f"too many wrong tokens: try again in {wait:.0f} s", "token"),
                {"Retry-After": str(int(wait) + 1)},
            )
        if not ctx.token:
            return RedirectResponse("/", status_code=303)
        if not hmac.compare_digest(given.encode(), ctx.token.encode()):
            ctx.throttle.failed(client)
            return error_json(ApiError(401, "bad_token", "wrong token", "token"))
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, ctx.token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    @api.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    @api.get("/api/v1/session", include_in_schema=False)
    async def session() -> dict[str, bool]:
        return {"ok": True}  # reached only past the guard: the page asks whether it must log in

    return api
