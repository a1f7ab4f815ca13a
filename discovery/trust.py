"""Trusted foreign issuers: whose tokens this resource server accepts, and their users' domain.

Two sources are merged: the configuration (``[discovery] trusted_issuers``, fixed for the
life of the process) and the ``trusted_issuers`` table, which ``fedspace trust issuer …``
changes at runtime, possibly from another process. The verifier asks on every request, so
the answer comes from memory; the table is re-read once ``ttl`` seconds have passed. A change
made through this store applies at once in its process, one made elsewhere within ``ttl``.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from discovery.models import trusted_issuers
from fedspace.db import Database
from fedspace.settings import Settings
from fedspace.sqltypes import now_ms

ISSUER_MAX_LENGTH = 512
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


class TrustError(ValueError):
    """A trust change was refused; the message says why."""


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    issuer: str
    domain: str
    # From the configuration file/environment: cannot be removed at runtime.
    configured: bool = False
    added_ms: int | None = None


def check_issuer(issuer: str, *, allow_http: bool) -> str:
    """The issuer URL if acceptable; tokens must carry exactly this string as ``iss``."""
    if len(issuer) > ISSUER_MAX_LENGTH:
        raise TrustError(f"issuer URL longer than {ISSUER_MAX_LENGTH} characters")
    if issuer != issuer.strip() or any(c.isspace() for c in issuer):
        raise TrustError(f"issuer {issuer!r} contains whitespace")
    parts = urlsplit(issuer)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        hint = "" if allow_http else " (plain http needs outbound.allow_http)"
        raise TrustError(f"issuer {issuer!r} must be an https URL{hint}")
    if not parts.hostname:
        raise TrustError(f"issuer {issuer!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise TrustError(f"issuer {issuer!r} must not contain credentials")
    if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        raise TrustError(f"issuer {issuer!r} must not have a query or fragment")
    return issuer


def check_domain(domain: str) -> str:
    """The (lower-cased) domain if it is a valid DNS name."""
    normalized = domain.lower()
    if not DOMAIN.match(normalized):
        raise TrustError(f"invalid domain {domain!r}: expected a DNS name such as paris.test")
    return normalized


class TrustStore:
    def __init__(self, db: Database, settings: Settings, ttl: float = 3.0) -> None:
        self.db = db
        self.settings = settings
        self.ttl = ttl
        self._issuers: dict[str, TrustedIssuer] = {}
        self._fresh_until = 0.0
        self._lock = asyncio.Lock()

    def _configured(self) -> dict[str, TrustedIssuer]:
        return {t.issuer: TrustedIssuer(t.issuer, t.domain.lower(), configured=True)
                for t in self.settings.discovery.trusted_issuers}

    async def _reload(self) -> None:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(trusted_issuers))).all()
        merged = {r.issuer: TrustedIssuer(r.issuer, r.domain, added_ms=r.added_ms) for r in rows}
        merged.update(self._configured())  # the configuration wins over the table
        self._issuers = merged
        self._fresh_until = time.monotonic() + self.ttl

    async def _current(self) -> dict[str, TrustedIssuer]:
        if time.monotonic() >= self._fresh_until:
            async with self._lock:  # one re-read, however many requests are waiting
                if time.monotonic() >= self._fresh_until:
                    await self._reload()
        return self._issuers

    async def get(self, issuer: str) -> TrustedIssuer | None:
        """The trusted issuer with exactly this URL, or None."""
        return (await self._current()).get(issuer)

    async def list(self) -> list[TrustedIssuer]:
        return sorted((await self._current()).values(), key=lambda t: t.issuer)

    async def add(self, issuer: str, domain: str) -> TrustedIssuer:
        issuer = check_issuer(issuer, allow_http=self.settings.outbound.allow_http)
        domain = check_domain(domain)
        if issuer == self.settings.discovery.issuer:
            raise TrustError(f"{issuer} is this instance's own issuer; it is always trusted")
        if issuer in self._configured():
            raise TrustError(f"issuer {issuer} is already trusted by the configuration")
        entry = TrustedIssuer(issuer, domain, added_ms=now_ms())
        try:
            async with self.db.write() as conn:
                await conn.execute(insert(trusted_issuers).values(
                    issuer=issuer, domain=domain, added_ms=entry.added_ms))
        except IntegrityError:
            raise TrustError(f"issuer {issuer} is already trusted") from None
        await self._reload()
        return entry

    async def remove(self, issuer: str) -> None:
        if issuer in self._configured():
            raise TrustError(f"issuer {issuer} is trusted by the configuration; remove it there")
        async with self.db.write() as conn:
            result = await conn.execute(
                delete(trusted_issuers).where(trusted_issuers.c.issuer == issuer))
        if result.rowcount == 0:
            raise TrustError(f"issuer {issuer} is not trusted")
        await self._reload()
