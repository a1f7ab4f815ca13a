"""Space lifecycle on a provider: create, delete, quota, root state (no HTTP, no gRPC)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fedspace.db import Database
from fedspace.sqltypes import now_ms
from provider.changes import ChangeFeed
from provider.models import nodes, provider_spaces
from provider.storage import StorageDriver


class SpaceNotFound(LookupError):
    pass


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

    async def delete_space(self, space_id: str) -> None:
        """Remove the space, its metadata and its content; unknown spaces are not an error."""
        async with self.db.write() as conn:
            await conn.execute(delete(nodes).where(nodes.c.space_id == space_id))
            await conn.execute(delete(provider_spaces).where(
                provider_spaces.c.space_id == space_id,
                provider_spaces.c.provider_id == self.provider_id))
        await self.storage.delete_space(space_id)

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

    async def all_states(self) -> list[RootState]:
        """Every space this provider holds (sent to the registry on each connect)."""
        async with self.db.read() as conn:
            rows = await conn.execute(self._root_query().where(
                provider_spaces.c.provider_id == self.provider_id))
            return [RootState(*r) for r in rows]

    async def states(self, space_ids: list[str]) -> list[RootState]:
        async with self.db.read() as conn:
            rows = await conn.execute(self._root_query().where(
                provider_spaces.c.space_id.in_(space_ids)))
            return [RootState(*r) for r in rows]

    async def usage(self) -> tuple[int, int]:
        """(spaces held, bytes used) — reported when registering."""
        async with self.db.read() as conn:
            row = (await conn.execute(
                select(func.count(), func.coalesce(func.sum(nodes.c.size), 0))
                .select_from(provider_spaces.join(nodes, nodes.c.id == provider_spaces.c.root_id))
                .where(provider_spaces.c.provider_id == self.provider_id)
            )).one()
        return int(row[0]), int(row[1])

    @staticmethod
    def _root_query():  # type: ignore[no-untyped-def]
        return select(
            provider_spaces.c.space_id, provider_spaces.c.root_id, nodes.c.etag, nodes.c.size,
            provider_spaces.c.quota_total, nodes.c.mtime_ns,
        ).join(nodes, nodes.c.id == provider_spaces.c.root_id)

    async def _root(self, conn: AsyncConnection, space_id: str) -> RootState | None:
        row = (await conn.execute(self._root_query().where(
            provider_spaces.c.space_id == space_id,
            provider_spaces.c.provider_id == self.provider_id))).first()
        return RootState(*row) if row else None
