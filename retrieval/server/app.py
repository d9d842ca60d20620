"""The HTTP API and the web page (FastAPI): thin routes over one :class:`retrieval.Engine`.

Routes parse and check the request (:mod:`.params`), run the blocking work (encoding, FAISS,
SQL, thumbnails) in a thread pool sized to the cores, and shape the answer. Files are served
by item id only (:mod:`.files`).
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from ..engine import Engine
from ..extras import MissingExtraError
from ..query import QueryError
from .files import THUMB_SIZES, ThumbnailCache, item_file, media_type
from .params import ApiError, SearchParams, parse_search, weighted

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
COOKIE = "xmr_token"
MAX_UPLOAD_BYTES = 32 << 20
MAX_UPLOAD_PIXELS = 40_000_000
MAX_UPLOAD_SECONDS = 600.0
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(
    engine: Engine, token: str | None = None, cors: list[str] | None = None, thumbs: ThumbnailCache | None = None
) -> FastAPI:
    """The app serving ``engine``. With ``token``, every API call needs it (bearer header or the
    cookie the login form sets); ``/healthz`` and the page's files stay open."""
    app = FastAPI(title="xmr", version="1", docs_url="/docs", redoc_url=None)
    limiter = anyio.CapacityLimiter(max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))
    links = (engine.manifest.get("options") or {}).get("links", "inside")
    if thumbs is None:
        base = Path(os.environ.get("XMR_CACHE_DIR") or Path.home() / ".cache" / "xmr")
        thumbs = ThumbnailCache(
            base / "thumbs" / str(engine.manifest.get("index_uuid") or engine.manifest.get("created", "index"))
        )

    async def blocking(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=limiter)

    if cors:
        app.add_middleware(
            CORSMiddleware, allow_origins=cors, allow_methods=["GET", "POST"], allow_headers=["Authorization"]
        )

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if token and path.startswith("/api/") and not _authorised(request, token):
            response: Response = _error(
                ApiError(
                    401,
                    "unauthorised",
                    "this server needs its token: send 'Authorization: Bearer TOKEN' or log in on the page",
                )
            )
        else:
            response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(QueryError)
    async def query_error(_: Request, exc: QueryError) -> JSONResponse:
        return _error(ApiError(400, "bad_query", str(exc)))

    @app.exception_handler(MissingExtraError)
    async def missing_extra(_: Request, exc: MissingExtraError) -> JSONResponse:
        return _error(ApiError(503, "missing_extra", str(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = f"no such page: {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return _error(ApiError(exc.status_code, code, message))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = first.get("loc", ["", ""])[-1]
        return _error(ApiError(422, "bad_parameter", f"{where}: {first.get('msg', 'invalid')}", str(where)))

    # --- health, login, the page ---------------------------------------------------------
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form()
        given = str(form.get("token", ""))
        if not token:
            return RedirectResponse("/", status_code=303)
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _error(ApiError(401, "bad_token", "wrong token", "token"))
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.get("/api/v1/session", include_in_schema=False)
    async def session() -> dict[str, bool]:
        return {"ok": True}  # reached only past the guard: the page asks whether it must log in

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # --- the API -------------------------------------------------------------------------
    @app.get("/api/v1/info")
    async def info() -> dict[str, Any]:
        facts = await blocking(engine.info)
        return {k: v for k, v in facts.items() if k not in ("index", "root", "database", "options", "faiss")} | {
            "modalities": list(engine.modalities)
        }

    @app.get("/api/v1/search")
    async def search_get(request: Request) -> dict[str, Any]:
        params = parse_search(_multi(request.query_params.multi_items()))
        if not params.text:
            raise ApiError(400, "empty_query", "give q=TEXT (GET), or POST an image, an audio file or like=ID", "q")
        return await _search(params, {})

    @app.post("/api/v1/search")
    async def search_post(request: Request) -> dict[str, Any]:
        form = await request.form(max_files=2, max_fields=100)
        fields: dict[str, list[str]] = _multi(request.query_params.multi_items())
        uploads: dict[str, StarletteUpload] = {}
        for name, value in form.multi_items():
            if isinstance(value, StarletteUpload):
                if name not in ("image", "audio"):
                    raise ApiError(400, "unknown_parameter", f"upload field {name!r}: use image or audio", name)
                uploads[name] = value
            else:
                fields.setdefault(name, []).append(str(value))
        weights = {m: fields.pop(f"{m}_weight", [None])[0] for m in ("image", "audio", "like")}
        like = fields.pop("like", [None])[0]
        like_track = fields.pop("like_track", [None])[0]
        if like_track not in (None, "image", "audio"):
            raise ApiError(400, "bad_parameter", f"like_track: {like_track!r} is not image or audio", "like_track")
        params = parse_search(fields)
        parts: dict[str, Any] = {}
        for modality, upload in uploads.items():
            data = await _read_upload(upload, modality)
            parts[modality] = _with_weight(await blocking(_check_upload, data, modality), weights[modality], modality)
        if like is not None:
            try:
                item_id = int(like)
            except ValueError:
                raise ApiError(400, "bad_parameter", f"like: {like!r} is not an item id", "like") from None
            vector = await blocking(_vector, engine, item_id, like_track)
            if vector is None:
                raise ApiError(404, "unknown_item", f"like: no indexed item with id {like}", "like")
            parts["vector"] = _with_weight(vector, weights["like"], "like")
        if not params.text and not parts:
            raise ApiError(400, "empty_query", "give q=TEXT, an image or audio upload, or like=ID", "q")
        return await _search(params, parts)

    async def _search(params: SearchParams, parts: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        text = params.text if params.text else None
        to = params.to
        if to is None and "vector" in parts and len(parts) == 1:
            to = ["all"]  # "more like this": every modality, the item's own included
        hits = await blocking(
            engine.search,
            text=text,
            to=to,
            k=params.k,
            offset=params.offset,
            segments=params.segments,
            **parts,
            **params.filters,
        )
        results: dict[str, list[dict[str, Any]]] = {}
        for hit in hits:
            # By what matched: a video's frame among the images, its soundtrack among the audio.
            results.setdefault(hit.track or hit.modality, []).append(_hit_json(engine, hit))
        took = (time.perf_counter() - started) * 1000
        return {"query": params.echo() | {k: True for k in parts}, "took_ms": round(took, 2), "results": results}

    @app.get("/api/v1/items/{item_id}")
    async def item(item_id: str) -> dict[str, Any]:
        hit = await blocking(_item, engine, item_id)
        return _hit_json(engine, hit)

    @app.get("/api/v1/items/{item_id}/media")
    async def media(item_id: str) -> FileResponse:
        hit = await blocking(_item, engine, item_id)
        path = await blocking(_file_of, engine, links, hit)
        return FileResponse(path, media_type=media_type(str(path)), headers={"Cache-Control": "private, max-age=300"})

    @app.get("/api/v1/items/{item_id}/thumbnail")
    async def thumbnail(item_id: str, size: int = 256) -> FileResponse:
        if not THUMB_SIZES[0] <= size <= THUMB_SIZES[1]:
            raise ApiError(
                422, "bad_parameter", f"size: {size} is out of range ({THUMB_SIZES[0]}..{THUMB_SIZES[1]})", "size"
            )
        hit = await blocking(_item, engine, item_id)
        if hit.modality != "image":
            raise ApiError(404, "no_thumbnail", f"item {hit.id} is {hit.modality}: only images have thumbnails", "id")
        path = await blocking(_file_of, engine, links, hit)
        data = await blocking(thumbs.read, path, size, hit.id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    return app


def _authorised(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
    return hmac.compare_digest(given.encode(), token.encode())


def _error(exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _multi(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(name, []).append(value)
    return out


def _with_weight(value: Any, weight: str | None, name: str) -> Any:
    if weight is None:
        return value
    parsed = weighted(f"x^{weight}", f"{name}_weight")
    if isinstance(parsed, str):
        raise ApiError(400, "bad_weight", f"{name}_weight: {weight!r} is not a number", f"{name}_weight")
    from ..query import Weighted

    return Weighted(value, parsed.weight)


async def _read_upload(upload: StarletteUpload, modality: str) -> bytes:
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "too_large", f"{modality}: uploads are limited to {MAX_UPLOAD_BYTES >> 20} MB", modality)
    if not data:
        raise ApiError(422, "empty_upload", f"{modality}: the uploaded file is empty", modality)
    return data


def _check_upload(data: bytes, modality: str) -> bytes:
    """Refuse an upload the guarded decoders will not take, before it reaches the model."""
    if modality == "image":
        from ..image import ImageDecodeError, decode_image

        try:
            decode_image(data, max_pixels=MAX_UPLOAD_PIXELS, min_side=64)
        except ImageDecodeError as exc:
            status = 413 if "too large" in str(exc) else 415
            raise ApiError(status, "bad_image" if status == 415 else "too_large", f"image: {exc}", "image") from None
        return data
    from ..audio import AudioDecodeError, audio_info

    try:
        info = audio_info(data)
    except AudioDecodeError as exc:
        raise ApiError(415, "bad_audio", f"audio: {exc}", "audio") from None
    if info.duration > MAX_UPLOAD_SECONDS:
        raise ApiError(
            413,
            "too_long",
            f"audio: {info.duration:.0f} s is longer than the {MAX_UPLOAD_SECONDS:.0f} s a query may be",
            "audio",
        )
    return data


def _vector(engine: Engine, item_id: int, track: str | None = None) -> Any:
    try:
        return engine.vector(item_id, track) if 0 <= item_id < 2**63 else None
    except QueryError:
        return None


def _item(engine: Engine, item_id: str) -> Any:
    try:
        number = int(item_id)
    except ValueError:
        raise ApiError(404, "unknown_item", f"no item with id {item_id!r} (ids are whole numbers)", "id") from None
    hit = engine.item(number) if 0 <= number < 2**63 else None
    if hit is None:
        raise ApiError(404, "unknown_item", f"no indexed item with id {number}", "id")
    return hit


def _file_of(engine: Engine, links: str, hit: Any) -> Path:
    row = engine.index.rows([hit.id]).get(hit.id)
    return item_file(engine.root, links, hit, row.mtime_ns if row is not None else -1)


def _hit_json(engine: Engine, hit: Any) -> dict[str, Any]:
    out = hit.to_dict()
    if hit.line is None:
        out["path"] = os.path.relpath(hit.path, engine.root)
        item = hit.file_id if hit.file_id is not None else hit.id  # a moment's media is its file's
        out["media_url"] = f"/api/v1/items/{item}/media"
        out["thumbnail_url"] = f"/api/v1/items/{item}/thumbnail" if hit.modality == "image" else None
    else:
        out["path"] = os.path.basename(hit.path)  # a texts file: its name, not where it lies on the server
        out["media_url"] = out["thumbnail_url"] = None
    return out
