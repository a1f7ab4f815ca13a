"""The peer of drives-50: a bare FastAPI route answering a constant, served like fedspace.

``python -m scenarios.bench.const_app PORT BODY_FILE`` serves ``GET /graph/v1.0/me/drives``
with the bytes of ``BODY_FILE`` (the JSON fedspace answered, so both send the same size)
and nothing else: no authentication, no middleware, no database. It runs the server stack
the way ``fedspace serve`` runs its app (``fedspace.app.Instance._serve_http``): one
``uvicorn.Server`` with the same ``Config`` arguments, awaited under ``asyncio.run`` (the
default asyncio loop, as fedspace: no uvloop), httptools as uvicorn picks it, on a
listening socket with TCP_NODELAY. What fedspace costs beyond this is its own work.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from starlette.responses import Response

PATH = "/graph/v1.0/me/drives"


def create(body: bytes) -> FastAPI:
    """The app: one route, the constant ``body`` as JSON."""
    app = FastAPI(title="const", docs_url=None, redoc_url=None, openapi_url=None)

    async def drives() -> Response:
        return Response(body, media_type="application/json")

    app.add_api_route(PATH, drives, methods=["GET"])
    return app


def listener(port: int) -> socket.socket:
    """Bound as ``fedspace.app._listen`` binds (accepted sockets inherit TCP_NODELAY)."""
    sock = socket.create_server(("127.0.0.1", port), reuse_port=False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def main(argv: list[str]) -> None:
    port, body = int(argv[0]), Path(argv[1]).read_bytes()
    config = uvicorn.Config(create(body), lifespan="off", log_config=None, access_log=False,
                            timeout_graceful_shutdown=5)
    asyncio.run(uvicorn.Server(config).serve(sockets=[listener(port)]))


if __name__ == "__main__":
    main(sys.argv[1:])
