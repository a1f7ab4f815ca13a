"""Discovery of a foreign account: WebFinger → issuer + registry → OIDC configuration.

Every fetch goes through the instance's guarded ``Outbound`` client. Results are cached
for ``cache_seconds``: WebFinger per address, OIDC documents per issuer, JWK Sets per URI
(the token verifier calls ``jwks(…, refresh=True)`` when it meets an unknown key id).

WebFinger is asked at ``https://{domain}`` first; when that host cannot be reached at all
(DNS or connect failure, not an HTTP error) at ``https://cloud.{domain}``, where our
convention serves it. In dev mode (``outbound.allow_http``) both are asked over plain http.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

from discovery.webfinger import INSTANCE_REL, ISSUER_REL, JRD, MalformedResource, parse_account
from fedspace.outbound import Outbound, OutboundError

Kind = Literal[
    "address",                  # not user@domain
    "no-webfinger",             # WebFinger unreachable or not 200
    "content-type",             # a document with the wrong media type
    "invalid-document",         # not JSON, not an object, or required members missing
    "missing-link",             # WebFinger lacks the issuer or server-instance link
    "no-openid-configuration",  # the issuer's discovery document unreachable or not 200
    "issuer-mismatch",          # the discovery document names another issuer
    "no-jwks",                  # the JWK Set unreachable or not 200
    "tls",
    "timeout",
    "refused",                  # the outbound guard refused: scheme, address, redirect, size
]
REQUIRED_OIDC = ("jwks_uri", "authorization_endpoint", "token_endpoint")
_UNREACHABLE = frozenset({"dns", "connect"})
_PASS_THROUGH: dict[str, Kind] = {
    "tls": "tls", "timeout": "timeout", "content-type": "content-type",
    "json": "invalid-document", "scheme": "refused", "address": "refused",
    "redirect": "refused", "too-large": "refused",
}


class DiscoveryError(Exception):
    """Discovery failed at one step; ``kind`` says which, the message says why."""

    def __init__(self, kind: Kind, message: str, *, steps: list[str] | None = None) -> None:
        super().__init__(message)
        self.kind: Kind = kind
        self.steps = steps or []


def _failure(
    exc: OutboundError, unavailable: Kind, what: str, steps: list[str] | None = None,
) -> DiscoveryError:
    """An outbound failure as a discovery failure of step ``what``."""
    kind = _PASS_THROUGH.get(exc.kind, unavailable)
    return DiscoveryError(kind, f"{what}: {exc}", steps=steps)


@dataclass
class Discovery:
    address: str
    webfinger_url: str
    issuer: str
    registry: str
    openid_configuration: dict[str, Any]
    steps: list[str] = field(default_factory=list)


T = TypeVar("T")


class TTLCache(Generic[T]):
    """A small bounded map whose entries expire; peers choose keys, so it must not grow."""

    def __init__(self, seconds: float, size: int = 1024) -> None:
        self.seconds = seconds
        self.size = size
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def get(self, key: str) -> T | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: str, value: T) -> None:
        if self.seconds <= 0:
            return
        self._entries[key] = (time.monotonic() + self.seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


@dataclass(frozen=True)
class _Finger:
    url: str
    issuer: str
    registry: str
    steps: tuple[str, ...]


class DiscoveryClient:
    def __init__(self, outbound: Outbound, cache_seconds: float) -> None:
        self.outbound = outbound
        self._fingers: TTLCache[_Finger] = TTLCache(cache_seconds)
        self._configurations: TTLCache[dict[str, Any]] = TTLCache(cache_seconds)
        self._jwks: TTLCache[dict[str, Any]] = TTLCache(cache_seconds)

    async def discover(self, address: str) -> Discovery:
        """Find the IdP and the registry of ``user@domain`` (also ``acct:user@domain``)."""
        try:
            account = parse_account(address.strip())
        except MalformedResource as exc:
            raise DiscoveryError("address", str(exc)) from None
        finger = self._fingers.get(account.acct)
        steps = [*finger.steps, "(WebFinger answer from cache)"] if finger else []
        if finger is None:
            finger = await self._webfinger(account.acct, account.domain, steps)
            self._fingers.put(account.acct, finger)
        try:
            configuration = await self.openid_configuration(finger.issuer)
        except DiscoveryError as exc:
            exc.steps = steps
            raise
        steps.append(f"OpenID configuration of {finger.issuer}: issuer matches; "
                     f"jwks_uri {configuration['jwks_uri']}")
        return Discovery(str(account), finger.url, finger.issuer, finger.registry,
                         configuration, steps)

    async def _webfinger(self, resource: str, domain: str, steps: list[str]) -> _Finger:
        scheme = "http" if self.outbound.settings.allow_http else "https"
        hosts = [domain] if domain.startswith("cloud.") else [domain, f"cloud.{domain}"]
        query = f"?resource={quote(resource, safe=':@')}"
        document: Any = None
        for host in hosts:
            url = f"{scheme}://{host}/.well-known/webfinger{query}"
            try:
                document = await self.outbound.get_json(url, accept=(JRD, "application/json"))
            except OutboundError as exc:
                if exc.kind in _UNREACHABLE and host != hosts[-1]:
                    steps.append(f"WebFinger at {host} unreachable ({exc.cause}); trying "
                                 f"cloud.{domain}, where WebFinger is served by convention")
                    continue
                raise _failure(exc, "no-webfinger", f"WebFinger for {resource}", steps) from None
            steps.append(f"WebFinger {url} answered")
            break
        links = document.get("links") if isinstance(document, dict) else None
        if not isinstance(links, list):
            raise DiscoveryError("invalid-document", f"WebFinger {url}: no links array",
                                 steps=steps)
        found: dict[str, str] = {}
        for link in links:
            if isinstance(link, dict) and isinstance(link.get("href"), str):
                found.setdefault(str(link.get("rel")), link["href"])
        for rel, name in ((ISSUER_REL, "issuer"), (INSTANCE_REL, "server-instance")):
            if rel not in found:
                raise DiscoveryError("missing-link", f"WebFinger {url}: no {name} link ({rel})",
                                     steps=steps)
            steps.append(f"{name} link: {found[rel]}")
        return _Finger(url, found[ISSUER_REL], found[INSTANCE_REL], tuple(steps))

    async def openid_configuration(self, issuer: str) -> dict[str, Any]:
        """The issuer's OIDC discovery document, checked (issuer, required endpoints)."""
        cached = self._configurations.get(issuer)
        if cached is not None:
            return cached
        url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            document = await self.outbound.get_json(url)
        except OutboundError as exc:
            raise _failure(exc, "no-openid-configuration", "OpenID configuration") from None
        if not isinstance(document, dict):
            raise DiscoveryError("invalid-document", f"{url}: not a JSON object")
        if document.get("issuer") != issuer:
            raise DiscoveryError(
                "issuer-mismatch",
                f"{url} names issuer {document.get('issuer')!r}, expected {issuer!r}")
        missing = [name for name in REQUIRED_OIDC if not isinstance(document.get(name), str)]
        if missing:
            raise DiscoveryError("invalid-document", f"{url}: missing {', '.join(missing)}")
        self._configurations.put(issuer, document)
        return document

    async def jwks(self, jwks_uri: str, *, refresh: bool = False) -> dict[str, Any]:
        """The JWK Set at ``jwks_uri``; ``refresh`` bypasses (and renews) the cache."""
        cached = None if refresh else self._jwks.get(jwks_uri)
        if cached is not None:
            return cached
        try:
            document = await self.outbound.get_json(
                jwks_uri, accept=("application/json", "application/jwk-set+json"))
        except OutboundError as exc:
            raise _failure(exc, "no-jwks", "JWK Set") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise DiscoveryError("invalid-document", f"{jwks_uri}: not a JWK Set")
        self._jwks.put(jwks_uri, document)
        return document

