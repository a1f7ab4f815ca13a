"""RFC 9457 problem details: the one error shape of fedspace's JSON APIs.

Errors never carry stack traces; unexpected exceptions are logged and answered with a
generic 500 problem.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("fedspace.problem")

MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise anywhere in an API handler to answer with problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title
        self.errors = errors
        self.headers = headers


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    from http import HTTPStatus

    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return Response(orjson.dumps(body), status, headers=headers, media_type=MEDIA_TYPE)


def _pointer(loc: tuple[Any, ...]) -> str:
    """``("body", "quota", "total")`` → ``#/quota/total``; query/header → their name."""
    where, *rest = loc or ("body",)
    if where == "body":
        return "#/" + "/".join(str(p) for p in rest)
    return str(rest[0]) if rest else str(where)


def install(app: FastAPI) -> None:
    """Make every error of ``app`` a problem+json response."""

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> Response:
        return problem_response(
            exc.status, exc.detail, title=exc.title, errors=exc.errors, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"pointer": _pointer(tuple(e["loc"])), "detail": e["msg"]} for e in exc.errors()
        ]
        summary = "; ".join(f"{e['pointer']}: {e['detail']}" for e in errors)
        return problem_response(422, f"invalid request: {summary}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return problem_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"method": request.method, "path": request.url.path})
        return problem_response(500, "internal error; see the server log")
