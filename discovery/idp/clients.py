"""Registered clients (from configuration) as authlib client models.

Clients are derived from settings on every request, so a ``public_url`` known only after
binding port 0 still yields the right default ``web`` redirect URI.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from authlib.oauth2.rfc6749 import ClientMixin

from discovery.idp.keys import SigningKey
from discovery.settings import OidcClient
from fedspace.settings import Settings

SCOPES = ("openid", "profile", "email", "offline_access")
LOOPBACK_HOSTS = ("127.0.0.1", "::1")
_hasher = PasswordHasher()


def configured_clients(settings: Settings) -> dict[str, OidcClient]:
    """The configured clients, or the built-in ``web`` and ``cli`` when none are."""
    clients = settings.discovery.clients or [
        OidcClient(client_id="web", redirect_uris=[f"{settings.public_url}/oidc-callback"]),
        OidcClient(client_id="cli", loopback_redirect_paths=["/callback"]),
    ]
    return {c.client_id: c for c in clients}


def is_loopback_redirect(uri: str, paths: list[str]) -> bool:
    """RFC 8252 §7.3: ``http://127.0.0.1:{any port}{path}`` (or ``[::1]``) is accepted."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 -- raises ValueError for a malformed port
    except ValueError:
        return False
    return (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
            and "@" not in parts.netloc and not parts.fragment and parts.path in paths)


def origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}/"


class Client(ClientMixin):
    # Pinned while one ID token is encoded (see grants.OpenIdCode).
    signing_key: SigningKey

    def __init__(self, config: OidcClient) -> None:
        self.config = config
        self.client_id = config.client_id

    @property
    def public(self) -> bool:
        return self.config.public

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # Always demand an explicit redirect_uri: it must be compared, never guessed.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.config.redirect_uris or is_loopback_redirect(
            redirect_uri, self.config.loopback_redirect_paths)

    def check_post_logout_redirect_uri(self, uri: str) -> bool:
        """A registered redirect URI or the root of its origin (no separate list yet)."""
        return self.check_redirect_uri(uri) or uri in {
            origin(u) for u in self.config.redirect_uris}

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.config.secret_hash:
            return False
        try:
            return _hasher.verify(self.config.secret_hash, client_secret)
        except (VerificationError, InvalidHashError):
            return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")
