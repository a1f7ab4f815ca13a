"""Alembic environment: always runs on the connection handed over by ``Database.migrate``."""

from alembic import context

from fedspace.db import all_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=all_metadata(),
    render_as_batch=connection.dialect.name == "sqlite",
)
context.run_migrations()
