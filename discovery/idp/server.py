"""authlib's authorization server wired to Starlette, the database and our keys.

authlib's server core is synchronous: its grants call ``query_authorization_code``,
``save_token`` … and expect answers. The endpoints therefore read each request fully
(``Incoming``), run authlib in a worker thread, and the few storage callbacks hop back
onto the event loop with ``anyio.from_thread.run`` — so the grants' validation (PKCE,
nonce, redirect URI, client authentication, rotation) is authlib's, not ours.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.from_thread
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InsecureTransportError,
    OAuth2Payload,
    OAuth2Request,
)
from joserfc import jwt
from joserfc.errors import JoseError
from starlette.datastructures import ImmutableMultiDict
from starlette.responses import JSONResponse, RedirectResponse, Response

from discovery.idp.clients import Client, configured_clients
from discovery.idp.grants import CodeGrant, OpenIdCode, PkceS256, RefreshGrant
from discovery.idp.keys import ALGORITHM, KeyStore
from discovery.idp.pages import error_page
from discovery.idp.sessions import LoggedIn
from discovery.idp.store import GrantStore, family_of
from discovery.service import Directory, User
from fedspace.settings import Settings

T = TypeVar("T")
# authlib logs issued tokens (access and refresh) at DEBUG: never let them reach a log.
logging.getLogger("authlib").setLevel(logging.INFO)


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the requested resource is not one we issue tokens for."""

    error = "invalid_target"


@dataclass(frozen=True)
class Incoming:
    """An HTTP request read up front, so authlib can process it off the event loop."""

    method: str
    uri: str
    headers: Mapping[str, str]
    params: ImmutableMultiDict[str, str]
    # Authorization requests get HTML error pages, never JSON, when they cannot redirect.
    interactive: bool = False


class _Payload(OAuth2Payload):
    def __init__(self, params: ImmutableMultiDict[str, str]) -> None:
        self._params = params

    @property
    def data(self) -> ImmutableMultiDict[str, str]:
        return self._params

    @functools.cached_property
    def datalist(self) -> dict[str, list[str]]:  # type: ignore[override]
        return {k: self._params.getlist(k) for k in self._params}


class IdpRequest(OAuth2Request):
    def __init__(self, incoming: Incoming) -> None:
        super().__init__(incoming.method, incoming.uri, headers=incoming.headers)
        self.payload = _Payload(incoming.params)
        self.interactive = incoming.interactive
        self.resource: str | None = None  # the audience of the token being issued

    @property
    def args(self) -> ImmutableMultiDict[str, str]:
        return self.payload.data

    @property
    def form(self) -> ImmutableMultiDict[str, str]:
        return self.payload.data if self.method == "POST" else ImmutableMultiDict()


