"""HTTP Basic authentication with app passwords (RFC 7617).

Sync clients and WebDAV tools often speak nothing but Basic, so they get per-user,
revocable app passwords. Account passwords are never accepted here.
"""

from __future__ import annotations

import base64
import binascii

from starlette.requests import HTTPConnection

from discovery.service import Directory
from discovery.verified import VerifiedCache, digest
from fedspace.auth import Principal, Unauthorized


class AppPasswordVerifier:
    scheme = "Basic"

    def __init__(self, directory: Directory, cache_seconds: float = 30.0) -> None:
        self.directory = directory
        self.cache_seconds = cache_seconds
        self._cache: VerifiedCache[Principal] = VerifiedCache()

    async def verify(self, conn: HTTPConnection) -> Principal | None:
        header = conn.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        key = digest(value)
        return self._cache.get(key) or await self._cache.load(key, lambda: self._check(value))

    async def _check(self, value: str) -> tuple[Principal, float]:
        try:
            username, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("Basic", "invalid_request", "malformed Basic credentials") from None
        if not sep:
            raise Unauthorized("Basic", "invalid_request", "malformed Basic credentials")
        found = await self.directory.check_app_password(username, secret)
        principal = await self.directory.principal(found[0]) if found else None
        if found is None or principal is None:
            raise Unauthorized("Basic", "invalid_token", "unknown user or app password")
        await self.directory.touch_app_password(found[1])
        return principal, self.cache_seconds

    def forget(self) -> None:
        """Drop cached verifications (after a revocation in this process)."""
        self._cache.clear()
