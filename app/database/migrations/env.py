"""Alembic's environment: the app's metadata, and the connection the caller hands over (app.database)."""

from alembic import context

from app.core.db import Base
from app.database.tables import TABLES

config = context.config
assert TABLES  # every table's module is imported, so Base.metadata holds them all
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters a table by copying it
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
