"""The HTTP API and the web page (FastAPI): thin routes over one :class:`retrieval.Engine`.

Routes parse and check the request (:mod:`.params`), run the blocking work (encoding, FAISS,
SQL, thumbnails) in thread pools sized to the cores, and shape the answer. Every request first
meets the bounds of :mod:`.guards` (Host, sizes, time, token). Files are served by item id only,
from the descriptor they were checked by (:mod:`.files`).

:func:`create_app` only wires: the state the routes share, built once (:mod:`.context`), the
guards, how errors are answered (:mod:`.errors`), and one router a room:

- :mod:`.routes_page`: ``/healthz``, the page (``/``, ``/static``), ``/api/v1/info``;
- :mod:`.routes_auth`: ``/login``, ``/logout``, ``/api/v1/session``;
- :mod:`.routes_search`: ``/api/v1/search`` by GET (texts) and POST (uploads, ``like``);
- :mod:`.routes_items`: ``/api/v1/items/{id}``, its file and its thumbnail;
- :mod:`.routes_duplicates`: ``/api/v1/duplicates``, groups of copies.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware

from ..search.engine import Engine
from . import routes_auth, routes_duplicates, routes_items, routes_page, routes_search
from .context import build_context
from .errors import add_error_handlers
from .files import ThumbnailCache
from .guards import LOOPBACK_NAMES, Guard, Limits, TokenGuard


def create_app(
    engine: Engine,
    token: str | None = None,
    cors: list[str] | None = None,
    thumbs: ThumbnailCache | None = None,
    allow_hosts: list[str] | None = None,
    listen: str = "127.0.0.1",
) -> FastAPI:
    """The app serving ``engine``. With ``token``, every API call needs it (bearer header or the
    cookie the login form sets); ``/healthz`` and the page's files stay open. Without a token,
    only requests naming a loopback host (or one of ``allow_hosts``; or, when ``listen`` is a
    network address, an IP literal) are answered: a page whose name is rebound to this machine
    by DNS cannot read the index."""
    app = FastAPI(title="xmr", version="1", docs_url="/docs", redoc_url=None)
    ctx = build_context(engine, token, thumbs)
    _add_guards(app, token, cors, allow_hosts, listen)
    add_error_handlers(app)
    app.include_router(routes_page.router(ctx))
    app.include_router(routes_auth.router(ctx))
    app.include_router(routes_search.router(ctx))
    app.include_router(routes_items.router(ctx))
    app.include_router(routes_duplicates.router(ctx))
    # On the app, not in a router: include_router drops a router's mounts in FastAPI versions we allow (fastapi#10180).
    app.mount("/static", StaticFiles(directory=routes_page.STATIC), name="static")
    return app


def _add_guards(
    app: FastAPI, token: str | None, cors: list[str] | None, allow_hosts: list[str] | None, listen: str
) -> None:
    """The middleware every request meets before a route, with the body bound each route declares."""
    # Added innermost first: the Guard is outermost, then CORS (a preflight is answered there,
    # before the token is asked for), then the token.
    if token:
        app.add_middleware(TokenGuard, token=token)
    if cors:
        app.add_middleware(
            CORSMiddleware, allow_origins=cors, allow_methods=["GET", "POST"], allow_headers=["Authorization"]
        )
    hosts = None
    if not token:
        hosts = set(LOOPBACK_NAMES) | set(allow_hosts or ()) | ({listen} if listen not in ("0.0.0.0", "::") else set())
    body = routes_auth.body_limits() | routes_search.body_limits()
    app.add_middleware(
        Guard, limits=Limits(body=body), hosts=hosts, ip_literals=listen not in LOOPBACK_NAMES and not token
    )
