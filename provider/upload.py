"""PUT: stream a request body into a new blob and point the node at it.

Every check that can be made before reading the body is made first (permissions,
preconditions, parent, Content-Length against size limit and quota), so a doomed upload
is refused before the client sends it. The body then streams into the blob store with a
byte limit, is verified against ``OC-Checksum``, and only then becomes visible in one
tree transaction that re-checks the preconditions and the quota.
"""

from __future__ import annotations

import mimetypes

from starlette.requests import Request
from starlette.responses import Response

from fedspace.permissions import Grant, Permission
from provider.davhttp import etag_headers, etag_list, matches, require
from provider.mount import MountedTree
from provider.storage import BlobInfo, BlobTooLarge
from provider.tree import Node, parent_of
from provider.treeerrors import (
    BadRequest,
    Conflict,
    NotAllowed,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    TooLarge,
    TreeError,
)

CHECKSUM_ALGORITHMS = {"SHA1": "sha1", "MD5": "md5", "ADLER32": "adler32"}


class Upload:
    def __init__(self, max_upload_size: int) -> None:
        self.max_upload_size = max_upload_size

    async def put(
        self, request: Request, grant: Grant, tree: MountedTree, path: str
    ) -> Response:
        require(grant, Permission.UPLOAD, "upload files")
        if path == "":
            raise NotAllowed("cannot PUT to a folder")
        if "content-range" in request.headers:
            raise BadRequest("partial PUT with Content-Range is not supported")
        length = content_length(request)
        if length is not None and length > self.max_upload_size:
            raise TooLarge(f"uploads are limited to {self.max_upload_size} bytes")
        checksum = parse_checksum(request.headers.get("oc-checksum"))
        mtime_ns = parse_mtime(request.headers.get("x-oc-mtime"))
        if_match = etag_list(request.headers.get("if-match"))
        if_none_match = etag_list(request.headers.get("if-none-match"))

        def check(node: Node | None) -> None:
            if if_match is not None and not matches(node, if_match):
                raise PreconditionFailed("If-Match does not match the current ETag")
            if if_none_match is not None and matches(node, if_none_match):
                raise PreconditionFailed("If-None-Match matches the current ETag")

        old = await tree.find(path)
        check(old)
        if old is not None and old.is_dir:
            raise NotAllowed("cannot PUT to a folder")
        if old is None:
            await self._require_parent(tree, path)
        room = await self._room(tree, old)
        if length is not None and room is not None and length > room:
            raise QuotaExceeded("the upload would exceed the space quota")
        limit = self.max_upload_size if room is None else min(room, self.max_upload_size)
        try:
            blob = await tree.write_blob(request.stream(), limit)
        except BlobTooLarge:
            if room is not None and room < self.max_upload_size:
                raise QuotaExceeded("the upload would exceed the space quota") from None
            raise TooLarge(f"uploads are limited to {self.max_upload_size} bytes") from None
        problem = verify(blob, length, checksum)
        if problem is not None:
            await tree.delete_blob(blob.blob_id)
            raise problem
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        node, created = await tree.put(
            path, blob, content_type=content_type, mtime_ns=mtime_ns, check=check)
        headers = etag_headers(node)
        if mtime_ns is not None:
            headers["X-OC-MTime"] = "accepted"
        return Response(status_code=201 if created else 204, headers=headers)

    async def _require_parent(self, tree: MountedTree, path: str) -> None:
        try:
            parent = await tree.stat(parent_of(path))
        except NotFound:
            if parent_of(path) == "":
                raise  # no such space, not a missing folder
            parent = None
        if parent is None or not parent.is_dir:
            raise Conflict("the parent folder does not exist")

    async def _room(self, tree: MountedTree, old: Node | None) -> int | None:
        """Bytes this upload may use under the quota (None = unlimited)."""
        quota = await tree.quota()
        if not quota.total:
            return None
        return max(quota.total - quota.used + (old.size if old else 0), 0)


def content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise BadRequest("malformed Content-Length")
    return int(value)


def parse_checksum(value: str | None) -> tuple[str, str] | None:
    """``OC-Checksum: SHA1:<hex>`` → ("sha1", "<hex>")."""
    if value is None:
        return None
    algorithm, _, digest = value.strip().partition(":")
    attr = CHECKSUM_ALGORITHMS.get(algorithm.upper())
    if attr is None or not digest:
        raise BadRequest("OC-Checksum must be SHA1:, MD5: or ADLER32: followed by hex")
    return attr, digest.strip().lower()


def parse_mtime(value: str | None) -> int | None:
    """``X-OC-Mtime`` is Unix seconds, possibly fractional."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise BadRequest("X-OC-Mtime must be Unix seconds") from None
    if not 0 <= seconds < 2**33:
        raise BadRequest("X-OC-Mtime is out of range")
    return int(seconds * 1e9)


def verify(
    blob: BlobInfo, length: int | None, checksum: tuple[str, str] | None
) -> TreeError | None:
    if length is not None and blob.size != length:
        return BadRequest("the body is shorter than Content-Length")
    if checksum is not None and getattr(blob, checksum[0]) != checksum[1]:
        return BadRequest("the content does not match OC-Checksum")
    return None
