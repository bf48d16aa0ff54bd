"""trace context: the span of each event and the run span of each wait

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(length=55), nullable=True))
    with op.batch_alter_table("waits") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(length=55), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("waits") as batch:
        batch.drop_column("traceparent")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("traceparent")
