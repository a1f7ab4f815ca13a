"""Access to shared spaces at the origin: the OCM token endpoint and share bearers.

A share's secret (the ``code`` and ``sharedSecret`` sent to the recipient's instance) is
exchanged at ``POST {endPoint}/token`` for a short-lived bearer (the OCM "Code Flow",
draft-ietf-ocm-open-cloud-mesh §"Code Flow"; OAuth 2.0 ``authorization_code`` semantics,
RFC 6749 §4.1.3/§5): the request must be signed by the instance the share was sent to,
and ``client_id`` must name that instance. The body may be JSON (OCM 1.x peers, grant
type ``ocm_authorization_code``) or form-encoded (the current draft, ``authorization_code``).

``ShareBearer`` then admits both that bearer (a JWT signed with a key derived from the
instance's internal secret, audience ``ocm-share``) and, for receivers that never
exchange, the raw secret itself (the spec's legacy access). Either way the caller is the
recipient's address scoped to the one shared space, and every request looks the share
row up again: an unshared or declined share stops working at once, and removing the
recipient's membership makes the registry answer 404 for the space.
"""

# No ``from __future__ import annotations``: FastAPI resolves dependency annotations.

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Depends
from joserfc import jws
from joserfc.errors import JoseError
from sqlalchemy import select
from starlette.requests import HTTPConnection
from starlette.responses import Response

from fedspace.auth import Principal, Unauthorized
from fedspace.db import Database
from fedspace.internal import ISSUER, InternalTokens, InvalidInternalToken, load_or_create_secret

from .api import JSON, OcmRoute, SignedRequest, verified_request
from .models import ocm_shares
from .ocm import ENDPOINT_PATH, OcmError
from .outgoing import secret_hash

if TYPE_CHECKING:
    from .component import FederationComponent

AUDIENCE = "ocm-share"
TOKEN_TTL = 3600  # seconds; each use re-checks the share, so revocation does not wait
TOKEN_PATH = f"{ENDPOINT_PATH}/token"
GRANT_TYPES = frozenset({"ocm_authorization_code", "authorization_code"})
MAX_SECRET = 1024
ALGORITHM = "HS256"  # what InternalTokens signs with
# Separates these tokens from the gateway's internal ones signed with the same secret.
_KEY_LABEL = b"fedspace ocm-share bearer v1"


@dataclass(frozen=True, slots=True)
class Share:
    """The ``ocm_shares`` columns access decisions need."""

    id: str
    space_id: str
    recipient: str
    peer: str
    state: str

    def principal(self) -> Principal:
        """The recipient, able to reach this share's space and nothing else."""
        return Principal(self.recipient, self.recipient, self.recipient, kind="guest",
                         scope=frozenset({self.space_id}))


class TokenError(OcmError):
    """A refusal in the OAuth error shape (``error``, RFC 6749 §5.2) and the OCM one."""

    def __init__(self, status: int, error: str, message: str, field: str) -> None:
        super().__init__(status, message, [(field, error)])
        self.error = error

    def body(self) -> dict[str, Any]:
        return {"error": self.error, **super().body()}


_COLUMNS = (ocm_shares.c.id, ocm_shares.c.space_id, ocm_shares.c.recipient,
            ocm_shares.c.peer, ocm_shares.c.state)


