"""Search: ``GET /api/v1/search`` (texts and filters in the query string) and ``POST
/api/v1/search`` (a form that may add an image or audio upload, ``like=ID`` and weights).

Both parse with :mod:`.params`, run ``Engine.search`` off the event loop (an upload or a long
text on the one heavy thread) and answer ``{"query", "took_ms", "results"}``, hits grouped by
what matched.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile as StarletteUpload

from ..search.engine import Engine
from ..search.query import QueryError
from . import uploads
from .context import ServerContext
from .hits import hit_json
from .params import MAX_PARAMETERS, ApiError, SearchParams, parse_search, parse_weight
from .uploads import check_upload, read_upload

HEAVY_TEXT_CHARS = 200  # a search whose texts are longer runs with the uploads, one at a time


def body_limits() -> dict[str, int]:
    """The bytes a body of these routes may have, by path (the Guard refuses more, unread): two
    uploads and the form's fields. Read when an app is made."""
    return {"/api/v1/search": 2 * uploads.MAX_UPLOAD_BYTES + (256 << 10)}


def router(ctx: ServerContext) -> APIRouter:
    """The search routes."""
    api = APIRouter()

    @api.get("/api/v1/search")
    async def search_get(request: Request) -> dict[str, Any]:
        params = parse_search(_multi(request.query_params.multi_items()))
        if not params.text:
            raise ApiError(400, "empty_query", "give q=TEXT (GET), or POST an image, an audio file or like=ID", "q")
        return await _search(ctx, params, {})

    @api.post("/api/v1/search")
    async def search_post(request: Request) -> dict[str, Any]:
        fields, files = await _read_form(request)
        weights = {m: _one(fields.pop(f"{m}_weight", []), f"{m}_weight") for m in ("image", "audio", "like")}
        like = _one(fields.pop("like", []), "like")
        like_track = _one(fields.pop("like_track", []), "like_track")
        if like_track not in (None, "image", "audio"):
            raise ApiError(400, "bad_parameter", f"like_track: {like_track!r} is not image or audio", "like_track")
        params = parse_search(fields)
        parts: dict[str, Any] = {}
        if like is not None:
            parts["vector"] = _with_weight(await _like_vector(ctx, like, like_track), weights["like"], "like")
        if not params.text and not parts and not files:
            raise ApiError(400, "empty_query", "give q=TEXT, an image or audio upload, or like=ID", "q")
        if not files:
            return await _search(ctx, params, parts)
        async with ctx.upload_slots:
            for modality, upload in files.items():
                decoded = await _decoded(ctx, upload, modality)
                parts[modality] = _with_weight(decoded, weights[modality], modality)
            return await _search(ctx, params, parts, costly=True)

    return api


async def _search(
    ctx: ServerContext, params: SearchParams, parts: dict[str, Any], costly: bool = False
) -> dict[str, Any]:
    """Run the search and shape its answer; ``parts`` are the uploads and the ``like`` vector."""
    started = time.perf_counter()
    text = params.text if params.text else None
    to = params.to
    if to is None and "vector" in parts and len(parts) == 1:
        to = ["all"]  # "more like this": every modality, the item's own included
    run = partial(
        ctx.engine.search,
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
        # By what matched: a video's frame among the images, its soundtrack among the audio (and
        # what is said in a file among the audio, ranked with them).
        group = hit.listed_under
        results.setdefault(group, []).append(hit_json(hit))
    took = (time.perf_counter() - started) * 1000
    return {"query": params.echo() | {k: True for k in parts}, "took_ms": round(took, 2), "results": results}


async def _read_form(request: Request) -> tuple[dict[str, list[str]], dict[str, StarletteUpload]]:
    """A search form's fields (the query string's first) and its uploads, one image and one audio at most."""
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
    return fields, files


async def _like_vector(ctx: ServerContext, like: str, track: str | None) -> Any:
    """The stored vector of item ``like`` ("more like this"); ``track`` picks a video's."""
    try:
        item_id = int(like)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"like: {like!r} is not an item id", "like") from None
    vector = await ctx.blocking(_vector, ctx.engine, item_id, track)
    if vector is None:
        raise ApiError(404, "unknown_item", f"like: no indexed item with id {like}", "like")
    return vector


async def _decoded(ctx: ServerContext, upload: StarletteUpload, modality: str) -> Any:
    """An upload read within its bound and decoded on the heavy thread, as the model takes it."""
    data = await read_upload(upload, modality)
    side = getattr(getattr(ctx.engine.encoder, "preprocess_image", None), "image_size", 224)
    return await ctx.heavy(partial(check_upload, data, modality, side))


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
