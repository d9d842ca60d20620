"""How every failure is answered: ``{"error": {"code", "message", "field"}}`` with its status,
whichever layer raised it (a route's :class:`ApiError`, the engine's ``QueryError``, a missing
extra, Starlette's 404 and 405, FastAPI's validation)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..extras import MissingExtraError
from ..search.query import QueryError
from .guards import error_response
from .params import ApiError


def error_json(exc: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The answer to ``exc``, with ``headers`` added (``Retry-After``)."""
    response = error_response(exc.status, exc.code, exc.message, exc.field)
    response.headers.update(headers or {})
    return response


def add_error_handlers(app: FastAPI) -> None:
    """Answer each exception a route may raise in the API's error shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(QueryError, _query_error)
    app.add_exception_handler(MissingExtraError, _missing_extra)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return error_json(exc)


async def _query_error(_: Request, exc: QueryError) -> JSONResponse:
    return error_json(ApiError(400, "bad_query", str(exc)))


async def _missing_extra(_: Request, exc: MissingExtraError) -> JSONResponse:
    return error_json(ApiError(503, "missing_extra", str(exc)))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = f"no such page: {request.url.path}" if exc.status_code == 404 else str(exc.detail)
    return error_json(ApiError(exc.status_code, code, message))


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = first.get("loc", ["", ""])[-1]
    return error_json(ApiError(422, "bad_parameter", f"{where}: {first.get('msg', 'invalid')}", str(where)))
