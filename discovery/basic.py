"""HTTP Basic authentication with app passwords (RFC 7617).

Sync clients and WebDAV tools often speak nothing but Basic, so they get per-user,
revocable app passwords. Account passwords are never accepted here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time

from starlette.requests import HTTPConnection

from discovery.service import Directory
from fedspace.auth import Principal, Unauthorized


class AppPasswordVerifier:
    scheme = "Basic"

    def __init__(self, directory: Directory, cache_seconds: float = 30.0) -> None:
        self.directory = directory
        self.cache_seconds = cache_seconds
        # sha256(header) → (principal, expiry); keeps the hot path to one dict lookup.
        self._cache: dict[str, tuple[Principal, float]] = {}

    async def verify(self, conn: HTTPConnection) -> Principal | None:
        header = conn.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        key = hashlib.sha256(value.encode()).hexdigest()
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
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
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (principal, now + self.cache_seconds)
        return principal

    def forget(self) -> None:
        """Drop cached verifications (after a revocation in this process)."""
        self._cache.clear()
