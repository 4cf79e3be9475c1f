"""API keys; ingest jobs owned by a key, limited to its factories, taking turns; ids never reused on SQLite.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("factory_ids", sa.JSON(), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_api_keys_token_hash", "api_keys", ["token_hash"], unique=True)
    with op.batch_alter_table("ingest_jobs") as jobs:
        jobs.add_column(sa.Column("factory_ids", sa.JSON(), nullable=False, server_default="[]"))
        jobs.add_column(sa.Column("owner_key_id", RowId, nullable=True))
        jobs.add_column(sa.Column("turn_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("ingest_jobs") as jobs:
        jobs.alter_column("factory_ids", server_default=None)
    if op.get_bind().dialect.name == "sqlite":
        # SQLite reuses the largest deleted rowid unless the table says AUTOINCREMENT: copy it into one that does.
        for table in ("images", "ingest_items"):
            with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
                pass


def downgrade() -> None:
    with op.batch_alter_table("ingest_jobs") as jobs:
        jobs.drop_column("turn_at")
        jobs.drop_column("owner_key_id")
        jobs.drop_column("factory_ids")
    op.drop_index("ix_api_keys_token_hash", table_name="api_keys")
    op.drop_table("api_keys")
