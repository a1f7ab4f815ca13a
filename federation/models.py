"""Federation tables: the outbox of messages to peers, the peer trust policy, the shares
sent to other instances, and OCM invites with the contacts they made."""

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

PEER_LENGTH = 261  # a 253-character DNS name and ":65535"
ADDRESS_LENGTH = 320  # an OCM address, user@domain

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("peer", String(PEER_LENGTH), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("kind", String(32), nullable=False),  # "share", "notification", "invite-accepted"
    Column("payload", Text, nullable=False),  # JSON
    # One row per logical message: enqueueing the same key again is a no-op.
    Column("dedupe_key", String(255), nullable=False, unique=True),
    Column("created_ms", BigInteger, nullable=False),
    # When the current delivery round began (enqueue or `outbox retry`): the give-up
    # horizon counts from here.
    Column("queued_ms", BigInteger, nullable=False),
    Column("state", String(12), nullable=False),  # queued|delivering|delivered|failed
    Column("attempts", Integer, nullable=False),
    # queued: not before; delivering: when the claim's lease expires.
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("last_attempt_ms", BigInteger, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", String(512), nullable=True),
    Column("delivered_ms", BigInteger, nullable=True),
    Index("ix_outbox_due", "state", "next_attempt_ms"),
    Index("ix_outbox_peer", "peer", "id"),
)

federation_peers = Table(
    "federation_peers",
    metadata,
    Column("domain", String(PEER_LENGTH), primary_key=True),
    Column("policy", String(8), nullable=False),  # "allow" | "deny"
    Column("added_ms", BigInteger, nullable=False),
)

# Shares sent to users of other instances (the origin side of OCM). The id is the share's
# ``providerId``; the recipient is a ``federated`` member of the space in the registry.
ocm_shares = Table(
    "ocm_shares",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("space_id", String(64), nullable=False),
    Column("recipient", String(ADDRESS_LENGTH), nullable=False),  # lower-cased address
    Column("peer", String(PEER_LENGTH), nullable=False),
    Column("role", String(16), nullable=False),
    # sha256 of the shared secret (the code exchanged at our token endpoint).
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("state", String(12), nullable=False),  # sent | accepted | declined
    Column("sharer_id", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("uq_ocm_shares_recipient", "space_id", "recipient", unique=True),
)

# Invites made by local users (token stored hashed), and accepted by someone elsewhere.
ocm_invites = Table(
    "ocm_invites",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", String(64), nullable=False, index=True),
    Column("description", String(255), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("accepted_ms", BigInteger, nullable=True),
    Column("accepted_by", String(ADDRESS_LENGTH), nullable=True),
)

# Each local user's federated contacts, made by an accepted invite (either direction).
ocm_contacts = Table(
    "ocm_contacts",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("address", String(ADDRESS_LENGTH), primary_key=True),  # userID@provider
    Column("peer", String(PEER_LENGTH), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("email", String(ADDRESS_LENGTH), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)
