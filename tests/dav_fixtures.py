"""In-process WebDAV rig: a real SQLite database and blob store, and a tiny app that
routes ``/dav/spaces/{space_id}/{path}`` to ``WebDav.handle``.

The caller's role comes from an ``X-Role`` header (viewer/editor/manager), so tests can
exercise permission sets without the registry. Import ``dav_env`` explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedspace.auth import Principal
from fedspace.db import Database
from fedspace.permissions import Grant, Permission
from provider.changes import ChangeFeed
from provider.service import ProviderService
from provider.storage import PosixDriver
from provider.tree import Node, Tree
from provider.webdav import WebDav

P = Permission
VIEWER = P.LIST | P.DOWNLOAD
EDITOR = VIEWER | P.UPLOAD | P.CREATE_FOLDER | P.DELETE | P.MOVE
MANAGER = EDITOR | P.LIST_MEMBERS | P.MANAGE_MEMBERS | P.UPDATE_SPACE | P.DISABLE_SPACE
ROLES = {"viewer": VIEWER, "editor": EDITOR, "manager": MANAGER, "none": P.NONE,
         "mover": VIEWER | P.MOVE}
METHODS = ["OPTIONS", "PROPFIND", "PROPPATCH", "GET", "HEAD", "PUT", "MKCOL", "DELETE",
           "MOVE", "COPY", "LOCK", "POST"]
BASE = "/dav/spaces/s1"


class RecordingFeed(ChangeFeed):
    def __init__(self) -> None:
        super().__init__()
        self.touched: list[str] = []

    def touch(self, space_id: str) -> None:
        self.touched.append(space_id)
        super().touch(space_id)


@dataclass
class DavEnv:
    client: httpx.AsyncClient
    app: Starlette
    tree: Tree
    service: ProviderService
    storage: PosixDriver
    feed: RecordingFeed
    storage_root: Path

    async def node(self, path: str) -> Node | None:
        return await self.tree.find("s1", path)

    async def etags(self, *paths: str) -> dict[str, str]:
        """Current ETag of each path (must exist)."""
        found = {}
        for p in paths:
            node = await self.node(p)
            assert node is not None, p
            found[p] = node.etag
        return found

    def temp_files(self) -> list[Path]:
        return list(self.storage_root.glob("*/tmp/*"))

    def blob_files(self) -> list[Path]:
        return [p for p in self.storage_root.glob("*/blobs/*/*") if p.is_file()]

    async def put(self, path: str, body: bytes = b"data", **kw: object) -> httpx.Response:
        return await self.client.put(f"{BASE}/{path}", content=body, **kw)  # type: ignore[arg-type]

    async def mkcol(self, path: str, **kw: object) -> httpx.Response:
        return await self.client.request("MKCOL", f"{BASE}/{path}", **kw)  # type: ignore[arg-type]


def make_app(webdav: WebDav) -> Starlette:
    async def endpoint(request: Request) -> Response:
        role = request.headers.get("x-role", "editor")
        principal = Principal(id=f"u-{role}", username=role, display_name=role.title())
        grant = Grant(principal, request.path_params["space_id"], ROLES[role])
        return await webdav.handle(request, grant, request.path_params.get("path", ""))

    return Starlette(routes=[
        Route("/dav/spaces/{space_id}/{path:path}", endpoint, methods=METHODS),
        Route("/dav/spaces/{space_id}", endpoint, methods=METHODS),
    ])


@contextlib.asynccontextmanager
async def dav_env(
    tmp_path: Path, quota: int = 0, max_upload_size: int = 64 * 1024 * 1024,
    database_url: str | None = None,
) -> AsyncIterator[DavEnv]:
    """The rig on SQLite, or on ``database_url`` (the conftest's ``database_url`` fixture)."""
    db = Database(database_url or f"sqlite+aiosqlite:///{tmp_path / 'dav.db'}")
    await db.migrate()
    storage = PosixDriver(tmp_path / "storage")
    feed = RecordingFeed()
    service = ProviderService("p1", db, storage, feed)
    await service.create_space("s1", quota)
    tree = Tree(db, storage, feed, "p1")
    app = make_app(WebDav(tree, max_upload_size))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dav.test") as client:
        yield DavEnv(client, app, tree, service, storage, feed, tmp_path / "storage")
    await db.close()


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[int]:
    """Run ``app`` with uvicorn on 127.0.0.1 (ephemeral port) in this event loop."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes exactly as given (no URL normalisation) and read the status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
    data = await reader.read(65536)
    writer.close()
    match = re.match(rb"HTTP/1\.1 (\d{3})", data)
    assert match, data[:200]
    return int(match.group(1)), data


def multistatus_hrefs(body: bytes) -> list[str]:
    return re.findall(r"<d:href>([^<]*)</d:href>", body.decode())
