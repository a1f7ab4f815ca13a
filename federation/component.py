"""The federation service as a runtime component (see fedspace.runtime).

It owns what every OCM endpoint shares: our signing keys, the peer policy, the resolver
of peers' keys with one replay cache, the advertised ``Features``, and the outbox worker
that signs every message it delivers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import grpc
import httpx
import orjson
from fastapi import APIRouter
from prometheus_client import Gauge
from sqlalchemy import func, select

from fedspace.metrics import Metrics
from fedspace.runtime import Context

from . import httpsig, tokens
from .delivery import Delivery, post_json
from .keys import KeyStore
from .models import outbox
from .ocm import Features
from .outbox import Message
from .outgoing import CHANGE_CAPABILITY, OutgoingShares, unseal
from .peers import PeerPolicy
from .remote_access import RemoteAccess
from .resolver import SenderKeys
from .sealing import Sealer
from .tokens import ShareBearer, ShareTokens

GAUGED_STATES = ("queued", "delivering", "failed")  # delivered rows only ever grow


class FederationComponent:
    name = "federation"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.keys = KeyStore.in_data_dir(ctx.settings.data_dir, httpsig.DEFAULT_FRESHNESS)
        self.peers = PeerPolicy(ctx.db, ctx.settings)
        self.sender_keys = SenderKeys(ctx.outbound)
        self.replay = httpsig.ReplayCache()
        criteria = set() if ctx.settings.federation.accept_unsigned_from else {"must-use-http-sig"}
        if ctx.settings.federation.allowlist_only:
            criteria.add("allowlist")
        self.features = Features(capabilities={"http-sig"}, criteria=criteria)
        self._post_signed = post_json(ctx.outbound, sign=self.sign)
        self.delivery = Delivery(ctx.db, ctx.settings.federation, self.deliver)
        self.sealer = Sealer.in_data_dir(ctx.settings.data_dir)
        self.outgoing: OutgoingShares | None = None  # with a registry in this process
        self._outbox_gauge = Gauge("fedspace_outbox_messages", "Outbox messages by state",
                                   ["state"], registry=ctx.metrics.registry)
        # Access to shared spaces: share bearers here (first: the OIDC verifier refuses
        # tokens it cannot parse), and the home gateway's way to remote spaces.
        self.share_tokens = ShareTokens.for_federation(self)
        ctx.auth.verifiers.insert(0, ShareBearer(self.share_tokens))
        self.features.capabilities.add("exchange-token")
        self.remote_access = RemoteAccess(self)

    def sign(self, method: str, url: str, headers: dict[str, str],
             body: bytes) -> Mapping[str, str]:
        """``headers`` plus an OCM signature by our current key (a ``delivery.Sign``)."""
        key = self.keys.signing_key()
        keyid = httpsig.make_keyid(self.settings.domain, key.kid)
        return {**headers, **httpsig.sign(method, url, headers, body, key.private_key, keyid)}

    async def post(self, url: str, payload: dict[str, Any]) -> httpx.Response:
        """A signed JSON POST to a peer, answered now (not queued: a user waits for it)."""
        body = orjson.dumps(payload)
        headers = self.sign("POST", url, {"Content-Type": "application/json",
                                          "Accept": "application/json"}, body)
        return await self.ctx.outbound.request("POST", url, headers=dict(headers), content=body)

    async def deliver(self, message: Message) -> httpx.Response:
        """Send an outbox message: ``ocm:/<path>`` is resolved against the peer's endPoint
        now, sealed secrets are unsealed now. A change notification (our extension) to a
        peer that does not advertise it is recorded as delivered without a request."""
        url, payload = message.url, message.payload
        if url.startswith("ocm:"):
            _, document = await self.sender_keys.discover(message.peer)
            if (message.kind == "change"
                    and CHANGE_CAPABILITY not in (document.get("capabilities") or [])):
                return httpx.Response(204, text="the peer takes no change notifications")
            url = await self.endpoint_of(message.peer) + url.removeprefix("ocm:")
        return await self._post_signed(replace(message, url=url,
                                               payload=unseal(payload, self.sealer)))

    async def endpoint_of(self, domain: str) -> str:
        """A peer's OCM ``endPoint`` from its discovery document (cached with its keys);
        OutboundError or ValueError when it has none."""
        _, document = await self.sender_keys.discover(domain)
        endpoint = document.get("endPoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            raise ValueError(f"the OCM discovery of {domain} names no endPoint")
        return endpoint.rstrip("/")

    def routers(self) -> Sequence[APIRouter]:
        """Discovery always; receiving shares when the registry and the user directory run
        in this process (the remote spaces are theirs), advertised only then."""
        from . import api, outgoing, shares

        routers = [api.router(self), tokens.router(self, self.share_tokens)]
        registry = self.ctx.components.get("registry")
        discovery = self.ctx.components.get("discovery")
        if registry is not None:
            self.outgoing = outgoing.OutgoingShares(self, registry.service)
            registry.service.outgoing = self.outgoing
            routers.append(outgoing.router(self.outgoing, self.ctx))
        if registry is not None and discovery is not None:
            receiver = shares.Receiver(self, registry.service, discovery.directory,
                                       self.outgoing)
            registry.service.remote_listeners.append(receiver)
            self.features.capabilities.update({"notifications", CHANGE_CAPABILITY})
            self.features.receive["webdav"] = {"uri": "absolute"}
            routers.append(shares.router(receiver))
            from . import invites_api  # invites and contacts need the user directory

            self.features.capabilities.add("invites")
            routers += invites_api.routers(self, discovery.directory)
        return routers

    def add_to_grpc(self, server: grpc.aio.Server) -> None:
        pass

    async def start(self) -> None:
        self.keys.ensure()  # published before anything is signed with it
        # Here, not in __init__: public_url is final once the listener is bound.
        self.features.token_endpoint = f"{self.settings.public_url}{tokens.TOKEN_PATH}"
        await self.delivery.start()

    async def stop(self) -> None:
        await self.delivery.stop()

    async def ready(self) -> str | None:
        return None

    async def collect(self, metrics: Metrics) -> None:
        query = (select(outbox.c.state, func.count()).where(outbox.c.state.in_(GAUGED_STATES))
                 .group_by(outbox.c.state))
        async with self.ctx.db.read() as conn:
            counts = {state: n for state, n in (await conn.execute(query)).all()}
        for state in GAUGED_STATES:
            self._outbox_gauge.labels(state).set(counts.get(state, 0))
