"""OAuth 2.0 Bearer tokens (RFC 6750) carrying JWT access tokens (RFC 9068).

cloud.D accepts access tokens from its own IdP and from every trusted foreign issuer. Only
standard claims are relied on (``iss``, ``sub``, ``aud``, ``exp``, ``nbf``, ``iat``), so any
compliant provider (Keycloak, …) works, not just the embedded one.

Order of checks, cheapest and least trusting first: JWS header (algorithm allowlist, type),
then the unverified ``iss`` only to decide *whether* we talk to that issuer at all (never
which key to trust beyond its own JWKS), then the signature with a key of that issuer, then
the claims. Each failure gets its own ``error_description`` so operators can tell a clock
problem from a key rollover from a misconfigured audience.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyCurveError,
    InvalidKeyTypeError,
    JoseError,
    MissingClaimError,
    SecurityWarning,
)
from joserfc.jwk import Key, KeySet
from starlette.requests import HTTPConnection

from discovery.client import DiscoveryClient, DiscoveryError
from discovery.guests import GuestError, Guests
from discovery.service import Directory
from discovery.trust import TrustStore
from discovery.verified import VerifiedCache, digest
from fedspace.auth import Principal, Unauthorized
from fedspace.settings import Settings

# Asymmetric only: with no HS* a public key can never double as an HMAC secret, and "none"
# is never verified. EdDSA is listed by RFC 9068-era IdPs even though RFC 9864 deprecates it.
ALGORITHMS = ("ES256", "ES384", "EdDSA", "RS256", "PS256")
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)
# JWT "typ" values of access tokens: RFC 9068's, and the generic one most IdPs send.
TOKEN_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
LEEWAY = 60  # seconds of clock skew tolerated for exp, nbf and iat
CACHE_SECONDS = 60.0  # a verified token is re-verified after this (or at its exp)
REFRESH_INTERVAL = 10.0  # at most one JWKS re-fetch per issuer this often (unknown kids)
MAX_TOKEN_LENGTH = 16 * 1024
_KEY_TYPES = {"ES256": "EC", "ES384": "EC", "EdDSA": "OKP", "RS256": "RSA", "PS256": "RSA"}


class KeysUnavailable(Exception):
    """The issuer's keys cannot be obtained; the message says why."""


class KeySource(Protocol):
    """Where an issuer's public keys come from (HTTP for anyone, in-process for our IdP)."""

    async def key_set(self, issuer: str, *, refresh: bool = False) -> KeySet: ...


class DiscoveredKeys:
    """Keys via OIDC discovery and the JWKS, through the instance's guarded outbound client."""

    def __init__(self, client: DiscoveryClient) -> None:
        self.client = client
        # jwks_uri → (the JWKS document, its parsed form): parse once per fetched document.
        self._parsed: dict[str, tuple[Any, KeySet]] = {}

    async def key_set(self, issuer: str, *, refresh: bool = False) -> KeySet:
        try:
            # Checked there: the document names exactly this issuer (OIDC Discovery §4.3).
            config = await self.client.openid_configuration(issuer)
            jwks_uri: str = config["jwks_uri"]
            document = await self.client.jwks(jwks_uri, refresh=refresh)
        except DiscoveryError as exc:
            raise KeysUnavailable(str(exc)) from None
        parsed = self._parsed.get(jwks_uri)
        if parsed is not None and parsed[0] is document:
            return parsed[1]
        try:
            keys = KeySet.import_key_set(document)
        except (JoseError, KeyError, TypeError, ValueError) as exc:
            raise KeysUnavailable(f"invalid JWKS at {jwks_uri}: {exc}") from None
        self._parsed[jwks_uri] = (document, keys)
        return keys


class PublishesKeys(Protocol):
    def key_set(self) -> KeySet: ...


class LocalKeys:
    """The embedded IdP's keys read in-process: no HTTP to ourselves, and no cached JWKS
    to go stale across a rotation (the key store notices new key files by itself)."""

    def __init__(self, store: PublishesKeys) -> None:
        self.store = store

    async def key_set(self, issuer: str, *, refresh: bool = False) -> KeySet:
        return self.store.key_set()


def _shown(value: object, limit: int = 100) -> str:
    """A token-supplied value made safe for a quoted WWW-Authenticate parameter."""
    text = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in str(value))
    return text if len(text) <= limit else text[:limit] + "..."


