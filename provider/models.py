"""Provider tables: the spaces a provider holds, their node trees and dead properties.

File content lives in the blob store; everything else about a node — id, path, ETag,
tree size, checksums — lives here, so PROPFIND is an indexed query and MOVE is a row
update, never a filesystem walk.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from fedspace.sqltypes import path_type

metadata = MetaData()

provider_spaces = Table(
    "provider_spaces",
    metadata,
    Column("space_id", String(64), primary_key=True),
    Column("provider_id", String(64), nullable=False),
    # For a share space: the shared folder's node in the base space (its content is
    # the base space's nodes; it has none of its own). Renames keep the id.
    Column("root_id", String(36), nullable=False),
    Column("quota_total", BigInteger, nullable=False, default=0),  # 0 = unlimited
    Column("created_ms", BigInteger, nullable=False),
    # The space whose folder a share space is rooted at; NULL for ordinary spaces.
    Column("base_space_id", String(64), nullable=True, index=True),
    # The resync after a (re)connect pages through a provider's spaces by id.
    Index("ix_provider_spaces_provider", "provider_id", "space_id"),
)

nodes = Table(
    "nodes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "space_id",
        String(64),
        ForeignKey("provider_spaces.space_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("parent_id", String(36), nullable=True),
    # Path relative to the space root, "" for the root, "a/b/c.txt" below it.
    Column("path", path_type(), nullable=False),
    Column("name", String(1024), nullable=False),
    Column("is_dir", Boolean, nullable=False),
    Column("size", BigInteger, nullable=False, default=0),  # tree size for folders
    Column("etag", String(64), nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("blob_id", String(64), nullable=True),
    Column("content_type", String(255), nullable=True),
    Column("checksum_sha1", String(40), nullable=True),
    Column("checksum_md5", String(32), nullable=True),
    Column("checksum_adler32", String(8), nullable=True),
    UniqueConstraint("space_id", "path", name="uq_nodes_space_path"),
    Index("ix_nodes_space_parent", "space_id", "parent_id"),
)

dead_props = Table(
    "dead_props",
    metadata,
    Column("node_id", String(36), ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True),
    Column("namespace", String(255), primary_key=True),
    Column("name", String(255), primary_key=True),
    # The property element serialised as XML, so PROPFIND returns it as it was set.
    Column("xml", Text, nullable=False),
)
