"""The registry's gRPC service: provider registration and the root-change stream."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from fedspace.rpc import spaces_pb2 as pb
from fedspace.rpc.spaces_pb2_grpc import RegistryServicer
from registry.providers import Providers
from registry.service import RegistryService

log = logging.getLogger("fedspace.registry")


class RegistryRpc(RegistryServicer):
    def __init__(self, service: RegistryService, providers: Providers, registry_id: str) -> None:
        self.service = service
        self.providers = providers
        self.registry_id = registry_id

    async def RegisterProvider(
        self, request: pb.ProviderInfo, context: grpc.aio.ServicerContext
    ) -> pb.RegisterReply:
        if not request.provider_id or not request.grpc_address or not request.dav_url:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "provider_id, grpc_address and dav_url are required")
        await self.providers.register(request.provider_id, request.grpc_address, request.dav_url)
        log.info("provider registered", extra={"provider": request.provider_id,
                                               "grpc": request.grpc_address})
        return pb.RegisterReply(registry_id=self.registry_id)

    async def PublishChanges(
        self, request_iterator: AsyncIterator[pb.SpaceStates], context: grpc.aio.ServicerContext
    ) -> pb.PublishReply:
        """Each message is applied in one transaction before the next is read."""
        accepted = 0
        async for message in request_iterator:
            by_provider: dict[str, list[pb.SpaceState]] = {}
            for state in message.states:
                by_provider.setdefault(state.provider_id, []).append(state)
            for provider_id, states in by_provider.items():
                await self.service.apply_states(provider_id, states)
            accepted += len(message.states)
        return pb.PublishReply(accepted=accepted)
