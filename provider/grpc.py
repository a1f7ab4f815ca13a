"""The provider's gRPC service: what the registry may ask a provider to do."""

from __future__ import annotations

import grpc

from fedspace.rpc import spaces_pb2 as pb
from fedspace.rpc.spaces_pb2_grpc import ProviderServicer
from provider.service import (
    ItemNotFound,
    NotAFolder,
    ProviderService,
    RootState,
    SpaceNotFound,
)


def to_pb(provider_id: str, state: RootState) -> pb.SpaceState:
    return pb.SpaceState(
        space_id=state.space_id, provider_id=provider_id, root_id=state.root_id,
        etag=state.etag, size=state.size, quota_total=state.quota_total,
        mtime_ns=state.mtime_ns)


def _valid_id(space_id: str) -> bool:
    return 0 < len(space_id) <= 64 and all(c.isalnum() or c in "-_." for c in space_id)


class ProviderRpc(ProviderServicer):
    def __init__(self, service: ProviderService) -> None:
        self.service = service

    async def _check(self, space_id: str, context: grpc.aio.ServicerContext) -> None:
        if not _valid_id(space_id):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid space id")

    async def CreateSpace(
        self, request: pb.CreateSpaceRequest, context: grpc.aio.ServicerContext
    ) -> pb.SpaceState:
        await self._check(request.space_id, context)
        if request.quota_total < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "quota must be >= 0")
        if not request.base_space_id:
            state = await self.service.create_space(request.space_id, request.quota_total)
            return to_pb(self.service.provider_id, state)
        await self._check(request.base_space_id, context)
        try:
            state = await self.service.create_share(
                request.space_id, request.base_space_id, request.root_path)
        except NotAFolder as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return to_pb(self.service.provider_id, state)

    async def DeleteSpace(
        self, request: pb.SpaceRef, context: grpc.aio.ServicerContext
    ) -> pb.DeleteSpaceReply:
        await self._check(request.space_id, context)
        await self.service.delete_space(request.space_id)
        return pb.DeleteSpaceReply()

    async def SetQuota(
        self, request: pb.SetQuotaRequest, context: grpc.aio.ServicerContext
    ) -> pb.SpaceState:
        await self._check(request.space_id, context)
        try:
            state = await self.service.set_quota(request.space_id, request.quota_total)
        except SpaceNotFound:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such space")
        return to_pb(self.service.provider_id, state)

    async def Stat(
        self, request: pb.SpaceRef, context: grpc.aio.ServicerContext
    ) -> pb.SpaceState:
        await self._check(request.space_id, context)
        try:
            state = await self.service.stat(request.space_id)
        except SpaceNotFound:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such space")
        return to_pb(self.service.provider_id, state)

    async def ResolveItem(
        self, request: pb.ItemRef, context: grpc.aio.ServicerContext
    ) -> pb.ItemInfo:
        await self._check(request.space_id, context)
        try:
            path, is_dir = await self.service.resolve_item(request.space_id, request.item_id)
        except ItemNotFound:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such item in this space")
        return pb.ItemInfo(path=path, is_dir=is_dir)
