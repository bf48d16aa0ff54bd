"""event coordination: event waits, invokes, cancel_on, idempotency, timeouts

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_run_id", sa.String(length=26), nullable=True))
        batch.add_column(sa.Column("parent_step_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("cancelled_execution_id", sa.String(length=32), nullable=True))
    op.create_index("ix_runs_parent", "runs", ["parent_run_id"])

    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("child_run_id", sa.String(length=26), nullable=True))

    with op.batch_alter_table("queue") as batch:
        batch.add_column(sa.Column("start_deadline_ms", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("finish_deadline_ms", sa.BigInteger(), nullable=True))
    op.create_index("ix_queue_start_deadline", "queue", ["start_deadline_ms"])
    op.create_index("ix_queue_finish_deadline", "queue", ["finish_deadline_ms"])

    with op.batch_alter_table("waits") as batch:
        batch.add_column(sa.Column("event_name", sa.String(length=256), nullable=True))
        batch.add_column(sa.Column("match_path", sa.String(length=256), nullable=True))
        batch.add_column(sa.Column("match_value", sa.Text(), nullable=True))
        batch.add_column(sa.Column("expression", sa.Text(), nullable=True))
        batch.add_column(sa.Column("trigger_event_pk", sa.String(length=26), nullable=True))
        batch.add_column(sa.Column("child_run_id", sa.String(length=26), nullable=True))
    op.create_index("ix_waits_match", "waits", ["event_name", "match_path", "match_value"])
    op.create_index("ix_waits_child", "waits", ["child_run_id"])

    op.create_table(
        "wait_paths",
        sa.Column("event_name", sa.String(length=256), nullable=False),
        sa.Column("match_path", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("event_name", "match_path", name="pk_wait_paths"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("app_id", sa.String(length=128), nullable=False),
        sa.Column("function_id", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "function_id", "key", name="pk_idempotency_keys"),
    )
    op.create_table(
        "event_skips",
        sa.Column("event_pk", sa.String(length=26), nullable=False),
        sa.Column("app_id", sa.String(length=128), nullable=False),
        sa.Column("function_id", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("existing_run_id", sa.String(length=26), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_pk", "app_id", "function_id", name="pk_event_skips"),
    )


def downgrade() -> None:
    op.drop_table("event_skips")
    op.drop_table("idempotency_keys")
    op.drop_table("wait_paths")
    op.drop_index("ix_waits_child", "waits")
    op.drop_index("ix_waits_match", "waits")
    with op.batch_alter_table("waits") as batch:
        for column in (
            "child_run_id",
            "trigger_event_pk",
            "expression",
            "match_value",
            "match_path",
            "event_name",
        ):
            batch.drop_column(column)
    op.drop_index("ix_queue_finish_deadline", "queue")
    op.drop_index("ix_queue_start_deadline", "queue")
    with op.batch_alter_table("queue") as batch:
        batch.drop_column("finish_deadline_ms")
        batch.drop_column("start_deadline_ms")
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("child_run_id")
    op.drop_index("ix_runs_parent", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cancelled_execution_id")
        batch.drop_column("parent_step_id")
        batch.drop_column("parent_run_id")
