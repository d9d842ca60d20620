"""The HTTP API and the web page (FastAPI): thin routes over one :class:`retrieval.Engine`.

Routes parse and check the request (:mod:`.params`), run the blocking work (encoding, FAISS,
SQL, thumbnails) in thread pools sized to the cores, and shape the answer. Every request first
meets the bounds of :mod:`.guards` (Host, sizes, time, token). Files are served by item id only,
from the descriptor they were checked by (:mod:`.files`).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.middleware.cors import CORSMiddleware

from ..search.engine import Engine
from ..search.query import QueryError
from . import routes_auth, routes_page, uploads
from .context import build_context
from .errors import add_error_handlers
from .files import THUMB_SIZES, DescriptorResponse, OpenFile, ThumbnailCache, media_type, open_item_file
from .guards import LOOPBACK_NAMES, Guard, Limits, TokenGuard
from .hits import find_item, hit_json
from .params import MAX_PARAMETERS, ApiError, SearchParams, parse_search, parse_weight
from .uploads import check_upload, read_upload

log = logging.getLogger(__name__)
HEAVY_TEXT_CHARS = 200  # a search whose texts are longer runs with the uploads, one at a time


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
    body = routes_auth.body_limits() | {"/api/v1/search": 2 * uploads.MAX_UPLOAD_BYTES + (256 << 10)}
    app.add_middleware(
        Guard, limits=Limits(body=body), hosts=hosts, ip_literals=listen not in LOOPBACK_NAMES and not token
    )

    add_error_handlers(app)

    app.include_router(routes_page.router(ctx))
    app.include_router(routes_auth.router(ctx))
    # On the app, not in a router: include_router drops a router's mounts in FastAPI versions we allow (fastapi#10180).
    app.mount("/static", StaticFiles(directory=routes_page.STATIC), name="static")

    @app.get("/api/v1/search")
    async def search_get(request: Request) -> dict[str, Any]:
        params = parse_search(_multi(request.query_params.multi_items()))
        if not params.text:
            raise ApiError(400, "empty_query", "give q=TEXT (GET), or POST an image, an audio file or like=ID", "q")
        return await _search(params, {})

    @app.post("/api/v1/search")
    async def search_post(request: Request) -> dict[str, Any]:
        form = await request.form(max_files=2, max_fields=MAX_PARAMETERS)
        fields: dict[str, list[str]] = _multi(request.query_params.multi_items())
        files: dict[str, StarletteUpload] = {}
        for name, value in form.multi_items():
            if isinstance(value, StarletteUpload):
                if name not in ("image", "audio"):
                    raise ApiError(400, "unknown_parameter", f"upload field {name!r}: use image or audio", name)
                if name in files:
                    raise ApiError(400, "bad_parameter", f"{name}: upload one {name}, not several", name)
                files[name] = value
            else:
                fields.setdefault(name, []).append(str(value))
        weights = {m: _one(fields.pop(f"{m}_weight", []), f"{m}_weight") for m in ("image", "audio", "like")}
        like = _one(fields.pop("like", []), "like")
        like_track = _one(fields.pop("like_track", []), "like_track")
        if like_track not in (None, "image", "audio"):
            raise ApiError(400, "bad_parameter", f"like_track: {like_track!r} is not image or audio", "like_track")
        params = parse_search(fields)
        parts: dict[str, Any] = {}
        if like is not None:
            try:
                item_id = int(like)
            except ValueError:
                raise ApiError(400, "bad_parameter", f"like: {like!r} is not an item id", "like") from None
            vector = await ctx.blocking(_vector, engine, item_id, like_track)
            if vector is None:
                raise ApiError(404, "unknown_item", f"like: no indexed item with id {like}", "like")
            parts["vector"] = _with_weight(vector, weights["like"], "like")
        if not params.text and not parts and not files:
            raise ApiError(400, "empty_query", "give q=TEXT, an image or audio upload, or like=ID", "q")
        if not files:
            return await _search(params, parts)
        async with ctx.upload_slots:
            for modality, upload in files.items():
                data = await read_upload(upload, modality)
                side = getattr(getattr(engine.encoder, "preprocess_image", None), "image_size", 224)
                check = partial(check_upload, data, modality, side)
                decoded = await ctx.heavy(check)
                parts[modality] = _with_weight(decoded, weights[modality], modality)
            return await _search(params, parts, costly=True)

    async def _search(params: SearchParams, parts: dict[str, Any], costly: bool = False) -> dict[str, Any]:
        started = time.perf_counter()
        text = params.text if params.text else None
        to = params.to
        if to is None and "vector" in parts and len(parts) == 1:
            to = ["all"]  # "more like this": every modality, the item's own included
        run = partial(
            engine.search,
            text=text,
            to=to,
            k=params.k,
            offset=params.offset,
            segments=params.segments,
            **parts,
            **params.filters,
        )
        # A long text costs its length (1,000 characters: 15x a short query): it goes with the uploads.
        if costly or sum(len(getattr(t, "value", t)) for t in params.text) > HEAVY_TEXT_CHARS:
            hits = await ctx.heavy(run)
        else:
            hits = await ctx.blocking(run)
        results: dict[str, list[dict[str, Any]]] = {}
        for hit in hits:
            # By what matched: a video's frame among the images, its soundtrack among the audio.
            results.setdefault(hit.track or hit.modality, []).append(hit_json(hit))
        took = (time.perf_counter() - started) * 1000
        return {"query": params.echo() | {k: True for k in parts}, "took_ms": round(took, 2), "results": results}

    @app.get("/api/v1/items/{item_id}")
    async def item(item_id: str) -> dict[str, Any]:
        hit = await ctx.blocking(find_item, engine, item_id)
        return hit_json(hit)

    @app.api_route("/api/v1/items/{item_id}/media", methods=["GET", "HEAD"])
    async def media(item_id: str, request: Request) -> Response:
        hit = await ctx.blocking(find_item, engine, item_id)
        opened = await ctx.blocking(_open_file, ctx.engine, ctx.links, hit)
        try:
            headers = {"Cache-Control": "private, max-age=300"}
            return DescriptorResponse(opened, media_type(opened.path), headers, request.headers.get("range"))
        except BaseException:
            opened.close()  # the response that would close it was never made
            raise

    @app.get("/api/v1/items/{item_id}/thumbnail")
    async def thumbnail(item_id: str, size: int = 256) -> Response:
        if not THUMB_SIZES[0] <= size <= THUMB_SIZES[1]:
            raise ApiError(
                422, "bad_parameter", f"size: {size} is out of range ({THUMB_SIZES[0]}..{THUMB_SIZES[1]})", "size"
            )
        hit = await ctx.blocking(find_item, engine, item_id)
        if hit.modality != "image":
            raise ApiError(404, "no_thumbnail", f"item {hit.id} is {hit.modality}: only images have thumbnails", "id")
        opened = await ctx.blocking(_open_file, ctx.engine, ctx.links, hit)
        with opened:
            data = await ctx.blocking(ctx.thumbs.read, opened, size, hit.id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    return app


def _one(values: list[str], name: str) -> str | None:
    if len(values) > 1:
        raise ApiError(400, "bad_parameter", f"{name}: give it once, not {len(values)} times", name)
    return values[0] if values else None


def _multi(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    if len(items) > MAX_PARAMETERS:
        raise ApiError(400, "too_many_parameters", f"a search takes at most {MAX_PARAMETERS} parameters")
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(name, []).append(value)
    return out


def _with_weight(value: Any, weight: str | None, name: str) -> Any:
    if weight is None:
        return value
    from ..search.query import Weighted

    return Weighted(value, parse_weight(weight, f"{name}_weight"))


def _vector(engine: Engine, item_id: int, track: str | None = None) -> Any:
    try:
        return engine.vector(item_id, track) if 0 <= item_id < 2**63 else None
    except QueryError:
        return None


def _open_file(engine: Engine, links: str, hit: Any) -> OpenFile:
    return open_item_file(engine.root, links, hit, hit.mtime_ns)
