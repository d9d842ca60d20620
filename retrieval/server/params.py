"""Requests of the HTTP API as ``Engine.search`` keywords, and the API's error answers.

Every bad input becomes an :class:`ApiError` with a status (400, 404, 413, 415, 422), a code,
a message that says what to change and, where one is to blame, the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..search.filters import parse_size, to_ns
from ..search.query import QueryError, Weighted, check_weight, split_weight

MAX_K = 1000
MAX_OFFSET = 100_000
TARGETS = ("image", "audio", "video", "text", "all")
# A query's cost grows with its text: the text tower reads 256 tokens, and a longer text is
# embedded in chunks, so 100 kB of q took 23 s. These bound one search to a few embeddings.
MAX_TEXT_CHARS = 1000
MAX_TEXT_PARTS = 8
MAX_PARAMETERS = 64
MAX_EXTENSIONS = 32


class ApiError(Exception):
    """An answer other than 200, with the JSON body ``{"error": {"code", "message", "field"}}``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


@dataclass
class SearchParams:
    """A search request: its parts, targets, paging and filters (``Engine.search`` keywords)."""

    text: list[Any] = field(default_factory=list)
    to: list[str] | None = None
    k: int = 20
    offset: int = 0
    segments: bool = False  # every matching moment of long files (k counts moments)
    filters: dict[str, Any] = field(default_factory=dict)

    def echo(self) -> dict[str, Any]:
        """The request as understood, for the response's ``query``."""
        texts = [t.value if isinstance(t, Weighted) else t for t in self.text]
        out = {"q": texts, "to": self.to, "k": self.k, "offset": self.offset, **self.filters}
        return out | ({"segments": True} if self.segments else {})


def _int(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ApiError(422, "bad_parameter", f"{name}: {value!r} is not a whole number", name) from None
    if not low <= number <= high:
        raise ApiError(422, "bad_parameter", f"{name}: {number} is out of range ({low}..{high})", name)
    return number


def _float(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ApiError(400, "bad_filter", f"{name}: {value!r} is not a number", name) from None
    if not math.isfinite(number) or number < 0:
        raise ApiError(400, "bad_filter", f"{name}: {value!r} must be a number >= 0", name)
    return number


def parse_weight(text: str, name: str) -> float:
    """A part's weight given alone (``image_weight=0.5``).

    Raises:
        ApiError: 400 ``bad_weight`` naming ``name``.
    """
    try:
        return check_weight(float(text))
    except ValueError as exc:  # float() or QueryError
        message = str(exc) if isinstance(exc, QueryError) else f"{text!r} is not a number"
        raise ApiError(400, "bad_weight", f"{name}: {message}", name) from None


def weighted(value: str, name: str) -> Any:
    """``rain^0.5`` as ``Weighted("rain", 0.5)``; a plain value stays as it is
    (:func:`retrieval.search.query.split_weight`, as the CLI and Python read it).

    Raises:
        ApiError: the text after ``^`` is a number out of range (``dog^0``, ``a^1e308``).
    """
    try:
        split = split_weight(value)
    except QueryError as exc:
        raise ApiError(400, "bad_weight", f"{name}: {exc}", name) from None
    return value if split is None else Weighted(*split)


KNOWN_SEARCH = (
    "q",
    "to",
    "k",
    "offset",
    "segments",
    "path",
    "ext",
    "min_size",
    "max_size",
    "after",
    "before",
    "min_duration",
    "max_duration",
    "has_speech",
    "like",
    "like_track",
    "image_weight",
    "audio_weight",
    "like_weight",
)


def parse_search(query: dict[str, list[str]]) -> SearchParams:
    """Parse the query string of a search (each name maps to its values, in order).

    Raises:
        ApiError: an unknown parameter, a bad filter, ``k`` or ``offset`` out of range.
    """
    if unknown := sorted(set(query) - set(KNOWN_SEARCH)):
        known = ", ".join(sorted(KNOWN_SEARCH))
        raise ApiError(
            400, "unknown_parameter", f"unknown parameter(s) {', '.join(unknown)}; known: {known}", unknown[0]
        )
    params = SearchParams()
    params.text = _texts(query)
    params.to = _targets(query)
    params.k = _int(_one(query, "k") or 20, "k", 1, MAX_K)
    params.offset = _int(_one(query, "offset") or 0, "offset", 0, MAX_OFFSET)
    segments = (_one(query, "segments") or "false").lower()
    if segments not in ("true", "false", "1", "0"):
        raise ApiError(400, "bad_parameter", f"segments: {segments!r}: give true or false", "segments")
    params.segments = segments in ("true", "1")
    params.filters = _filters(query)
    return params


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name) or []
    if len(values) > 1:
        raise ApiError(400, "bad_parameter", f"{name}: give it once, not {len(values)} times", name)
    return values[0] if values else None


def _texts(query: dict[str, list[str]]) -> list:
    texts = [q for q in query.get("q", []) if q.strip()]
    if len(texts) > MAX_TEXT_PARTS:
        raise ApiError(
            400, "too_many_parts", f"q: a search takes at most {MAX_TEXT_PARTS} texts, not {len(texts)}", "q"
        )
    for q in texts:
        if len(q) > MAX_TEXT_CHARS:
            raise ApiError(
                400, "query_too_long", f"q: a text is at most {MAX_TEXT_CHARS} characters, not {len(q)}", "q"
            )
    return [weighted(q, "q") for q in texts]


def _targets(query: dict[str, list[str]]) -> list[str] | None:
    to = [t for t in query.get("to", []) if t]
    if len(to) > len(TARGETS):
        raise ApiError(400, "bad_modality", f"to: give each of {', '.join(TARGETS)} at most once", "to")
    for t in to:
        if t not in TARGETS:
            message = f"to: {t!r} is not a modality; use image, audio, video, text or all"
            raise ApiError(400, "bad_modality", message, "to")
    return to or None


def _filters(query: dict[str, list[str]]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if (path := _one(query, "path")) is not None:
        if not path:
            raise ApiError(400, "bad_filter", "path: give a glob such as 2024/*", "path")
        filters["path"] = path
    if len(query.get("ext", [])) > MAX_EXTENSIONS:
        raise ApiError(400, "bad_filter", f"ext: at most {MAX_EXTENSIONS} extensions", "ext")
    if ext := [e for e in query.get("ext", []) if e]:
        filters["ext"] = ext
    for name in ("min_size", "max_size"):
        if (value := _one(query, name)) is not None:
            try:
                filters[name] = parse_size(value, name)
            except QueryError:
                raise ApiError(400, "bad_filter", f"{name}: {value!r} is not a size (bytes or K/M/G)", name) from None
    for name in ("after", "before"):
        if (value := _one(query, name)) is not None:
            try:
                to_ns(value, name)
            except QueryError as exc:
                raise ApiError(400, "bad_filter", str(exc), name) from None
            filters[name] = value
    for name in ("min_duration", "max_duration"):
        if (value := _one(query, name)) is not None:
            filters[name] = _float(value, name)
    if (value := _one(query, "has_speech")) is not None:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ApiError(400, "bad_filter", f"has_speech: {value!r}: give true or false", "has_speech")
        filters["has_speech"] = value.lower() in ("true", "1")
    return filters
