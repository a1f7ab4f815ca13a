"""Where a space's content lives: its own tree, or a folder of its base space (a share).

A share space has no nodes of its own; it is a window onto a folder of another space,
referenced by the folder's node id so renames and moves keep it working. A ``Mount``
maps the paths a request uses (relative to the space it addresses) into the tree that
holds them, and ``MountedTree`` applies it to every tree call and maps nodes back. The
WebDAV layer therefore only ever sees request-relative paths: hrefs, Destination headers
and the "root cannot be deleted" rules stay relative to the share, and nothing outside
the folder can be named.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import select

from fedspace.db import Database
from provider.models import nodes, provider_spaces
from provider.storage import BlobInfo
from provider.tree import Listing, Node, NodeCheck, PropOp, Quota, Tree
from provider.treeerrors import Forbidden, NotFound

# Ordinary spaces never become shares (ids are never reused), so knowing one is ordinary
# saves the lookup on every later request; bounded so a provider's memory stays flat.
_ORDINARY_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Mount:
    space_id: str  # the space the request addresses
    base_space_id: str  # the space whose nodes and blobs hold the content
    root_path: str  # the mount's root in the base space ("" = the whole space)

    def inner(self, path: str) -> str:
        """A request path → the same node's path in the base space."""
        if not self.root_path:
            return path
        return f"{self.root_path}/{path}" if path else self.root_path

    def outer(self, node: Node) -> Node:
        """A base-space node as seen through the mount (path relative to its root)."""
        if not self.root_path:
            return node
        return replace(node, path=node.path[len(self.root_path) + 1:])


class Mounts:
    """Resolves a space id to its mount: one indexed query, none for known ordinary spaces."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._ordinary: dict[str, None] = {}

    async def resolve(self, space_id: str) -> Mount:
        if space_id in self._ordinary:
            return Mount(space_id, space_id, "")
        query = (
            select(provider_spaces.c.base_space_id, nodes.c.path)
            .select_from(provider_spaces.outerjoin(
                nodes, nodes.c.id == provider_spaces.c.root_id))
            .where(provider_spaces.c.space_id == space_id))
        row = await self.db.read_with(lambda conn: conn.execute(query).first())
        if row is None:  # unknown here: the tree answers "space not found" as usual
            return Mount(space_id, space_id, "")
        base_space_id, root_path = row
        if base_space_id is None:
            if len(self._ordinary) >= _ORDINARY_CACHE_SIZE:
                self._ordinary.pop(next(iter(self._ordinary)))
            self._ordinary[space_id] = None
            return Mount(space_id, space_id, "")
        if root_path is None:
            raise NotFound("the shared folder no longer exists")
        return Mount(space_id, base_space_id, root_path)


class MountedTree:
    """The tree as one request sees it through a mount (paths relative to the mount)."""

    def __init__(self, tree: Tree, mount: Mount) -> None:
        self.tree = tree
        self.mount = mount

    def _root_guard(self, path: str, action: str) -> None:
        # The tree protects its own root; a share's root is a folder in the middle of it.
        if self.mount.root_path and path == "":
            raise Forbidden(f"the space root cannot be {action}")

    async def stat(self, path: str) -> Node:
        return self.mount.outer(await self.tree.stat(self.mount.base_space_id,
                                                     self.mount.inner(path)))

    async def find(self, path: str) -> Node | None:
        node = await self.tree.find(self.mount.base_space_id, self.mount.inner(path))
        return self.mount.outer(node) if node is not None else None

    async def quota(self) -> Quota:
        """A share counts against its base space's quota."""
        return await self.tree.quota(self.mount.base_space_id)

    async def listing(
        self, path: str, depth: int, *, with_dead: bool, with_quota: bool
    ) -> Listing:
        listing = await self.tree.listing(
            self.mount.base_space_id, self.mount.inner(path), depth,
            with_dead=with_dead, with_quota=with_quota)
        if self.mount.root_path:
            listing.node = self.mount.outer(listing.node)
            listing.children = [self.mount.outer(n) for n in listing.children]
        return listing

    async def mkcol(self, path: str) -> Node:
        return self.mount.outer(await self.tree.mkcol(self.mount.base_space_id,
                                                      self.mount.inner(path)))

    async def put(
        self, path: str, blob: BlobInfo, *, content_type: str, mtime_ns: int | None = None,
        check: NodeCheck | None = None,
    ) -> tuple[Node, bool]:
        node, created = await self.tree.put(
            self.mount.base_space_id, self.mount.inner(path), blob, content_type=content_type,
            mtime_ns=mtime_ns, check=check)
        return self.mount.outer(node), created

    async def delete(self, path: str) -> None:
        self._root_guard(path, "deleted")
        await self.tree.delete(self.mount.base_space_id, self.mount.inner(path))

    async def move(self, src: str, dst: str, *, overwrite: bool) -> bool:
        self._root_guard(src, "moved or copied")
        return await self.tree.move(self.mount.base_space_id, self.mount.inner(src),
                                    self.mount.inner(dst), overwrite=overwrite)

    async def copy(self, src: str, dst: str, *, overwrite: bool, recursive: bool) -> bool:
        self._root_guard(src, "moved or copied")
        return await self.tree.copy(self.mount.base_space_id, self.mount.inner(src),
                                    self.mount.inner(dst), overwrite=overwrite,
                                    recursive=recursive)

    async def proppatch(self, path: str, ops: Iterable[PropOp]) -> None:
        await self.tree.proppatch(self.mount.base_space_id, self.mount.inner(path), ops)

    # -- blobs live with the base space ---------------------------------------------

    async def write_blob(self, chunks: AsyncIterable[bytes], limit: int | None) -> BlobInfo:
        return await self.tree.storage.write_blob(self.mount.base_space_id, chunks, limit)

    async def delete_blob(self, blob_id: str) -> None:
        await self.tree.storage.delete_blob(self.mount.base_space_id, blob_id)

    def blob_path(self, blob_id: str) -> Path:
        return self.tree.storage.blob_path(self.mount.base_space_id, blob_id)
