"""Directory tables: users, groups and app passwords."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(255), nullable=False),
    Column("email", String(255), nullable=True),
    # Argon2id hash of the account password (used by the login page, never by Basic auth).
    Column("password_hash", String(255), nullable=True),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_ms", BigInteger, nullable=False),
)

groups = Table(
    "groups",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("display_name", String(255), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", String(36), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)

app_passwords = Table(
    "app_passwords",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("label", String(255), nullable=False),
    # SHA-256 of a 256-bit random secret: a fast hash is enough for generated secrets
    # (nothing to brute-force) and keeps Basic auth off the slow KDF on every request.
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_used_ms", BigInteger, nullable=True),
)

# -- resource server: who else may call us ------------------------------------------

trusted_issuers = Table(
    "trusted_issuers",
    metadata,
    Column("issuer", String(512), primary_key=True),
    # Addresses of this issuer's users are <name>@<domain>.
    Column("domain", String(255), nullable=False),
    Column("added_ms", BigInteger, nullable=False),
)

federated_identities = Table(
    "federated_identities",
    metadata,
    Column("issuer", String(512), primary_key=True),
    Column("subject", String(255), primary_key=True),
    # The guest's id inside this instance (what space memberships refer to).
    Column("principal_id", String(36), nullable=False, unique=True),
    Column("address", String(320), nullable=False, index=True),
    Column("display_name", String(255), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_seen_ms", BigInteger, nullable=False),
)

# -- embedded OpenID Connect provider ------------------------------------------------

oidc_codes = Table(
    "oidc_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),  # SHA-256; the code is never stored
    Column("client_id", String(128), nullable=False),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("nonce", String(255), nullable=True),
    Column("code_challenge", String(128), nullable=True),
    Column("code_challenge_method", String(16), nullable=True),
    Column("resource", String(512), nullable=True),
    Column("auth_time_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    # Set on first redemption; a second redemption revokes what the first issued.
    Column("used_ms", BigInteger, nullable=True),
)

oidc_refresh_tokens = Table(
    "oidc_refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    # Rotation family: reuse of a rotated token revokes the whole family.
    Column("family_id", String(36), nullable=False, index=True),
    Column("client_id", String(128), nullable=False),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("scope", Text, nullable=False),
    Column("resource", String(512), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("rotated_ms", BigInteger, nullable=True),
    Column("revoked_ms", BigInteger, nullable=True),
)

# -- browser sessions on cloud.D (local and federated users) -------------------------

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # SHA-256 of the cookie value
    Column("principal_id", String(36), nullable=False, index=True),
    Column("kind", String(8), nullable=False),  # "user" | "guest"
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
)
