"""The provider service as a runtime component (see fedspace.runtime)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import grpc
from fastapi import APIRouter

from fedspace.metrics import Metrics
from fedspace.rpc.spaces_pb2_grpc import add_ProviderServicer_to_server
from fedspace.runtime import Context
from provider.changes import ChangeFeed
from provider.grpc import ProviderRpc
from provider.registration import RegistryLink
from provider.service import ProviderService
from provider.storage import PosixDriver
from provider.tree import Tree
from provider.webdav import WebDav

REGISTER_WAIT_SECONDS = 10


class ProviderComponent:
    name = "provider"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        settings = ctx.settings.provider
        assert settings.storage_root is not None  # derived in Settings
        self.id = settings.id
        self.feed = ChangeFeed()
        self.storage = PosixDriver(settings.storage_root)
        self.service = ProviderService(settings.id, ctx.db, self.storage, self.feed)
        self.tree = Tree(ctx.db, self.storage, self.feed, settings.id)
        self.webdav = WebDav(self.tree, settings.max_upload_size)
        self.link: RegistryLink | None = None

    def routers(self) -> Sequence[APIRouter]:
        return ()  # the data plane is mounted by fedspace.gateway

    def add_to_grpc(self, server: grpc.aio.Server) -> None:
        add_ProviderServicer_to_server(ProviderRpc(self.service), server)

    async def start(self) -> None:
        await self.storage.sweep_temp()
        settings = self.ctx.settings
        registry = settings.provider.registry_address
        if registry is None:
            if "registry" not in self.ctx.components:
                raise RuntimeError(
                    "provider.registry_address is required when the registry runs elsewhere")
            registry = self.ctx.grpc_address
        self.link = RegistryLink(
            self.service, self.feed, self.ctx.tokens, registry, self.ctx.grpc_address,
            settings.provider.dav_url or settings.public_url)
        self.link.start()
        # If the registry is slow, the link keeps retrying; /readyz says why we are not ready.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.link.registered.wait(), REGISTER_WAIT_SECONDS)

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.stop()

    async def ready(self) -> str | None:
        if self.link is None or not self.link.registered.is_set():
            return "not registered with the registry"
        return None

    async def collect(self, metrics: Metrics) -> None:
        _, used = await self.service.usage()
        metrics.bytes_stored.labels(self.id).set(used)
