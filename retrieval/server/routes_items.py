"""An item by its id: ``/api/v1/items/{id}`` (its JSON), ``.../media`` (its file, served from
the descriptor it was checked by, with Range) and ``.../thumbnail`` (an image's, cached)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..search.engine import Engine
from ..search.query import Hit
from .context import ServerContext
from .files import THUMB_SIZES, DescriptorResponse, OpenFile, media_type, open_item_file
from .hits import find_item, hit_json
from .params import ApiError


def router(ctx: ServerContext) -> APIRouter:
    """The routes of one item, its file and its thumbnail."""
    api = APIRouter()

    @api.get("/api/v1/items/{item_id}")
    async def item(item_id: str) -> dict[str, Any]:
        hit = await ctx.blocking(find_item, ctx.engine, item_id)
        return hit_json(hit)

    @api.api_route("/api/v1/items/{item_id}/media", methods=["GET", "HEAD"])
    async def media(item_id: str, request: Request) -> Response:
        hit = await ctx.blocking(find_item, ctx.engine, item_id)
        opened = await ctx.blocking(_open_file, ctx.engine, ctx.links, hit)
        try:
            headers = {"Cache-Control": "private, max-age=300"}
            return DescriptorResponse(opened, media_type(opened.path), headers, request.headers.get("range"))
        except BaseException:
            opened.close()  # the response that would close it was never made
            raise

    @api.get("/api/v1/items/{item_id}/thumbnail")
    async def thumbnail(item_id: str, size: int = 256) -> Response:
        if not THUMB_SIZES[0] <= size <= THUMB_SIZES[1]:
            raise ApiError(
                422, "bad_parameter", f"size: {size} is out of range ({THUMB_SIZES[0]}..{THUMB_SIZES[1]})", "size"
            )
        hit = await ctx.blocking(find_item, ctx.engine, item_id)
        if hit.modality != "image":
            raise ApiError(404, "no_thumbnail", f"item {hit.id} is {hit.modality}: only images have thumbnails", "id")
        opened = await ctx.blocking(_open_file, ctx.engine, ctx.links, hit)
        with opened:
            data = await ctx.blocking(ctx.thumbs.read, opened, size, hit.id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    return api


def _open_file(engine: Engine, links: str, hit: Hit) -> OpenFile:
    return open_item_file(engine.root, links, hit, hit.mtime_ns)
