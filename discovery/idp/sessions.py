"""Browser state of the login page: the IdP session cookie and CSRF tokens.

Both are bound to one secret kept next to the signing keys (mode 0600), so every process
serving the IdP from the same data directory accepts them. The session is a short JWT
(HS256) rather than a table row: it only lets a browser skip the password form, and
every code issued through it re-checks that the account is still enabled.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

SESSION_COOKIE = "fedspace_idp_session"
CSRF_COOKIE = "fedspace_idp_csrf"
SESSION_TTL = 8 * 3600
_AUDIENCE = "fedspace-idp-session"


@dataclass(frozen=True)
class LoggedIn:
    """Who the browser is, and when the password was checked (OIDC ``auth_time``)."""

    user_id: str
    auth_time_ms: int


def _load_or_create(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    return path.read_bytes()


class BrowserSecrets:
    def __init__(self, keys_dir: Path) -> None:
        self._path = keys_dir / "session.secret"
        self._secret: bytes | None = None

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = _load_or_create(self._path)
        return self._secret

    def session_cookie(self, who: LoggedIn, issuer: str) -> str:
        now = int(time.time())
        claims = {"iss": issuer, "aud": _AUDIENCE, "sub": who.user_id,
                  "auth_time_ms": who.auth_time_ms, "iat": now, "exp": now + SESSION_TTL}
        return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(self.secret), ["HS256"])

    def read_session(self, value: str | None, issuer: str) -> LoggedIn | None:
        if not value:
            return None
        try:
            token = jwt.decode(value, OctKey.import_key(self.secret), algorithms=["HS256"])
            jwt.JWTClaimsRegistry(iss={"essential": True, "value": issuer},
                                  aud={"essential": True, "value": _AUDIENCE},
                                  exp={"essential": True}).validate(token.claims)
            return LoggedIn(str(token.claims["sub"]), int(token.claims["auth_time_ms"]))
        except (JoseError, KeyError, ValueError):
            return None

    def csrf_token(self, cookie: str, authorization_request: str) -> str:
        """Bound to the browser (cookie) and to the pending authorization request."""
        msg = f"{cookie}\0{authorization_request}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def check_csrf(self, cookie: str | None, authorization_request: str, token: str) -> bool:
        return bool(cookie) and hmac.compare_digest(
            self.csrf_token(cookie or "", authorization_request), token)
