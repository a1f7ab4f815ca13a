"""authlib grants with this IdP's policy: PKCE S256 only (and required for public
clients), ``state`` always, ``nonce`` with ``openid``, RFC 8707 resources, refresh-token
rotation, ES256 ID tokens."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode

from discovery.idp.keys import ALGORITHM
from discovery.idp.store import Code, RefreshToken

if TYPE_CHECKING:
    from joserfc.jwk import ECKey

    from discovery.idp.clients import Client
    from discovery.idp.server import IdpRequest, IdpServer
    from discovery.service import User

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


class _Issuing:
    """Tokens come from the server's RFC 9068 issuer, which needs the request (audience)."""

    server: IdpServer
    request: IdpRequest

    def generate_token(self, user: User | None = None, scope: str | None = None,
                       grant_type: str | None = None, expires_in: int | None = None,
                       include_refresh_token: bool = True) -> dict[str, Any]:
        assert user is not None
        return self.server.issue(self.request, user, scope or "", include_refresh_token)

    def _resource(self, granted: str | None) -> None:
        self.request.resource = self.server.check_resource(
            self.request.payload.datalist.get("resource", []), granted)


class CodeGrant(_Issuing, grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_authorization_request(self) -> str:
        redirect_uri = super().validate_authorization_request()
        try:
            if not self.request.payload.state:
                raise InvalidRequestError("Missing 'state' in request.")
            self._resource(None)
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def save_authorization_code(self, code: str, request: IdpRequest) -> None:
        self.server.save_authorization_code(code, request)

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        return self.server.wait(self.server.store.redeem_code, code, client.client_id)

    def delete_authorization_code(self, authorization_code: Code) -> None:
        """Nothing to do: redemption already marked the code used (kept for replays)."""

    def authenticate_user(self, authorization_code: Code) -> User | None:
        return self.server.enabled_user(authorization_code.user_id)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        self._resource(self.request.authorization_code.resource)


class RefreshGrant(_Issuing, grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every use returns a successor

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        token = self.server.wait(self.server.store.find_refresh, refresh_token)
        if token is None or self.server.enabled_user(token.user_id) is None:
            return None
        return token

    def authenticate_user(self, refresh_token: RefreshToken) -> User | None:
        return self.server.enabled_user(refresh_token.user_id)

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        if not self.server.wait(self.server.store.rotate_refresh, refresh_token):
            raise InvalidGrantError("The refresh token was already used.")

    def validate_token_request(self) -> None:
        super().validate_token_request()
        self._resource(self.request.refresh_token.resource)


class PkceS256(CodeChallenge):
    """RFC 7636 with S256 only; public clients must use it."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def __init__(self) -> None:
        super().__init__(required=True)

    def validate_code_challenge(self, grant: CodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        if grant.request.client.public and not data.get("code_challenge"):
            raise InvalidRequestError("Public clients must send a PKCE 'code_challenge'.")
        super().validate_code_challenge(grant, redirect_uri)


class OpenIdCode(OpenIDCode):
    """ID tokens (OIDC Core §3.1.3.6) signed with the current ES256 key."""

    def __init__(self, server: IdpServer) -> None:
        super().__init__(require_nonce=True)
        self.server = server

    def exists_nonce(self, nonce: str, request: IdpRequest) -> bool:
        return self.server.wait(self.server.store.nonce_used, request.payload.client_id, nonce)

    def encode_id_token(self, token: dict[str, Any], request: IdpRequest) -> str:
        # Pin one key for header and signature even if rotation activates meanwhile.
        request.client.signing_key = self.server.keys.signing_key()
        return super().encode_id_token(token, request)

    def get_client_algorithm(self, client: Client) -> str:
        return ALGORITHM

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": ALGORITHM, "typ": "JWT", "kid": client.signing_key.kid}

    def resolve_client_private_key(self, client: Client) -> ECKey:
        return client.signing_key.key

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        ttl = self.server.settings.discovery.access_token_ttl
        return {"iss": self.server.issuer, "aud": client.client_id,
                "exp": int(time.time()) + ttl}

    def generate_user_info(self, user: User, scope: str) -> dict[str, Any]:
        return user_claims(user, scope)


def user_claims(user: User, scope: str) -> dict[str, Any]:
    """OIDC standard claims the scope grants (userinfo and ID token)."""
    scopes = scope.split()
    claims: dict[str, Any] = {"sub": user.id}
    if "profile" in scopes:
        claims.update(preferred_username=user.username, name=user.display_name)
    if "email" in scopes and user.email:
        claims["email"] = user.email
    return claims
