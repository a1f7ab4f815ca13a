"""Public keys of signing peers: OCM discovery, then the peer's JWK Set, cached.

``SenderKeys`` is the ``httpsig.KeyResolver`` for inbound OCM requests. For a keyid
``<domain>#<kid>`` it discovers ``https://<domain>/.well-known/ocm`` (then the 1.1 path
``/ocm-provider``; when the domain cannot be reached at all, ``cloud.<domain>``, our rig
convention, as ``discovery.client`` does for WebFinger), fetches the JWK Set at the
document's ``jwksUri`` (else ``/.well-known/jwks.json`` on the ``endPoint``'s host, where
the draft puts it) and picks the Ed25519 key whose ``kid`` is ``<kid>`` — or the whole
keyid, as the draft's example JWK Set spells it. Plain http only in dev mode
(``outbound.allow_http``). Every fetch goes through the guarded ``Outbound`` client.

A peer's keys are cached for ``cache_seconds`` (below the grace period with which
``federation.keys`` publishes a key before it signs, so rotations are picked up without a
miss). A ``refresh`` — the verifier met an unknown kid — re-fetches, but at most once
per ``min_refresh_seconds`` per domain, and failures are remembered as long: forged
keyids cannot make us hammer a peer, or anyone else.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedspace.outbound import Outbound, OutboundError

from .httpsig import SignatureError, signer_domain
from .ocm import JWKS_PATH

DISCOVERY_PATHS = ("/.well-known/ocm", "/ocm-provider")
JWKS_TYPES = ("application/json", "application/jwk-set+json")
DEFAULT_CACHE_SECONDS = 300.0
MIN_REFRESH_SECONDS = 10.0
_UNREACHABLE = frozenset({"dns", "connect"})
_NOT_OCM = frozenset({"status", "content-type", "json"})  # try the 1.1 path instead


@dataclass(frozen=True, slots=True)
class PeerKeys:
    """One fetch of a peer's keys: by kid, or why there are none."""

    keys: dict[str, Ed25519PublicKey]
    fetched: float  # time.monotonic()
    error: str | None = None


def _ed25519(jwk: Any) -> tuple[str, Ed25519PublicKey] | None:
    """``(kid, key)`` for an Ed25519 signing JWK; None for any other member of the set."""
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
        return None
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or jwk.get("use", "sig") != "sig":
        return None
    x = jwk.get("x")
    if not isinstance(x, str):
        return None
    try:
        raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        return jwk["kid"], Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        return None


class SenderKeys:
    def __init__(self, outbound: Outbound, *, cache_seconds: float = DEFAULT_CACHE_SECONDS,
                 min_refresh_seconds: float = MIN_REFRESH_SECONDS, size: int = 1024) -> None:
        self.outbound = outbound
        self.cache_seconds = cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.size = size
        self._peers: OrderedDict[str, PeerKeys] = OrderedDict()
        self._fetching: dict[str, asyncio.Task[PeerKeys]] = {}
        self._documents: dict[str, tuple[float, str, dict[str, Any]]] = {}

    async def __call__(self, keyid: str, refresh: bool) -> Ed25519PublicKey | None:
        """The key ``keyid`` names; SignatureError("unknown-key") when the peer's keys
        cannot be fetched (the detail says why)."""
        domain = signer_domain(keyid)
        peer = await self.keys(domain, refresh=refresh)
        if peer.error is not None:
            raise SignatureError("unknown-key", f"no keys for {domain}: {peer.error}")
        return peer.keys.get(keyid.rpartition("#")[2]) or peer.keys.get(keyid)

    async def keys(self, domain: str, *, refresh: bool = False) -> PeerKeys:
        """The peer's keys, from the cache unless expired or (throttled) ``refresh``."""
        cached = self._peers.get(domain)
        if cached is not None:
            age = time.monotonic() - cached.fetched
            lifetime = self.min_refresh_seconds if cached.error else self.cache_seconds
            if age < lifetime and not (refresh and age >= self.min_refresh_seconds):
                return cached
        task = self._fetching.get(domain)
        if task is None:  # concurrent requests from one peer share one fetch
            task = asyncio.create_task(self._fetch(domain))
            self._fetching[domain] = task
            task.add_done_callback(lambda _: self._fetching.pop(domain, None))
        return await asyncio.shield(task)

    async def _fetch(self, domain: str) -> PeerKeys:
        self._documents.pop(domain, None)  # a key fetch re-discovers: jwksUri may move
        try:
            jwks_uri = await self.jwks_uri(domain)
            document = await self.outbound.get_json(jwks_uri, accept=JWKS_TYPES)
            members = document.get("keys") if isinstance(document, dict) else None
            if not isinstance(members, list):
                raise ValueError(f"{jwks_uri} is not a JWK Set")
            peer = PeerKeys(dict(k for k in map(_ed25519, members) if k), time.monotonic())
        except (OutboundError, ValueError) as exc:
            peer = PeerKeys({}, time.monotonic(), str(exc))
        self._peers[domain] = peer
        self._peers.move_to_end(domain)
        while len(self._peers) > self.size:
            self._peers.popitem(last=False)
        return peer

    async def jwks_uri(self, domain: str) -> str:
        """Where ``domain`` publishes its JWK Set, from its OCM discovery document."""
        origin, document = await self.discover(domain)
        if isinstance(document.get("jwksUri"), str):
            return str(document["jwksUri"])
        end_point = urlsplit(str(document.get("endPoint") or origin))
        return f"{end_point.scheme}://{end_point.netloc}{JWKS_PATH}"

    async def discover(self, domain: str) -> tuple[str, dict[str, Any]]:
        """``domain``'s enabled OCM discovery document and the origin that served it
        (OutboundError or ValueError when there is none); cached like the keys."""
        cached = self._documents.get(domain)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1], cached[2]
        origin, document = await self._discover_domain(domain)
        if len(self._documents) >= self.size:
            self._documents.clear()
        self._documents[domain] = (time.monotonic(), origin, document)
        return origin, document

    async def _discover_domain(self, domain: str) -> tuple[str, dict[str, Any]]:
        scheme = "http" if self.outbound.settings.allow_http else "https"
        hosts = [domain] if domain.startswith("cloud.") else [domain, f"cloud.{domain}"]
        for host in hosts:
            try:
                document = await self._discover(f"{scheme}://{host}")
            except OutboundError as exc:
                if exc.kind in _UNREACHABLE and host != hosts[-1]:
                    continue
                raise
            if document.get("enabled") is False:
                raise ValueError(f"OCM is disabled at {host}")
            return f"{scheme}://{host}", document
        raise AssertionError("unreachable")

    async def _discover(self, origin: str) -> dict[str, Any]:
        """The discovery document at ``origin``: the well-known path, else the 1.1 one."""
        for path in DISCOVERY_PATHS:
            try:
                document = await self.outbound.get_json(f"{origin}{path}")
            except OutboundError as exc:
                if exc.kind in _NOT_OCM and path != DISCOVERY_PATHS[-1]:
                    continue
                raise
            if not isinstance(document, dict):
                raise ValueError(f"{origin}{path} is not a JSON object")
            return document
        raise AssertionError("unreachable")
