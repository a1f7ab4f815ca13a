"""Discovery/identity slice of the configuration (``[discovery]``, ``FEDSPACE_DISCOVERY__*``)."""

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr


class OidcClient(BaseModel):
    """A client registered with the embedded IdP (configuration, not dynamic)."""

    client_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    redirect_uris: list[str] = Field(default_factory=list)
    # Public clients (browsers, native apps) have no secret and must use PKCE S256.
    public: bool = True
    # For confidential clients: Argon2 hash of the secret (``fedspace idp hash-secret``).
    secret_hash: str | None = None
    # Native/sync clients: any loopback port is accepted on these paths (RFC 8252 §7.3).
    loopback_redirect_paths: list[str] = Field(default_factory=list)


class TrustedIssuer(BaseModel):
    """A foreign IdP whose users may use this instance, and the domain of their addresses."""

    issuer: str
    domain: str


class RelyingParty(BaseModel):
    """This instance's client registration at a foreign IdP (for logging its users in)."""

    issuer: str
    client_id: str
    client_secret: SecretStr = SecretStr("")


class DiscoverySettings(BaseModel):
    app_password_cache_seconds: float = Field(
        30.0, ge=0, description="how long a verified app password is remembered in memory"
    )
    # -- embedded OpenID Connect provider ------------------------------------------
    idp_enabled: bool = Field(True, description="run the embedded IdP (off: external IdP)")
    issuer: str = Field("", description="this instance's IdP; default <public_url>/idp")
    keys_dir: Path | None = Field(None, description="IdP signing keys; default <data_dir>/keys")
    clients: list[OidcClient] = Field(default_factory=list)
    # Audiences (peer instances' public URLs) a client may ask tokens for (RFC 8707).
    resource_peers: list[str] = Field(default_factory=list)
    access_token_ttl: int = Field(300, ge=30, le=86400)
    refresh_token_ttl: int = Field(30 * 86400, ge=60)
    login_attempts_per_minute: int = Field(10, ge=1)
    # -- resource server -----------------------------------------------------------
    username_claim: str = Field(
        "preferred_username",
        description="with an external IdP: the claim naming the local user (matched to "
        "the username)")
    audience: str = Field("", description="audience tokens must name; default public_url")
    trusted_issuers: list[TrustedIssuer] = Field(default_factory=list)
    relying_parties: list[RelyingParty] = Field(default_factory=list)
    discovery_cache_seconds: float = Field(300.0, ge=0)