class IdpServer(AuthorizationServer):
    def __init__(self, settings: Settings, directory: Directory, store: GrantStore,
                 keys: KeyStore) -> None:
        super().__init__()
        self.settings = settings
        self.directory = directory
        self.store = store
        self.keys = keys
        self.register_grant(CodeGrant, [PkceS256(), OpenIdCode(self)])
        self.register_grant(RefreshGrant)

    @property
    def issuer(self) -> str:
        return self.settings.discovery.issuer.rstrip("/")

    # -- the framework adapter authlib asks for --------------------------------------

    def create_oauth2_request(self, request: Incoming | IdpRequest) -> IdpRequest:
        return request if isinstance(request, IdpRequest) else IdpRequest(request)

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]
                        ) -> Response:
        hdrs = dict(headers)
        if status in (301, 302, 303):
            return RedirectResponse(hdrs.pop("Location"), 302, headers=hdrs)
        return JSONResponse(body, status, headers={k: v for k, v in hdrs.items()
                                                   if k.lower() != "content-type"})

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        if getattr(request, "interactive", False) and not error.redirect_uri:
            return error_page(error.status_code, error.description or error.error or "")
        response = super().handle_error_response(request, error)
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="fedspace idp"'
        return response

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """authlib's hook for framework signals; nothing listens here."""

    # -- storage, clients, tokens ----------------------------------------------------

    def wait(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run an async storage call from authlib's worker thread on the event loop."""
        return anyio.from_thread.run(functools.partial(fn, *args, **kwargs))

    def query_client(self, client_id: str) -> Client | None:
        config = configured_clients(self.settings).get(client_id)
        return Client(config) if config else None

    def enabled_user(self, user_id: str) -> User | None:
        user = self.wait(self.directory.user_by_id, user_id)
        return user if user is not None and not user.disabled else None

    def check_resource(self, requested: list[str], granted: str | None) -> str | None:
        """The token audience for RFC 8707 ``resource`` values (one at most)."""
        if not requested:
            return granted
        d = self.settings.discovery
        allowed = {r.rstrip("/") for r in (*d.resource_peers, d.audience)}
        resource = requested[0].rstrip("/")
        if len(requested) > 1 or resource not in allowed:
            raise InvalidTargetError("The requested resource is not allowed.")
        if granted is not None and resource != granted:
            raise InvalidTargetError("The resource was not part of the authorization.")
        return resource

    def save_authorization_code(self, code: str, request: IdpRequest) -> None:
        who: LoggedIn = request.user
        data = request.payload.data
        self.wait(self.store.save_code, code, client_id=request.client.client_id,
                  user_id=who.user_id, redirect_uri=request.payload.redirect_uri,
                  scope=request.scope, nonce=data.get("nonce"),
                  code_challenge=data.get("code_challenge"),
                  code_challenge_method=data.get("code_challenge_method"),
                  resource=request.resource, auth_time_ms=who.auth_time_ms)

    def issue(self, request: IdpRequest, user: User, scope: str, refresh: bool
              ) -> dict[str, Any]:
        """An RFC 9068 access token (and a new refresh token when ``refresh``)."""
        d = self.settings.discovery
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": user.id, "aud": request.resource or d.audience,
            "iat": now, "nbf": now, "exp": now + d.access_token_ttl,
            "jti": secrets.token_urlsafe(16), "client_id": request.client.client_id,
            "scope": scope, "preferred_username": user.username, "name": user.display_name,
        }
        if user.email:
            claims["email"] = user.email
        key = self.keys.signing_key()
        header = {"alg": ALGORITHM, "typ": "at+jwt", "kid": key.kid}
        token = {"token_type": "Bearer", "expires_in": d.access_token_ttl, "scope": scope,
                 "access_token": jwt.encode(header, claims, key.key, [ALGORITHM])}
        if refresh:
            token["refresh_token"] = secrets.token_urlsafe(32)
        return token

    def save_token(self, token: dict[str, Any], request: IdpRequest) -> None:
        if "refresh_token" not in token:
            return
        origin = request.refresh_token or request.authorization_code
        family = (request.refresh_token.family_id if request.refresh_token
                  else family_of(request.authorization_code.code_hash))
        self.wait(self.store.save_refresh, token["refresh_token"], family_id=family,
                  client_id=request.client.client_id, user_id=request.user.id,
                  scope=origin.get_scope(), resource=origin.resource,
                  ttl=self.settings.discovery.refresh_token_ttl)

    def verify_access_token(self, token: str) -> dict[str, Any] | None:
        """Claims of one of our access tokens meant for us (alg, typ, iss, aud, exp, nbf)."""
        try:
            decoded = jwt.decode(token, self.keys.key_set(), algorithms=[ALGORITHM])
            if decoded.header.get("typ") != "at+jwt":
                return None
            jwt.JWTClaimsRegistry(
                leeway=5, iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.settings.discovery.audience},
                exp={"essential": True}, sub={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError):
            return None
        return decoded.claims

    def id_token_audience(self, id_token: str) -> str | None:
        """The client an ``id_token_hint`` was issued to (expired hints are fine)."""
        try:
            decoded = jwt.decode(id_token, self.keys.key_set(), algorithms=[ALGORITHM])
        except (JoseError, ValueError):
            return None
        aud = decoded.claims.get("aud")
        if decoded.claims.get("iss") != self.issuer or not isinstance(aud, str):
            return None
        return aud

    # -- entry points for the endpoints (run in a worker thread) ---------------------

    def _request(self, incoming: Incoming) -> IdpRequest | Response:
        try:
            return IdpRequest(incoming)
        except InsecureTransportError as error:  # an http issuer off loopback
            return self.handle_error_response(incoming, error)

    def token(self, incoming: Incoming) -> Response:
        request = self._request(incoming)
        if isinstance(request, Response):
            return request
        return self.create_token_response(request)

    def authorize(self, incoming: Incoming, user: LoggedIn | None) -> Response | None:
        """Validate an authorization request; with ``user``, issue the code.

        Returns the response (redirect with code or error, or an error page), or None
        when the request is valid but someone has to log in first.
        """
        request = self._request(incoming)
        if isinstance(request, Response):
            return request
        try:
            grant = self.get_consent_grant(request, end_user=user)
        except OAuth2Error as error:
            return self.handle_error_response(request, error)
        if user is None:
            return None
        return self.create_authorization_response(request, grant_user=user, grant=grant)
