"""What a client reads first: ``/healthz``, the page (``/``; its files under ``/static`` are
mounted by ``create_app``) and ``/api/v1/info``, the index the page searches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from .context import ServerContext

STATIC = Path(__file__).parent / "static"


def router(ctx: ServerContext) -> APIRouter:
    """The routes of the page and of what the server says about itself."""
    api = APIRouter()

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @api.get("/api/v1/info")
    async def info() -> dict[str, Any]:
        facts = await ctx.blocking(ctx.engine.info)
        return {k: v for k, v in facts.items() if k not in ("index", "root", "database", "options", "faiss")} | {
            "modalities": list(ctx.engine.modalities),
            "auth": bool(ctx.token),  # the page offers to log out
        }

    return api
