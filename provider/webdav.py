"""WebDAV (RFC 4918 class 1) over one space: method dispatch, permissions and headers.

The gateway has already resolved the caller's ``Grant`` for the space; this module
decides what each method may do with it and maps tree failures to RFC 4918 error
bodies. Anything that fails raises before the single committing tree call, so a failed
request changes nothing. Each request works through the space's mount
(``provider.mount``), so a share space serves its folder of the base space under its
own id.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from urllib.parse import quote, unquote, urlsplit

import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from fedspace.permissions import Grant, Permission
from provider.body import RangeFileResponse, blob_response, open_blob
from provider.davhttp import (
    ALLOW,
    XML,
    error_response,
    etag_headers,
    etag_list,
    matches,
    require,
    small_body,
)
from provider.davxml import (
    empty,
    error_body,
    multistatus,
    parse_propfind,
    parse_proppatch,
    propstat,
    response,
)
from provider.mount import MountedTree, Mounts
from provider.propfind import (
    PROTECTED,
    Context,
    href,
    http_date,
    needs_dead,
    needs_quota,
    render_listing,
)
from provider.tree import Tree
from provider.treeerrors import (
    BadGateway,
    BadRequest,
    Forbidden,
    NotAllowed,
    NotFound,
    PreconditionFailed,
    TreeError,
    UnsupportedMediaType,
    check_name,
    clean_path,
)
from provider.upload import Upload

log = logging.getLogger(__name__)
_RAW_TRICKS = (b"%2f", b"%5c", b"%00")

Handler = Callable[[Request, Grant, MountedTree, str], Awaitable[Response]]


class WebDav:
    def __init__(self, tree: Tree, max_upload_size: int) -> None:
        self.tree = tree
        self.mounts = Mounts(tree.db)
        self.upload = Upload(max_upload_size)
        self.handlers: dict[str, Handler] = {
            "OPTIONS": self.options, "PROPFIND": self.propfind, "PROPPATCH": self.proppatch,
            "GET": self.get, "HEAD": self.get, "PUT": self.upload.put, "MKCOL": self.mkcol,
            "DELETE": self.delete, "MOVE": self.move, "COPY": self.copy,
        }

    async def handle(self, request: Request, grant: Grant, path: str) -> Response:
        """Answer one WebDAV request on ``path`` (decoded, '' = root) in the grant's space."""
        handler = self.handlers.get(request.method.upper())
        try:
            if handler is None:
                raise NotAllowed(f"{request.method} is not supported")
            raw = request.scope.get("raw_path", b"").lower()
            if any(trick in raw for trick in _RAW_TRICKS):
                raise BadRequest("encoded slashes, backslashes and NULs are not allowed")
            path = clean_path(path)
            mounted = MountedTree(self.tree, await self.mounts.resolve(grant.space_id))
            return await handler(request, grant, mounted, path)
        except TreeError as exc:
            return error_response(exc)
        except ClientDisconnect:
            return error_response(BadRequest("the client disconnected"))
        except Exception:
            log.exception("WebDAV %s failed", request.method)
            return Response(error_body("Sabre\\DAV\\Exception", "internal server error"),
                            status_code=500, media_type=XML)

    async def options(
        self, request: Request, grant: Grant, tree: MountedTree, path: str
    ) -> Response:
        return Response(headers={
            "DAV": "1", "Allow": ALLOW, "Accept-Ranges": "bytes", "MS-Author-Via": "DAV",
        })

    async def propfind(
        self, request: Request, grant: Grant, tree: MountedTree, path: str
    ) -> Response:
        require(grant, Permission.LIST, "list files")
        depth = request.headers.get("depth", "infinity").strip().lower()
        if depth not in ("0", "1", "infinity"):
            raise BadRequest("Depth must be 0, 1 or infinity")
        query = parse_propfind(await small_body(request))
        if depth == "infinity":
            if (await tree.stat(path)).is_dir:
                raise Forbidden("Depth: infinity is not supported; use 0 or 1",
                                condition="propfind-finite-depth")
            depth = "0"
        listing = await tree.listing(path, int(depth), with_dead=needs_dead(query),
                                     with_quota=needs_quota(query))
        ctx = Context(grant.permissions, listing.quota)
        body = multistatus(render_listing(grant.space_id, listing, query, ctx))
        return Response(body, status_code=207, media_type=XML)

    async def proppatch(
        self, request: Request, grant: Grant, tree: MountedTree, path: str
    ) -> Response:
        require(grant, Permission.UPLOAD, "change properties")
        ops = parse_proppatch(await small_body(request))
        node = await tree.stat(path)
        names = [(ns, name) for ns, name, _ in ops]
        refused = [n for n in names if n in PROTECTED]
        if refused:
            stats = propstat("".join(empty(n) for n in refused), "403 Forbidden")
            others = [n for n in names if n not in PROTECTED]
            if others:
                stats += propstat("".join(empty(n) for n in others), "424 Failed Dependency")
        else:
            await tree.proppatch(path, ops)
            stats = propstat("".join(empty(n) for n in dict.fromkeys(names)), "200 OK")
        body = multistatus([response(href(grant.space_id, path, node.is_dir), stats)])
        return Response(body, status_code=207, media_type=XML)

    async def get(
        self, request: Request, grant: Grant, tree: MountedTree, path: str
    ) -> Response:
        require(grant, Permission.DOWNLOAD, "download files")
        node = await tree.stat(path)
        if node.is_dir:
            raise NotAllowed("folders have no content; use PROPFIND to list them")
        if_match = etag_list(request.headers.get("if-match"))
        if if_match is not None and not matches(node, if_match):
            raise PreconditionFailed("If-Match does not match the current ETag")
        headers = etag_headers(node) | {"Last-Modified": http_date(node.mtime_ns)}
        if_none_match = etag_list(request.headers.get("if-none-match"))
        if if_none_match is not None and matches(node, if_none_match):
            return Response(status_code=304, headers=headers)
        assert node.blob_id is not None
        blob = tree.blob_path(node.blob_id)
        media_type = node.content_type or "application/octet-stream"
        try:
            if request.method == "HEAD" or "range" in request.headers:
                # FileResponse answers Range (and If-Range) and HEAD.
                stat = await anyio.to_thread.run_sync(os.stat, blob)
                return RangeFileResponse(blob, headers=headers, stat_result=stat,
                                         media_type=media_type)
            opened = await anyio.to_thread.run_sync(open_blob, blob)
        except FileNotFoundError:  # replaced or deleted since the lookup above
            raise NotFound("the file changed while being read; try again") from None
        return blob_response(opened, headers, media_type)

    async def mkcol(
        self, request: Request, grant: Grant, tree: MountedTree, path: str
    ) -> Response:
        require(grant, Permission.CREATE_FOLDER, "create folders")
        if await small_body(request):
            raise UnsupportedMediaType("MKCOL with a request body is not supported")
        if path == "":
            raise NotAllowed("the space root already exists")
        node = await tree.mkcol(path)
        return Response(status_code=201, headers=etag_headers(node))

    async def delete(
        self, request: Request, grant: Grant, tree: MountedTree, path: str
    ) -> Response:
        require(grant, Permission.DELETE, "delete files")
        if_match = etag_list(request.headers.get("if-match"))
        if if_match is not None:
            node = await tree.find(path)
            if not matches(node, if_match):
                raise PreconditionFailed("If-Match does not match the current ETag")
        await tree.delete(path)
        return Response(status_code=204)

    async def move(
        self, request: Request, grant: Grant, tree: MountedTree, path: str
    ) -> Response:
        require(grant, Permission.MOVE, "move or rename files")
        if request.headers.get("depth", "infinity").strip().lower() != "infinity":
            raise BadRequest("MOVE requires Depth: infinity")
        dst, overwrite = await self._target(request, grant, tree)
        created = await tree.move(path, dst, overwrite=overwrite)
        return Response(status_code=201 if created else 204)

    async def copy(
        self, request: Request, grant: Grant, tree: MountedTree, path: str
    ) -> Response:
        depth = request.headers.get("depth", "infinity").strip().lower()
        if depth not in ("0", "infinity"):
            raise BadRequest("COPY requires Depth: 0 or infinity")
        node = await tree.stat(path)
        if node.is_dir:
            require(grant, Permission.CREATE_FOLDER, "create folders")
        if not node.is_dir or depth == "infinity":
            require(grant, Permission.UPLOAD, "upload files")
        dst, overwrite = await self._target(request, grant, tree)
        created = await tree.copy(path, dst, overwrite=overwrite,
                                  recursive=depth == "infinity")
        return Response(status_code=201 if created else 204)

    async def _target(
        self, request: Request, grant: Grant, tree: MountedTree
    ) -> tuple[str, bool]:
        """Destination path and Overwrite flag of a MOVE/COPY, checked against the grant."""
        overwrite = request.headers.get("overwrite", "T").strip().upper()
        if overwrite not in ("T", "F"):
            raise BadRequest("Overwrite must be T or F")
        dst = destination(request, grant.space_id)
        if overwrite == "T" and await tree.find(dst) is not None:
            require(grant, Permission.DELETE, "replace existing files")
        return dst, overwrite == "T"


def destination(request: Request, space_id: str) -> str:
    """The Destination header as a clean path in the same space (RFC 4918 §10.3)."""
    value = request.headers.get("destination")
    if not value:
        raise BadRequest("the Destination header is missing")
    url = urlsplit(value)
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    if url.netloc and url.netloc not in hosts:
        raise BadGateway("the destination is on another server")
    prefix = f"/dav/spaces/{quote(space_id, safe='')}"
    if url.path.rstrip("/") == prefix:
        return ""
    if not url.path.startswith(prefix + "/"):
        raise BadGateway("the destination must be inside the same space")
    segments = url.path[len(prefix) + 1:].removesuffix("/").split("/")
    try:
        names = [unquote(s, errors="strict") for s in segments]
    except UnicodeDecodeError:
        raise BadRequest("the destination is not valid UTF-8") from None
    for name in names:
        check_name(name)
    return clean_path("/".join(names))
