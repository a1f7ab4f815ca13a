"""Federation tables: the outbox of messages to peers, and the peer trust policy."""

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

PEER_LENGTH = 261  # a 253-character DNS name and ":65535"

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
