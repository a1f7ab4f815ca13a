"""The registry's view of storage providers: gRPC clients and space placement."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from sqlalchemy import func, insert, outerjoin, select, update

from fedspace.db import Database
from fedspace.internal import InternalTokens
from fedspace.rpc import call_metadata
from fedspace.rpc import spaces_pb2 as pb
from fedspace.rpc.spaces_pb2_grpc import ProviderStub
from fedspace.sqltypes import now_ms
from registry.models import providers, spaces


class NoProvider(RuntimeError):
    """No storage provider has registered, so a new space has nowhere to live."""


class NotAFolder(ValueError):
    """The provider refused to root a share space at a path that is not a folder."""


@dataclass
class ProviderHandle:
    id: str
    grpc_address: str
    dav_url: str
    stub: ProviderStub
    channel: grpc.aio.Channel


class Providers:
    def __init__(self, db: Database, tokens: InternalTokens) -> None:
        self.db = db
        self.tokens = tokens
        self._handles: dict[str, ProviderHandle] = {}

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return call_metadata(self.tokens)

    async def register(self, provider_id: str, grpc_address: str, dav_url: str) -> None:
        async with self.db.write() as conn:
            values = {"grpc_address": grpc_address, "dav_url": dav_url,
                      "registered_ms": now_ms()}
            result = await conn.execute(
                update(providers).where(providers.c.id == provider_id).values(**values))
            if result.rowcount == 0:
                await conn.execute(insert(providers).values(id=provider_id, **values))
        old = self._handles.pop(provider_id, None)
        if old is not None and old.grpc_address != grpc_address:
            await old.channel.close()
        elif old is not None:
            self._handles[provider_id] = old
            old.dav_url = dav_url
            return
        self._connect(provider_id, grpc_address, dav_url)

    def _connect(self, provider_id: str, grpc_address: str, dav_url: str) -> ProviderHandle:
        channel = grpc.aio.insecure_channel(grpc_address)
        handle = ProviderHandle(provider_id, grpc_address, dav_url, ProviderStub(channel), channel)
        self._handles[provider_id] = handle
        return handle

    async def load(self) -> None:
        """Reconnect to every provider known from earlier runs."""
        async with self.db.read() as conn:
            for row in await conn.execute(select(providers)):
                if row.id not in self._handles:
                    self._connect(row.id, row.grpc_address, row.dav_url)

    def get(self, provider_id: str) -> ProviderHandle | None:
        return self._handles.get(provider_id)

    async def place(self) -> ProviderHandle:
        """The registered provider holding the fewest spaces."""
        query = (
            select(providers.c.id, func.count(spaces.c.id).label("n"))
            .select_from(outerjoin(providers, spaces, spaces.c.provider_id == providers.c.id))
            .group_by(providers.c.id)
            .order_by("n", providers.c.id)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        for row in rows:
            handle = self._handles.get(row.id)
            if handle is not None:
                return handle
        raise NoProvider("no storage provider is registered")

    async def create_space(self, provider_id: str, space_id: str, quota: int) -> pb.SpaceState:
        handle = self._require(provider_id)
        return await handle.stub.CreateSpace(
            pb.CreateSpaceRequest(space_id=space_id, quota_total=quota),
            metadata=self._metadata(), timeout=10)

    async def create_share(
        self, provider_id: str, space_id: str, base_space_id: str, root_path: str
    ) -> pb.SpaceState:
        """A share space rooted at a folder; the state names the folder's existing share
        space instead when there is one."""
        handle = self._require(provider_id)
        try:
            return await handle.stub.CreateSpace(
                pb.CreateSpaceRequest(space_id=space_id, base_space_id=base_space_id,
                                      root_path=root_path),
                metadata=self._metadata(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise NotAFolder(exc.details()) from None
            raise

    async def resolve_item(
        self, provider_id: str, space_id: str, item_id: str
    ) -> pb.ItemInfo | None:
        """Path and kind of a node, None if it is not in the space."""
        handle = self._require(provider_id)
        try:
            return await handle.stub.ResolveItem(
                pb.ItemRef(space_id=space_id, item_id=item_id),
                metadata=self._metadata(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    async def delete_space(self, provider_id: str, space_id: str) -> None:
        handle = self._require(provider_id)
        await handle.stub.DeleteSpace(pb.SpaceRef(space_id=space_id),
                                      metadata=self._metadata(), timeout=30)

    async def set_quota(self, provider_id: str, space_id: str, quota: int) -> pb.SpaceState:
        handle = self._require(provider_id)
        return await handle.stub.SetQuota(
            pb.SetQuotaRequest(space_id=space_id, quota_total=quota),
            metadata=self._metadata(), timeout=10)

    def _require(self, provider_id: str) -> ProviderHandle:
        handle = self._handles.get(provider_id)
        if handle is None:
            raise NoProvider(f"provider {provider_id!r} is not registered")
        return handle

    async def close(self) -> None:
        for handle in self._handles.values():
            await handle.channel.close()
        self._handles.clear()