class InvalidToken(Exception):
    """A JWT failed one check; the message says which, with token values sanitized."""


def _fail(description: str) -> Unauthorized:
    return Unauthorized("Bearer", "invalid_token", description)


class Refreshes:
    """At most one JWKS re-fetch per issuer every ``interval`` seconds (unknown kids)."""

    def __init__(self, interval: float = REFRESH_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}  # issuer → monotonic time of last re-fetch

    def allow(self, issuer: str) -> bool:
        now = time.monotonic()
        last = self._last.get(issuer)
        if last is not None and now - last < self.interval:
            return False
        self._last[issuer] = now
        return True


@dataclass(frozen=True, slots=True)
class Parsed:
    """A JWS split open but not yet verified: only its alg and issuer may guide us."""

    token: str
    header: dict[str, Any]
    alg: str
    issuer: str


def parse(token: str, types: frozenset[str]) -> Parsed:
    """Header checks (alg allowlist, ``typ`` in ``types`` when present) and the unverified
    ``iss``, which decides *whether* to fetch keys, never which keys to trust."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed token: empty or too long")
    try:
        compact = jws.extract_compact(token.encode("ascii"))
        header = compact.headers()
    except (JoseError, ValueError):  # UnicodeError is a ValueError
        raise InvalidToken("malformed token: not a JWS compact serialization") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise InvalidToken(f"token algorithm {_shown(alg)} is not allowed "
                           f"(allowed: {', '.join(ALGORITHMS)})")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in types):
        raise InvalidToken(f"unsupported token type {_shown(typ)}")
    try:
        unverified = json.loads(compact.payload)
    except (ValueError, RecursionError):
        unverified = None
    if not isinstance(unverified, dict):
        raise InvalidToken("malformed token: payload is not a JSON object")
    issuer = unverified.get("iss")
    if issuer is None:
        raise InvalidToken("missing required claim: iss")
    if not isinstance(issuer, str):
        raise InvalidToken("invalid claim iss: not a string")
    return Parsed(token, dict(header), alg, issuer)


async def verify(parsed: Parsed, source: KeySource, refreshes: Refreshes, *, audience: str,
                 **claims: dict[str, Any]) -> dict[str, Any]:
    """The verified claims: signature with a key of ``parsed.issuer`` from ``source``,
    then ``iss``, ``sub``, ``aud`` (contains ``audience``), ``exp``, ``nbf``, ``iat`` and
    any further joserfc claim options (e.g. ``nonce={"essential": True, "value": n}``)."""
    key = await _key(source, parsed, refreshes)
    try:
        decoded = jwt.decode(parsed.token, key, algorithms=[parsed.alg]).claims
    except BadSignatureError:
        raise InvalidToken("bad signature") from None
    except (InvalidKeyTypeError, InvalidKeyCurveError):
        raise InvalidToken(
            f"key {_shown(key.kid)} of the issuer does not fit alg {parsed.alg}") from None
    except JoseError as exc:
        raise InvalidToken(f"malformed token: {_shown(exc.description)}") from None
    registry = jwt.JWTClaimsRegistry(
        leeway=LEEWAY,
        iss={"essential": True, "value": parsed.issuer},
        sub={"essential": True},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
        **claims,
    )
    try:
        registry.validate(decoded)
    except MissingClaimError as exc:
        raise InvalidToken(f"missing required claim: {exc.claim.replace(',', ', ')}") from None
    except ExpiredTokenError:
        raise InvalidToken("token expired") from None
    except ClaimError as exc:
        raise InvalidToken(_claim_problem(exc, audience)) from None
    return decoded


async def _key(source: KeySource, parsed: Parsed, refreshes: Refreshes) -> Key:
    """The issuer's key for this token; one rate-limited JWKS re-fetch on a miss."""
    issuer, alg = parsed.issuer, parsed.alg
    kid = parsed.header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("malformed token: kid is not a string")
    found = _select(await _key_set(source, issuer, refresh=False), kid, alg)
    if found is None and refreshes.allow(issuer):
        found = _select(await _key_set(source, issuer, refresh=True), kid, alg)
    if found is None:
        if kid is None:
            raise InvalidToken(f"token has no kid and issuer {_shown(issuer)} has no single "
                               f"key for {alg}")
        raise InvalidToken(f"unknown key id {_shown(kid)} for issuer {_shown(issuer)}")
    if found.get("use") not in (None, "sig") or found.get("alg") not in (None, alg):
        raise InvalidToken(f"key {_shown(kid)} of the issuer is not for signing with {alg}")
    return found


