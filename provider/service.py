"""Space lifecycle on a provider: create, delete, quota, root state (no HTTP, no gRPC).

A share space is a ``provider_spaces`` row whose root is a folder node of its base space
(see ``provider.mount``): creating or deleting one never touches nodes or blobs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from fedspace.db import Database
from fedspace.sqltypes import now_ms
from provider.changes import ChangeFeed
from provider.models import nodes, provider_spaces
from provider.storage import StorageDriver


class SpaceNotFound(LookupError):
    pass


class ItemNotFound(LookupError):
    pass


class NotAFolder(ValueError):
    """A share was asked for at a path that is not a folder of the base space."""


@dataclass(frozen=True)
class RootState:
    space_id: str
    root_id: str
    etag: str
    size: int
    quota_total: int
    mtime_ns: int


def new_etag() -> str:
    return uuid.uuid4().hex


_ROOT_STATE = select(
    provider_spaces.c.space_id, provider_spaces.c.root_id, nodes.c.etag, nodes.c.size,
    provider_spaces.c.quota_total, nodes.c.mtime_ns,
).join(nodes, nodes.c.id == provider_spaces.c.root_id).where(
    provider_spaces.c.provider_id == bindparam("provider_id"))
# Built once: create_share (a hot write) reads _ROOT twice; the registry link reads the
# others after every write and on each connect.
_ROOT = _ROOT_STATE.where(provider_spaces.c.space_id == bindparam("space_id"))
_SOME = _ROOT_STATE.where(provider_spaces.c.space_id.in_(bindparam("space_ids", expanding=True)))
_PAGE = (_ROOT_STATE.where(provider_spaces.c.space_id > bindparam("after"))
         .order_by(provider_spaces.c.space_id).limit(bindparam("limit")))
_FOLDER = select(nodes.c.id, nodes.c.is_dir).where(nodes.c.space_id == bindparam("base"),
                                                   nodes.c.path == bindparam("path"))
_SHARED = select(provider_spaces.c.space_id).where(
    provider_spaces.c.base_space_id == bindparam("base"),
    provider_spaces.c.root_id == bindparam("root_id"))


class ProviderService:
    def __init__(
        self, provider_id: str, db: Database, storage: StorageDriver, feed: ChangeFeed
    ) -> None:
        self.provider_id = provider_id
        self.db = db
        self.storage = storage
        self.feed = feed

    async def create_space(self, space_id: str, quota_total: int) -> RootState:
        """Create the space and its root folder; creating an existing space is a no-op."""
        async with self.db.write() as conn:
            existing = await self._root(conn, space_id)
            if existing is not None:
                return existing
            root_id = str(uuid.uuid4())
            await conn.execute(insert(provider_spaces).values(
                space_id=space_id, provider_id=self.provider_id, root_id=root_id,
                quota_total=quota_total, created_ms=now_ms()))
            await conn.execute(insert(nodes).values(
                id=root_id, space_id=space_id, parent_id=None, path="", name="", is_dir=True,
                size=0, etag=new_etag(), mtime_ns=now_ms() * 1_000_000))
            state = await self._root(conn, space_id)
        assert state is not None
        return state

    async def create_share(self, space_id: str, base_space_id: str, root_path: str) -> RootState:
        """A share space rooted at the folder ``root_path`` of ``base_space_id``.

        One folder has at most one share space: if the folder is shared already, that
        space's state is returned (its ``space_id`` differs from the one asked for).
        """
        key = {"space_id": space_id, "provider_id": self.provider_id}

        def write(conn: Connection) -> RootState:
            existing = conn.execute(_ROOT, key).first()
            if existing is not None:
                return RootState(*existing)
            folder = conn.execute(_FOLDER, {"base": base_space_id, "path": root_path}).first()
            if folder is None or not folder.is_dir or root_path == "":
                raise NotAFolder(f"{root_path!r} is not a folder of the space")
            shared = conn.scalar(_SHARED, {"base": base_space_id, "root_id": folder.id})
            if shared is None:
                conn.execute(insert(provider_spaces).values(
                    space_id=space_id, provider_id=self.provider_id, root_id=folder.id,
                    quota_total=0, created_ms=now_ms(), base_space_id=base_space_id))
            return RootState(*conn.execute(_ROOT, {**key, "space_id": shared or space_id}).one())

        # One transaction in one round trip: every folder shared is one.
        return await self.db.write_with(write)

    async def delete_space(self, space_id: str) -> None:
        """Remove the space, its metadata and its content; unknown spaces are not an error.

        A share space loses only its row; a base space takes its share spaces with it.
        """
        async with self.db.write() as conn:
            base_space_id = (await conn.execute(
                select(provider_spaces.c.base_space_id).where(
                    provider_spaces.c.space_id == space_id))).scalar()
            if base_space_id is None:
                await conn.execute(delete(nodes).where(nodes.c.space_id == space_id))
                await conn.execute(delete(provider_spaces).where(
                    provider_spaces.c.base_space_id == space_id))
            await conn.execute(delete(provider_spaces).where(
                provider_spaces.c.space_id == space_id,
                provider_spaces.c.provider_id == self.provider_id))
        if base_space_id is None:
            await self.storage.delete_space(space_id)

    async def resolve_item(self, space_id: str, item_id: str) -> tuple[str, bool]:
        """(path, is_dir) of node ``item_id`` in an ordinary space."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(nodes.c.path, nodes.c.is_dir).where(
                nodes.c.id == item_id, nodes.c.space_id == space_id))).first()
        if row is None:
            raise ItemNotFound(f"no item {item_id!r} in space {space_id!r}")
        return row.path, row.is_dir

    async def set_quota(self, space_id: str, quota_total: int) -> RootState:
        async with self.db.write() as conn:
            result = await conn.execute(update(provider_spaces).where(
                provider_spaces.c.space_id == space_id,
                provider_spaces.c.provider_id == self.provider_id,
            ).values(quota_total=quota_total))
            if result.rowcount == 0:
                raise SpaceNotFound(space_id)
            state = await self._root(conn, space_id)
        assert state is not None
        self.feed.touch(space_id)
        return state

    async def stat(self, space_id: str) -> RootState:
        async with self.db.read() as conn:
            state = await self._root(conn, space_id)
        if state is None:
            raise SpaceNotFound(space_id)
        return state

    async def all_states(self, after: str, limit: int) -> list[RootState]:
        """Up to ``limit`` spaces this provider holds, in id order after ``after``: the
        registry is sent every one on each connect, a page at a time (a million spaces
        never sit in memory at once)."""
        return await self.db.read_with(lambda conn: [RootState(*r) for r in conn.execute(
            _PAGE, {"provider_id": self.provider_id, "after": after, "limit": limit})])

    async def states(self, space_ids: list[str]) -> list[RootState]:
        return await self.db.read_with(lambda conn: [RootState(*r) for r in conn.execute(
            _SOME, {"provider_id": self.provider_id, "space_ids": space_ids})])

    async def usage(self) -> tuple[int, int]:
        """(spaces held, bytes used) — reported when registering; shares hold no bytes."""
        async with self.db.read() as conn:
            row = (await conn.execute(
                select(func.count(), func.coalesce(func.sum(nodes.c.size), 0))
                .select_from(provider_spaces.join(nodes, nodes.c.id == provider_spaces.c.root_id))
                .where(provider_spaces.c.provider_id == self.provider_id,
                       provider_spaces.c.base_space_id.is_(None))
            )).one()
        return int(row[0]), int(row[1])

    async def _root(self, conn: AsyncConnection, space_id: str) -> RootState | None:
        row = (await conn.execute(_ROOT, {"space_id": space_id,
                                          "provider_id": self.provider_id})).first()
        return RootState(*row) if row else None
