"""Batch query jobs claimed by workers: who holds each running job, and its last heartbeat.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("query_jobs") as jobs:
        jobs.add_column(sa.Column("worker", sa.String(length=128), nullable=True))
        jobs.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("query_jobs") as jobs:
        jobs.drop_column("heartbeat_at")
        jobs.drop_column("worker")
