"""A snapshot of the engine's state, for gauges (queue depth, pending sleeps
and waits, workers connected)."""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.engine.registry import FunctionRegistry
from controlplane.engine.retention import Purged
from controlplane.engine.sessions import SessionTable
from controlplane.model import FunctionKey, StepKind
from controlplane.store import Store


@dataclass(frozen=True, slots=True)
class EngineStats:
    """The engine's state at one moment, for gauges."""

    # Queue items due now and not leased (runs waiting for a worker), per
    # function; every registered function is present.
    queue_depth: dict[FunctionKey, int] = field(default_factory=dict)
    # Pending event waits and invokes, by step kind ("wait_for_event", "invoke").
    pending_waits: dict[str, int] = field(default_factory=dict)
    pending_sleeps: int = 0
    # Worker streams connected to this control plane, per app id; every app
    # with a registered function is present.
    workers_connected: dict[str, int] = field(default_factory=dict)
    # How long the oldest run due and not leased has waited (ms), per function
    # that has one.
    oldest_ready_ms: dict[FunctionKey, int] = field(default_factory=dict)
    # What the last background check found, per invariant (all present).
    invariant_violations: dict[str, int] = field(default_factory=dict)
    # The store's tables and indexes, in bytes.
    stored_bytes: int = 0
    # What retention deleted since the start: runs, events, state rows.
    purged: dict[str, int] = field(default_factory=dict)


async def collect_stats(
    store: Store,
    now_ms: int,
    registry: FunctionRegistry,
    sessions: SessionTable,
    invariant_violations: dict[str, int] | None = None,
    purged: Purged | None = None,
) -> EngineStats:
    """Two grouped queries and the store's size (on a reader connection), and
    the session table."""
    ready, waiting, stored = await store.read(
        lambda r: (r.ready_counts(now_ms), r.pending_wait_counts(), r.stored_bytes())
    )
    counts = {key: n for key, (n, _) in ready.items()}
    oldest = {key: max(0, now_ms - due) for key, (_, due) in ready.items()}
    functions = [spec.key for spec, _, _ in registry.all()]
    workers = dict.fromkeys(sorted({key.app_id for key in functions}), 0)
    for session in sessions:
        if not session.closed:
            workers[session.app_id] = workers.get(session.app_id, 0) + 1
    return EngineStats(
        queue_depth=dict.fromkeys(functions, 0) | counts,
        pending_waits={k: n for k, n in waiting.items() if k != StepKind.SLEEP.value},
        pending_sleeps=waiting.get(StepKind.SLEEP.value, 0),
        workers_connected=workers,
        oldest_ready_ms=oldest,
        invariant_violations=dict(invariant_violations or {}),
        stored_bytes=stored,
        purged={}
        if purged is None
        else {"runs": purged.runs, "events": purged.events, "state": purged.state},
    )