async def _key_set(source: KeySource, issuer: str, *, refresh: bool) -> KeySet:
    try:
        return await source.key_set(issuer, refresh=refresh)
    except KeysUnavailable as exc:
        raise InvalidToken(f"cannot fetch keys of issuer {_shown(issuer)}: "
                           f"{_shown(exc, 200)}") from None


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    issuer: str


class BearerVerifier:
    scheme = "Bearer"

    def __init__(self, settings: Settings, trust: TrustStore, directory: Directory,
                 guests: Guests, keys: KeySource, own_keys: KeySource | None = None) -> None:
        self.settings = settings
        self.trust = trust
        self.directory = directory
        self.guests = guests
        self.keys = keys
        # Our own issuer's keys when the embedded IdP runs in this process (else HTTP too).
        self.own_keys = own_keys
        self.refreshes = Refreshes()
        # sha256(token) → verification; the hot path is one dict lookup. A disabled local
        # user keeps access for at most CACHE_SECONDS, as with app passwords.
        self._cache: VerifiedCache[_Verified] = VerifiedCache()

    async def verify(self, conn: HTTPConnection) -> Principal | None:
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        key = digest(token)
        hit = self._cache.get(key)
        if hit is not None:
            # Re-check trust: a removed issuer's tokens stop working without waiting.
            if await self._trusted(hit.issuer):
                return hit.principal
            self._cache.drop(key)
        verified = await self._cache.load(key, lambda: self._verify(token))
        return verified.principal

    async def _trusted(self, issuer: str) -> bool:
        return issuer == self.settings.discovery.issuer or await self.trust.get(issuer) is not None

    async def _verify(self, token: str) -> tuple[_Verified, float]:
        try:
            parsed = parse(token, TOKEN_TYPES)
            issuer = parsed.issuer
            own = issuer == self.settings.discovery.issuer
            trusted = None if own else await self.trust.get(issuer)
            if not own and trusted is None:
                raise InvalidToken(f"untrusted issuer {_shown(issuer)}")
            source = self.own_keys if own and self.own_keys is not None else self.keys
            claims = await verify(parsed, source, self.refreshes,
                                  audience=self.settings.discovery.audience)
        except InvalidToken as exc:
            raise _fail(str(exc)) from None

        subject: str = claims["sub"]
        if own:
            principal = await self._local(subject, claims)
            if principal is None:
                raise _fail("unknown or disabled user")
        else:
            assert trusted is not None
            try:
                guest = await self.guests.sign_in(issuer, subject, claims, trusted.domain)
            except GuestError as exc:
                raise _fail(f"cannot admit guest: {exc}") from None
            principal = guest.principal()
        now, exp = time.time(), claims["exp"]  # exp may be any JSON integer, however large
        seconds = CACHE_SECONDS if exp >= now + CACHE_SECONDS else float(exp) - now
        return _Verified(principal, issuer), seconds


    async def _local(self, subject: str, claims: dict[str, Any]) -> Principal | None:
        """Our embedded IdP's ``sub`` is the user id; an external IdP (Keycloak…) has its
        own ids, so its users are matched by ``discovery.username_claim`` instead."""
        d = self.settings.discovery
        if d.idp_enabled:
            return await self.directory.principal(subject)
        username = claims.get(d.username_claim)
        if not isinstance(username, str):
            return None
        user = await self.directory.find_user(username)
        return await self.directory.principal(user.id) if user else None


def _claim_problem(exc: ClaimError, audience: str) -> str:
    if exc.claim == "aud":
        return f"wrong audience: token is not for {_shown(audience)}"
    if exc.claim == "nbf":
        return "token not yet valid (nbf)"
    if exc.claim == "iat":
        return "token issued in the future (iat)"
    return f"invalid claim {exc.claim}: {_shown(exc.description)}"


def _select(keys: KeySet, kid: str | None, alg: str) -> Key | None:
    """The key named by ``kid``; without a kid, the only signing key that fits ``alg``."""
    if kid is not None:
        return next((k for k in keys if k.kid == kid), None)
    usable = [k for k in keys
              if k.key_type == _KEY_TYPES[alg] and k.get("use") in (None, "sig")
              and k.get("alg") in (None, alg)]
    return usable[0] if len(usable) == 1 else None
