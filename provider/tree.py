"""The node tree of each space: lookups, changes and ETag/size propagation.

Every change runs in one write transaction that also updates ETag, mtime and tree size
of all ancestors up to the root, so the root ETag is a reliable "something changed"
signal for sync clients and the registry. Blob files are created before the
transaction and deleted after it, so a failed request never leaves a node pointing at
nothing, and at worst leaves an unreferenced blob.

A share space is rooted at a folder of a space (``provider.mount``); its root state is
that folder's, so a change below the folder also touches the share in the change feed.
The share spaces concerned are found inside the change's transaction, before the change,
so a share whose root is deleted or moved is still found.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from fedspace.db import Database
from provider.changes import ChangeFeed
from provider.models import dead_props, nodes, provider_spaces
from provider.service import new_etag
from provider.storage import BlobInfo, StorageDriver
from provider.treeerrors import (
    Conflict,
    Forbidden,
    NotAllowed,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
)

NODE_COLUMNS = (
    nodes.c.id, nodes.c.parent_id, nodes.c.path, nodes.c.name, nodes.c.is_dir, nodes.c.size,
    nodes.c.etag, nodes.c.mtime_ns, nodes.c.blob_id, nodes.c.content_type,
    nodes.c.checksum_sha1, nodes.c.checksum_md5, nodes.c.checksum_adler32,
)


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    parent_id: str | None
    path: str
    name: str
    is_dir: bool
    size: int
    etag: str
    mtime_ns: int
    blob_id: str | None
    content_type: str | None
    checksum_sha1: str | None
    checksum_md5: str | None
    checksum_adler32: str | None


@dataclass(frozen=True, slots=True)
class Quota:
    total: int  # 0 = unlimited
    used: int  # the root's tree size


@dataclass(slots=True)
class Listing:
    """What PROPFIND needs, read in at most four indexed queries."""

    node: Node
    children: list[Node]
    # node id -> {(namespace, name): property XML}
    dead: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    quota: Quota | None = None


# A property change: (namespace, name, serialised XML to set, or None to remove).
PropOp = tuple[str, str, str | None]
NodeCheck = Callable[[Node | None], None]


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def ancestors(path: str) -> list[str]:
    """Every ancestor of ``path`` from the root down, excluding ``path`` itself."""
    parts = path.split("/")[:-1] if path else []
    return [""] + ["/".join(parts[: i + 1]) for i in range(len(parts))]


def in_subtree(column: ColumnElement[str], path: str) -> ColumnElement[bool]:
    """Strict descendants of ``path``: a byte-wise range ('0' sorts right after '/')."""
    return and_(column >= path + "/", column < path + "0")


def _node_or_subtree(path: str) -> ColumnElement[bool]:
    return or_(nodes.c.path == path, in_subtree(nodes.c.path, path))


class Tree:
    def __init__(
        self, db: Database, storage: StorageDriver, feed: ChangeFeed, provider_id: str
    ) -> None:
        self.db = db
        self.storage = storage
        self.feed = feed
        self.provider_id = provider_id

    # -- reads ----------------------------------------------------------------------

    # Reads are sync functions run by ``Database.read_with`` (one hop on hot paths), and
    # through ``run_sync`` inside write transactions: one implementation for both.

    async def stat(self, space_id: str, path: str) -> Node:
        return await self.db.read_with(lambda conn: required(conn, space_id, path))

    async def find(self, space_id: str, path: str) -> Node | None:
        return await self.db.read_with(lambda conn: node_at(conn, space_id, path))

    async def quota(self, space_id: str) -> Quota:
        return await self.db.read_with(
            lambda conn: quota_of(conn, space_id, self.provider_id))

    async def listing(
        self, space_id: str, path: str, depth: int, *, with_dead: bool, with_quota: bool
    ) -> Listing:
        def read(conn: Connection) -> Listing:
            node = required(conn, space_id, path)
            listing = Listing(node, [])
            if depth > 0 and node.is_dir:
                rows = conn.execute(_CHILDREN, {"space_id": space_id, "parent_id": node.id})
                listing.children = [Node(*r) for r in rows]
            if with_dead:
                listing.dead = dead_props_of(conn, space_id, node, depth)
            if with_quota:
                listing.quota = quota_of(conn, space_id, self.provider_id)
            return listing

        return await self.db.read_with(read)

    # -- changes --------------------------------------------------------------------

    async def mkcol(self, space_id: str, path: str) -> Node:
        async with self.db.write() as conn:
            if await self._get(conn, space_id, path) is not None:
                raise NotAllowed("the resource already exists")
            parent = await self._parent(conn, space_id, path)
            shares = await self._shares_over(conn, space_id, path)
            now = time.time_ns()
            node = Node(str(uuid.uuid4()), parent.id, path, path.rpartition("/")[2], True, 0,
                        new_etag(), now, None, None, None, None, None)
            await conn.execute(insert(nodes).values(space_id=space_id, **_values(node)))
            await self._propagate(conn, space_id, path, 0, now)
        await self._committed(space_id, [], shares)
        return node

    async def put(
        self, space_id: str, path: str, blob: BlobInfo, *, content_type: str,
        mtime_ns: int | None = None, check: NodeCheck | None = None,
    ) -> tuple[Node, bool]:
        """Point ``path`` at ``blob``; returns (node, created). Consumes the blob on failure.

        The hot write: one transaction in one round trip (``Database.write_with``)."""

        def write(conn: Connection) -> tuple[Node, Node | None, list[str]]:
            old = node_at(conn, space_id, path)
            if check is not None:
                check(old)
            if old is not None and old.is_dir:
                raise NotAllowed("cannot PUT to a folder")
            parent = parent_node(conn, space_id, path)
            delta = blob.size - (old.size if old else 0)
            check_quota(conn, space_id, self.provider_id, delta)
            shares = shares_over(conn, space_id, path)
            now = time.time_ns()
            node = Node(
                old.id if old else str(uuid.uuid4()), parent.id, path,
                path.rpartition("/")[2], False, blob.size, new_etag(),
                mtime_ns if mtime_ns is not None else now, blob.blob_id, content_type,
                blob.sha1, blob.md5, blob.adler32)
            if old is None:
                conn.execute(_INSERT_NODE, {"space_id": space_id, **_values(node)})
            else:
                conn.execute(_UPDATE_NODE, {"node_id": old.id, **_values(node)})
            propagate(conn, space_id, path, delta, now)
            return node, old, shares

        try:
            node, old, shares = await self.db.write_with(write)
        except BaseException:
            await self._drop_blobs(space_id, [blob.blob_id])
            raise
        await self._committed(space_id, [old.blob_id] if old and old.blob_id else [], shares)
        return node, old is None

    async def delete(self, space_id: str, path: str) -> None:
        async with self.db.write() as conn:
            node = await self._require(conn, space_id, path)
            if path == "":
                raise Forbidden("the space root cannot be deleted")
            shares = await self._shares_over(conn, space_id, path)
            blobs = await self._remove(conn, space_id, node)
        await self._committed(space_id, blobs, shares)

    async def move(self, space_id: str, src: str, dst: str, *, overwrite: bool) -> bool:
        """Rename ``src`` (and its subtree) to ``dst``; returns True if ``dst`` is new."""
        async with self.db.write() as conn:
            node = await self._require(conn, space_id, src)
            _check_transfer(src, dst)
            parent = await self._parent(conn, space_id, dst)
            replaced = await self._make_room(conn, space_id, dst, overwrite)
            shares = await self._shares_over(conn, space_id, src, dst)
            blobs = await self._remove(conn, space_id, replaced) if replaced else []
            await conn.execute(update(nodes).where(
                nodes.c.space_id == space_id, in_subtree(nodes.c.path, src),
            ).values(path=literal(dst, String()).concat(func.substr(nodes.c.path, len(src) + 1))))
            await conn.execute(update(nodes).where(nodes.c.id == node.id).values(
                path=dst, name=dst.rpartition("/")[2], parent_id=parent.id))
            now = time.time_ns()
            await self._propagate(conn, space_id, src, -node.size, now)
            await self._propagate(conn, space_id, dst, node.size, now)
        await self._committed(space_id, blobs, shares)
        return replaced is None

    async def copy(
        self, space_id: str, src: str, dst: str, *, overwrite: bool, recursive: bool
    ) -> bool:
        """Copy ``src`` (with its subtree if ``recursive``) to ``dst``; True if ``dst`` is new."""
        async with self.db.read() as conn:
            node = await self._require(conn, space_id, src)
            sources = await self._copy_sources(conn, space_id, node, recursive)
        _check_transfer(src, dst)
        copies: dict[str, str] = {}
        try:
            for source in sources:
                if source.blob_id:
                    copies[source.blob_id] = await self.storage.copy_blob(
                        space_id, source.blob_id)
            async with self.db.write() as conn:
                current = await self._copy_sources(
                    conn, space_id, await self._require(conn, space_id, src), recursive)
                if current != sources:
                    raise Conflict("the source changed during the copy; try again")
                parent = await self._parent(conn, space_id, dst)
                replaced = await self._make_room(conn, space_id, dst, overwrite)
                shares = await self._shares_over(conn, space_id, dst)
                blobs = await self._remove(conn, space_id, replaced) if replaced else []
                size = sum(s.size for s in sources if not s.is_dir)
                await self._check_quota(conn, space_id, size)
                await self._insert_copies(conn, space_id, sources, src, dst, parent.id, copies)
                await self._propagate(conn, space_id, dst, size, time.time_ns())
        except BaseException:
            await self._drop_blobs(space_id, list(copies.values()))
            raise
        await self._committed(space_id, blobs, shares)
        return replaced is None

    async def proppatch(self, space_id: str, path: str, ops: Iterable[PropOp]) -> None:
        async with self.db.write() as conn:
            node = await self._require(conn, space_id, path)
            for namespace, name, xml in ops:
                await conn.execute(delete(dead_props).where(
                    dead_props.c.node_id == node.id, dead_props.c.namespace == namespace,
                    dead_props.c.name == name))
                if xml is not None:
                    await conn.execute(insert(dead_props).values(
                        node_id=node.id, namespace=namespace, name=name, xml=xml))

    # -- helpers (all run inside the caller's connection) ---------------------------

    async def _get(self, conn: AsyncConnection, space_id: str, path: str) -> Node | None:
        return await conn.run_sync(node_at, space_id, path)

    async def _require(self, conn: AsyncConnection, space_id: str, path: str) -> Node:
        return await conn.run_sync(required, space_id, path)

    async def _parent(self, conn: AsyncConnection, space_id: str, path: str) -> Node:
        return await conn.run_sync(parent_node, space_id, path)

    async def _make_room(
        self, conn: AsyncConnection, space_id: str, dst: str, overwrite: bool
    ) -> Node | None:
        existing = await self._get(conn, space_id, dst)
        if existing is not None and not overwrite:
            raise PreconditionFailed("the destination exists and Overwrite is F")
        return existing

    async def _check_quota(self, conn: AsyncConnection, space_id: str, delta: int) -> None:
        await conn.run_sync(check_quota, space_id, self.provider_id, delta)

    async def _propagate(
        self, conn: AsyncConnection, space_id: str, path: str, delta: int, now: int
    ) -> None:
        await conn.run_sync(propagate, space_id, path, delta, now)

    async def _shares_over(self, conn: AsyncConnection, space_id: str, *paths: str) -> list[str]:
        return await conn.run_sync(shares_over, space_id, *paths)

    async def _remove(self, conn: AsyncConnection, space_id: str, node: Node) -> list[str]:
        """Delete a node and its subtree; returns the blobs to delete after commit."""
        where = and_(nodes.c.space_id == space_id, _node_or_subtree(node.path))
        blobs = list((await conn.execute(
            select(nodes.c.blob_id).where(where, nodes.c.blob_id.is_not(None)))).scalars())
        await conn.execute(delete(nodes).where(where))
        await self._propagate(conn, space_id, node.path, -node.size, time.time_ns())
        return blobs

    async def _copy_sources(
        self, conn: AsyncConnection, space_id: str, node: Node, recursive: bool
    ) -> list[Node]:
        if not (recursive and node.is_dir):
            return [node]
        rows = await conn.execute(select(*NODE_COLUMNS).where(
            nodes.c.space_id == space_id, _node_or_subtree(node.path)).order_by(nodes.c.path))
        return [Node(*r) for r in rows]

    async def _insert_copies(
        self, conn: AsyncConnection, space_id: str, sources: list[Node], src: str, dst: str,
        parent_id: str, blobs: dict[str, str],
    ) -> None:
        new_ids = {s.id: str(uuid.uuid4()) for s in sources}
        rows = []
        for s in sources:
            path = dst + s.path[len(src):]
            rows.append(dict(
                _values(s), space_id=space_id, id=new_ids[s.id], path=path,
                name=path.rpartition("/")[2], etag=new_etag(),
                parent_id=parent_id if s.path == src else new_ids[s.parent_id or ""],
                size=s.size if len(sources) > 1 or not s.is_dir else 0,
                blob_id=blobs[s.blob_id] if s.blob_id else None))
        await conn.execute(insert(nodes), rows)
        props = (await conn.execute(select(dead_props).where(
            dead_props.c.node_id.in_(list(new_ids))))).mappings().all()
        if props:
            await conn.execute(insert(dead_props), [
                dict(p, node_id=new_ids[p["node_id"]]) for p in props])

    async def _drop_blobs(self, space_id: str, blob_ids: list[str]) -> None:
        # Shielded: cleanup must finish even when the request task is being cancelled.
        with anyio.CancelScope(shield=True):
            for blob_id in blob_ids:
                await self.storage.delete_blob(space_id, blob_id)

    async def _committed(
        self, space_id: str, dropped_blobs: list[str], shares: list[str]
    ) -> None:
        self.feed.touch(space_id)
        for share_id in shares:
            self.feed.touch(share_id)
        await self._drop_blobs(space_id, dropped_blobs)


def _check_transfer(src: str, dst: str) -> None:
    if src == "":
        raise Forbidden("the space root cannot be moved or copied")
    if src == dst:
        raise Forbidden("source and destination are the same")
    if dst.startswith(src + "/"):
        raise Conflict("cannot move or copy a folder into itself")
    if src.startswith(dst + "/"):
        raise Conflict("the destination is an ancestor of the source")


def _values(node: Node) -> dict[str, object]:
    return {c.name: getattr(node, c.name) for c in NODE_COLUMNS}


# The statements of every upload, lookup and PROPFIND listing, built once with bind
# parameters: building them per call cost more than running them (about 1 ms of a 4 KiB
# PUT's transaction).
_NODE_AT = select(*NODE_COLUMNS).where(
    nodes.c.space_id == bindparam("space_id"), nodes.c.path == bindparam("path"))
_QUOTA = (
    select(provider_spaces.c.quota_total, nodes.c.size)
    .join(nodes, nodes.c.id == provider_spaces.c.root_id)
    .where(provider_spaces.c.space_id == bindparam("space_id"),
           provider_spaces.c.provider_id == bindparam("provider_id")))
_SHARES_OVER = (
    select(provider_spaces.c.space_id)
    .join(nodes, nodes.c.id == provider_spaces.c.root_id)
    .where(provider_spaces.c.base_space_id == bindparam("space_id"),
           nodes.c.path.in_(bindparam("paths", expanding=True))))
# One fresh random part per change plus a piece of each node's id: every ancestor gets a
# new ETag that is also distinct from its siblings'.
_PROPAGATE = update(nodes).where(
    nodes.c.space_id == bindparam("in_space"),
    nodes.c.path.in_(bindparam("paths", expanding=True)),
).values(etag=bindparam("etag_head", type_=String()).concat(func.substr(nodes.c.id, 1, 8)),
         mtime_ns=bindparam("now"), size=nodes.c.size + bindparam("delta"))
_CHILDREN = select(*NODE_COLUMNS).where(
    nodes.c.space_id == bindparam("space_id"), nodes.c.parent_id == bindparam("parent_id"),
).order_by(nodes.c.name)
_NODE_ID = bindparam("node_id")


def _dead_props_of(scope: ColumnElement[bool]) -> Select[Any]:
    return (select(dead_props.c.node_id, dead_props.c.namespace, dead_props.c.name,
                   dead_props.c.xml)
            .join(nodes, nodes.c.id == dead_props.c.node_id)
            .where(nodes.c.space_id == bindparam("space_id"), scope))


_DEAD_PROPS = {  # by "with the children's": the node's dead properties (and theirs)
    False: _dead_props_of(nodes.c.id == _NODE_ID),
    True: _dead_props_of(or_(nodes.c.id == _NODE_ID, nodes.c.parent_id == _NODE_ID)),
}
_INSERT_NODE = insert(nodes)
# SET: the columns the parameters name (``_values``).
_UPDATE_NODE = update(nodes).where(nodes.c.id == _NODE_ID)


def node_at(conn: Connection, space_id: str, path: str) -> Node | None:
    row = conn.execute(_NODE_AT, {"space_id": space_id, "path": path}).first()
    return Node(*row) if row else None


def required(conn: Connection, space_id: str, path: str) -> Node:
    node = node_at(conn, space_id, path)
    if node is None:
        raise NotFound("space not found" if path == "" else "resource not found")
    return node


def quota_of(conn: Connection, space_id: str, provider_id: str) -> Quota:
    row = conn.execute(_QUOTA, {"space_id": space_id, "provider_id": provider_id}).first()
    if row is None:
        raise NotFound("space not found")
    return Quota(total=row[0], used=row[1])


def parent_node(conn: Connection, space_id: str, path: str) -> Node:
    parent = node_at(conn, space_id, parent_of(path))
    if parent is None or not parent.is_dir:
        raise Conflict("the parent folder does not exist")
    return parent


def check_quota(conn: Connection, space_id: str, provider_id: str, delta: int) -> None:
    quota = quota_of(conn, space_id, provider_id)
    if delta > 0 and quota.total and quota.used + delta > quota.total:
        raise QuotaExceeded("the space quota would be exceeded")


def propagate(conn: Connection, space_id: str, path: str, delta: int, now: int) -> None:
    """New ETag, mtime and size for every ancestor of ``path`` (one UPDATE)."""
    conn.execute(_PROPAGATE, {"in_space": space_id, "paths": ancestors(path),
                              "etag_head": new_etag()[:24], "now": now, "delta": delta})


def shares_over(conn: Connection, space_id: str, *paths: str) -> list[str]:
    """Share spaces of ``space_id`` rooted at one of ``paths`` or an ancestor of it.

    One query on the indexed ``base_space_id``; nothing to join for the many spaces
    without shares.
    """
    around = list({p for path in paths for p in (*ancestors(path), path)})
    return list(conn.execute(_SHARES_OVER, {"space_id": space_id, "paths": around}).scalars())


def dead_props_of(conn: Connection, space_id: str, node: Node,
                  depth: int) -> dict[str, dict[tuple[str, str], str]]:
    """Dead properties of ``node`` (and its children at depth 1), by node id."""
    statement = _DEAD_PROPS[depth > 0 and node.is_dir]
    rows = conn.execute(statement, {"space_id": space_id, "node_id": node.id})
    found: dict[str, dict[tuple[str, str], str]] = {}
    for node_id, namespace, name, xml in rows:
        found.setdefault(node_id, {})[namespace, name] = xml
    return found
