"""Logging a browser in at cloud.D: this instance as an OpenID Connect relying party.

``start(address)`` finds the account's IdP (WebFinger + OIDC discovery), checks that we
trust it and are registered there, and returns the authorization URL (code flow, PKCE S256,
``state``, ``nonce``) plus the pending state; ``finish`` redeems the code and verifies the
ID token with the same machinery as Bearer tokens (``discovery.tokens``): alg allowlist, a
key of exactly the issuer we started with, ``aud`` ∋ our client_id, ``exp``, ``nonce``, ``azp``.

The pending state travels in an encrypted cookie (JWE ``dir``/A256GCM) rather than a table:
it is needed by exactly one browser for a few minutes, encryption keeps the PKCE verifier
and nonce unreadable even to that browser, and any process sharing the data directory can
finish the flow. Replays die at the IdP (a code is redeemed once) and at the cookie, which
the callback clears whatever the outcome.

Our own embedded IdP is spoken to in-process (no HTTP to our own public URL, which a server
cannot always reach); every other request goes through the guarded ``Outbound`` client.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from starlette.types import ASGIApp

from discovery.client import DiscoveryClient, DiscoveryError
from discovery.guests import GuestError, Guests
from discovery.idp.sessions import BrowserSecrets
from discovery.service import Directory
from discovery.settings import RelyingParty
from discovery.tokens import InvalidToken, KeySource, Refreshes, parse, verify
from discovery.trust import TrustStore
from discovery.webfinger import MalformedResource, parse_account
from fedspace.auth import Principal
from fedspace.outbound import Outbound, OutboundError
from fedspace.settings import Settings

CALLBACK_PATH = "/oidc-callback"  # the embedded IdP's default redirect URI for "web"
OWN_CLIENT_ID = "web"
SCOPE = "openid profile email"
PENDING_TTL = 600  # seconds a browser has to log in at the IdP
ID_TOKEN_TYPES = frozenset({"jwt"})  # never "at+jwt": an access token is no ID token
_JWE = {"alg": "dir", "enc": "A256GCM"}


class LoginError(Exception):
    """The login cannot go on; ``status`` and the message are for the page the user sees."""

    def __init__(self, status: int, message: str, title: str = "Sign-in failed") -> None:
        super().__init__(message)
        self.status = status
        self.title = title


@dataclass(frozen=True)
class Pending:
    """What the callback must know: whom we asked, and the secrets only we may know."""

    issuer: str
    client_id: str
    state: str
    nonce: str
    verifier: str
    next: str
    expires: int


class BrowserSeal:
    """Encrypts pending state and signs login-form CSRF tokens with keys derived from one
    instance secret (one derived key per purpose, so neither can stand in for the other)."""

    def __init__(self, secrets: BrowserSecrets) -> None:
        self.secrets = secrets  # read on first use: the file may not exist yet

    def _derive(self, label: bytes) -> bytes:
        return hmac.new(self.secrets.secret, label, hashlib.sha256).digest()

    @functools.cached_property
    def _key(self) -> OctKey:
        return OctKey.import_key(self._derive(b"fedspace weblogin pending"))

    @functools.cached_property
    def _csrf(self) -> bytes:
        return self._derive(b"fedspace weblogin csrf")

    def seal(self, pending: Pending) -> str:
        payload = json.dumps(asdict(pending)).encode()
        return jwe.encrypt_compact(_JWE, payload, self._key, algorithms=list(_JWE.values()))

    def unseal(self, value: str | None) -> Pending | None:
        if not value:
            return None
        try:
            plain = jwe.decrypt_compact(value, self._key, algorithms=list(_JWE.values()))
            pending = Pending(**json.loads(plain.plaintext or b""))
        except (JoseError, ValueError, TypeError):
            return None
        return pending if pending.expires > time.time() else None

    def csrf(self, cookie: str) -> str:
        return hmac.new(self._csrf, cookie.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, cookie: str | None, token: str) -> bool:
        return bool(cookie) and hmac.compare_digest(self.csrf(cookie or ""), token)


def safe_next(value: str | None) -> str:
    """A same-origin path to return to; anything else (``//evil``, ``https://…``) is ``/``."""
    if (not value or not value.startswith("/") or value.startswith(("//", "/\\"))
            or any(c == "\\" or ord(c) < 0x21 or ord(c) == 0x7F for c in value)):
        return "/"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


class WebLogin:
    def __init__(self, settings: Settings, *, discovery: DiscoveryClient, trust: TrustStore,
                 directory: Directory, guests: Guests, outbound: Outbound, keys: KeySource,
                 own_keys: KeySource | None, own_idp: ASGIApp | None, seal: BrowserSeal
                 ) -> None:
        self.settings = settings
        self.discovery = discovery
        self.trust = trust
        self.directory = directory
        self.guests = guests
        self.outbound = outbound
        self.keys = keys
        self.own_keys = own_keys  # with own_idp: the embedded IdP, used in-process
        self.own_idp = own_idp
        self.seal = seal
        self.refreshes = Refreshes()

    @property
    def redirect_uri(self) -> str:
        return f"{self.settings.public_url}{CALLBACK_PATH}"

    def _own(self, issuer: str) -> bool:
        return issuer == self.settings.discovery.issuer

    def _registration(self, issuer: str) -> RelyingParty | None:
        found = next((r for r in self.settings.discovery.relying_parties
                      if r.issuer == issuer), None)
        if found is None and self._own(issuer):
            return RelyingParty(issuer=issuer, client_id=OWN_CLIENT_ID)
        return found

    async def start(self, address: str | None, next_path: str = "/") -> tuple[str, Pending]:
        """The IdP authorization URL for ``address`` (None: this instance's own accounts)."""
        issuer = await self._issuer(address)
        client = self._registration(issuer)
        if client is None:
            raise LoginError(503, f"This instance trusts the identity provider {issuer}, but "
                                  "is not registered there as a client, so it cannot sign "
                                  "you in with it. Please tell the administrator.",
                             title="Sign-in not available")
        endpoint = (await self._endpoints(issuer))["authorization_endpoint"]
        pending = Pending(issuer, client.client_id, generate_token(43), generate_token(43),
                          generate_token(64), safe_next(next_path), int(time.time()) + PENDING_TTL)
        params = {"response_type": "code", "client_id": client.client_id,
                  "redirect_uri": self.redirect_uri, "scope": SCOPE, "state": pending.state,
                  "nonce": pending.nonce, "code_challenge_method": "S256",
                  "code_challenge": create_s256_code_challenge(pending.verifier)}
        if address:
            params["login_hint"] = address
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}", pending

    async def _issuer(self, address: str | None) -> str:
        own = self.settings.discovery.issuer
        if not address:
            return own
        try:
            account = parse_account(address.strip())
        except MalformedResource:
            raise LoginError(400, f"{address!r} is not an address like name@example.org.",
                             title="Check the address") from None
        if account.domain == self.settings.domain.lower():
            return own
        try:
            issuer = (await self.discovery.discover(str(account))).issuer
        except DiscoveryError as exc:
            raise LoginError(502, f"Cannot find the identity provider of {account}: {exc}",
                             title="Identity provider not found") from None
        if not self._own(issuer) and await self.trust.get(issuer) is None:
            raise LoginError(403, f"This instance does not trust the identity provider "
                                  f"{issuer} (of {account}), so you cannot sign in with it "
                                  "here.", title="Identity provider not trusted")
        return issuer

    async def _endpoints(self, issuer: str) -> dict[str, Any]:
        if self._own(issuer) and self.own_idp is not None:
            return {"authorization_endpoint": f"{issuer}/authorize",
                    "token_endpoint": f"{issuer}/token"}
        try:
            return await self.discovery.openid_configuration(issuer)
        except DiscoveryError as exc:
            raise LoginError(502, f"The identity provider {issuer} cannot be reached: {exc}",
                             title="Identity provider unavailable") from None

    async def finish(self, pending: Pending, code: str) -> Principal:
        """Redeem ``code`` (the caller has matched ``state``) and admit whom it names."""
        client = self._registration(pending.issuer)
        if client is None or client.client_id != pending.client_id:
            raise LoginError(503, "This instance's registration at the identity provider "
                                  "changed during sign-in. Please start again.")
        tokens = await self._redeem(pending, client, code)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise LoginError(502, f"The identity provider {pending.issuer} sent no ID token.")
        claims = await self._verify(pending, id_token)
        if self._own(pending.issuer):
            principal = await self.directory.principal(claims["sub"])
            if principal is None:
                raise LoginError(403, "This account is unknown or disabled.")
            return principal
        trusted = await self.trust.get(pending.issuer)
        if trusted is None:
            raise LoginError(403, f"This instance no longer trusts {pending.issuer}.",
                             title="Identity provider not trusted")
        try:
            guest = await self.guests.sign_in(pending.issuer, claims["sub"], claims,
                                              trusted.domain)
        except GuestError as exc:
            raise LoginError(403, f"Cannot admit this account: {exc}") from None
        return guest.principal()

    async def _redeem(self, pending: Pending, client: RelyingParty, code: str
                      ) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.redirect_uri, "code_verifier": pending.verifier}
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "Accept": "application/json"}
        secret = client.client_secret.get_secret_value()
        if secret:  # client_secret_basic (RFC 6749 §2.3.1: form-encode, then Base64)
            pair = f"{quote(client.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = f"Basic {base64.b64encode(pair.encode()).decode()}"
        else:
            form["client_id"] = client.client_id
        url = (await self._endpoints(pending.issuer))["token_endpoint"]
        try:
            response = await self._post(pending.issuer, url, headers, urlencode(form).encode())
            body = response.json()
        except OutboundError as exc:
            raise LoginError(502, f"The identity provider cannot be reached: {exc}") from None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise LoginError(502, f"The identity provider answered HTTP "
                                  f"{response.status_code} without a token response.")
        if response.status_code != 200:
            detail = body.get("error_description") or body.get("error") or "no reason given"
            raise LoginError(400, f"The identity provider refused the sign-in: {detail}")
        return body

    async def _post(self, issuer: str, url: str, headers: dict[str, str], content: bytes
                    ) -> httpx.Response:
        if not (self._own(issuer) and self.own_idp is not None):
            return await self.outbound.request("POST", url, headers=headers, content=content)
        # The IdP app routes relative to its mount point: tell it where that is.
        transport = httpx.ASGITransport(self.own_idp, root_path=urlsplit(issuer).path)
        async with httpx.AsyncClient(transport=transport) as local:
            return await local.post(url, headers=headers, content=content)

    async def _verify(self, pending: Pending, id_token: str) -> dict[str, Any]:
        source = self.keys
        if self._own(pending.issuer) and self.own_keys is not None:
            source = self.own_keys
        try:
            parsed = parse(id_token, ID_TOKEN_TYPES)
            if parsed.issuer != pending.issuer:
                raise InvalidToken("issued by another issuer than the one asked")
            claims = await verify(
                parsed, source, self.refreshes, audience=pending.client_id,
                nonce={"essential": True, "value": pending.nonce},
                azp={"value": pending.client_id})
            audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
            if len(audiences) > 1 and "azp" not in claims:  # OIDC Core §3.1.3.7 (4)
                raise InvalidToken("several audiences but no azp")
        except InvalidToken as exc:
            raise LoginError(400, f"The ID token from {pending.issuer} was refused: {exc}"
                             ) from None
        return claims
