"""initial schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("pk", sa.String(length=26), nullable=False),
        sa.Column("id", sa.String(length=256), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("user_data", sa.Text(), nullable=True),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_events_id_received", "events", ["id", "received_at_ms"])
    op.create_index("ix_events_name_received", "events", ["name", "received_at_ms"])
    op.create_index("ix_events_received", "events", ["received_at_ms"])

    op.create_table(
        "functions",
        sa.Column("app_id", sa.String(length=128), nullable=False),
        sa.Column("function_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("registered_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "function_id", name="pk_functions"),
    )
    op.create_table(
        "history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("step_id", sa.String(length=40), nullable=True),
        sa.Column("step_name", sa.String(length=512), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("until_ms", sa.BigInteger(), nullable=True),
        sa.Column("execution_id", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_history_run", "history", ["run_id", "id"])

    op.create_table(
        "queue",
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("app_id", sa.String(length=128), nullable=False),
        sa.Column("function_id", sa.String(length=128), nullable=False),
        sa.Column("due_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_execution_id", sa.String(length=32), nullable=True),
        sa.Column("lease_deadline_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_queue_due", "queue", ["due_at_ms"])
    op.create_index("ix_queue_lease", "queue", ["lease_execution_id"])
    op.create_index("ix_queue_lease_deadline", "queue", ["lease_deadline_ms"])
    op.create_index("ix_queue_ready", "queue", ["app_id", "function_id", "due_at_ms"])

    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("app_id", sa.String(length=128), nullable=False),
        sa.Column("function_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("event_pk", sa.String(length=26), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("ended_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("replay_of", sa.String(length=26), nullable=True),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("root_span_id", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runs_created", "runs", ["created_at_ms"])
    op.create_index("ix_runs_event", "runs", ["event_pk"])
    op.create_index("ix_runs_function_created", "runs", ["app_id", "function_id", "created_at_ms"])
    op.create_index("ix_runs_status_created", "runs", ["status", "created_at_ms"])

    op.create_table(
        "steps",
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("step_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("ended_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("retry_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "step_id", name="pk_steps"),
    )
    op.create_table(
        "waits",
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("step_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("until_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "step_id", name="pk_waits"),
    )
    op.create_index("ix_waits_until", "waits", ["until_ms"])


def downgrade() -> None:
    for table in ("waits", "steps", "runs", "queue", "history", "functions", "events"):
        op.drop_table(table)
