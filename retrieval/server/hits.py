"""An indexed item as the API finds it (by the id a client sends) and shows it (JSON: its path
under the indexed folder, never where it lies on the server, and the URLs of its file and
thumbnail)."""

from __future__ import annotations

from typing import Any

from ..search.engine import Engine
from ..search.query import Hit
from .params import ApiError


def find_item(engine: Engine, item_id: str) -> Hit:
    """The item ``item_id`` names (blocking: reads the index's rows).

    Raises:
        ApiError: 404 ``unknown_item`` when ``item_id`` is no whole number or names no item.
    """
    try:
        number = int(item_id)
    except ValueError:
        raise ApiError(404, "unknown_item", f"no item with id {item_id!r} (ids are whole numbers)", "id") from None
    hit = engine.item(number) if 0 <= number < 2**63 else None
    if hit is None:
        raise ApiError(404, "unknown_item", f"no indexed item with id {number}", "id")
    return hit


def hit_json(hit: Hit) -> dict[str, Any]:
    """``hit`` as the API shows it, in a search's results or alone."""
    return _printable(_hit_fields(hit))


def _printable(value: Any) -> Any:
    """Strings as valid UTF-8 (a file name that is not shows its odd bytes as ``\\xff``)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


def _hit_fields(hit: Hit) -> dict[str, Any]:
    out = hit.to_dict()
    del out["mtime_ns"]
    # The path under the indexed folder (a texts file: its name), never where it lies on the server.
    out["path"] = out.pop("relpath")
    if hit.line is None:
        item = hit.file_id if hit.file_id is not None else hit.id  # a moment's media is its file's
        out["media_url"] = f"/api/v1/items/{item}/media"
        out["thumbnail_url"] = f"/api/v1/items/{item}/thumbnail" if hit.modality == "image" else None
    else:
        out["media_url"] = out["thumbnail_url"] = None
    return out
