"""Saved searches and the matches found for them later.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "saved_searches",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("owner_key_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("photo_hash", sa.String(length=64), nullable=False),
        sa.Column("webhook_url", sa.String(length=2048), nullable=True),
        sa.Column("checked_to", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_saved_searches_owner_key_id", "saved_searches", ["owner_key_id"], unique=False)
    op.create_table(
        "saved_search_matches",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("saved_id", RowId, nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(length=255), nullable=False),
        sa.Column("factory_id", sa.String(length=255), nullable=False),
        sa.Column("match_level", sa.String(length=32), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["saved_id"], ["saved_searches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("saved_id", "image_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_saved_search_matches_saved_id", "saved_search_matches", ["saved_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_saved_search_matches_saved_id", table_name="saved_search_matches")
    op.drop_table("saved_search_matches")
    op.drop_index("ix_saved_searches_owner_key_id", table_name="saved_searches")
    op.drop_table("saved_searches")
