"""HTTP helpers shared by the WebDAV handlers: permissions, errors, ETags, small bodies."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fedspace.permissions import Grant, Permission
from provider.davxml import error_body
from provider.tree import Node
from provider.treeerrors import Forbidden, TooLarge, TreeError

ALLOW = "OPTIONS, PROPFIND, PROPPATCH, GET, HEAD, PUT, MKCOL, DELETE, MOVE, COPY"
XML = "application/xml; charset=utf-8"
MAX_XML_BODY = 1024 * 1024


def require(grant: Grant, needed: Permission, action: str) -> None:
    if not grant.allows(needed):
        raise Forbidden(f"your role in this space does not allow you to {action}")


def error_response(exc: TreeError) -> Response:
    headers = {"Allow": ALLOW} if exc.status == 405 else None
    return Response(error_body(exc.exception, exc.message, exc.condition),
                    status_code=exc.status, media_type=XML, headers=headers)


def etag_list(value: str | None) -> list[str] | None:
    """Entity tags of an If-Match/If-None-Match header, unquoted ('*' kept as is)."""
    if value is None:
        return None
    return [t.strip().removeprefix("W/").strip('"') for t in value.split(",") if t.strip()]


def matches(node: Node | None, tags: list[str]) -> bool:
    return node is not None and ("*" in tags or node.etag in tags)


def etag_headers(node: Node) -> dict[str, str]:
    return {"ETag": f'"{node.etag}"', "OC-ETag": f'"{node.etag}"', "OC-FileId": node.id}


async def small_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_XML_BODY:
            raise TooLarge(f"request bodies are limited to {MAX_XML_BODY} bytes")
    return bytes(body)
