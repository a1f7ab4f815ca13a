"""Registry tables: spaces, their members, and the providers that hold them."""

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    update,
)
from sqlalchemy.engine import Connection

from fedspace.sqltypes import path_type

metadata = MetaData()

spaces = Table(
    "spaces",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("type", String(16), nullable=False),
    Column("name", String(255), nullable=False),
    Column("alias", String(255), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("image", String(1024), nullable=True),
    Column("quota_total", BigInteger, nullable=False, default=0),
    # The user a personal space belongs to (at most one per user).
    Column("personal_user_id", String(64), nullable=True, unique=True),
    Column("provider_id", String(64), nullable=True),
    # Root state as last streamed by the provider.
    Column("root_id", String(64), nullable=False),
    Column("etag", String(64), nullable=False),
    Column("size", BigInteger, nullable=False, default=0),
    Column("created_ms", BigInteger, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
    Column("disabled_ms", BigInteger, nullable=True),
    # Global order of changes: SSE clients resume with Last-Event-ID from here.
    Column("change_seq", BigInteger, nullable=False, default=0, index=True),
    # A share space: the space whose folder it is rooted at, and that folder's path when
    # it was shared (informational; the provider follows renames by node id).
    Column("base_space_id", String(64), nullable=True),
    Column("root_path", path_type(), nullable=True),
    # A provider's spaces, and the root changes it streams (by provider and id).
    Index("ix_spaces_provider", "provider_id", "id"),
    # One folder, one share space: sharing it again adds members to the same space.
    Index("uq_spaces_share_root", "base_space_id", "root_id", unique=True),
    # A remote space (OCM share received from another instance): where it lives, whether
    # the recipient accepted it, and who sent it. (remote_domain, remote_provider_id) names
    # the share at its origin; receiving it again finds the same space.
    Column("remote_url", String(2048), nullable=True),
    Column("remote_state", String(12), nullable=True),  # pending | accepted | declined
    Column("remote_domain", String(261), nullable=True),
    Column("remote_provider_id", String(255), nullable=True),
    Column("remote_endpoint", String(2048), nullable=True),  # the origin's OCM endPoint
    Column("remote_sender", String(512), nullable=True),
    Column("remote_sender_name", String(255), nullable=True),
    Column("remote_owner", String(512), nullable=True),
    Column("remote_owner_name", String(255), nullable=True),
    # The share's secret, sealed by the federation service: the registry never reads it.
    Column("remote_secret", Text, nullable=True),
    Index("uq_spaces_remote", "remote_domain", "remote_provider_id", unique=True),
)

space_members = Table(
    "space_members",
    metadata,
    Column("space_id", String(64), ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True),
    # "user" | "group" | "federated" (a user of another instance, by OCM address)
    Column("principal_type", String(12), primary_key=True),
    Column("principal_id", String(320), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_space_members_principal", "principal_id", "principal_type", "space_id"),
)

providers = Table(
    "providers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("grpc_address", String(255), nullable=False),
    Column("dav_url", String(1024), nullable=False),
    Column("registered_ms", BigInteger, nullable=False),
)

counters = Table(
    "registry_counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
_TAKE_SEQS = (update(counters).where(counters.c.name == "change_seq")
              .values(value=counters.c.value + bindparam("count")).returning(counters.c.value))


def next_seq(conn: Connection, count: int = 1) -> int:
    """The next ``change_seq`` (every change to a space or its members takes one), in the
    caller's transaction; async code runs it through ``run_sync``. With ``count`` it takes
    that many and returns the last: the others are the ``count - 1`` numbers before it."""
    return int(conn.execute(_TAKE_SEQS, {"count": count}).scalar_one())
