"""The discovery service as a runtime component (see fedspace.runtime)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from fastapi import APIRouter

from discovery.api import app_password_router, web_login_router, webfinger_router
from discovery.basic import AppPasswordVerifier
from discovery.client import DiscoveryClient
from discovery.guests import Guests
from discovery.idp import create_idp
from discovery.idp.sessions import BrowserSecrets
from discovery.service import Directory
from discovery.sessions import SessionVerifier, WebSessions
from discovery.tokens import BearerVerifier, DiscoveredKeys, LocalKeys
from discovery.trust import TrustStore
from discovery.weblogin import BrowserSeal, WebLogin
from fedspace.metrics import Metrics
from fedspace.runtime import Context


class DiscoveryComponent:
    name = "discovery"

    def __init__(self, ctx: Context) -> None:
        self.settings = ctx.settings
        self.directory = Directory(ctx.db)
        self.idp = create_idp(ctx, self.directory) if ctx.settings.discovery.idp_enabled else None
        self.auth = ctx.auth
        self.basic = AppPasswordVerifier(
            self.directory, ctx.settings.discovery.app_password_cache_seconds)
        ctx.auth.verifiers.append(self.basic)
        self.trust = TrustStore(ctx.db, ctx.settings)
        self.guests = Guests(ctx.db)
        client = DiscoveryClient(ctx.outbound, ctx.settings.discovery.discovery_cache_seconds)
        keys = DiscoveredKeys(client)
        own_keys = LocalKeys(self.idp.keys) if self.idp else None
        self.bearer = BearerVerifier(ctx.settings, self.trust, self.directory, self.guests, keys,
                                     own_keys)
        ctx.auth.verifiers.append(self.bearer)
        self.sessions = WebSessions(ctx.db, self.directory, self.guests, self.trust)
        ctx.auth.verifiers.append(SessionVerifier(self.sessions, ctx.settings))
        assert ctx.settings.discovery.keys_dir is not None  # derived from data_dir
        seal = BrowserSeal(BrowserSecrets(ctx.settings.discovery.keys_dir))
        self.weblogin = WebLogin(
            ctx.settings, discovery=client, trust=self.trust, directory=self.directory,
            guests=self.guests, outbound=ctx.outbound, keys=keys, own_keys=own_keys,
            own_idp=self.idp.app if self.idp else None, seal=seal)

    def routers(self) -> Sequence[APIRouter]:
        return (webfinger_router(self.settings),
                app_password_router(self.directory, self.auth, self.basic),
                web_login_router(self.weblogin, self.sessions, self.settings))

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
