"""Web sessions at cloud.D: what a browser holds after logging in through the web pages.

The cookie value is 256 random bits; only its SHA-256 is stored (``web_sessions``), so a
copy of the database cannot be replayed as cookies. Sessions are server-side rather than
signed cookies so that logout (and a disabled account) ends them everywhere.

Cookies are sent by browsers on their own, so a cookie-authenticated request that changes
something must prove it comes from our own pages: its ``Origin`` (or, when a browser omits
it, ``Referer``) must be this instance's public origin, else 403 — SameSite=Lax already
keeps the cookie off cross-site POSTs, this also covers same-site siblings and old browsers.
Requests with an ``Authorization`` header never reach this verifier's check: they are
verified by the Basic/Bearer verifiers, which browsers do not attach on their own.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, select
from starlette.requests import HTTPConnection

from discovery.guests import Guests
from discovery.models import web_sessions
from discovery.service import Directory
from discovery.trust import TrustStore
from discovery.verified import VerifiedCache, digest
from fedspace.auth import Principal
from fedspace.db import Database
from fedspace.problem import Problem
from fedspace.settings import Settings
from fedspace.sqltypes import now_ms

SESSION_COOKIE = "fedspace_session"
SESSION_TTL = 8 * 3600  # seconds; absolute, like the IdP's own session
CACHE_SECONDS = 10.0  # a session ended in another process stops working within this
# Methods that change nothing (RFC 9110 §9.2.1, RFC 4918 PROPFIND, RFC 3253 REPORT).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PROPFIND", "REPORT"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, normalized (lower case, default port dropped)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    shown = "" if port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{port}"
    return f"{parts.scheme}://{host}{shown}"


def same_origin(conn: HTTPConnection, public_url: str) -> bool:
    """Whether the request says it comes from a page of ``public_url`` (Origin/Referer)."""
    claimed = conn.headers.get("origin") or conn.headers.get("referer")
    return claimed is not None and origin_of(claimed) == origin_of(public_url)


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    issuer: str | None  # a guest's issuer, re-checked for trust on every hit


class WebSessions:
    def __init__(self, db: Database, directory: Directory, guests: Guests,
                 trust: TrustStore) -> None:
        self.db = db
        self.directory = directory
        self.guests = guests
        self.trust = trust
        self._cache: VerifiedCache[_Cached | None] = VerifiedCache()

    async def create(self, principal: Principal) -> str:
        """A new session for ``principal``; returns the cookie value (shown only here)."""
        value = secrets.token_urlsafe(32)
        now = now_ms()
        async with self.db.write() as conn:
            await conn.execute(delete(web_sessions).where(web_sessions.c.expires_ms < now))
            await conn.execute(insert(web_sessions).values(
                id_hash=digest(value), principal_id=principal.id, kind=principal.kind,
                created_ms=now, expires_ms=now + SESSION_TTL * 1000))
        return value

    async def principal(self, value: str) -> Principal | None:
        """Who the session belongs to, or None if it is unknown, expired or its principal
        is gone (disabled user, guest of an issuer no longer trusted)."""
        key = digest(value)
        hit = self._cache.get(key)
        if hit is not None:
            if hit.issuer is None or await self.trust.get(hit.issuer) is not None:
                return hit.principal
            self._cache.drop(key)
        found = await self._cache.load(key, lambda: self._lookup(key))
        return found.principal if found is not None else None

    async def _lookup(self, key: str) -> tuple[_Cached | None, float]:
        async with self.db.read() as conn:
            row = (await conn.execute(select(web_sessions).where(
                web_sessions.c.id_hash == key))).first()
        if row is None or row.expires_ms <= now_ms():
            return None, 0
        issuer = None
        if row.kind == "user":
            principal = await self.directory.principal(row.principal_id)
        else:
            guest = await self.guests.get(row.principal_id)
            if guest is None or await self.trust.get(guest.issuer) is None:
                return None, 0
            principal, issuer = guest.principal(), guest.issuer
        if principal is None:
            return None, 0
        return _Cached(principal, issuer), min(CACHE_SECONDS, (row.expires_ms - now_ms()) / 1000)

    async def delete(self, value: str) -> None:
        key = digest(value)
        self._cache.drop(key)
        async with self.db.write() as conn:
            await conn.execute(delete(web_sessions).where(web_sessions.c.id_hash == key))


class SessionVerifier:
    """The ``fedspace_session`` cookie as credentials (see the module docstring on CSRF)."""

    scheme = "Session"
    challenges = False  # a cookie cannot be asked for in WWW-Authenticate

    def __init__(self, sessions: WebSessions, settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings

    async def verify(self, conn: HTTPConnection) -> Principal | None:
        value = conn.cookies.get(SESSION_COOKIE)
        if not value:
            return None
        method = conn.scope.get("method", "GET")
        if method not in SAFE_METHODS and not same_origin(conn, self.settings.public_url):
            raise Problem(403, f"cookie-authenticated {method} requests must come from "
                               f"{origin_of(self.settings.public_url)} (Origin or Referer "
                               "header); other clients use an Authorization header")
        # An unknown or expired cookie counts as no credentials: 401 with the real challenges.
        return await self.sessions.principal(value)
