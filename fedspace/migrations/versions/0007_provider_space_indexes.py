"""provider space indexes by (provider, id)

A provider's resync pages through its spaces by id, and the registry reads a page's spaces
by provider and id: with an index on the provider alone, SQLite scanned every space of
the provider for each page (quadratic in the number of spaces).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 07:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("spaces", schema=None) as batch_op:
        batch_op.drop_index("ix_spaces_provider_id")
        batch_op.create_index("ix_spaces_provider", ["provider_id", "id"], unique=False)
    with op.batch_alter_table("provider_spaces", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_spaces_provider_id")
        batch_op.create_index("ix_provider_spaces_provider", ["provider_id", "space_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("provider_spaces", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_spaces_provider")
        batch_op.create_index("ix_provider_spaces_provider_id", ["provider_id"], unique=False)
    with op.batch_alter_table("spaces", schema=None) as batch_op:
        batch_op.drop_index("ix_spaces_provider")
        batch_op.create_index("ix_spaces_provider_id", ["provider_id"], unique=False)