class ShareTokens:
    """Finds shares by secret or id, and mints their bearers."""

    def __init__(self, db: Database, internal_secret: bytes, ttl: int = TOKEN_TTL) -> None:
        self.db = db
        # A derived key: processes sharing the internal secret verify each other's tokens.
        key = hmac.new(internal_secret, _KEY_LABEL, hashlib.sha256).digest()
        self.tokens = InternalTokens(key, ttl=ttl)

    @classmethod
    def for_federation(cls, federation: "FederationComponent") -> "ShareTokens":
        s = federation.settings
        return cls(federation.ctx.db,
                   load_or_create_secret(s.internal_secret.get_secret_value(), s.data_dir))

    async def _one(self, where: Any) -> Share | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(*_COLUMNS).where(where))).first()
        return None if row is None else Share(*row)

    async def by_secret(self, secret: str) -> Share | None:
        return await self._one(ocm_shares.c.secret_hash == secret_hash(secret))

    async def by_id(self, share_id: str) -> Share | None:
        return await self._one(ocm_shares.c.id == share_id)

    def mint(self, share: Share) -> str:
        return self.tokens.mint(AUDIENCE, {"sub": share.recipient, "share": share.id,
                                           "space": share.space_id})

    async def exchange(self, signed: SignedRequest) -> dict[str, Any]:
        """The token response for a verified token request, or a TokenError."""
        if not signed.signed:
            raise TokenError(401, "invalid_client", "token requests must be signed",
                             "signature")
        body = signed.body
        grant_type, code, client_id = (body.get(k) for k in ("grant_type", "code", "client_id"))
        if grant_type not in GRANT_TYPES:
            raise TokenError(400, "unsupported_grant_type",
                             f"grant_type must be one of {', '.join(sorted(GRANT_TYPES))}",
                             "grant_type")
        for name, value in (("code", code), ("client_id", client_id)):
            if not isinstance(value, str) or not value or len(value) > MAX_SECRET:
                raise TokenError(400, "invalid_request", f"{name} is required", name)
        share = await self.by_secret(code)
        if share is None or share.state == "declined":
            raise TokenError(400, "invalid_grant", "unknown, declined or removed share", "code")
        if share.peer.lower() != signed.sender.lower() or client_id.lower() != signed.sender:
            raise TokenError(403, "unauthorized_client",
                             f"the share was not sent to {signed.sender}", "client_id")
        return {"access_token": self.mint(share), "token_type": "Bearer",
                "expires_in": self.tokens.ttl}


def _ours(token: str) -> bool | None:
    """Whether a JWT claims to be one of our share bearers (None: not a JWS at all).
    Decides only who explains a refusal; never trusted for access."""
    try:
        compact = jws.extract_compact(token.encode("ascii"))
        if compact.headers().get("alg") != ALGORITHM:
            return False  # foreign algorithms are the OIDC verifier's (not even parsed here)
        claims = orjson.loads(compact.payload)
    except (JoseError, ValueError):  # orjson.JSONDecodeError is a ValueError
        return None
    return isinstance(claims, dict) and claims.get("iss") == ISSUER \
        and claims.get("aud") == AUDIENCE


class ShareBearer:
    """``Authorization: Bearer`` with a share bearer or a share's raw secret.

    First in the verifier chain: tokens that are neither are left (None) to the OIDC
    verifier after it. No challenge of its own (the OIDC verifier's names the scheme).
    """

    scheme = "Bearer"
    challenges = False

    def __init__(self, shares: ShareTokens) -> None:
        self.shares = shares

    async def verify(self, conn: HTTPConnection) -> Principal | None:
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 16 * 1024:
            return None
        if "." not in token:  # a raw secret (our secrets are URL-safe base64: no dots)
            if len(token) > MAX_SECRET:
                return None
            share = await self.shares.by_secret(token)
            if share is None:
                return None
            if share.state == "declined":
                raise Unauthorized("Bearer", "invalid_token", "the share was declined")
            return share.principal()
        ours = _ours(token)
        if not ours:
            return None
        try:
            claims = self.shares.tokens.verify(token, AUDIENCE)
        except InvalidInternalToken:
            raise Unauthorized("Bearer", "invalid_token",
                               "share token expired or invalid") from None
        share = await self.shares.by_id(str(claims.get("share")))
        if (share is None or share.state == "declined" or share.space_id != claims.get("space")
                or share.recipient != claims.get("sub")):
            raise Unauthorized("Bearer", "invalid_token", "the share has ended")
        return share.principal()


def _client_domain(body: dict[str, Any]) -> str | None:
    """The instance a token request speaks for: its ``client_id`` (an FQDN)."""
    client_id = body.get("client_id")
    return client_id.lower() if isinstance(client_id, str) and client_id else None


def router(federation: "FederationComponent", shares: ShareTokens) -> APIRouter:
    router = APIRouter(route_class=OcmRoute)
    gate = verified_request(federation, claimed=_client_domain, form=True)

    @router.post(TOKEN_PATH, include_in_schema=False)
    async def token(signed: SignedRequest = Depends(gate)) -> Response:
        answer = await shares.exchange(signed)
        return Response(orjson.dumps(answer), 200, media_type=JSON,
                        headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    return router
