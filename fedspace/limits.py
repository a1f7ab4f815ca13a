"""Request body limit for everything but file uploads (PUT has its own, per provider)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fedspace.problem import Problem, problem_response

UPLOAD_METHODS = frozenset({"PUT"})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in UPLOAD_METHODS:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    await problem_response(400, "malformed Content-Length")(scope, receive, send)
                    return
                if int(value) > self.limit:
                    detail = f"request body exceeds the limit of {self.limit} bytes"
                    await problem_response(413, detail)(scope, receive, send)
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise Problem(413, f"request body exceeds the limit of {self.limit} bytes")
            return message

        await self.app(scope, limited_receive, send)
