"""Short-lived tokens between fedspace's own services (gateway → provider, gRPC calls).

Signed with the instance's internal secret (HS256 via joserfc) and verified with an
algorithm allowlist, issuer, audience and expiry — the same checks as any other token.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

ISSUER = "fedspace-internal"
ALGORITHMS = ["HS256"]


class InvalidInternalToken(Exception):
    pass


def load_or_create_secret(configured: str, data_dir: Path) -> bytes:
    """The configured secret, else one generated once into ``data_dir`` (mode 0600)."""
    if configured:
        return configured.encode()
    path = data_dir / "internal.secret"
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


class InternalTokens:
    def __init__(self, secret: bytes, ttl: int = 60) -> None:
        if len(secret) < 32:
            raise ValueError("internal secret must be at least 32 bytes")
        self._key = OctKey.import_key(secret)
        self.ttl = ttl

    def mint(self, audience: str, claims: dict[str, Any]) -> str:
        now = int(time.time())
        payload = {**claims, "iss": ISSUER, "aud": audience, "iat": now, "exp": now + self.ttl}
        return jwt.encode({"alg": "HS256"}, payload, self._key, algorithms=ALGORITHMS)

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        try:
            decoded = jwt.decode(token, self._key, algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(
                leeway=5,
                iss={"essential": True, "value": ISSUER},
                aud={"essential": True, "value": audience},
                exp={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise InvalidInternalToken(str(exc)) from None
        return dict(decoded.claims)
