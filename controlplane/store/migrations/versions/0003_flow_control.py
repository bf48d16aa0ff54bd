"""scheduling and flow control: cron schedules, concurrency keys, flow state, pauses, batches

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("functions") as batch:
        batch.add_column(sa.Column("paused", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("paused_at_ms", sa.BigInteger(), nullable=True))

    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("cron", sa.Text(), nullable=True))

    with op.batch_alter_table("queue") as batch:
        batch.add_column(sa.Column("concurrency_key_1", sa.String(length=600), nullable=True))
        batch.add_column(sa.Column("concurrency_limit_1", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("concurrency_key_2", sa.String(length=600), nullable=True))
        batch.add_column(sa.Column("concurrency_limit_2", sa.Integer(), nullable=True))
    op.create_index("ix_queue_concurrency_1", "queue", ["concurrency_key_1", "lease_execution_id"])
    op.create_index("ix_queue_concurrency_2", "queue", ["concurrency_key_2", "lease_execution_id"])

    op.create_table(
        "run_events",
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("event_pk", sa.String(length=26), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "position", name="pk_run_events"),
    )
    op.create_index("ix_run_events_event", "run_events", ["event_pk"])
    op.create_table(
        "schedules",
        sa.Column("app_id", sa.String(length=128), nullable=False),
        sa.Column("function_id", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("schedule", sa.String(length=256), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("catch_up", sa.String(length=8), nullable=False),
        sa.Column("next_fire_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "function_id", "position", name="pk_schedules"),
    )
    op.create_index("ix_schedules_next_fire", "schedules", ["next_fire_ms"])
    op.create_table(
        "flow_state",
        sa.Column("app_id", sa.String(length=128), nullable=False),
        sa.Column("function_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("run_id", sa.String(length=26), nullable=True),
        sa.Column("value_ms", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "function_id", "kind", "key", name="pk_flow_state"),
    )


def downgrade() -> None:
    op.drop_table("flow_state")
    op.drop_index("ix_schedules_next_fire", table_name="schedules")
    op.drop_table("schedules")
    op.drop_index("ix_run_events_event", table_name="run_events")
    op.drop_table("run_events")
    op.drop_index("ix_queue_concurrency_2", table_name="queue")
    op.drop_index("ix_queue_concurrency_1", table_name="queue")
    with op.batch_alter_table("queue") as batch:
        batch.drop_column("concurrency_limit_2")
        batch.drop_column("concurrency_key_2")
        batch.drop_column("concurrency_limit_1")
        batch.drop_column("concurrency_key_1")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cron")
    with op.batch_alter_table("functions") as batch:
        batch.drop_column("paused_at_ms")
        batch.drop_column("paused")
