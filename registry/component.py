"""The registry service as a runtime component (see fedspace.runtime)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from fastapi import APIRouter

from fedspace.auth import Principal
from fedspace.metrics import Metrics
from fedspace.problem import Problem
from fedspace.rpc.spaces_pb2_grpc import add_RegistryServicer_to_server
from fedspace.runtime import Context
from registry.events import EventBus
from registry.grpc import RegistryRpc
from registry.providers import NoProvider, Providers
from registry.service import RegistryService


class RegistryComponent:
    name = "registry"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.bus = EventBus()
        self.providers = Providers(ctx.db, ctx.tokens)
        self.service = RegistryService(ctx.db, ctx.settings.registry, self.providers, self.bus)
        ctx.auth.on_first_seen(self._first_seen)

    async def _first_seen(self, principal: Principal) -> None:
        try:
            await self.service.ensure_personal_space(principal)
        except (NoProvider, grpc.aio.AioRpcError) as exc:
            # Not remembered as seen: the next request tries again.
            why = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            raise Problem(503, f"cannot create your personal space yet: {why}") from None

    def routers(self) -> Sequence[APIRouter]:
        from registry.api import router

        return (router(self.service, self.ctx),)

    def add_to_grpc(self, server: grpc.aio.Server) -> None:
        add_RegistryServicer_to_server(
            RegistryRpc(self.service, self.providers, self.ctx.settings.domain), server)

    async def start(self) -> None:
        await self.service.init()
        await self.providers.load()

    async def stop(self) -> None:
        await self.providers.close()

    async def ready(self) -> str | None:
        return None

    async def collect(self, metrics: Metrics) -> None:
        for kind, count in (await self.service.count_by_type()).items():
            metrics.spaces.labels(kind).set(count)
