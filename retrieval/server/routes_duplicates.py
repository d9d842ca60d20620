"""Copies in the index: ``GET /api/v1/duplicates?modality=all&threshold=0.92`` (groups of
near-duplicate files, each with the one suggested to keep and why; nothing is ever deleted)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..search.duplicates import DuplicateGroup, check_modality, check_threshold
from .context import ServerContext
from .hits import _printable
from .params import ApiError

MAX_PARAM = 32  # characters of a modality or threshold


def router(ctx: ServerContext) -> APIRouter:
    """The duplicates route."""
    api = APIRouter()

    @api.get("/api/v1/duplicates")
    async def duplicates(modality: str = "all", threshold: str | None = None) -> dict[str, Any]:
        chosen = _threshold(threshold)
        try:
            check_modality(modality[:MAX_PARAM])
        except ValueError as exc:
            raise ApiError(422, "bad_parameter", f"modality: {exc}", "modality") from None
        groups = await ctx.blocking(ctx.engine.duplicates, modality, chosen)
        return {"groups": [group_json(g) for g in groups]}

    return api


def _threshold(value: str | None) -> float | None:
    """The ``threshold`` query parameter as a similarity in (0, 1], or None (the defaults).

    Raises:
        ApiError: 422 ``bad_parameter`` saying what to change.
    """
    if value is None or value == "":
        return None
    try:
        return check_threshold(float(value[:MAX_PARAM]))
    except ValueError as exc:
        message = str(exc) if "threshold must" in str(exc) else f"threshold must be a number, not {value[:MAX_PARAM]!r}"
        raise ApiError(
            422, "bad_parameter", f"{message}; leave it out for the measured defaults", "threshold"
        ) from None


def group_json(group: DuplicateGroup) -> dict[str, Any]:
    """A group as the API shows it: paths under the indexed folder (never where they lie on
    the server), each item's media and thumbnail URLs."""
    items = []
    for c in group.items:
        item = c.to_dict() | {"path": c.rel, "media_url": f"/api/v1/items/{c.id}/media"}
        item["thumbnail_url"] = f"/api/v1/items/{c.id}/thumbnail" if group.modality == "image" else None
        items.append(item)
    return _printable({"modality": group.modality, "items": items, "keep": group.keep, "why": group.why})
