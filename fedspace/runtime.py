"""The shape every service shares, and the context the runtime hands to each.

Like oCIS, each service package exposes one ``create(ctx)`` factory returning a
``Component``: its HTTP routers, its gRPC servicers, and start/stop hooks. The runtime
(``fedspace.app``) composes whichever components ``--only`` selects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from fastapi import APIRouter

from fedspace.auth import Authenticator
from fedspace.db import Database
from fedspace.internal import InternalTokens
from fedspace.metrics import Metrics
from fedspace.outbound import Outbound
from fedspace.settings import Settings

SERVICES = ("discovery", "registry", "provider", "federation")


@dataclass
class Context:
    settings: Settings
    db: Database
    tokens: InternalTokens
    metrics: Metrics
    outbound: Outbound  # the one guarded client for every outbound fetch
    auth: Authenticator = field(default_factory=Authenticator)
    # Address of this process's gRPC server once it listens (host:port).
    grpc_address: str = ""
    # Components started in this process, by name, for in-process shortcuts.
    components: dict[str, Any] = field(default_factory=dict)


class Component(Protocol):
    name: str

    def routers(self) -> Sequence[APIRouter]: ...

    def add_to_grpc(self, server: grpc.aio.Server) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ready(self) -> str | None:
        """None when ready, else why not (for /readyz)."""

    async def collect(self, metrics: Metrics) -> None:
        """Refresh this service's gauges just before /metrics is scraped."""
