"""The discovery service as a runtime component (see fedspace.runtime)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from fastapi import APIRouter

from discovery.basic import AppPasswordVerifier
from discovery.service import Directory
from fedspace.metrics import Metrics
from fedspace.runtime import Context


class DiscoveryComponent:
    name = "discovery"

    def __init__(self, ctx: Context) -> None:
        self.directory = Directory(ctx.db)
        ctx.auth.verifiers.append(
            AppPasswordVerifier(self.directory, ctx.settings.discovery.app_password_cache_seconds)
        )

    def routers(self) -> Sequence[APIRouter]:
        return ()

    def add_to_grpc(self, server: grpc.aio.Server) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def ready(self) -> str | None:
        return None

    async def collect(self, metrics: Metrics) -> None:
        pass
