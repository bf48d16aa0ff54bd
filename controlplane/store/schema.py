"""The one schema, for SQLite and PostgreSQL alike.

Times are integer milliseconds since the epoch in the control plane's clock.
JSON payloads are stored as text. Migrations in ``migrations/versions`` build
exactly these tables; a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

# Functions registered by workers, one row per (app, function id).
functions = Table(
    "functions",
    metadata,
    Column("app_id", String(128), nullable=False),
    Column("function_id", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    # The full definition as JSON (triggers, retries, later options).
    Column("definition", Text, nullable=False),
    Column("registered_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    # Paused functions: "hold" or "skip" (what new events do), else null.
    Column("paused", String(8), nullable=True),
    Column("paused_at_ms", BigInteger, nullable=True),
    PrimaryKeyConstraint("app_id", "function_id", name="pk_functions"),
)

# Every event received. ``pk`` is internal; ``id`` is the event's id as users see
# it (sent or assigned) and may repeat once its 24-hour dedupe window has passed.
events = Table(
    "events",
    metadata,
    Column("pk", String(26), primary_key=True),
    Column("id", String(256), nullable=False),
    Column("name", String(256), nullable=False),
    Column("data", Text, nullable=False),
    Column("user_data", Text, nullable=True),
    Column("ts_ms", BigInteger, nullable=False),
    Column("received_at_ms", BigInteger, nullable=False),
    # The event's span (W3C traceparent), which the spans of the runs it starts
    # link to. None for events stored before tracing recorded it.
    Column("traceparent", String(55), nullable=True),
    Index("ix_events_id_received", "id", "received_at_ms"),
    Index("ix_events_name_received", "name", "received_at_ms"),
    Index("ix_events_received", "received_at_ms"),
)

# One row per run.
runs = Table(
    "runs",
    metadata,
    Column("id", String(26), primary_key=True),
    Column("app_id", String(128), nullable=False),
    Column("function_id", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("event_pk", String(26), nullable=True),
    # Failures of the function body outside any step so far.
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("started_at_ms", BigInteger, nullable=True),
    Column("ended_at_ms", BigInteger, nullable=True),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("output", Text, nullable=True),
    # JSON {"name", "message", "stack"}.
    Column("error", Text, nullable=True),
    Column("replay_of", String(26), nullable=True),
    Column("trace_id", String(32), nullable=False),
    Column("root_span_id", String(16), nullable=False),
    # The run that invoked this one, and the hashed id of its invoke step.
    Column("parent_run_id", String(26), nullable=True),
    Column("parent_step_id", String(40), nullable=True),
    # The execution that held the run when it was cancelled: the step it was
    # running may still report its result.
    Column("cancelled_execution_id", String(32), nullable=True),
    # A run a cron schedule started: JSON {"schedule", "timezone", "at"} (the tick).
    Column("cron", Text, nullable=True),
    Index("ix_runs_function_created", "app_id", "function_id", "created_at_ms"),
    Index("ix_runs_status_created", "status", "created_at_ms"),
    Index("ix_runs_created", "created_at_ms"),
    Index("ix_runs_event", "event_pk"),
    Index("ix_runs_parent", "parent_run_id"),
)

# Step results: the memoized state of each run. ``step_id`` is the hashed id.
steps = Table(
    "steps",
    metadata,
    Column("run_id", String(26), nullable=False),
    Column("step_id", String(40), nullable=False),
    Column("name", String(512), nullable=False),
    Column("kind", String(16), nullable=False),
    # completed | failed (for good) | retrying
    Column("status", String(16), nullable=False),
    Column("output", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("ended_at_ms", BigInteger, nullable=False),
    # For a retrying step: not to be run again before this time.
    Column("retry_at_ms", BigInteger, nullable=True),
    # For an invoke step: the child run.
    Column("child_run_id", String(26), nullable=True),
    # 1, 2, 3... within the run: the order step results were recorded in, finer
    # than millisecond timestamps and independent of which node wrote them.
    Column("position", BigInteger, nullable=False),
    PrimaryKeyConstraint("run_id", "step_id", name="pk_steps"),
)

# A run's lifecycle entries (its timeline besides the steps themselves).
history = Table(
    "history",
    metadata,
    # 64-bit on PostgreSQL; SQLite's INTEGER PRIMARY KEY is already 64-bit.
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(26), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("step_id", String(40), nullable=True),
    Column("step_name", String(512), nullable=True),
    Column("attempt", Integer, nullable=True),
    Column("until_ms", BigInteger, nullable=True),
    Column("execution_id", String(32), nullable=True),
    # JSON {"error": {...}, "message": "..."} for what does not fit a column.
    Column("detail", Text, nullable=True),
    Index("ix_history_run", "run_id", "id"),
)

# The durable queue: one row per unfinished run, saying when it is next due and,
# while a worker executes it, who holds its lease and until when.
queue = Table(
    "queue",
    metadata,
    Column("run_id", String(26), primary_key=True),
    Column("app_id", String(128), nullable=False),
    Column("function_id", String(128), nullable=False),
    Column("due_at_ms", BigInteger, nullable=False),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("lease_execution_id", String(32), nullable=True),
    Column("lease_deadline_ms", BigInteger, nullable=True),
    # Run timeouts: cancel the run if it has not started / finished by then.
    Column("start_deadline_ms", BigInteger, nullable=True),
    Column("finish_deadline_ms", BigInteger, nullable=True),
    # The run's concurrency limits: the key each counts under (scope, function
    # and key value folded into one string) and its limit, or null. The row
    # carries its limits so that every node enforces the same ones.
    Column("concurrency_key_1", String(600), nullable=True),
    Column("concurrency_limit_1", Integer, nullable=True),
    Column("concurrency_key_2", String(600), nullable=True),
    Column("concurrency_limit_2", Integer, nullable=True),
    Index("ix_queue_ready", "app_id", "function_id", "due_at_ms"),
    Index("ix_queue_due", "due_at_ms"),
    Index("ix_queue_lease", "lease_execution_id"),
    Index("ix_queue_lease_deadline", "lease_deadline_ms"),
    Index("ix_queue_start_deadline", "start_deadline_ms"),
    Index("ix_queue_finish_deadline", "finish_deadline_ms"),
    Index("ix_queue_concurrency_1", "concurrency_key_1", "lease_execution_id"),
    Index("ix_queue_concurrency_2", "concurrency_key_2", "lease_execution_id"),
)

# What unfinished runs wait for: sleeps (resolved at ``until_ms``), events
# (``wait_for_event``, or ``cancel`` for cancel_on; a matching event resolves
# them, ``until_ms`` is the timeout) and invoked runs. ``until_ms`` is NOT_DUE
# for a wait without a timeout.
waits = Table(
    "waits",
    metadata,
    Column("run_id", String(26), nullable=False),
    Column("step_id", String(40), nullable=False),
    Column("name", String(512), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("until_ms", BigInteger, nullable=False),
    # Event waits: the name, the indexed equality (path on the incoming event
    # and the canonical JSON of the value it must have), and a CEL expression.
    Column("event_name", String(256), nullable=True),
    Column("match_path", String(256), nullable=True),
    Column("match_value", Text, nullable=True),
    Column("expression", Text, nullable=True),
    # The run's event, for `event` in expressions.
    Column("trigger_event_pk", String(26), nullable=True),
    # Invoke waits: the child run.
    Column("child_run_id", String(26), nullable=True),
    # The run's root span (W3C traceparent), for the span emitted when the wait
    # ends. None for cancel_on watches, which have no span.
    Column("traceparent", String(55), nullable=True),
    # Invokes: cancel | abandon, what happens to the child when the run is
    # gone (null: cancel).
    Column("parent_close", String(8), nullable=True),
    PrimaryKeyConstraint("run_id", "step_id", name="pk_waits"),
    Index("ix_waits_until", "until_ms"),
    Index("ix_waits_match", "event_name", "match_path", "match_value"),
    Index("ix_waits_child", "child_run_id"),
)

# The match paths in use per event name, so that an incoming event is looked up
# once per path instead of scanning every wait for its name.
wait_paths = Table(
    "wait_paths",
    metadata,
    Column("event_name", String(256), nullable=False),
    # "" for waits without a match path.
    Column("match_path", String(256), nullable=False),
    PrimaryKeyConstraint("event_name", "match_path", name="pk_wait_paths"),
)

# Idempotency keys in use: at most one run per key and function in 24 hours.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("app_id", String(128), nullable=False),
    Column("function_id", String(128), nullable=False),
    Column("key", String(512), nullable=False),
    Column("run_id", String(26), nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("app_id", "function_id", "key", name="pk_idempotency_keys"),
)

# Runs an event matched but did not start, with the reason.
event_skips = Table(
    "event_skips",
    metadata,
    Column("event_pk", String(26), nullable=False),
    Column("app_id", String(128), nullable=False),
    Column("function_id", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("existing_run_id", String(26), nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("event_pk", "app_id", "function_id", name="pk_event_skips"),
)

# Runs with more than one event (batching): every event of the run, in order.
# A run with one event keeps it in ``runs.event_pk`` alone.
run_events = Table(
    "run_events",
    metadata,
    Column("run_id", String(26), nullable=False),
    Column("position", Integer, nullable=False),
    Column("event_pk", String(26), nullable=False),
    PrimaryKeyConstraint("run_id", "position", name="pk_run_events"),
    Index("ix_run_events_event", "event_pk"),
)

# Cron schedules: one row per cron trigger of a registered function, with the
# next tick to fire. The node that locks the row fires the tick and advances it
# in the same transaction, so each tick starts one run.
schedules = Table(
    "schedules",
    metadata,
    Column("app_id", String(128), nullable=False),
    Column("function_id", String(128), nullable=False),
    # The trigger's index among the function's triggers.
    Column("position", Integer, nullable=False),
    Column("schedule", String(256), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("catch_up", String(8), nullable=False),
    Column("next_fire_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("app_id", "function_id", "position", name="pk_schedules"),
    Index("ix_schedules_next_fire", "next_fire_ms"),
)

# Flow-control state per function and key: throttle and rate-limit GCRA
# (``value_ms`` is the theoretical arrival time), debounce (the pending run;
# ``value_ms`` is its first event's time), batching (the open batch's run and
# ``count`` of events), singleton (the run holding the key).
flow_state = Table(
    "flow_state",
    metadata,
    Column("app_id", String(128), nullable=False),
    Column("function_id", String(128), nullable=False),
    # throttle | rate_limit | debounce | batch | singleton
    Column("kind", String(16), nullable=False),
    Column("key", String(512), nullable=False),
    Column("run_id", String(26), nullable=True),
    Column("value_ms", BigInteger, nullable=False),
    Column("count", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("app_id", "function_id", "kind", "key", name="pk_flow_state"),
)

# API keys: who may call the control plane (model/access.py). The secret is
# kept only as its SHA-256 (keys are long random strings, so a fast hash is
# enough); it is shown once, when the key is created.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("environment", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    # send | worker | read | admin
    Column("role", String(16), nullable=False),
    # JSON list of the app ids a worker key may serve ([]: any).
    Column("apps", Text, nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger, nullable=True),
    Index("ux_api_keys_secret", "secret_sha256", unique=True),
)

# The environments besides ``default`` (access/environments.py), listed in the
# default environment's store; each keeps its data in a store of its own.
environments = Table(
    "environments",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("created_at_ms", BigInteger, nullable=False),
    # Its own retention (null: the control plane's --retention); -1: forever.
    Column("retention_ms", BigInteger, nullable=True),
)
